"""What a method is given: the model, the prompts, the components, the metric and direction.

Direction convention (README.md, "Sign convention"):

- ``noising`` (default): the *base* run is the clean prompt x and the *source* is the corrupt
  prompt x'. The true effect of component c is L(x | a_c <- a_c(x')) - L(x).
- ``denoising``: base and source swap: L(x' | a_c <- a_c(x)) - L(x').

Every method estimates that effect, with the same sign, for every component.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch

from harness.adapter import ModelAdapter
from harness.config import POSITIVE_INT
from harness.errors import HarnessError
from harness.progress import Progress
from harness.registry import unknown_choice
from harness.types import Component, PathEnds, PromptBatch

DIRECTIONS = ("noising", "denoising")


def check_direction(name: str) -> str:
    if name not in DIRECTIONS:
        raise HarnessError(unknown_choice("direction", name, list(DIRECTIONS)))
    return name


@dataclass
class CostCounter:
    """Work done by a method: model forward passes, backward passes (first-order gradients)
    and Hessian-vector products (second-order backward passes). Each count is one batched call,
    whatever its batch size; ``n_sequences`` counts sequences pushed through forward passes."""

    n_forward: int = 0
    n_backward: int = 0
    n_hvp: int = 0
    n_sequences: int = 0

    def forward(self, rows: int) -> None:
        self.n_forward += 1
        self.n_sequences += rows

    def as_dict(self) -> dict[str, int]:
        return {
            "n_forward": self.n_forward,
            "n_backward": self.n_backward,
            "n_hvp": self.n_hvp,
            "n_sequences": self.n_sequences,
        }


@dataclass
class AttributionContext:
    """Inputs shared by every method of one run (batch already on the model's device)."""

    model: ModelAdapter
    batch: PromptBatch
    components: list[Component]
    metric: str = "logit_diff"
    direction: str = "noising"
    batch_size: int = 64
    cost: CostCounter = field(default_factory=CostCounter)
    progress: Progress = field(default_factory=Progress)
    """The job's progress bars (shared by :meth:`subset` and :meth:`with_cost` copies); the
    engine's chunk loops count their passes on it (off by default)."""
    memory_bytes: int | None = None
    """The memory budget of one batched pass (None: :func:`harness.budget.default_budget_bytes`)."""
    truth: torch.Tensor | None = None
    """The true effects [n_components] (float64) when the run has computed them, NaN where
    ``truth.sample`` left a component unpatched (``actpatch`` reads them instead of
    recomputing when every one is there)."""
    path_ends: PathEnds | None = None
    """Path derivatives of the components already taken, as the exact diagnostics' cache holds
    them (:func:`harness.methods.endpoint.end_points` reads them instead of taking them again)."""
    chunks: dict[str, dict[str, float]] = field(default_factory=dict)
    """The chunk plans used, by pass name (:func:`harness.budget.chunk_plan`; shared by
    :meth:`subset` and :meth:`with_cost` copies)."""

    def __post_init__(self) -> None:
        check_direction(self.direction)
        POSITIVE_INT.check("batch_size", self.batch_size)
        if self.memory_bytes is None:
            from harness.budget import default_budget_bytes

            self.memory_bytes = default_budget_bytes(self.model.device, self.model.weight_bytes)

    @property
    def base_tokens(self) -> torch.Tensor:
        """[n, seq]: the run that is patched (clean when noising)."""
        return self.batch.clean if self.direction == "noising" else self.batch.corrupt

    @property
    def source_tokens(self) -> torch.Tensor:
        """[n, seq]: the run patched values come from (corrupt when noising)."""
        return self.batch.corrupt if self.direction == "noising" else self.batch.clean

    def prompt_chunks(self, size: int | None = None) -> Iterator[slice]:
        """Row slices of at most ``size`` (default ``batch_size``) prompts."""
        size = size or self.batch_size
        for start in range(0, self.batch.n, size):
            yield slice(start, min(start + size, self.batch.n))

    def subset(self, rows: slice) -> AttributionContext:
        """The same context over the prompts ``rows`` only (counting into the same cost)."""
        return replace(self, batch=self.batch.select(rows))

    def select_components(self, index: Sequence[int]) -> AttributionContext:
        """The same context over the components ``index`` only (in that order; ``truth``
        and ``path_ends`` sliced alike), counting into the same cost."""
        index = [int(i) for i in index]
        truth = None if self.truth is None else self.truth[index]
        ends = None if self.path_ends is None else self.path_ends.select(index)
        return replace(
            self, components=[self.components[i] for i in index], truth=truth, path_ends=ends
        )

    def with_cost(self, cost: CostCounter) -> AttributionContext:
        """The same context counting into another cost counter."""
        return replace(self, cost=cost)
