"""The memory budget and the one chunk plan every batched pass uses.

A batched pass stacks ``copies`` copies of ``prompt_rows`` prompts (one copy per patched
component, per path point or per circuit); its memory grows with the number of rows it pushes
through the model at once. :func:`chunk_plan` picks the largest chunk that fits the run's
budget (``memory_gb``, see :func:`default_budget_bytes`) and ``batch_size`` (an upper bound on
the rows of one pass), from an estimate of one row's cost computed from the model's shapes
(:func:`row_bytes`). A budget too small for a single row is a one-line error naming
``memory_gb``. The plans used are recorded in the context (``ctx.chunks``) and reported in
``summary.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from harness.errors import HarnessError

if TYPE_CHECKING:  # pragma: no cover
    from harness.adapter import ModelShape
    from harness.context import AttributionContext

GB = 2**30

KINDS = ("forward", "backward", "hvp")
"""What a pass keeps alive: ``forward`` no graph; ``backward`` the autograd graph of one
backward; ``hvp`` the graph of a backward with ``create_graph`` and its second backward."""

_GRAPH_FACTOR = {"forward": 0.0, "backward": 2.0, "hvp": 5.0}


@dataclass(frozen=True)
class ChunkPlan:
    """``prompt_rows`` prompts per pass, each pass ``copies`` stacked copies of them."""

    prompt_rows: int
    copies: int

    @property
    def rows(self) -> int:
        return self.prompt_rows * self.copies


def row_bytes(
    shape: ModelShape,
    dtype: torch.dtype,
    seq: int,
    kind: str = "forward",
    layers: int | None = None,
    logit_positions: int = 1,
    logit_columns: int | None = None,
) -> int:
    """Estimated peak bytes one sequence row adds to a pass (an upper-end estimate).

    ``seq`` positions run through ``layers`` blocks (default all); logits are built at
    ``logit_positions`` positions over ``logit_columns`` vocabulary ids (default all). Per
    block: the hidden-size tensors (norms, q/k/v, head outputs, residuals; about 8 x d_model a
    position), the MLP's (3 x d_mlp) and the attention scores and pattern (3 x n_heads x seq
    a position); the recorded keys/values of the prefix (2 x d_model a position and block).
    """
    if kind not in KINDS:
        raise ValueError(kind)
    layers = shape.n_layers if layers is None else layers
    per_block = seq * (8 * shape.d_model + 3 * shape.d_mlp) + 3 * shape.n_heads * seq * seq
    columns = shape.d_vocab if logit_columns is None else logit_columns
    logits = 3 * logit_positions * columns
    kv = 2 * layers * seq * shape.d_model
    live = 2 * per_block + _GRAPH_FACTOR[kind] * layers * per_block
    elements = live + logits + kv
    return int(elements * torch.finfo(dtype).bits // 8)


def default_budget_bytes(device: torch.device, weight_bytes: int) -> int:
    """The budget when ``memory_gb`` is not set.

    CUDA: 80% of the device's free memory. CPU: the largest of 256 MiB, half the model's
    weight size and the smaller of 1.5 x the weights and 1 GiB, capped at a quarter of the
    available RAM: the peak stays a small multiple of the weights, and a small model still gets
    passes wide enough for efficient matrix products (GPT-2-small shape, 216 components with
    diagnostics: 20% less CPU time at 0.75 GB than at 256 MiB, peak RSS 1.47 GB;
    bench/RESULTS.md).
    """
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.8 * free)
    small_model = min(1.5 * weight_bytes, GB)
    return int(min(0.25 * _available_ram(), max(256 * 2**20, weight_bytes / 2, small_model)))


def _available_ram() -> int:
    """MemAvailable from /proc/meminfo (bytes); 4 GiB where it cannot be read."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * GB


def chunk_plan(
    ctx: AttributionContext,
    copies_total: int,
    bytes_per_row: int,
    name: str,
    together: bool = False,
) -> ChunkPlan:
    """How to pack ``copies_total`` copies of ``ctx``'s prompts into passes.

    Rows per pass: at most ``ctx.batch_size`` and at most ``ctx.memory_bytes // bytes_per_row``.
    Whole prompt chunks are kept together (prompts first, then copies); with ``together`` every
    pass holds all ``copies_total`` copies (a pass that needs them all) and the prompt chunk
    shrinks to fit (at least one prompt). Records the plan under ``name`` in ``ctx.chunks``.
    """
    fit = ctx.memory_bytes // max(1, bytes_per_row)
    if fit < 1:
        raise HarnessError(
            f"memory_gb={ctx.memory_bytes / GB:.3g} is too small for one sequence of {name} "
            f"(about {bytes_per_row / GB:.3g} GiB); raise memory_gb"
        )
    rows = int(min(ctx.batch_size, fit))
    if together:
        copies = max(1, copies_total)
        prompt_rows = min(ctx.batch.n, max(1, rows // copies))
    else:
        prompt_rows = min(ctx.batch.n, rows)
        copies = max(1, min(max(1, copies_total), rows // prompt_rows))
    plan = ChunkPlan(prompt_rows, copies)
    ctx.chunks[name] = {
        "prompt_rows": prompt_rows,
        "copies": copies,
        "row_mb": bytes_per_row / 2**20,
    }
    return plan
