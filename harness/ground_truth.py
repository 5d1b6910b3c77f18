"""Ground truth: exact activation patching, computed once and cached on disk.

The cache key hashes everything the true effects depend on: the model's content fingerprint
(every file of its folder), the component list, the tokenized prompts (clean, corrupt, answers,
wrongs), the metric, the direction, the dtype, the device type and
:data:`harness.COMPUTATION_VERSION`. A grid of methods over the same (model, task, components,
prompts) computes it once. Entries carry a content hash; a corrupted or truncated
entry is recomputed, never used.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from harness import COMPUTATION_VERSION
from harness.context import AttributionContext, CostCounter
from harness.errors import NumericalError
from harness.patching import collect_activations, patch_effects, site_names
from harness.storage import content_hash, read_hashed_json, write_hashed_json

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


def truth_key(ctx: AttributionContext, model_fingerprint: str) -> str:
    """The cache key of the ground truth for this context."""
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
        "components": [c.id for c in ctx.components],
        "metric": ctx.metric,
        "direction": ctx.direction,
        "dtype": str(ctx.model.dtype),
        "device": ctx.model.device.type,
    }
    return content_hash(parts)[:24]


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
    ctx: AttributionContext, model_fingerprint: str, cache_dir: Path | None
) -> GroundTruth:
    """The cached ground truth for ``ctx``, computed (and cached) when absent or corrupted."""
    key = truth_key(ctx, model_fingerprint)
    path = Path(cache_dir) / "truth" / f"{key}.json" if cache_dir else None
    if path is not None and path.exists():
        payload = read_hashed_json(path)
        if payload is not None and payload.get("components") == [c.id for c in ctx.components]:
            return GroundTruth(
                effects=torch.tensor(payload["effects"], dtype=torch.float64),
                base_metric=payload["base_metric"],
                source_metric=payload["source_metric"],
                cost=payload["cost"],
                cached=True,
                key=key,
            )
        log.warning("ground-truth cache entry %s is corrupted; recomputing", path)
    cost = CostCounter()
    start = time.perf_counter()
    effects, base_metric, source_metric = compute_ground_truth(ctx.with_cost(cost))
    cost_dict = {**cost.as_dict(), "wall_s": time.perf_counter() - start}
    check_truth_finite(ctx, effects, base_metric, source_metric)
    if path is not None:
        write_hashed_json(
            path,
            {
                "components": [c.id for c in ctx.components],
                "effects": effects.cpu().tolist(),
                "base_metric": base_metric,
                "source_metric": source_metric,
                "cost": cost_dict,
            },
        )
    return GroundTruth(effects.cpu(), base_metric, source_metric, cost_dict, False, key)
