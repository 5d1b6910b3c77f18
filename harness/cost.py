"""Cost accounting that does not depend on the method: wall time in forward equivalents, and
peak memory.

``fwd_equiv`` of a run is the method's wall time divided by the wall time of one clean forward
pass over the same prompt batch (all prompts, in the run's ``batch_size`` chunks, no hooks,
``torch.no_grad``), measured by :func:`time_forward` in the same process on the same device.
It makes costs comparable across machines and model sizes: AtP is about 3 (two forwards and a
backward), activation patching of C components about C times the fraction of the network a
patch can change.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time

import torch

from harness.context import AttributionContext


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
