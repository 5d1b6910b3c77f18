"""The one module that talks to TransformerLens.

Everything else in the harness sees a :class:`ModelAdapter`: hook names for component sites, a
forward pass with hooks, a cache of activations, and (for the fast patching engine) a way to
re-enter the block stack at any layer and position from an unpatched run's residual stream,
keys and values (:meth:`ModelAdapter.block_inputs`, :meth:`ModelAdapter.run_from_layer`). A new
TransformerLens major version is a change to this file alone.

Hook semantics (TransformerLens): a forward hook ``fn(activation, hook)`` that returns a tensor
replaces the activation for everything downstream. To take gradients with respect to an
activation the hook returns ``activation + eps`` with ``eps`` a zero tensor that requires grad;
the activation is never detached, so gradients reach it through every downstream path.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from harness.errors import HarnessError

HookFn = Callable[[torch.Tensor, object], torch.Tensor | None]

_SITE_HOOKS: dict[str, str] = {
    "head": "blocks.{layer}.attn.hook_z",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    # The MLP's hidden activations, the input of its output projection (an alias of the bridge's
    # ``mlp.out.hook_in``): act(W_in x) in GPT-2 / GPT-NeoX MLPs, act(W_gate x) * W_up x in gated
    # ones (Llama, Gemma-2, Qwen-2); tests/test_components.py checks both on the zoo.
    "neuron": "blocks.{layer}.mlp.hook_post",
}


_UNEMBED_IN = "unembed.hook_in"
_EMBED_OUT = "hook_embed"  # the bridge's alias of embed.hook_out


def _gather_hook(read_pos: torch.Tensor) -> HookFn:
    """A hook keeping one position per row (``read_pos`` [rows]): [rows, seq, d] -> [rows, 1, d]."""

    def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
        rows = torch.arange(act.shape[0], device=act.device)
        return act[rows, read_pos.to(act.device)].unsqueeze(1)

    return hook


def site_hook_name(site: str, layer: int) -> str:
    """TransformerLens hook name of a component site at a layer."""
    return _SITE_HOOKS[site].format(layer=layer)


def boot_bridge(
    name_or_path: str,
    device: str,
    dtype: torch.dtype,
    trust_remote_code: bool = False,
    random_init: bool = False,
    hf_model: Any = None,
    tokenizer: Any = None,
):
    """Boot a TransformerBridge from a hub name or a local HF folder (weights + tokenizer),
    frozen (no parameter requires grad) and in eval mode: the one way the harness boots one.

    ``random_init`` builds the architecture from its config with random weights (no weight
    download), for benchmarks of full-size shapes. ``hf_model`` (with its ``tokenizer``): an
    already built transformers model to wrap instead of loading one.
    """
    from transformer_lens.model_bridge import TransformerBridge

    logging.getLogger("transformers").setLevel(logging.ERROR)
    quiet_transformers()
    built = {} if hf_model is None else {"hf_model": hf_model, "tokenizer": tokenizer}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(
            name_or_path,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            load_weights=not random_init,
            **built,
        )
    if random_init:
        bridge = bridge.to(device=device, dtype=dtype)
    bridge.eval()
    for param in bridge.parameters():
        param.requires_grad_(False)
    return bridge


def bridge_architectures() -> set[str]:
    """The transformers ``*ForCausalLM`` class names TransformerBridge has an adapter for."""
    from transformer_lens.factories.architecture_adapter_factory import (
        ArchitectureAdapterFactory,
    )

    return set(ArchitectureAdapterFactory._adapters)  # noqa: SLF001 - TL's own registry


def quiet_transformers() -> None:
    """No weight-loading progress bars or advisory warnings from transformers on stderr."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


@dataclass
class ModelShape:
    """Sizes of a model. ``d_mlp``: MLP hidden width (0 without MLPs); ``sites``: the component
    sites the model has (empty: not checked)."""

    n_layers: int
    n_heads: int
    d_head: int
    d_model: int
    n_ctx: int
    d_mlp: int = 0
    sites: tuple[str, ...] = ()
    d_vocab: int = 0


