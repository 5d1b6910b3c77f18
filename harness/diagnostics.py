"""Reliability scores, flags and error bounds for every run.

Reliability scores (larger = distrust the first-order estimate more), per component c with
f_c(t) = L(base | a_c <- a_c + t d_c) (see :mod:`harness.second_order`):

- ``curvature_ratio``: r_c = |f_c''(0)| / (2 |f_c'(0)|) = |d_c^T H_c d_c| / (2 |g_c . d_c|): the
  second-order term over the first. Cost: one batched forward, backward and HVP per chunk.
- ``delta_norm``: ||d_c||, the L2 norm of the perturbation over the component's slice and all
  prompts. Cost: the two forward passes AtP already makes.
- ``grad_disagreement``: |(g_c(source) - g_c(base)) . d_c| / (2 |g_c(base) . d_c|), the
  disagreement of first-order estimates taken with the gradient of the base run and of the
  source run (for a quadratic f_c it equals ``curvature_ratio``). Cost: one extra backward.

Ground-truth label: c is *unreliable* when |AtP_c - truth_c| > ``abs + rel * |truth_c|``
(defaults 0.05 metric units and 0.25). A score flags c when it exceeds its threshold, or, for a
score without threshold, when it is in the top ``flag_fraction`` of components. Precision,
recall and F1 of the flags, and AUROC and average precision of the raw score, are reported.

Error bounds (intervals that should contain the true effect; judged by measured coverage):

- AtP interval ``[min(f'(0), f'(1)), max(f'(0), f'(1))]``: Delta_c = integral of f_c'(t) over
  [0, 1] lies between f_c'(0) and f_c'(1) whenever f_c' is monotone on the path (f_c convex or
  concave there). Cost: f_c'(1), one batched forward/backward at the patched end.
- HVP interval ``hvp_c +/- |f_c'(1) - f_c'(0) - f_c''(0)| / 3``: the Taylor remainder of the
  second-order estimate is R = integral of (1-u)^2 / 2 f_c'''(u) du = f_c'''(s) / 6 for some s,
  and f_c'(1) - f_c'(0) - f_c''(0) = integral of (1-u) f_c'''(u) du = f_c'''(s') / 2 for some
  s', so |f'''| is estimated by 2 |f'(1) - f'(0) - f''(0)|: a mean of f''' weighted towards the
  start of the path, as R's own weight is. Exact for a cubic f_c, an assumption otherwise. It
  needs f_c'(1) only, which the AtP interval computes anyway (a first-order pass at t = 1); an
  estimate from f''(1) needs a second-order pass there, as costly as the HVP itself. (Before
  2026-11-30 the spread was |f''(1) - f''(0)| / 6: the same for a cubic, f''' unweighted.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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

SCORES = ("curvature_ratio", "delta_norm", "grad_disagreement")
BOUNDS = ("atp", "hvp")
"""The error bounds, each named by the estimate it brackets (f'(0); f'(0) + f''(0) / 2)."""
BOUND_FORMULAS = {
    "atp": "[min(f'(0), f'(1)), max(f'(0), f'(1))]",
    "hvp": "f'(0) + f''(0) / 2 +/- |f'(1) - f'(0) - f''(0)| / 3",
}
"""What each bound is (module docstring); part of the diagnostics' cache key, so an entry
cached under another formula is never read back."""
DEFAULT_THRESHOLDS = {"curvature_ratio": 0.5, "delta_norm": None, "grad_disagreement": 0.5}
_TINY = 1e-12


@dataclass
class PathQuantities:
    """Per-component f'(0), f''(0) and (both ends) f'(1) (float64 [n]), and the site tensors."""

    first0: torch.Tensor | None
    second0: torch.Tensor | None
    first1: torch.Tensor | None
    base: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    source: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)


def path_quantities(
    ctx: AttributionContext,
    both_ends: bool = True,
    tensors: PathQuantities | None = None,
    at_zero: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> PathQuantities:
    """First and second path derivatives at t=0 (and, ``both_ends``, the first at t=1) of every
    component's path, from :func:`harness.second_order.path_derivatives` (``tensors``: reuse
    its site tensors instead of collecting them; ``at_zero``: f'(0) and f''(0), float64
    [n_components] each, already taken from it, as a method's
    :attr:`~harness.methods.base.MethodOutput.at_zero`)."""
    names = site_names(ctx.components)
    if tensors is not None:
        base, source = tensors.base, tensors.source
    else:
        _, base = collect_activations(ctx, ctx.base_tokens, names)
        _, source = collect_activations(ctx, ctx.source_tokens, names)
    if at_zero is not None:
        first0, second0 = (value.detach().double().cpu() for value in at_zero)
        for value in (first0, second0):
            if value.shape != (len(ctx.components),):
                raise HarnessError(
                    f"the method's at_zero has shape {tuple(value.shape)}, expected "
                    f"({len(ctx.components)},): one f'(0) and one f''(0) per component"
                )
    else:
        first0, second0 = path_derivatives(ctx, ctx.components, base, source, t=0.0)
    first1 = None
    if both_ends:
        first1, _ = path_derivatives(ctx, ctx.components, base, source, t=1.0, second=False)
    return PathQuantities(first0, second0, first1, base, source)


def reliability_scores(
    ctx: AttributionContext,
    which: Sequence[str],
    path: PathQuantities | None = None,
    base_grads: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The requested reliability scores, each float64 [n_components].

    ``path`` (optional): the path quantities (with the site tensors) already computed;
    ``base_grads`` (optional): dL/da of the base run at every site, already computed."""
    for name in which:
        if name not in SCORES:
            raise HarnessError(unknown_choice("reliability score", name, list(SCORES)))
    names = site_names(ctx.components)
    out: dict[str, torch.Tensor] = {}
    if (path is None or path.first0 is None) and "curvature_ratio" in which:
        path = path_quantities(ctx, both_ends=False, tensors=path)
    if path is not None:
        base, source = path.base, path.source
    else:
        _, base = collect_activations(ctx, ctx.base_tokens, names)
        _, source = collect_activations(ctx, ctx.source_tokens, names)
    delta = {name: source[name] - base[name] for name in names}
    if "curvature_ratio" in which:
        out["curvature_ratio"] = path.second0.abs() / (2 * path.first0.abs() + _TINY)
    if "delta_norm" in which:
        squares = reduce_per_component(
            {k: v.double() ** 2 for k, v in delta.items()}, ctx.components
        )
        out["delta_norm"] = squares.sqrt().cpu()
    if "grad_disagreement" in which:
        g_base = base_grads
        if g_base is None:
            _, _, g_base = metric_gradients(ctx, ctx.base_tokens, names)
        _, _, g_source = metric_gradients(ctx, ctx.source_tokens, names)
        atp_base = reduce_per_component({k: delta[k] * g_base[k] for k in names}, ctx.components)
        atp_source = reduce_per_component(
            {k: delta[k] * g_source[k] for k in names}, ctx.components
        )
        out["grad_disagreement"] = (
            (atp_source - atp_base).abs().double() / (2 * atp_base.abs().double() + _TINY)
        ).cpu()
    return out


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


