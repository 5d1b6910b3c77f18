"""Reliability scores, flags and error bounds for every run, in two tiers.

Reliability scores (larger = distrust the first-order estimate more), per component c with
f_c(t) = L(base | a_c <- a_c + t d_c) (see :mod:`harness.second_order`):

- ``abs_atp``: |f_c'(0)| = |g_c . d_c|, the size of AtP's own estimate. Cost: none beyond AtP.
  Every run reports it beside the others: a score is worth its cost only where it finds the
  unreliable components better than |AtP| does.
- ``delta_norm``: ||d_c||, the L2 norm of the perturbation over the component's slice and all
  prompts. Cost: the two forward passes AtP already makes.
- ``grad_disagreement``: |(g_c(source) - g_c(base)) . d_c| / (2 |g_c(base) . d_c|), the
  disagreement of first-order estimates taken with the gradient of the base run and of the
  source run (for a quadratic f_c it equals ``curvature_ratio``). Cost: one extra backward.
- ``curvature_ratio``: r_c = |f_c''(0)| / (2 |f_c'(0)|) = |d_c^T H_c d_c| / (2 |g_c . d_c|): the
  second-order term over the first. Cost: one HVP per component, batched.

Tiers (the ``diagnostics`` option, :data:`harness.config.DIAGNOSTICS_TIERS`): ``cheap``
computes the first three scores from a fixed number of batched passes (two forwards, two
backwards), whatever the number of components, and no bound; ``exact`` adds every component's
own path derivatives f_c'(0), f_c''(0) and f_c'(1) (passes in proportion to the number of
components): the curvature ratio and both bounds.

Ground-truth labels: c is *unreliable* when |AtP_c - truth_c| > ``abs + rel * |truth_c|``
(defaults 0.05 metric units and 0.25), a test that large effects dominate; c is
*unreliable_rel* when |AtP_c - truth_c| > ``rel * |truth_c|``, the relative error alone. A score
flags c when it exceeds its threshold, or, for a score without threshold, when it is in the top
``flag_fraction`` of components. Precision, recall and F1 of the flags, and AUROC and average
precision of the raw score, are reported against ``unreliable``; AUROC and average precision
against ``unreliable_rel`` too.

Error bounds (``exact`` only; intervals that should contain the true effect; judged by measured
coverage):

- AtP interval ``[min(f'(0), f'(1)), max(f'(0), f'(1))]``: Delta_c = integral of f_c'(t) over
  [0, 1] lies between f_c'(0) and f_c'(1) whenever f_c' is monotone on the path (f_c convex or
  concave there). Cost: f_c'(1), one batched forward/backward at the patched end.
- HVP interval ``hvp_c +/- |f_c'(1) - f_c'(0) - f_c''(0)| / 3``: the Taylor remainder of the
  second-order estimate is R = integral of (1-u)^2 / 2 f_c'''(u) du = f_c'''(s) / 6 for some s,
  and f_c'(1) - f_c'(0) - f_c''(0) = integral of (1-u) f_c'''(u) du = f_c'''(s') / 2 for some
  s', so |f'''| is estimated by 2 |f'(1) - f'(0) - f''(0)|: a mean of f''' weighted towards the
  start of the path, as R's own weight is. Exact for a cubic f_c, an assumption otherwise. It
  needs f_c'(1) only, which the AtP interval computes anyway (a first-order pass at t = 1); an
  estimate from f''(1) needs a second-order pass there, as costly as the HVP itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from harness.components import reduce_per_component
from harness.config import FlagConfig, check_ranges
from harness.context import AttributionContext
from harness.errors import HarnessError
from harness.evaluation import average_precision, roc_auc
from harness.patching import collect_activations, metric_gradients, site_names
from harness.registry import unknown_choice
from harness.second_order import path_derivatives
from harness.types import PathEnds

SCORES = ("curvature_ratio", "delta_norm", "grad_disagreement", "abs_atp")
TIER_SCORES = {
    "cheap": ("abs_atp", "delta_norm", "grad_disagreement"),
    "exact": SCORES,
}
"""The scores each tier computes, in the order ``reliability: null`` reports them (the first
sets ``flagged``)."""
SCORE_TIER = {name: next(t for t in TIER_SCORES if name in TIER_SCORES[t]) for name in SCORES}
"""The cheapest tier that computes each score (``score_tier_<score>`` in the summary)."""
BASELINE_SCORE = "abs_atp"
"""The score every run reports, whatever ``reliability`` lists: |AtP| itself."""


def with_baseline(scores: Sequence[str]) -> list[str]:
    """``scores`` in order, then :data:`BASELINE_SCORE` where it is missing."""
    chosen = list(scores)
    return chosen + [BASELINE_SCORE] * (BASELINE_SCORE not in chosen)


BOUNDS = ("atp", "hvp")
"""The error bounds, each named by the estimate it brackets (f'(0); f'(0) + f''(0) / 2)."""
BOUND_FORMULAS = {
    "atp": "[min(f'(0), f'(1)), max(f'(0), f'(1))]",
    "hvp": "f'(0) + f''(0) / 2 +/- |f'(1) - f'(0) - f''(0)| / 3",
}
"""What each bound is (module docstring); part of the diagnostics' cache key, so an entry
cached under another formula is never read back."""
NO_BOUNDS = "diagnostics=cheap takes no path derivative; diagnostics=exact computes the bounds"
"""Why a cheap run's summary has no bound (``bounds_missing``)."""
DEFAULT_THRESHOLDS = {
    "curvature_ratio": 0.5,
    "delta_norm": None,
    "grad_disagreement": 0.5,
    "abs_atp": None,
}
_TINY = 1e-12


