"""Ground truth: exact activation patching, computed once and cached on disk.

The cache key hashes everything the true effects depend on: the model's content fingerprint
(every file of its folder), the component list, the tokenized prompts (clean, corrupt, answers,
wrongs), the metric, the direction, the dtype, the device type and
:data:`harness.COMPUTATION_VERSION`. A grid of methods over the same (model, task, components,
prompts) computes it once. Entries carry a content hash; a corrupted or truncated
entry is recomputed, never used.

Sampled ground truth (``truth.sample``): :func:`sample_truth` draws a stratified subset of the
components; only those are patched. An entry holds the effects of any subset of its component
list, so later runs that ask for components already patched reuse them and patch only the rest.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import COMPUTATION_VERSION
from harness.config import OPEN_FRACTION, POSITIVE_INT
from harness.context import AttributionContext, CostCounter
from harness.errors import HarnessError, NumericalError
from harness.patching import collect_activations, patch_effects, site_names
from harness.storage import content_hash, read_hashed_json, write_hashed_json
from harness.types import Component

log = logging.getLogger(__name__)


@dataclass
class GroundTruth:
    """True effects [n_components] (float64) and the unpatched metrics of both runs."""

    effects: torch.Tensor
    base_metric: float
    source_metric: float
    cost: dict[str, float]
    cached: bool
    key: str


def truth_key(
    ctx: AttributionContext,
    model_fingerprint: str,
    universe: Sequence[Component] | None = None,
) -> str:
    """The cache key of the ground truth for this context: model, prompts, metric, direction,
    dtype, device and the component set ``universe`` (default ``ctx.components``) that
    ``ctx.components`` is drawn from, so runs that patch different subsets of one set share it."""
    digest = hashlib.sha256()
    batch = ctx.batch
    for tensor in (
        batch.clean,
        batch.corrupt,
        batch.last,
        batch.answers,
        batch.answer_mask,
        batch.wrongs,
        batch.wrong_mask,
    ):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digest.update(str(tuple(tensor.shape)).encode())
    parts = {
        "computation": COMPUTATION_VERSION,
        "model": model_fingerprint,
        "prompts": digest.hexdigest(),
        "components": [c.id for c in (ctx.components if universe is None else universe)],
        "metric": ctx.metric,
        "direction": ctx.direction,
        "dtype": str(ctx.model.dtype),
        "device": ctx.model.device.type,
    }
    return content_hash(parts)[:24]


def check_truth_sample(sample: Any) -> None:
    """One-line error unless ``sample`` is None, a positive integer count or a fraction in
    (0, 1]."""
    if sample is None:
        return
    if POSITIVE_INT.accepts(sample) or (
        isinstance(sample, float) and OPEN_FRACTION.accepts(sample)
    ):
        return
    raise HarnessError(
        f"truth.sample must be null (every component), a positive integer count or a fraction "
        f"in (0, 1], got {sample!r}"
    )


def sample_truth(components: Sequence[Component], sample: Any, seed: int) -> np.ndarray | None:
    """Sorted indices into ``components`` of the ones whose ground truth is patched, or None
    for every component (``sample`` None, or a count/fraction that covers them all).

    ``sample``: a count (int >= 1) or a fraction (float in (0, 1], rounded up). The draw is
    stratified by (site, layer): each stratum gets its share of the count in proportion to its
    size (largest remainders first), drawn without replacement by a generator seeded with
    ``seed``, so the same seed and component list give the same subset.
    """
    check_truth_sample(sample)
    total = len(components)
    if sample is None:
        return None
    count = min(total, sample if isinstance(sample, int) else math.ceil(sample * total))
    if count >= total:
        return None
    strata: dict[tuple[str, int], list[int]] = {}
    for index, component in enumerate(components):
        strata.setdefault((component.site, component.layer), []).append(index)
    members = list(strata.values())
    shares = np.array([len(m) for m in members], dtype=np.float64) * count / total
    quotas = np.floor(shares).astype(int)
    order = np.argsort(-(shares - quotas), kind="stable")
    quotas[order[: count - int(quotas.sum())]] += 1
    rng = np.random.default_rng([seed, 0x5A3])  # a stream of its own, fixed by the seed
    picked = [
        np.asarray(group)[rng.choice(len(group), size=int(quota), replace=False)]
        for group, quota in zip(members, quotas, strict=True)
    ]
    return np.sort(np.concatenate(picked))


def compute_ground_truth(ctx: AttributionContext) -> tuple[torch.Tensor, float, float]:
    """Exact effects [n_components], and the mean metric of the base and source runs.

    Prompts are taken ``batch_size`` at a time, so only one chunk's source activations are held
    (memory does not grow with the number of prompts)."""
    names = site_names(ctx.components)
    n = ctx.batch.n
    effects = torch.zeros(len(ctx.components), dtype=torch.float64)
    base_sum = source_sum = 0.0
    for rows in ctx.prompt_chunks():
        sub = ctx.subset(rows)
        base_metric, _ = collect_activations(sub, sub.base_tokens, [])
        source_metric, source = collect_activations(sub, sub.source_tokens, names)
        part = patch_effects(sub, sub.components, source, base_metric, desc="ground truth")
        if sub.batch.n == n:  # one chunk: the effects as they are
            return part, float(base_metric.double().mean()), float(source_metric.double().mean())
        effects += part.cpu() * sub.batch.n
        base_sum += float(base_metric.double().sum())
        source_sum += float(source_metric.double().sum())
    return effects / n, base_sum / n, source_sum / n


def check_truth_finite(
    ctx: AttributionContext, effects: torch.Tensor, base_metric: float, source_metric: float
) -> None:
    """A NaN or infinite metric or true effect stops the job (nothing is cached) with a message
    naming the run or the component."""
    base, source = ("clean", "corrupt") if ctx.direction == "noising" else ("corrupt", "clean")
    for run, value in ((base, base_metric), (source, source_metric)):
        if not math.isfinite(value):
            raise NumericalError(
                f"the {run} run's {ctx.metric} metric is {value} (model {ctx.model.name!r} gives "
                "non-finite logits); ground truth not computed"
            )
    bad = (~torch.isfinite(effects)).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise NumericalError(
            f"method 'actpatch' (ground truth) gave a non-finite effect ({float(effects[i])}) "
            f"for component {ctx.components[i].id}"
        )


def ground_truth(
    ctx: AttributionContext,
    model_fingerprint: str,
    cache_dir: Path | None,
    universe: Sequence[Component] | None = None,
) -> GroundTruth:
    """The ground truth of ``ctx.components``, read from the cache where present and computed
    (and added to the cache) where not.

    The cache entry ``cache_dir/truth/<key>.json`` (key: :func:`truth_key` of ``universe``)
    holds per-component effects for any subset of ``universe`` (default ``ctx.components``), in
    ``universe`` order, merged across runs: a run that asks for components already there
    patches nothing, one that asks for others patches only those. A damaged entry (content hash,
    or components out of order) is dropped and recomputed.
    """
    universe = list(ctx.components if universe is None else universe)
    key = truth_key(ctx, model_fingerprint, universe)
    path = Path(cache_dir) / "truth" / f"{key}.json" if cache_dir else None
    position = {c.id: i for i, c in enumerate(universe)}
    wanted = [c.id for c in ctx.components]
    stored = _read_entry(path, position) if path is not None else None
    known = stored["effects"] if stored else {}
    missing = [i for i, cid in enumerate(wanted) if cid not in known]
    if stored and not missing:
        effects = torch.tensor([known[cid] for cid in wanted], dtype=torch.float64)
        return GroundTruth(
            effects, stored["base_metric"], stored["source_metric"], stored["cost"], True, key
        )
    cost = CostCounter()
    start = time.perf_counter()
    todo = replace(ctx, components=[ctx.components[i] for i in missing])
    part, base_metric, source_metric = compute_ground_truth(todo.with_cost(cost))
    cost_dict = {**cost.as_dict(), "wall_s": time.perf_counter() - start}
    check_truth_finite(todo, part, base_metric, source_metric)
    fresh = dict(zip((wanted[i] for i in missing), part.cpu().tolist(), strict=True))
    if path is not None:
        again = _read_entry(path, position)  # merge with what other jobs wrote meanwhile
        merged = {**(again["effects"] if again else known), **fresh}
        ids = sorted(merged, key=position.__getitem__)
        write_hashed_json(
            path,
            {
                "components": ids,
                "effects": [merged[cid] for cid in ids],
                "base_metric": base_metric,
                "source_metric": source_metric,
                "cost": cost_dict,
            },
        )
    values = {**known, **fresh}
    effects = torch.tensor([values[cid] for cid in wanted], dtype=torch.float64)
    return GroundTruth(effects, base_metric, source_metric, cost_dict, False, key)


def truth_cached(
    ctx: AttributionContext,
    model_fingerprint: str,
    cache_dir: Path | None,
    universe: Sequence[Component] | None = None,
) -> bool:
    """Whether the cache holds an intact entry with the effect of every component of
    ``ctx.components`` (what :func:`ground_truth` would read without a pass); reads only."""
    if cache_dir is None:
        return False
    universe = list(ctx.components if universe is None else universe)
    path = Path(cache_dir) / "truth" / f"{truth_key(ctx, model_fingerprint, universe)}.json"
    stored = _read_entry(path, {c.id: i for i, c in enumerate(universe)})
    return stored is not None and all(c.id in stored["effects"] for c in ctx.components)


def _read_entry(path: Path, position: dict[str, int]) -> dict[str, Any] | None:
    """A truth cache entry with its effects as {component id: effect}, or None when absent or
    damaged (bad content hash, components unknown, repeated or out of ``position`` order)."""
    if not path.exists():
        return None
    payload = read_hashed_json(path)
    try:
        ids, values = payload["components"], payload["effects"]
        order = [position[cid] for cid in ids]
        if len(ids) != len(values) or any(np.diff(order) <= 0):
            raise ValueError("components out of order")
        return {**payload, "effects": dict(zip(ids, values, strict=True))}
    except (TypeError, KeyError, ValueError):
        log.warning("ground-truth cache entry %s is damaged; recomputing", path)
        return None