def check_reliability_config(cfg: Mapping[str, Any]) -> None:
    """One-line errors for bad reliability/flag settings."""
    for name in cfg.get("scores", []):
        if name not in SCORES:
            raise HarnessError(unknown_choice("reliability score", name, list(SCORES)))
    check_ranges({"fraction": cfg.get("flag_fraction", 0.2)}, FlagConfig, "flag.")


@dataclass(frozen=True)
class DiagnosticSettings:
    """What the diagnostics compute besides the model, prompts and components: the reliability
    ``scores`` (the first one sets ``flagged``), the ``flag`` settings (``fraction``,
    ``thresholds``) and the ``unreliable`` label's tolerances (``abs``, ``rel``)."""

    scores: Sequence[str]
    flag: Mapping[str, Any]
    unreliable: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the cache key."""
        return {
            "scores": list(self.scores),
            "flag": _plain(self.flag),
            "unreliable": _plain(self.unreliable),
        }


def run_diagnostics(
    ctx: AttributionContext,
    truth: np.ndarray,
    settings: DiagnosticSettings,
    bound_kind: str | None,
    at_zero: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per-component columns and summary values of the reliability scores, flags and bounds.

    Columns: ``reliability_<score>``, ``unreliable`` (the label), ``flagged`` (by the first
    score), ``atp_bound_lo/hi``, ``hvp_bound_lo/hi``, and ``bound_lo/hi`` for the method's own
    estimate kind (``bound_kind`` "atp" or "hvp"; NaN for other methods). ``at_zero``: f'(0)
    and f''(0) already computed (:func:`path_quantities`).
    """
    scores, flag_cfg, unreliable_cfg = settings.scores, settings.flag, settings.unreliable
    fraction = float(flag_cfg.get("fraction", 0.2))
    thresholds = dict(DEFAULT_THRESHOLDS, **(flag_cfg.get("thresholds") or {}))
    path = path_quantities(ctx, at_zero=at_zero)
    atp = path.first0.numpy()
    hvp = (path.first0 + path.second0 / 2).numpy()
    labels = unreliable_labels(
        atp, truth, float(unreliable_cfg.get("abs", 0.05)), float(unreliable_cfg.get("rel", 0.25))
    )
    columns: dict[str, np.ndarray] = {"unreliable": labels}
    summary: dict[str, float] = {"n_unreliable": int(labels.sum())}
    values = reliability_scores(ctx, scores, path)
    for rank, name in enumerate(scores):
        score = values[name].numpy()
        flags = flag_components(score, thresholds.get(name), fraction)
        quality = flag_quality(flags, score, labels)
        columns[f"reliability_{name}"] = score
        for key, value in quality.items():
            summary[f"flag_{key}_{name}"] = value
            if rank == 0:
                summary[f"flag_{key}"] = value
        if rank == 0:
            columns["flagged"] = flags
            summary["flag_score"] = name
    spread = hvp_spread(path.first0.numpy(), path.second0.numpy(), path.first1.numpy())
    bounds = {  # keyed by BOUNDS
        "atp": (np.minimum(atp, path.first1.numpy()), np.maximum(atp, path.first1.numpy())),
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
    at_zero: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`run_diagnostics` (``at_zero`` passed on), computed once per ground truth and
    settings and cached.

    The scores, labels, flags and both bounds depend only on the model, prompts, components,
    metric and direction (what ``truth_key`` identifies), the score list and the flag / label
    settings, never on the method; only which bound brackets the method's estimate does, and
    that is read off the cached ``atp`` / ``hvp`` bounds. So the methods of a grid share one
    computation, stored under ``cache_dir/diagnostics/<hash>.json`` with a content hash (a
    corrupted entry is recomputed). Without ``cache_dir`` or ``truth_key`` nothing is cached.
    Adds ``diagnostics_cached`` to the summary.
    """
    from pathlib import Path

    from harness.storage import content_hash, read_hashed_json, write_hashed_json

    if cache_dir is None or truth_key is None:
        columns, summary = run_diagnostics(ctx, truth, settings, bound_kind, at_zero)
        return columns, {**summary, "diagnostics_cached": False}
    key = {"truth": truth_key, **settings.as_dict(), "bounds": BOUND_FORMULAS}
    path = Path(cache_dir) / "diagnostics" / f"{content_hash(key)[:24]}.json"
    entry = read_hashed_json(path)
    cached = entry is not None and len(entry["columns"]["unreliable"]) == len(truth)
    if cached:
        columns = {
            name: np.asarray(values, dtype=entry["dtypes"][name])
            for name, values in entry["columns"].items()
        }
        # undefined scores are stored as null (strict JSON): NaN again, as computed fresh
        summary = {k: math.nan if v is None else v for k, v in entry["summary"].items()}
    else:
        columns, summary = run_diagnostics(ctx, truth, settings, None, at_zero)
        write_hashed_json(
            path,
            {
                "settings": key,
                "columns": {name: column.tolist() for name, column in columns.items()},
                "dtypes": {name: str(column.dtype) for name, column in columns.items()},
                "summary": summary,
            },
        )
    select_bound(columns, summary, bound_kind)
    summary["diagnostics_cached"] = cached
    return columns, summary


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a (possibly OmegaConf) mapping."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(value, DictConfig):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return {str(k): v for k, v in dict(value).items()}
