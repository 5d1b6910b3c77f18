"""Cost accounting that does not depend on the method: wall time in forward equivalents, and
peak memory.

``fwd_equiv`` of a run is the method's wall time divided by the wall time of one clean forward
pass over the same prompt batch (all prompts, in the run's ``batch_size`` chunks, no hooks,
``torch.no_grad``), measured by :func:`time_forward` in the same process on the same device.
It makes costs comparable across machines and model sizes: AtP is about 3 (two forwards and a
backward), activation patching of C components about C times the fraction of the network a
patch can change.

Before a run, :func:`check_cost` refuses a method (its ``cost_estimate``) or a ground truth
(:func:`run_cost`) whose estimated forward equivalents exceed ``max_fwd_equiv``.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from harness.context import AttributionContext
from harness.errors import HarnessError


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(ctx: AttributionContext, warmup: int = 1, repeats: int = 3) -> float:
    """Seconds of one clean forward pass over ``ctx``'s base prompts (chunked by its
    ``batch_size``, no hooks, no grad): the median of ``repeats`` timings after ``warmup``
    untimed passes. Not counted in ``ctx.cost``."""
    tokens = ctx.base_tokens
    device = ctx.model.device

    def once() -> float:
        _sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            for rows in ctx.prompt_chunks():
                ctx.model.run(tokens[rows])
        _sync(device)
        return time.perf_counter() - start

    for _ in range(warmup):
        once()
    return statistics.median(once() for _ in range(max(1, repeats)))


def reset_peak_memory() -> None:
    """Start a new peak-memory window on the current CUDA device (on CPU the peak RSS cannot
    be reset)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_mem_mb(device: torch.device | str) -> float:
    """Peak memory in MiB.

    On CUDA: ``torch.cuda.max_memory_allocated`` of ``device`` (tensor memory allocated by
    PyTorch since the last :func:`reset_peak_memory`, not the caching allocator's reserve).
    On CPU: the process's peak resident set size, ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
    (KiB on Linux, bytes on macOS), a high-water mark over the whole life of the process
    (model weights, Python and libraries included; in a reused worker it includes earlier jobs).
    """
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


# ---- estimates before a run: refuse what its size rules out ----

FORWARD, BACKWARD, HVP = 1.0, 2.0, 3.0
"""Weights of one batched pass over the whole prompt batch, in forward equivalents: a forward
is 1, a backward about 2, a Hessian-vector product (a backward through the backward) about 3.
The estimates below are upper bounds of the same unit as ``fwd_equiv``: the patching engine
recomputes only the layers and positions a patch can change, so it usually costs less."""

PER_PATH_POINT = FORWARD + BACKWARD + HVP
"""One f'(t) and f''(t) evaluation of one component (:mod:`harness.second_order`)."""

AT_ZERO = HVP
"""f''(0) of one component in the shared unpatched pass at t = 0 (one forward and backward per
prompt batch besides; :func:`harness.second_order.path_derivatives`)."""


@dataclass(frozen=True)
class CostEstimate:
    """``fwd_equiv``: estimated cost in forward equivalents (one clean forward over the prompt
    batch = 1); ``detail``: how it was counted, for the error message."""

    fwd_equiv: float
    detail: str


def per_component_cost(n_components: int, evaluations: float, weight: float) -> float:
    """Two unpatched forwards plus ``evaluations`` passes of ``weight`` per component."""
    return 2 * FORWARD + n_components * evaluations * weight


def run_cost(n_truth: int, diagnostics: str) -> CostEstimate:
    """The ground truth of ``n_truth`` components (one patched copy each) and the
    ``diagnostics`` tier (:data:`harness.config.DIAGNOSTICS_TIERS`): ``cheap``, two gradients
    whatever ``n_truth``; ``exact``, also f'(0) and f''(0) of each path (the shared pass) and
    f'(1) (a patched copy with its backward)."""
    cost = per_component_cost(n_truth, 1, FORWARD)
    detail = "1 patched forward per component"
    if diagnostics == "cheap":
        cost += 2 * (FORWARD + BACKWARD)
        detail += " + diagnostics: 2 gradients"
    elif diagnostics == "exact":
        per_component = AT_ZERO + FORWARD + BACKWARD
        cost += per_component_cost(n_truth, 1, per_component) + 3 * (FORWARD + BACKWARD)
        detail += f" + diagnostics: {per_component:g} per component"
    return CostEstimate(cost, detail)


def check_cost(
    what: str,
    estimate: CostEstimate | None,
    limit: float | None,
    remedy: str = "use fewer components (components.sites, components.positions)",
) -> None:
    """One-line error when ``estimate`` exceeds ``limit`` (the ``max_fwd_equiv`` setting;
    None: no limit), naming the setting to change and ``remedy``."""
    if estimate is None or limit is None or estimate.fwd_equiv <= limit:
        return
    raise HarnessError(
        f"{what} would cost about {estimate.fwd_equiv:.3g} forward equivalents "
        f"({estimate.detail}), above max_fwd_equiv={limit:g}; set max_fwd_equiv higher (or "
        f"null) to run it anyway, or {remedy}"
    )