@dataclass
class PathQuantities:
    """Per-component f'(0), f''(0) and (both ends) f'(1) (float64 [n]), the site tensors and,
    once taken, dL/da at every site of the base and of the source run."""

    first0: torch.Tensor | None
    second0: torch.Tensor | None
    first1: torch.Tensor | None
    base: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    source: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    base_grads: dict[str, torch.Tensor] | None = field(repr=False, default=None)
    source_grads: dict[str, torch.Tensor] | None = field(repr=False, default=None)


def site_tensors(ctx: AttributionContext, path: PathQuantities | None) -> PathQuantities:
    """``path`` (empty when None) with the base and source activations at every site of
    ``ctx.components`` collected where it lacks them (one forward per run)."""
    path = path if path is not None else PathQuantities(None, None, None)
    names = site_names(ctx.components)
    base, source = path.base, path.source
    if not base:
        _, base = collect_activations(ctx, ctx.base_tokens, names)
    if not source:
        _, source = collect_activations(ctx, ctx.source_tokens, names)
    return replace(path, base=base, source=source)


def path_quantities(
    ctx: AttributionContext,
    both_ends: bool = True,
    tensors: PathQuantities | None = None,
    known: PathEnds | None = None,
) -> PathQuantities:
    """First and second path derivatives at t=0 (and, ``both_ends``, the first at t=1) of every
    component's path, from :func:`harness.second_order.path_derivatives` (``tensors``: reuse
    its site tensors and gradients instead of collecting them; ``known``: the derivatives a
    method already took, float64 [n_components] each, as its
    :attr:`~harness.methods.base.MethodOutput.path_ends`: those are not taken again)."""
    path = site_tensors(ctx, tensors)
    base, source = path.base, path.source
    known = PathEnds() if known is None else known
    for name, value in known.values().items():
        if value is not None and value.shape != (len(ctx.components),):
            raise HarnessError(
                f"the method's path_ends.{name} has shape {tuple(value.shape)}, expected "
                f"({len(ctx.components)},): one value per component"
            )
    if known.covers(second=True, end=False):
        first0, second0 = (v.detach().double().cpu() for v in (known.first0, known.second0))
    else:
        first0, second0 = path_derivatives(ctx, ctx.components, base, source, t=0.0)
    first1 = None
    if both_ends and known.has("first1"):
        first1 = known.first1.detach().double().cpu()
    elif both_ends:
        first1, _ = path_derivatives(ctx, ctx.components, base, source, t=1.0, second=False)
    return replace(path, first0=first0, second0=second0, first1=first1)


