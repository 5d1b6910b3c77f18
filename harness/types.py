"""Shared types: prompt pairs, tokenized batches, components.

Conventions used everywhere in the harness:

- A *prompt pair* is a clean prompt x and a corrupt prompt x' of the same token length, with the
  answer token(s) and the wrong-answer token(s) read at the last real position.
- Batches are right-padded: row i's real tokens are ``tokens[i, : last[i] + 1]``. With causal
  attention, padding after the last real token cannot change anything the metric reads, so no
  attention mask is passed to the model. Clean and corrupt rows are padded identically, so a
  patch at a padded position is a no-op.
- A *component* is one slice of an activation site: a head's ``hook_z[..., h, :]``, an attention
  output, an MLP output, one MLP neuron (a hidden unit of the MLP: the input of its output
  projection) or the residual stream entering a block; either summed over all positions
  (``pos = -1``) or at one position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import torch

Token = Union[str, int]  # noqa: UP007 - a runtime alias, valid on Python 3.10


@dataclass(frozen=True)
class PromptPair:
    """One clean/corrupt pair before tokenization.

    ``clean``/``corrupt`` are text (tokenized with the tokenizer's own defaults) or a list of token
    ids (used as is). ``answers``/``wrongs`` are one or more tokens: a string is tokenized with
    ``add_special_tokens=False`` and must give exactly one token; an int is a token id.
    ``source`` names where the pair came from (``file.jsonl:3``) for error messages.
    """

    clean: str | list[int]
    corrupt: str | list[int]
    answers: tuple[Token, ...]
    wrongs: tuple[Token, ...]
    source: str = ""


@dataclass
class PromptBatch:
    """Tokenized prompt pairs, right-padded.

    Shapes: ``clean``, ``corrupt``: [n, seq] long; ``last``: [n] long (index of the last real
    token); ``answers``: [n, A] long and ``answer_mask``: [n, A] bool (valid entries);
    ``wrongs``/``wrong_mask``: [n, W]. Single-token answers give A = W = 1.
    """

    clean: torch.Tensor
    corrupt: torch.Tensor
    last: torch.Tensor
    answers: torch.Tensor
    answer_mask: torch.Tensor
    wrongs: torch.Tensor
    wrong_mask: torch.Tensor
    texts: list[PromptPair] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.clean.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.clean.shape[1])

    def to(self, device: torch.device | str) -> PromptBatch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device)

        return PromptBatch(
            clean=move(self.clean),
            corrupt=move(self.corrupt),
            last=move(self.last),
            answers=move(self.answers),
            answer_mask=move(self.answer_mask),
            wrongs=move(self.wrongs),
            wrong_mask=move(self.wrong_mask),
            texts=self.texts,
        )

    def select(self, rows: slice | torch.Tensor) -> PromptBatch:
        """A sub-batch (rows of every tensor)."""
        texts = self.texts[rows] if isinstance(rows, slice) and self.texts else self.texts
        return PromptBatch(
            clean=self.clean[rows],
            corrupt=self.corrupt[rows],
            last=self.last[rows],
            answers=self.answers[rows],
            answer_mask=self.answer_mask[rows],
            wrongs=self.wrongs[rows],
            wrong_mask=self.wrong_mask[rows],
            texts=texts,
        )


SITES: tuple[str, ...] = ("head", "attn_out", "mlp_out", "resid_pre", "neuron")
"""Component sites: ``head`` is ``blocks.{l}.attn.hook_z`` [batch, pos, head, d_head];
``attn_out`` is ``blocks.{l}.hook_attn_out``, ``mlp_out`` is ``blocks.{l}.hook_mlp_out`` and
``resid_pre`` is ``blocks.{l}.hook_resid_pre``, each [batch, pos, d_model]; ``neuron`` is
``blocks.{l}.mlp.hook_post`` [batch, pos, d_mlp], the MLP's hidden activations as its output
projection reads them (act(W_in x) for GPT-2 / GPT-NeoX MLPs, act(W_gate x) * W_up x for gated
MLPs: Llama, Gemma-2, Qwen-2), one component per unit."""

POSITION_MODES: tuple[str, ...] = ("all", "each")


@dataclass(frozen=True, order=True)
class Component:
    """One component: ``site`` at ``layer``; ``head`` (-1 if the site has none); ``pos`` (-1 when
    the component spans all positions); ``neuron``: the MLP unit of a ``neuron`` site (else -1)."""

    site: str
    layer: int
    head: int = -1
    pos: int = -1
    neuron: int = -1

    @property
    def id(self) -> str:
        """A stable string id, e.g. ``head.L1.H3``, ``resid_pre.L0.P5`` or ``neuron.L2.N17``."""
        parts = [self.site, f"L{self.layer}"]
        if self.head >= 0:
            parts.append(f"H{self.head}")
        if self.neuron >= 0:
            parts.append(f"N{self.neuron}")
        if self.pos >= 0:
            parts.append(f"P{self.pos}")
        return ".".join(parts)


@dataclass
class PathEnds:
    """Path derivatives of components already taken (:mod:`harness.second_order`), float64
    [n_components] each: f_c'(0), f_c''(0) and f_c'(1); None: not taken, NaN: a component left
    out. Passed between a method, the diagnostics and their cache so none is taken twice."""

    first0: torch.Tensor | None = None
    second0: torch.Tensor | None = None
    first1: torch.Tensor | None = None

    def values(self) -> dict[str, torch.Tensor | None]:
        return {"first0": self.first0, "second0": self.second0, "first1": self.first1}

    def select(self, index: list[int]) -> PathEnds:
        """These derivatives of the components ``index`` only, in that order."""
        return PathEnds(**{k: None if v is None else v[index] for k, v in self.values().items()})

    def laid_out(self, index: list[int], n_components: int) -> PathEnds:
        """These derivatives (of the components ``index``) over ``n_components``, NaN elsewhere."""
        return PathEnds(
            **{
                k: None if v is None else laid_out(v, index, n_components)
                for k, v in self.values().items()
            }
        )

    def has(self, name: str) -> bool:
        """Whether ``name`` (first0, second0 or first1) was taken for every component."""
        value = self.values()[name]
        return value is not None and bool(torch.isfinite(value).all())

    def covers(self, second: bool, end: bool) -> bool:
        """Whether f'(0), with ``second`` f''(0) and with ``end`` f'(1) are all here, finite."""
        wanted = ["first0"] + ["second0"] * second + ["first1"] * end
        return all(self.has(name) for name in wanted)


def laid_out(values: torch.Tensor, index: list[int], n_components: int) -> torch.Tensor:
    """``values`` of the components ``index`` placed over ``n_components``: float64 on the CPU,
    NaN elsewhere."""
    out = torch.full((n_components,), float("nan"), dtype=torch.float64)
    out[index] = values.detach().double().cpu()
    return out
