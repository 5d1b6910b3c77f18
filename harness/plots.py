"""Figures from run records: per run (for W&B and users) and across runs (for the report).

Every function takes the frames that the run record holds (``estimates.parquet`` rows, and for
cross-run figures the ``results.parquet`` table of :mod:`harness.report`) and returns a
matplotlib ``Figure`` drawn on the Agg canvas; nothing here reads pyplot's global state or
changes the user's backend. Sign convention: ``truth`` is the activation-patching effect
``Delta_c = L(patched) - L(base)`` and ``estimate`` the method's estimate of it.

Per run: :func:`estimate_vs_truth` (scatter with the y = x line), :func:`error_by_layer`
(mean and max |estimate - truth| per layer and site); :func:`run_figures` makes both.
Across runs: :func:`method_scatter`, :func:`error_vs_cost` (Pareto front, log cost),
:func:`error_by_layer_site` and :func:`reliability_pr` (precision-recall of the reliability
scores at finding the components whose AtP error is large, the ``unreliable`` label).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

SITE_ORDER = ("head", "attn_out", "mlp_out", "resid_pre")
SITE_MARKERS = {"head": "o", "attn_out": "s", "mlp_out": "^", "resid_pre": "D"}
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    # a second ten, darker / lighter, so a full method grid (11+ methods) keeps distinct colours
    "#393b79",
    "#ad494a",
    "#637939",
    "#7b4173",
    "#8c6d31",
    "#9edae5",
    "#e7969c",
    "#c5b0d5",
    "#000000",
    "#dbdb8d",
]
FORMATS = ("png", "pdf")
AXIS_LABELS = {
    "rel_error": "relative error",
    "mae": "mean |estimate - truth|",
    "spearman": "Spearman vs truth",
    "wall_s": "method wall time, s",
    "n_forward": "forward passes",
}


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no global backend change)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def legend_below(fig: Figure, handles: list, labels: list[str] | None = None) -> None:
    """A figure legend under the panels with as many columns as fit the figure's width."""
    labels = labels if labels is not None else [h.get_label() for h in handles]
    longest = max((len(str(label)) for label in labels), default=1)
    per_column = 0.6 + 0.075 * longest  # inches of one entry at fontsize 8
    ncols = max(1, min(len(labels), int(fig.get_figwidth() // per_column)))
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=8)


def save(fig: Figure, out_dir: Path, stem: str, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``fig`` as ``out_dir/stem.<format>`` for each format; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        fig.savefig(path, dpi=150 if fmt == "png" else None)
        paths.append(path)
    return paths


def to_rgb(fig: Figure, dpi: int = 110) -> np.ndarray:
    """The figure rendered as an ``(height, width, 3)`` uint8 array (what ``wandb.Image``
    takes without pyplot)."""
    fig.set_dpi(dpi)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def close(figures: Mapping[str, Figure] | Iterable[Figure]) -> None:
    """Release figures' memory (they are not registered with pyplot)."""
    items = figures.values() if isinstance(figures, Mapping) else figures
    for fig in items:
        fig.clear()


def colors_for(names: Iterable[Any]) -> dict[Any, str]:
    """A stable colour per name (sorted order), cycling the palette."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names), key=str))}


def _sites(frame: pd.DataFrame) -> list[str]:
    present = list(pd.unique(frame["site"]))
    return [s for s in SITE_ORDER if s in present] + sorted(
        s for s in present if s not in SITE_ORDER
    )


def _diagonal(ax: Any, x: np.ndarray, y: np.ndarray) -> None:
    values = np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)]])
    if values.size == 0:
        lo, hi = -1.0, 1.0
    else:
        lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1e-6)
    lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], ls="--", lw=1, color="0.4", zorder=0, label="y = x")
    ax.axhline(0, lw=0.5, color="0.85", zorder=0)
    ax.axvline(0, lw=0.5, color="0.85", zorder=0)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal", adjustable="box")


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    rx = pd.Series(x[ok]).rank().to_numpy()
    ry = pd.Series(y[ok]).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _run_title(frame: pd.DataFrame, summary: Mapping[str, Any] | None) -> str:
    def first(key: str) -> str:
        if summary and key in summary:
            return str(summary[key])
        return str(frame[key].iloc[0]) if key in frame and len(frame) else "?"

    return f"{first('method')} on {first('model')} / {first('task')}"


# --------------------------------------------------------------------------------------------
# Per run


def estimate_vs_truth(
    frame: pd.DataFrame, ax: Any = None, title: str | None = None, summary: Mapping | None = None
) -> Figure:
    """Scatter of each component's estimate against its true effect, coloured by layer,
    one marker per site, flagged components ringed; the dashed line is y = x."""
    fig = ax.figure if ax is not None else new_figure(5.2, 4.6)
    ax = ax if ax is not None else fig.add_subplot()
    x = frame["truth"].to_numpy(float)
    y = frame["estimate"].to_numpy(float)
    _diagonal(ax, x, y)
    layers = frame["layer"].to_numpy(float)
    vmin, vmax = (np.nanmin(layers), np.nanmax(layers)) if len(layers) else (0, 1)
    points = None
    for site in _sites(frame):
        mask = (frame["site"] == site).to_numpy()
        points = ax.scatter(
            x[mask],
            y[mask],
            c=layers[mask],
            cmap="viridis",
            vmin=vmin,
            vmax=max(vmax, vmin + 1),
            marker=SITE_MARKERS.get(site, "o"),
            s=22,
            alpha=0.85,
            edgecolors="none",
            label=site,
        )
    if "flagged" in frame and frame["flagged"].any():
        mask = frame["flagged"].fillna(False).to_numpy(bool)  # null: not scored (truth.sample)
        ax.scatter(
            x[mask],
            y[mask],
            s=70,
            facecolors="none",
            edgecolors="#d62728",
            linewidths=1.0,
            label="flagged",
        )
    if points is not None:
        bar = fig.colorbar(points, ax=ax, shrink=0.8)
        bar.set_label("layer")
        if vmax - vmin <= 12:
            bar.set_ticks(np.arange(int(vmin), int(vmax) + 1))
    mae = float(np.nanmean(np.abs(y - x))) if len(x) else float("nan")
    ax.text(
        0.03,
        0.97,
        f"n = {int(np.isfinite(x).sum())}\nSpearman {_spearman(x, y):.3f}\nMAE {mae:.3g}",
        transform=ax.transAxes,
        va="top",
        fontsize=8,
        bbox=dict(boxstyle="round", fc="white", ec="0.8", alpha=0.9),
    )
    ax.set_xlabel("true effect (activation patching)")
    ax.set_ylabel("estimate")
    ax.set_title(title or _run_title(frame, summary), fontsize=10)
    ax.legend(loc="lower right", fontsize=7, markerscale=0.8)
    return fig


def error_by_layer(
    frame: pd.DataFrame, ax: Any = None, title: str | None = None, summary: Mapping | None = None
) -> Figure:
    """Mean |estimate - truth| per layer (bars, one colour per site) with the largest error
    per layer and site marked."""
    fig = ax.figure if ax is not None else new_figure(5.6, 3.8)
    ax = ax if ax is not None else fig.add_subplot()
    sites = _sites(frame)
    layers = sorted(int(v) for v in pd.unique(frame["layer"]))
    width = 0.8 / max(len(sites), 1)
    site_colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(sites)}
    for i, site in enumerate(sites):
        stats = (
            frame[frame["site"] == site]
            .groupby("layer")["abs_error"]
            .agg(["mean", "max"])
            .reindex(layers)
        )
        pos = np.arange(len(layers)) + (i - (len(sites) - 1) / 2) * width
        ax.bar(pos, stats["mean"], width=width, color=site_colors[site], label=f"{site} (mean)")
        ax.scatter(pos, stats["max"], marker="_", s=120, color="black", zorder=3)
    ax.scatter([], [], marker="_", s=120, color="black", label="max")
    ax.set_xticks(np.arange(len(layers)), [str(layer) for layer in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("|estimate - truth|")
    ax.set_ylim(bottom=0)
    ax.set_title(title or f"error per layer: {_run_title(frame, summary)}", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def run_figures(estimates: pd.DataFrame, summary: Mapping[str, Any] | None = None) -> dict:
    """The per-run figures, keyed by a short name: ``estimate_vs_truth``, ``error_by_layer``."""
    return {
        "estimate_vs_truth": estimate_vs_truth(estimates, summary=summary),
        "error_by_layer": error_by_layer(estimates, summary=summary),
    }


# --------------------------------------------------------------------------------------------
# Across runs


def _grid(n: int, ncols_max: int = 3, size: tuple[float, float] = (4.2, 3.8)) -> tuple:
    ncols = max(1, min(n, ncols_max))
    nrows = max(1, math.ceil(n / ncols))
    fig = new_figure(size[0] * ncols, size[1] * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _empty(message: str, width: float = 6, height: float = 3) -> Figure:
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    return fig


def method_scatter(estimates: pd.DataFrame) -> Figure:
    """Estimate vs truth, one panel per method, every run's components; colour = model / task."""
    if estimates.empty:
        return _empty("no estimates")
    methods = sorted(pd.unique(estimates["method"]))
    pairs = estimates["model"].astype(str) + " / " + estimates["task"].astype(str)
    pair_colors = colors_for(pairs)
    fig, axes = _grid(len(methods))
    for ax, method in zip(axes, methods, strict=True):
        mask = (estimates["method"] == method).to_numpy()
        sub = estimates[mask]
        x = sub["truth"].to_numpy(float)
        y = sub["estimate"].to_numpy(float)
        _diagonal(ax, x, y)
        for pair, color in pair_colors.items():
            m = (pairs[mask] == pair).to_numpy()
            if m.any():
                ax.scatter(x[m], y[m], s=12, alpha=0.7, color=color, edgecolors="none", label=pair)
        ax.set_title(f"{method} (Spearman {_spearman(x, y):.3f}, n = {len(x)})", fontsize=10)
        ax.set_xlabel("true effect")
        ax.set_ylabel("estimate")
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    legend_below(fig, handles, labels)
    fig.suptitle("estimate vs true effect, per method")
    return fig


def pareto_front(cost: np.ndarray, error: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both cost and error, by increasing cost."""
    order = np.lexsort((error, cost))
    front, best = [], math.inf
    for i in order:
        if np.isfinite(error[i]) and error[i] < best:
            front.append(i)
            best = error[i]
    return np.array(front, dtype=int)


def error_vs_cost(results: pd.DataFrame, error: str = "rel_error", cost: str = "wall_s") -> Figure:
    """Error against cost (log scale), one panel per model / task (/ sites / positions where
    those vary), one colour per method; the dashed staircase is the Pareto front (no method is
    both cheaper and more accurate)."""
    needed = {error, cost, "model", "task", "method"}
    if results.empty or not needed <= set(results.columns):
        return _empty(f"no runs with {error!r} and {cost!r}")
    data = results.dropna(subset=[error, cost])
    if data.empty:
        return _empty(f"no runs with {error!r} and {cost!r}")
    method_colors = colors_for(data["method"])
    keys = ["model", "task"]  # and the component set, where runs of one pair differ in it
    keys += [k for k in ("sites", "positions") if k in data and data[k].nunique(dropna=False) > 1]
    groups = list(data.groupby(keys, sort=True))
    fig, axes = _grid(len(groups))
    for ax, (group, sub) in zip(axes, groups, strict=True):
        c = np.clip(sub[cost].to_numpy(float), 1e-6, None)
        e = sub[error].to_numpy(float)
        for method, color in method_colors.items():
            m = (sub["method"] == method).to_numpy()
            if m.any():
                ax.scatter(c[m], e[m], s=40, color=color, label=method, zorder=3)
                ax.annotate(
                    method,
                    (float(np.median(c[m])), float(np.median(e[m]))),
                    textcoords="offset points",
                    xytext=(5, 5),
                    fontsize=7,
                    color=color,
                )
        front = pareto_front(c, e)
        if len(front):
            ax.step(c[front], e[front], where="post", ls="--", lw=1, color="0.3", zorder=2)
            ax.scatter(c[front], e[front], s=110, facecolors="none", edgecolors="0.3", zorder=2)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        top = max(float(np.nanmax(e)) * 1.15, 1e-3)
        ax.set_ylim(bottom=-0.04 * top, top=top)  # a zero-error method stays visible
        lo, hi = float(c.min()), float(c.max())
        ax.set_xlim(lo / 2, hi * 2)
        ax.set_title(" / ".join(map(str, group)), fontsize=10)
        ax.set_xlabel(AXIS_LABELS.get(cost, cost) + " (log scale)")
        ax.set_ylabel(AXIS_LABELS.get(error, error))
        ax.grid(True, which="major", lw=0.3, color="0.85")
    handles = [
        axes[0].scatter([], [], s=40, color=color, label=method)
        for method, color in method_colors.items()
    ]
    handles.append(
        axes[0].plot(
            [], [], ls="--", lw=1, color="0.3", marker="o", ms=9, mfc="none", label="Pareto front"
        )[0]
    )
    legend_below(fig, handles)
    fig.suptitle("error vs cost across methods")
    return fig


def error_by_layer_site(estimates: pd.DataFrame) -> Figure:
    """Mean |estimate - truth| per layer: rows = models, columns = sites, one line per method
    (averaged over tasks and runs)."""
    if estimates.empty:
        return _empty("no estimates")
    models = sorted(pd.unique(estimates["model"]).astype(str))
    sites = _sites(estimates)
    method_colors = colors_for(estimates["method"])
    fig = new_figure(max(4.2 * len(sites), 5.0), 3.2 * len(models) + 0.6)
    axes = fig.subplots(len(models), len(sites), squeeze=False)
    for r, model in enumerate(models):
        for c, site in enumerate(sites):
            ax = axes[r, c]
            sub = estimates[(estimates["model"].astype(str) == model) & (estimates["site"] == site)]
            for method, color in method_colors.items():
                curve = sub[sub["method"] == method].groupby("layer")["abs_error"].mean()
                if len(curve):
                    ax.plot(curve.index, curve.to_numpy(), marker="o", ms=4, color=color)
            layers = sorted(pd.unique(sub["layer"]))
            if len(layers) and len(layers) <= 16:
                ax.set_xticks(layers)
            ax.set_title(f"{model}: {site}", fontsize=10)
            ax.set_xlabel("layer")
            ax.set_ylabel("mean |estimate - truth|")
            ax.grid(True, lw=0.3, color="0.85")
    handles = [
        axes[0, 0].plot([], [], marker="o", color=color, label=method)[0]
        for method, color in method_colors.items()
    ]
    legend_below(fig, handles)
    fig.suptitle("error per layer and site")
    return fig


def precision_recall(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall when flagging every component scoring at least each threshold
    (larger score = less reliable); ties share a threshold. Starts at recall 0."""
    scores = np.asarray(scores, float)
    labels = np.asarray(labels, bool)
    ok = np.isfinite(scores)
    scores, labels = scores[ok], labels[ok]
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    tp = np.cumsum(labels)
    flagged = np.arange(1, len(labels) + 1)
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1] if len(scores) else []
    positives = max(int(labels.sum()), 1)
    precision = np.r_[1.0, tp[last_of_tie] / flagged[last_of_tie]]
    recall = np.r_[0.0, tp[last_of_tie] / positives]
    return precision, recall


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Step-wise area under the precision-recall curve (as scikit-learn computes AP)."""
    return float(np.sum(np.diff(recall) * precision[1:]))


def reliability_components(estimates: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, component, truth): runs of different methods on the same
    setting share the AtP reliability scores and label, so they count once."""
    score_cols = [c for c in estimates.columns if c.startswith("reliability_")]
    if "unreliable" not in estimates or not score_cols:
        return estimates.iloc[0:0]
    keys = ["model", "task", "component", "truth", "unreliable", *score_cols]
    if "flagged" in estimates:
        keys.append("flagged")
    sub = estimates[keys].dropna(subset=["unreliable"])
    return sub.drop_duplicates(subset=["model", "task", "component", "truth"])


def reliability_pr(estimates: pd.DataFrame) -> Figure:
    """Precision-recall curve of each reliability score at finding the components whose AtP
    error is large (``unreliable``), pooled over every setting; the star is the ``flagged``
    operating point, the dotted line the fraction of unreliable components."""
    comp = reliability_components(estimates)
    if comp.empty:
        return _empty(
            "no reliability scores in these runs\n(were they run with diagnostics=false?)"
        )
    labels = comp["unreliable"].to_numpy(bool)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return _empty(
            f"no component of {len(comp)} is labelled unreliable\n"
            "(AtP's error is within the tolerance everywhere): no precision-recall curve"
        )
    fig = new_figure(5.6, 4.6)
    ax = fig.add_subplot()
    score_cols = [c for c in comp.columns if c.startswith("reliability_")]
    for i, col in enumerate(score_cols):
        precision, recall = precision_recall(comp[col].to_numpy(float), labels)
        ap = average_precision(precision, recall)
        ax.step(
            recall,
            precision,
            where="post",
            color=PALETTE[i % len(PALETTE)],
            label=f"{col.removeprefix('reliability_')} (AP {ap:.2f})",
        )
    if "flagged" in comp:
        flagged = comp["flagged"].to_numpy(bool)
        if flagged.any():
            tp = int((flagged & labels).sum())
            ax.scatter(
                [tp / n_pos],
                [tp / flagged.sum()],
                marker="*",
                s=160,
                color="black",
                zorder=4,
                label="flagged",
            )
    prevalence = n_pos / len(labels)
    ax.axhline(prevalence, ls=":", color="0.4", label=f"chance ({prevalence:.2f})")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recall (unreliable components found)")
    ax.set_ylabel("precision")
    ax.set_title(f"reliability scores: {n_pos} of {len(labels)} components unreliable", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return fig