def first_order(
    ctx: AttributionContext, path: PathQuantities | None = None, source_grads: bool = False
) -> PathQuantities:
    """``path`` completed with what AtP's passes give: dL/da of the base run (and, with
    ``source_grads``, of the source run), the site tensors, and f'(0) = g_c . d_c (float64
    [n_components]) where ``path`` has none. One forward and backward per run whose gradient
    is taken, one forward for the other's activations; nothing per component."""
    path = path if path is not None else PathQuantities(None, None, None)
    names = site_names(ctx.components)
    base, source = path.base, path.source
    g_base, g_source = path.base_grads, path.source_grads
    if g_base is None:
        _, acts, g_base = metric_gradients(ctx, ctx.base_tokens, names)
        base = base or acts
    if source_grads and g_source is None:
        _, acts, g_source = metric_gradients(ctx, ctx.source_tokens, names)
        source = source or acts
    path = site_tensors(ctx, replace(path, base=base, source=source))
    first0 = path.first0
    if first0 is None:
        delta = {k: path.source[k] - path.base[k] for k in names}
        first0 = reduce_per_component({k: delta[k] * g_base[k] for k in names}, ctx.components)
        first0 = first0.double().cpu()
    return replace(path, first0=first0, base_grads=g_base, source_grads=g_source)