class ModelAdapter:
    """A booted model behind the harness's small interface.

    ``run(tokens, hooks)`` returns logits [batch, pos, vocab]; ``cache(tokens, names)`` returns
    the named activations of one forward pass.
    """

    def __init__(self, bridge, name: str) -> None:
        self.bridge = bridge
        self.name = name
        cfg = bridge.cfg
        self.shape = ModelShape(
            n_layers=int(cfg.n_layers),
            n_heads=int(cfg.n_heads),
            d_head=int(cfg.d_head),
            d_model=int(cfg.d_model),
            n_ctx=int(getattr(cfg, "n_ctx", 0) or 0),
            d_mlp=0 if getattr(cfg, "attn_only", False) else int(getattr(cfg, "d_mlp", 0) or 0),
            d_vocab=int(getattr(cfg, "d_vocab", 0) or 0),
        )
        self._hook_names = set(bridge.hook_dict)
        self.shape.sites = tuple(
            site
            for site in _SITE_HOOKS
            if site_hook_name(site, 0) in self._hook_names
            and (site != "neuron" or self.shape.d_mlp > 0)
        )

    @property
    def device(self) -> torch.device:
        return next(self.bridge.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.bridge.parameters()).dtype

    @property
    def weight_bytes(self) -> int:
        """Bytes held by the model's parameters."""
        return sum(p.numel() * p.element_size() for p in self.bridge.parameters())

    def hook_name(self, site: str, layer: int) -> str:
        name = site_hook_name(site, layer)
        if name not in self._hook_names:
            raise HarnessError(f"model {self.name!r} has no hook {name!r} for site {site!r}")
        return name

    def attention_hook_name(self, layer: int, kind: str) -> str:
        """Name of an attention hook (``kind``: q, k, v, z, attn_scores, pattern) of a layer:
        hook_q and hook_z are [batch, pos, head, d_head], hook_k/hook_v [batch, pos, kv_head,
        d_head], hook_attn_scores (after scale, mask and soft-capping) and hook_pattern
        [batch, head, q_pos, k_pos]. A one-line HarnessError if the model lacks it."""
        return self._checked(f"blocks.{layer}.attn.hook_{kind}")

    def block_hook_names(self, layer: int) -> tuple[str, str]:
        """Names of the residual stream entering and leaving block ``layer`` [batch, pos,
        d_model] (``hook_resid_pre``, ``hook_resid_post``)."""
        pre = self._checked(f"blocks.{layer}.hook_resid_pre")
        return pre, self._checked(f"blocks.{layer}.hook_resid_post")

    def embed_hook_name(self) -> str:
        """Name of the token embedding's output [batch, pos, d_model], where the prompt enters
        the residual stream (positional embeddings, where the model adds them, have their own
        hook)."""
        return self._checked(_EMBED_OUT)

    def _checked(self, name: str) -> str:
        if name not in self._hook_names:
            raise HarnessError(f"model {self.name!r} has no hook {name!r}")
        return name

    def hook_point(self, name: str) -> torch.nn.Module:
        """The hook-point module of ``name`` (for libraries that hook modules, e.g. captum)."""
        return self.bridge.hook_dict[self._checked(name)]

    def run(
        self,
        tokens: torch.Tensor,
        hooks: Sequence[tuple[str, HookFn]] = (),
        read_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [batch, pos, vocab] of one forward pass with ``hooks`` applied.

        ``read_pos`` [batch] (absolute positions): the unembedding runs at one position per row
        only and the logits are [batch, 1, vocab] (where the model exposes the unembedding's
        input hook; otherwise all positions are returned).
        """
        hooks = list(hooks)
        if read_pos is not None and _UNEMBED_IN in self._hook_names:
            hooks.append((_UNEMBED_IN, _gather_hook(read_pos)))
        if hooks:
            return self.bridge.run_with_hooks(tokens, fwd_hooks=hooks)
        return self.bridge(tokens)

    def cache(
        self,
        tokens: torch.Tensor,
        names: Iterable[str],
        hooks: Sequence[tuple[str, HookFn]] = (),
        read_pos: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (at ``read_pos`` only, as :meth:`run`) and the activations at ``names``
        (after any hook on them) of one pass."""
        store: dict[str, torch.Tensor] = {}

        def keep(name: str) -> HookFn:
            def hook(act: torch.Tensor, hook: object) -> None:
                store[name] = act.detach()

            return hook

        all_hooks = list(hooks) + [(name, keep(name)) for name in names]
        with torch.no_grad():
            logits = self.run(tokens, all_hooks, read_pos=read_pos)
        return logits, store

    # ---- the fast patching path: re-entering the block stack from a cached residual ----

    def block_inputs(self, tokens: torch.Tensor, record_kv: bool = False) -> BlockInputs:
        """Everything needed to re-run blocks l..L-1 of an unpatched run on ``tokens`` [m, seq].

        One full forward (the bridge's own, with hooks none) captures each block's call
        arguments through forward pre-hooks; one pass of the block loop of
        :meth:`run_from_layer` from block 0 then records the hidden state entering every block
        and (``record_kv``) every attention layer's keys and values. Both passes' logits are
        kept so the caller can check the loop against the full forward.
        """
        blocks = self._blocks()
        calls: list[tuple[tuple, dict] | None] = [None] * len(blocks)

        def capture(index: int):
            def pre_hook(module, args, kwargs):
                calls[index] = (args, dict(kwargs))

            return pre_hook

        handles = [
            block.register_forward_pre_hook(capture(i), with_kwargs=True)
            for i, block in enumerate(blocks)
        ]
        try:
            with torch.no_grad():
                logits = self.bridge(tokens)
        finally:
            for handle in handles:
                handle.remove()
        if any(call is None for call in calls):
            raise HarnessError(f"model {self.name!r}: not every block ran in the forward pass")
        m, seq = int(tokens.shape[0]), int(tokens.shape[1])
        kwargs, resid0 = [], None
        for index, (args, kw) in enumerate(calls):
            hidden, rest = _split_block_call(blocks[index], args, kw)
            if index == 0:
                resid0 = hidden
            kwargs.append(rest)
        inputs = BlockInputs(kwargs=kwargs, resid=[], n_prompts=m, seq_len=seq, logits=logits)
        recorder = _KVCache(record=True) if record_kv else None
        with torch.no_grad():
            inputs.loop_logits = self._loop(
                inputs, 0, resid0, {}, 0, seq, None, recorder, keep_resid=inputs.resid
            )
        if recorder is not None:
            inputs.keys, inputs.values = recorder.keys, recorder.values
        return inputs

    def run_from_layer(
        self,
        resid: torch.Tensor,
        layer: int,
        hooks: Sequence[tuple[str, HookFn]],
        block_inputs: BlockInputs,
        enter: Mapping[int, torch.Tensor] | None = None,
        start_pos: int = 0,
        stop_pos: int | None = None,
        read_pos: torch.Tensor | None = None,
        columns: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of blocks ``layer``..L-1, the final norm and the unembedding, with ``hooks``.

        ``resid`` [rows, stop_pos - start_pos, d_model] enters block ``layer``; ``rows`` is a
        multiple of ``block_inputs.n_prompts`` (copies of the prompt chunk, copy-major).
        ``enter`` {l: [rows_l, ...]} appends more copies to the batch just before block l
        (copies that start later). Only positions ``start_pos``..``stop_pos - 1`` run; the
        keys and values of earlier positions come from the unpatched run (``block_inputs``
        recorded with ``record_kv``), which is exact for causal attention when nothing before
        ``start_pos`` changed. ``read_pos`` [rows] (absolute positions) returns logits
        [rows, 1, vocab] at one position per row; otherwise [rows, window, vocab]. ``columns``
        [k] (vocabulary ids): only those logits are computed, [..., k] (the unembedding's rows
        ``columns`` only; see :func:`harness.task_metric.metric_columns`).
        """
        stop = block_inputs.seq_len if stop_pos is None else stop_pos
        cache = None
        if start_pos > 0:
            if block_inputs.keys is None:
                raise HarnessError("start_pos > 0 needs block inputs recorded with record_kv")
            cache = _KVCache(prefix=(block_inputs.keys, block_inputs.values), stop=start_pos)
        context = self.bridge.hooks(fwd_hooks=list(hooks)) if hooks else nullcontext()
        with context:
            return self._loop(
                block_inputs,
                layer,
                resid,
                dict(enter or {}),
                start_pos,
                stop,
                read_pos,
                cache,
                columns,
            )

    def _loop(
        self,
        inputs: BlockInputs,
        layer: int,
        hidden: torch.Tensor,
        enter: dict[int, torch.Tensor],
        start: int,
        stop: int,
        read_pos: torch.Tensor | None,
        cache: _KVCache | None,
        columns: torch.Tensor | None = None,
        keep_resid: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        blocks = self._blocks()
        prepared: dict[tuple[int, int], dict[str, Any]] = {}
        for index in range(layer, len(blocks)):
            if index in enter:
                hidden = torch.cat([hidden, enter[index]], dim=0)
            if keep_resid is not None:
                keep_resid.append(hidden)
            kwargs = prepared.get((index, hidden.shape[0]))
            if kwargs is None:
                kwargs = _window_kwargs(inputs, index, hidden.shape[0], start, stop, cache)
                prepared[(index, hidden.shape[0])] = kwargs
            out = blocks[index](hidden, **kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
        if read_pos is not None:
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            hidden = hidden[rows, (read_pos - start).clamp(0, stop - start - 1)].unsqueeze(1)
        return self._final(hidden, columns)

    def _final(self, hidden: torch.Tensor, columns: torch.Tensor | None = None) -> torch.Tensor:
        """Final norm, unembedding and what the HF top-level forward does after its lm head
        (Gemma-2's ``final_logit_softcapping``, elementwise). ``columns`` [k]: the logits of
        those vocabulary ids only, [..., k]: a linear lm head multiplies by its ``columns`` rows
        alone (k dot products a position instead of the vocabulary's)."""
        normed = self.bridge.ln_final(hidden)
        head = getattr(self.bridge.unembed, "original_component", None)
        if columns is None:
            logits = self.bridge.unembed(normed)
        elif isinstance(head, torch.nn.Linear):
            columns = columns.to(head.weight.device)
            bias = getattr(head, "bias", None)
            logits = torch.nn.functional.linear(
                normed, head.weight[columns], None if bias is None else bias[columns]
            )
        else:
            logits = self.bridge.unembed(normed)[..., columns.to(normed.device)]
        hf_config = getattr(getattr(self.bridge, "original_model", None), "config", None)
        softcap = getattr(hf_config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    def _blocks(self) -> Sequence[torch.nn.Module]:
        blocks = getattr(self.bridge, "blocks", None)
        if (
            blocks is None
            or not hasattr(self.bridge, "ln_final")
            or not hasattr(self.bridge, "unembed")
        ):
            raise HarnessError(f"model {self.name!r} has no blocks/ln_final/unembed stack")
        return blocks


@dataclass
class AttentionOps:
    """Hook names and constants of one attention layer, for :mod:`harness.decomposition`.

    Hook layouts: ``q``/``k``/``v``/``z`` [batch, pos, heads, d_head] (``k``/``v`` with the KV
    heads), ``scores``/``pattern`` [batch, heads, q_pos, k_pos] (``scores`` after the softcap
    and the mask, before the softmax). ``rot_q``/``rot_k``: queries and keys after rotary
    embeddings, where the bridge hooks them; otherwise ``rotary(q, k, cos, sin)`` (layout
    [batch, heads, pos, d_head], cos/sin from the hooks ``cos``/``sin``) applies them.
    ``softcap``: Gemma-2's attention logit softcapping c (scores = c tanh(raw / c)), or None.
    """

    q: str
    k: str
    v: str
    scores: str
    pattern: str
    z: str
    rot_q: str | None
    rot_k: str | None
    cos: str | None
    sin: str | None
    rotary: Callable | None
    softcap: float | None
    kind: str


@dataclass
class MLPOps:
    """Hook names of one MLP: ``pre`` the activation's input (the gate in gated MLPs),
    ``up`` the linear branch of a gated MLP (None otherwise), ``post`` the down projection's
    input (act(pre), or act(pre) * up); ``act`` the elementwise activation function."""

    pre: str
    up: str | None
    post: str
    act: Callable[[torch.Tensor], torch.Tensor]


@dataclass
class BlockOps:
    """The non-linear operations of one block as the harness can intercept them:
    ``norms`` {hook prefix (``blocks.{l}.ln1``): the norm's own function of its input}."""

    attention: AttentionOps | None
    norms: dict[str, Callable[[torch.Tensor], torch.Tensor]]
    mlp: MLPOps | None


READOUT_HOOK = "ln_final.hook_in"
"""The final residual stream as the readout (final norm, unembedding, metric) reads it."""


def block_ops(adapter: ModelAdapter, layer: int) -> BlockOps:
    """:class:`BlockOps` of block ``layer``; a one-line :class:`HarnessError` naming what the
    harness cannot intercept (an attention without score/pattern hooks, an MLP without an
    activation function it can find, ...)."""
    from transformer_lens.model_bridge.generalized_components.normalization import (
        NormalizationBridge,
    )

    block = adapter._blocks()[layer]
    names = adapter._hook_names
    prefix = f"blocks.{layer}"

    def need(name: str, what: str) -> str:
        if name not in names:
            raise HarnessError(f"model {adapter.name!r}: {what} has no hook {name!r}")
        return name

    def have(name: str) -> str | None:
        return name if name in names else None

    norms = {}
    for child_name, child in block.named_children():
        if isinstance(child, NormalizationBridge) and f"{prefix}.{child_name}.hook_in" in names:
            function = child.original_component
            if function is None:
                raise HarnessError(f"model {adapter.name!r}: norm {prefix}.{child_name} is empty")
            norms[f"{prefix}.{child_name}"] = function
    attention = None
    attn = getattr(block, "attn", None)
    if attn is not None:
        what = f"attention {type(attn).__name__} of block {layer}"
        hf_attn = getattr(attn, "original_component", None)
        attention = AttentionOps(
            q=need(f"{prefix}.attn.hook_q", what),
            k=need(f"{prefix}.attn.hook_k", what),
            v=need(f"{prefix}.attn.hook_v", what),
            scores=need(f"{prefix}.attn.hook_attn_scores", what),
            pattern=need(f"{prefix}.attn.hook_pattern", what),
            z=need(f"{prefix}.attn.hook_z", what),
            rot_q=have(f"{prefix}.attn.hook_rot_q"),
            rot_k=have(f"{prefix}.attn.hook_rot_k"),
            cos=have(f"{prefix}.attn.hook_cos"),
            sin=have(f"{prefix}.attn.hook_sin"),
            rotary=getattr(attn, "_apply_rotary_pos_emb", None),
            softcap=getattr(hf_attn, "attn_logit_softcapping", None),
            kind=type(attn).__name__,
        )
    mlp = None
    mlp_module = getattr(block, "mlp", None)
    if mlp_module is not None and adapter.shape.d_mlp > 0:
        what = f"MLP {type(mlp_module).__name__} of block {layer}"
        original = getattr(mlp_module, "original_component", None)
        act = next(
            (
                getattr(original, attr)
                for attr in ("act_fn", "act", "activation_fn")
                if callable(getattr(original, attr, None))
            ),
            None,
        )
        if act is None:
            raise HarnessError(f"model {adapter.name!r}: {what} has no activation function")
        mlp = MLPOps(
            pre=need(f"{prefix}.mlp.hook_pre", what),
            up=have(f"{prefix}.mlp.hook_pre_linear"),
            post=need(f"{prefix}.mlp.hook_post", what),
            act=act,
        )
    return BlockOps(attention=attention, norms=norms, mlp=mlp)


@dataclass
class BlockInputs:
    """An unpatched run of m prompts as its blocks saw it (see :meth:`ModelAdapter.block_inputs`).

    ``kwargs[l]``: block l's keyword arguments besides the hidden state (attention mask,
    position embeddings, ...; HF caches removed). ``resid[l]`` [m, seq, d_model]: the hidden
    state entering block l (``blocks.{l}.hook_resid_pre`` before any hook). ``keys``/``values``
    [l]: the keys and values block l's attention computed (after rotary embeddings, before GQA
    expansion), or None. ``logits``: the bridge's full forward; ``loop_logits``: the block loop
    from block 0 (equal to ``logits`` when the loop reproduces the model).
    """

    kwargs: list[dict[str, Any]]
    resid: list[torch.Tensor]
    n_prompts: int
    seq_len: int
    logits: torch.Tensor
    loop_logits: torch.Tensor | None = None
    keys: dict[int, torch.Tensor] | None = None
    values: dict[int, torch.Tensor] | None = None


class WindowUnsupported(HarnessError):
    """A block takes a per-position argument the position window does not know how to slice."""


_CACHE_NAMES = ("cache", "past_key_values", "past_key_value", "layer_past")
_KV_KWARG = "layer_past"
"""The keyword that carries the KV cache to TransformerLens's attention bridges:
``AttentionBridge._update_kv_cache`` reads ``past_key_values``, then ``layer_past``. HF decoder
layers pass unknown keywords on to their attention module; transformers 5 renames a
``past_key_values`` keyword to ``cache`` (which the bridges do not read), ``layer_past`` it
leaves alone (GPT-NeoX layers take it by that name)."""


class _KVCache:
    """A minimal stand-in for an HF cache, given to the attention bridges.

    ``record=True``: remember each layer's keys/values and return them unchanged. With a
    ``prefix``: prepend the recorded keys/values of positions ``< stop`` (repeated over the
    copies of the prompt chunk) to the window's own.
    """

    def __init__(self, record: bool = False, prefix=None, stop: int = 0) -> None:
        self.record = record
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.prefix = prefix
        self.stop = stop
        self._repeated: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        if self.record:
            self.keys[layer_idx], self.values[layer_idx] = key, value
            return key, value
        keys, values = self.prefix
        if layer_idx not in keys:
            raise WindowUnsupported(f"no recorded keys for attention layer {layer_idx}")
        rows = key.shape[0]
        cached = self._repeated.get((layer_idx, rows))
        if cached is None:
            past_k = keys[layer_idx][..., : self.stop, :]
            past_v = values[layer_idx][..., : self.stop, :]
            reps = rows // past_k.shape[0]
            cached = (_repeat_rows(past_k, reps), _repeat_rows(past_v, reps))
            self._repeated[(layer_idx, rows)] = cached
        return torch.cat([cached[0], key], dim=-2), torch.cat([cached[1], value], dim=-2)


def _repeat_rows(tensor: torch.Tensor, reps: int) -> torch.Tensor:
    return tensor if reps == 1 else tensor.repeat(reps, *([1] * (tensor.dim() - 1)))


def _split_block_call(
    block: torch.nn.Module, args: tuple, kwargs: dict
) -> tuple[torch.Tensor, dict]:
    """(hidden state, every other argument by name, HF caches dropped) of one block call."""
    original = getattr(block, "original_component", None) or block
    signature = inspect.signature(original.forward)
    bound = signature.bind_partial(*args, **kwargs).arguments
    extra: dict[str, Any] = {}
    named: dict[str, Any] = {}
    for name, value in bound.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            extra.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                raise HarnessError(f"block {type(original).__name__} takes *args")
        else:
            named[name] = value
    named.update(extra)
    first = next(iter(signature.parameters))
    hidden = named.pop(first, None)
    if hidden is None:
        hidden = named.pop("hidden_states")
    if not isinstance(hidden, torch.Tensor):
        raise HarnessError(f"block {type(original).__name__}: no hidden-state tensor")
    for name in list(named):
        if name in _CACHE_NAMES or type(named[name]).__name__.endswith("Cache"):
            named[name] = None
    if "use_cache" in named:
        named["use_cache"] = False
    return hidden, named


def _window_kwargs(
    inputs: BlockInputs, layer: int, rows: int, start: int, stop: int, cache: _KVCache | None
) -> dict[str, Any]:
    """Block ``layer``'s arguments for positions start..stop-1 and ``rows`` rows."""
    m, seq = inputs.n_prompts, inputs.seq_len
    full = start == 0 and stop == seq
    reps = rows // m

    def window(name: str, value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return type(value)(window(name, v) for v in value)
        if not isinstance(value, torch.Tensor):
            return value
        if not full:
            if name == "attention_mask" and value.dim() == 4:
                value = value[..., start:stop, :stop]
            elif name == "attention_mask" and value.dim() == 2:
                value = value[:, :stop]
            elif name in ("position_embeddings", "position_ids") and value.dim() >= 2:
                value = value[..., start:stop, :] if value.dim() == 3 else value[..., start:stop]
            elif name == "cache_position" and value.dim() == 1:
                value = value[start:stop]
            elif value.dim() >= 1 and seq in value.shape:
                raise WindowUnsupported(f"block argument {name!r} {tuple(value.shape)}")
        if value.dim() >= 2 and value.shape[0] == m and reps > 1:
            value = _repeat_rows(value, reps)
        return value

    out = {name: window(name, value) for name, value in inputs.kwargs[layer].items()}
    if cache is not None:
        out[_KV_KWARG] = cache
    return out