def reliability_scores(
    ctx: AttributionContext,
    which: Sequence[str],
    path: PathQuantities | None = None,
    base_grads: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The requested reliability scores, each float64 [n_components].

    ``path`` (optional): the path quantities, site tensors or gradients already computed;
    ``base_grads`` (optional): dL/da of the base run at every site, already computed."""
    return _scores(ctx, which, path, base_grads)[0]


def _scores(
    ctx: AttributionContext,
    which: Sequence[str],
    path: PathQuantities | None,
    base_grads: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], PathQuantities]:
    """:func:`reliability_scores` and the path quantities they were computed from."""
    for name in which:
        if name not in SCORES:
            raise HarnessError(unknown_choice("reliability score", name, list(SCORES)))
    path = path if path is not None else PathQuantities(None, None, None)
    if base_grads is not None:
        path = replace(path, base_grads=base_grads)
    if "curvature_ratio" in which and path.second0 is None:
        path = path_quantities(ctx, both_ends=False, tensors=path)
    if "abs_atp" in which or "grad_disagreement" in which:
        path = first_order(ctx, path, source_grads="grad_disagreement" in which)
    else:
        path = site_tensors(ctx, path)
    names = site_names(ctx.components)
    delta = {name: path.source[name] - path.base[name] for name in names}
    out: dict[str, torch.Tensor] = {}
    if "curvature_ratio" in which:
        out["curvature_ratio"] = path.second0.abs() / (2 * path.first0.abs() + _TINY)
    if "delta_norm" in which:
        squares = reduce_per_component(
            {k: v.double() ** 2 for k, v in delta.items()}, ctx.components
        )
        out["delta_norm"] = squares.sqrt().cpu()
    if "grad_disagreement" in which:
        g_base, g_source = path.base_grads, path.source_grads
        atp_base = reduce_per_component({k: delta[k] * g_base[k] for k in names}, ctx.components)
        atp_source = reduce_per_component(
            {k: delta[k] * g_source[k] for k in names}, ctx.components
        )
        out["grad_disagreement"] = (
            (atp_source - atp_base).abs().double() / (2 * atp_base.abs().double() + _TINY)
        ).cpu()
    if "abs_atp" in which:
        out["abs_atp"] = path.first0.abs()
    return out, path


def hvp_spread(first0: np.ndarray, second0: np.ndarray, first1: np.ndarray) -> np.ndarray:
    """Half-width of the HVP interval from f'(0), f''(0), f'(1) [n]:
    |f'(1) - f'(0) - f''(0)| / 3 (module docstring)."""
    return np.abs(first1 - first0 - second0) / 3


def unreliable_labels(
    atp: np.ndarray, truth: np.ndarray, abs_tol: float, rel_tol: float
) -> np.ndarray:
    """True where AtP's absolute error exceeds ``abs_tol + rel_tol * |truth|``."""
    return np.abs(atp - truth) > abs_tol + rel_tol * np.abs(truth)


def flag_components(score: np.ndarray, threshold: float | None, fraction: float) -> np.ndarray:
    """Flags: score > threshold, or (no threshold) the top ``fraction`` of components."""
    if threshold is not None:
        return score > threshold
    count = int(math.ceil(fraction * score.size)) if score.size else 0
    flags = np.zeros(score.size, dtype=bool)
    flags[np.argsort(-score, kind="stable")[:count]] = True
    return flags


def flag_quality(flags: np.ndarray, score: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 of ``flags`` and AUROC, average precision of ``score``."""
    tp = float(np.sum(flags & labels))
    precision = tp / flags.sum() if flags.sum() else math.nan
    recall = tp / labels.sum() if labels.sum() else math.nan
    if math.isnan(precision) or math.isnan(recall):
        f1 = math.nan
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auroc": roc_auc(score, labels),
        "ap": average_precision(score, labels),
    }


def bound_quality(lo: np.ndarray, hi: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Coverage (fraction of truths inside [lo, hi]) and width (mean width / mean |truth|);
    both NaN (undefined, not perfect) when every truth is 0 or there are none."""
    inside = (truth >= lo - 1e-12) & (truth <= hi + 1e-12)
    scale = float(np.mean(np.abs(truth))) if truth.size else 0.0
    return {
        "coverage": float(np.mean(inside)) if scale > 0 else math.nan,
        "width": float(np.mean(hi - lo)) / scale if scale > 0 else math.nan,
    }


def check_reliability_config(cfg: Mapping[str, Any], tier: str = "exact") -> list[str]:
    """One-line errors for bad reliability/flag settings, or a score the ``tier`` does not
    compute; returns the scores a run of that tier reports: ``cfg["scores"]`` (null: the
    tier's own, :data:`TIER_SCORES`), with :data:`BASELINE_SCORE` added last if missing."""
    scores = cfg.get("scores")
    for name in scores or []:
        if name not in SCORES:
            raise HarnessError(unknown_choice("reliability score", name, list(SCORES)))
        if tier == "cheap" and name not in TIER_SCORES["cheap"]:
            raise HarnessError(
                f"reliability score {name!r} needs diagnostics=exact (one path derivative per "
                f"component); diagnostics=cheap computes {', '.join(TIER_SCORES['cheap'])}"
            )
    check_ranges({"fraction": cfg.get("flag_fraction", 0.2)}, FlagConfig, "flag.")
    if tier not in TIER_SCORES:
        return list(scores or [])
    return with_baseline(TIER_SCORES[tier] if scores is None else scores)


@dataclass(frozen=True)
class DiagnosticSettings:
    """What the diagnostics compute besides the model, prompts and components: the reliability
    ``scores`` (the first one sets ``flagged``; |AtP| is added when missing), the ``flag``
    settings (``fraction``, ``thresholds``), the labels' tolerances (``abs``, ``rel``) and the
    ``tier`` (``cheap`` or ``exact``)."""

    scores: Sequence[str]
    flag: Mapping[str, Any]
    unreliable: Mapping[str, Any]
    tier: str = "exact"

    def reported(self) -> list[str]:
        """The scores reported, in order: ``scores`` and then |AtP| if missing."""
        return with_baseline(self.scores)


def tier_keys(tier: str) -> list[str]:
    """The names of what :func:`tier_values` gives for ``tier``."""
    keys = ["atp", *(f"reliability_{name}" for name in TIER_SCORES[tier])]
    return keys + ["second0", "first1"] * (tier == "exact")


def tier_values(
    ctx: AttributionContext,
    tier: str,
    known: PathEnds | None = None,
) -> dict[str, np.ndarray]:
    """What the ``tier``'s passes give, float64 [n_components] each: ``atp`` (f'(0)),
    ``reliability_<score>`` for each score of :data:`TIER_SCORES`, and (exact) ``second0``
    (f''(0)) and ``first1`` (f'(1)) for the bounds. ``known``: the path derivatives a method
    already took (:func:`path_quantities`; the cheap tier takes no path derivative)."""
    if tier not in TIER_SCORES:
        raise HarnessError(unknown_choice("diagnostics tier", tier, list(TIER_SCORES)))
    path = path_quantities(ctx, known=known) if tier == "exact" else None
    scores, path = _scores(ctx, TIER_SCORES[tier], path)
    values = {"atp": path.first0.numpy()}
    values |= {f"reliability_{name}": value.numpy() for name, value in scores.items()}
    if tier == "exact":
        values |= {"second0": path.second0.numpy(), "first1": path.first1.numpy()}
    return values


def diagnostic_columns(
    values: Mapping[str, np.ndarray],
    truth: np.ndarray,
    settings: DiagnosticSettings,
    bound_kind: str | None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-component columns and summary values from a tier's :func:`tier_values` (no pass).

    Columns: ``reliability_<score>``, ``unreliable`` and ``unreliable_rel`` (the labels),
    ``flagged`` (by the first score), and ``bound_lo/hi`` for the method's own estimate kind
    (``bound_kind`` "atp" or "hvp"; NaN for other methods and in the cheap tier); exact only:
    ``atp_bound_lo/hi``, ``hvp_bound_lo/hi``.
    """
    flag_cfg, unreliable_cfg = settings.flag, settings.unreliable
    fraction = float(flag_cfg.get("fraction", 0.2))
    thresholds = dict(DEFAULT_THRESHOLDS, **(flag_cfg.get("thresholds") or {}))
    atp = values["atp"]
    rel = float(unreliable_cfg.get("rel", 0.25))
    labels = unreliable_labels(atp, truth, float(unreliable_cfg.get("abs", 0.05)), rel)
    relative = unreliable_labels(atp, truth, 0.0, rel)
    columns: dict[str, np.ndarray] = {"unreliable": labels, "unreliable_rel": relative}
    summary: dict[str, Any] = {
        "diagnostics_tier": settings.tier,
        "n_unreliable": int(labels.sum()),
        "n_unreliable_rel": int(relative.sum()),
    }
    for rank, name in enumerate(settings.reported()):
        if f"reliability_{name}" not in values:
            raise HarnessError(
                f"reliability score {name!r} needs diagnostics={SCORE_TIER[name]}; "
                f"diagnostics={settings.tier} computes {', '.join(TIER_SCORES[settings.tier])}"
            )
        score = values[f"reliability_{name}"]
        flags = flag_components(score, thresholds.get(name), fraction)
        quality = flag_quality(flags, score, labels)
        columns[f"reliability_{name}"] = score
        for key, value in quality.items():
            summary[f"flag_{key}_{name}"] = value
            if rank == 0:
                summary[f"flag_{key}"] = value
        summary[f"flag_auroc_{name}_rel"] = roc_auc(score, relative)
        summary[f"flag_ap_{name}_rel"] = average_precision(score, relative)
        summary[f"score_tier_{name}"] = SCORE_TIER[name]
        if rank == 0:
            columns["flagged"] = flags
            summary["flag_score"] = name
    if "first1" not in values:
        summary["bounds_missing"] = NO_BOUNDS
        select_bound(columns, summary, None)
        return columns, summary
    first1 = values["first1"]
    spread = hvp_spread(atp, values["second0"], first1)
    hvp = atp + values["second0"] / 2
    bounds = {  # keyed by BOUNDS
        "atp": (np.minimum(atp, first1), np.maximum(atp, first1)),
        "hvp": (hvp - spread, hvp + spread),
    }
    for kind, (lo, hi) in bounds.items():
        columns[f"{kind}_bound_lo"], columns[f"{kind}_bound_hi"] = lo, hi
        quality = bound_quality(lo, hi, truth)
        summary[f"{kind}_bound_coverage"] = quality["coverage"]
        summary[f"{kind}_bound_width"] = quality["width"]
        summary[f"{kind}_bound_formula"] = BOUND_FORMULAS[kind]
    select_bound(columns, summary, bound_kind)
    return columns, summary


def run_diagnostics(
    ctx: AttributionContext,
    truth: np.ndarray,
    settings: DiagnosticSettings,
    bound_kind: str | None,
    known: PathEnds | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-component columns and summary values of the reliability scores, flags and bounds of
    ``settings.tier`` (:func:`tier_values`, then :func:`diagnostic_columns`). ``known``:
    the path derivatives a method already took (:func:`path_quantities`)."""
    values = tier_values(ctx, settings.tier, known)
    return diagnostic_columns(values, truth, settings, bound_kind)


def select_bound(
    columns: dict[str, np.ndarray], summary: dict[str, Any], bound_kind: str | None
) -> None:
    """Set ``bound_lo/hi`` and ``bound_coverage/width`` to the ``bound_kind`` bound (one of
    :data:`BOUNDS`, as the method declares: :meth:`harness.methods.base.Method.error_bound`),
    or to NaN for None (a method no interval brackets)."""
    if bound_kind is None:
        nan = np.full(columns["unreliable"].shape, np.nan)
        columns["bound_lo"], columns["bound_hi"] = nan, nan.copy()
        summary["bound_coverage"] = summary["bound_width"] = math.nan
        return
    if bound_kind not in BOUNDS:
        raise HarnessError(unknown_choice("error bound", bound_kind, [*BOUNDS, "None"]))
    columns["bound_lo"] = columns[f"{bound_kind}_bound_lo"]
    columns["bound_hi"] = columns[f"{bound_kind}_bound_hi"]
    summary["bound_coverage"] = summary[f"{bound_kind}_bound_coverage"]
    summary["bound_width"] = summary[f"{bound_kind}_bound_width"]


def cached_diagnostics(
    cache_dir: Any,
    truth_key: str | None,
    ctx: AttributionContext,
    truth: np.ndarray,
    settings: DiagnosticSettings,
    bound_kind: str | None,
    known: PathEnds | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`run_diagnostics` (``known`` passed on), its passes made once per ground truth
    and tier and cached.

    What the passes give (:func:`tier_values`) depends only on the model, prompts, components,
    metric and direction (what ``truth_key`` identifies) and the tier, never on the method nor
    the flag and label settings (applied to the values on every read, no pass). So the methods
    of a grid share one computation, stored under ``cache_dir/diagnostics/<hash>.json`` with a
    content hash (a corrupted entry is recomputed). An exact entry also serves a cheap request
    (it holds every cheap score); a cheap one never an exact request. Without ``cache_dir`` or
    ``truth_key`` nothing is cached. Adds ``diagnostics_cached`` to the summary.
    """
    from pathlib import Path

    from harness.storage import read_hashed_json, write_hashed_json

    if cache_dir is None or truth_key is None:
        columns, summary = run_diagnostics(ctx, truth, settings, bound_kind, known)
        return columns, {**summary, "diagnostics_cached": False}

    def entry_path(tier: str) -> Path:
        return cache_entry_path(cache_dir, truth_key, tier)

    tier = settings.tier
    if tier not in TIER_SCORES:
        raise HarnessError(unknown_choice("diagnostics tier", tier, list(TIER_SCORES)))
    wanted = tier_keys(tier)
    servers = [tier] + [t for t in TIER_SCORES if t != tier and set(wanted) <= set(tier_keys(t))]
    values = None
    for server in servers:
        entry = read_hashed_json(entry_path(server))
        if entry is not None and len(entry["values"]["atp"]) == len(truth):
            values = {k: np.asarray(entry["values"][k], dtype=np.float64) for k in wanted}
            break
    cached = values is not None
    if values is None:
        values = tier_values(ctx, tier, known)
        stored = {name: value.tolist() for name, value in values.items()}
        write_hashed_json(entry_path(tier), {"tier": tier, "values": stored})
    columns, summary = diagnostic_columns(values, truth, settings, bound_kind)
    summary["diagnostics_cached"] = cached
    return columns, summary


def cache_entry_path(cache_dir: Any, truth_key: str, tier: str) -> Any:
    """Where :func:`cached_diagnostics` keeps ``tier``'s values of the ground truth
    ``truth_key``: a content hash of what they depend on."""
    from pathlib import Path

    from harness.storage import content_hash

    key = {"truth": truth_key, "tier": tier, "scores": TIER_SCORES[tier], "bounds": BOUND_FORMULAS}
    return Path(cache_dir) / "diagnostics" / f"{content_hash(key)[:24]}.json"


def cached_path_ends(cache_dir: Any, truth_key: str | None, n_components: int) -> PathEnds | None:
    """f'(0), f''(0) and f'(1) of the ``n_components`` scored components from the exact tier's
    cache entry of ``truth_key`` (None: no cache, no valid entry, or one of another size)."""
    from harness.storage import read_hashed_json

    if cache_dir is None or truth_key is None:
        return None
    entry = read_hashed_json(cache_entry_path(cache_dir, truth_key, "exact"))
    if entry is None or len(entry["values"]["atp"]) != n_components:
        return None
    values = entry["values"]

    def tensor(name: str) -> torch.Tensor:
        return torch.tensor(values[name], dtype=torch.float64)

    return PathEnds(tensor("atp"), tensor("second0"), tensor("first1"))
