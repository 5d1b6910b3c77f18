"""Tables and figures of AtP's error by site type, depth and activation change, and of the
error decomposition (where the error comes from), from a ``site_types`` sweep.

    harness -m experiment=site_types results_dir=results/site_types
    python docs/site_types.py results/site_types

Reads every job's ``summary.json`` and ``estimates.parquet`` below the folder (each job: one
model x one site type, every position; ground truth, diagnostics and the decomposition on a
stratified sample) and writes ``tables.md`` and ``figures/*.png`` into it.

- AtP's error: |AtP - truth|; the HVP error: |AtP + f''(0)/2 - truth| (the midpoint of the
  diagnostics' HVP interval); ``rel``: mean absolute error over mean |truth|.
- AUROC of each reliability score at finding the *unreliable* components (AtP's error above
  0.05 + 0.25 |truth|), from each job's summary.
- Depth: the number of blocks after the component's own (``downstream layers``).
- Error shares: the error-weighted shares of :mod:`harness.decomposition` (the fraction of
  the total |AtP error| that linearizing the part alone reproduces).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.report import markdown_table as markdown

SITES = ["head", "attn_out", "mlp_out", "resid_pre", "neuron"]
SCORES = ["curvature_ratio", "delta_norm", "grad_disagreement"]
PARTS = ["local", "downstream", "readout"]
KINDS = ["softmax", "qk", "pv", "norm", "act", "gate", "readout"]
DIAGNOSTICS = ["hvp_bound_lo", "hvp_bound_hi", "reliability_delta_norm"]


def load(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per job: summary values; one row per sampled component)."""
    jobs, rows = [], []
    for path in sorted(root.rglob("summary.json")):
        s = json.loads(path.read_text())
        if s.get("status") != "ok" or not (path.parent / "estimates.parquet").exists():
            continue
        site = s["sites"][0]
        sweep = path.parent.parent.name
        jobs.append({"model": s["model"], "site": site, "sweep_dir": sweep, **s})
        frame = pd.read_parquet(path.parent / "estimates.parquet")
        frame = frame[frame["sampled"]].copy()
        for column in DIAGNOSTICS:  # a run with diagnostics=false: no HVP, no scores
            if column not in frame:
                frame[column] = np.nan
        frame["downstream_layers"] = _n_layers(s, frame) - 1 - frame["layer"]
        frame["hvp"] = (frame["hvp_bound_lo"] + frame["hvp_bound_hi"]) / 2
        frame["atp_error"] = (frame["estimate"] - frame["truth"]).abs()
        frame["hvp_error"] = (frame["hvp"] - frame["truth"]).abs()
        if "unreliable" not in frame:  # the diagnostics' label, from the run's own thresholds
            limit = s["config"]["unreliable"]
            bound = limit["abs"] + limit["rel"] * frame["truth"].abs()
            frame["unreliable"] = frame["atp_error"] > bound
        rows.append(frame)
    return pd.DataFrame(jobs), pd.concat(rows, ignore_index=True)


def _experiment(jobs: pd.DataFrame) -> str:
    """The experiment preset the runs were made with (their sweep folder's name)."""
    names = {Path(str(d)).name.split("-")[0] for d in jobs.get("sweep_dir", [])}
    return names.pop() if len(names) == 1 else "site_types"


def _n_layers(summary: dict, frame: pd.DataFrame) -> int:
    keys = [k for k in summary if k.startswith("decomp_error_share_block_plus")]
    return max(len(keys) + 1, int(frame["layer"].max()) + 1)


def _spearman(group: pd.DataFrame) -> float:
    """Spearman correlation of AtP's absolute error with the activation change's norm."""
    return group["atp_error"].corr(group["reliability_delta_norm"], method="spearman")


def _rel(errors: pd.Series, truth: pd.Series) -> float:
    scale = truth.abs().mean()
    return float(errors.mean() / scale) if scale > 0 else float("nan")


def site_table(jobs: pd.DataFrame, comps: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (model, site), group in comps.groupby(["model", "site"], sort=False):
        job = jobs[(jobs["model"] == model) & (jobs["site"] == site)].iloc[0]
        out.append(
            {
                "model": model,
                "site": site,
                "n": len(group),
                "mean abs truth": group["truth"].abs().mean(),
                "AtP MAE": group["atp_error"].mean(),
                "HVP MAE": group["hvp_error"].mean(),
                "AtP rel": _rel(group["atp_error"], group["truth"]),
                "HVP rel": _rel(group["hvp_error"], group["truth"]),
                "unreliable": group["unreliable"].astype(bool).mean(),
                **{f"AUROC {s}": job.get(f"flag_auroc_{s}") for s in SCORES},
                "spearman(err, delta norm)": _spearman(group),
            }
        )
    frame = pd.DataFrame(out)
    frame["site"] = pd.Categorical(frame["site"], SITES)
    return frame.sort_values(["model", "site"])


def depth_table(comps: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (model, site, depth), group in comps.groupby(
        ["model", "site", "downstream_layers"], sort=True
    ):
        out.append(
            {
                "model": model,
                "site": site,
                "downstream layers": int(depth),
                "n": len(group),
                "AtP MAE": group["atp_error"].mean(),
                "HVP MAE": group["hvp_error"].mean(),
                "AtP rel": _rel(group["atp_error"], group["truth"]),
                "HVP rel": _rel(group["hvp_error"], group["truth"]),
            }
        )
    return pd.DataFrame(out)


def share_table(jobs: pd.DataFrame) -> pd.DataFrame:
    cols = {f"decomp_error_share_{p}": p for p in ["all", *PARTS, *KINDS]}
    frame = jobs[["model", "site", "decomp_total_abs_error", *[c for c in cols if c in jobs]]]
    frame = frame.rename(columns={**cols, "decomp_total_abs_error": "total abs AtP error"})
    frame = frame.assign(site=pd.Categorical(frame["site"], SITES))
    return frame.sort_values(["model", "site"])


def distance_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Error-weighted share of the k-th block after the component's own, per job (long)."""
    out = []
    for _, job in jobs.iterrows():
        k = 1
        while f"decomp_error_share_block_plus{k}" in job and pd.notna(
            job[f"decomp_error_share_block_plus{k}"]
        ):
            share = job[f"decomp_error_share_block_plus{k}"]
            out.append(
                {"model": job["model"], "site": job["site"], "blocks after": k, "share": share}
            )
            k += 1
    return pd.DataFrame(out, columns=["model", "site", "blocks after", "share"])


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def figures(
    sites: pd.DataFrame,
    depth: pd.DataFrame,
    shares: pd.DataFrame,
    distance: pd.DataFrame,
    comps: pd.DataFrame,
    out: Path,
) -> None:
    """``site_types.png`` and ``error_vs_delta.png`` need the diagnostics (skipped without
    them); ``error_vs_depth.png``, ``decomposition.png`` and ``decomposition_by_distance.png``."""
    out.mkdir(parents=True, exist_ok=True)
    models = list(dict.fromkeys(sites["model"]))
    present = [site for site in SITES if site in set(sites["site"])]
    x = np.arange(len(present))
    if comps["reliability_delta_norm"].notna().any():
        _site_figure(sites, models, present, out)
        _delta_figure(comps, models, out)

    fig = Figure(figsize=(4.2 * len(models), 3.6))
    for col, model in enumerate(models):
        ax = fig.add_subplot(1, len(models), col + 1)
        for site in SITES:
            rows = depth[(depth["model"] == model) & (depth["site"] == site)]
            if len(rows):
                line = ax.plot(rows["downstream layers"], rows["AtP MAE"], "o-", label=site)[0]
                ax.plot(rows["downstream layers"], rows["HVP MAE"], "x--", color=line.get_color())
        ax.set_yscale("log")
        ax.set_xlabel("blocks downstream of the component")
        ax.set_title(f"{model}: MAE (o AtP, x AtP+HVP)")
        ax.legend(fontsize=7)
    _save(fig, out / "error_vs_depth.png")

    fig = Figure(figsize=(4.2 * len(models), 7.0))
    for col, model in enumerate(models):
        table = shares[shares["model"] == model].set_index("site").reindex(present)
        for row, parts in enumerate([PARTS, [k for k in KINDS if k in table]]):
            ax = fig.add_subplot(2, len(models), row * len(models) + col + 1)
            width = 0.8 / len(parts)
            for i, part in enumerate(parts):
                ax.bar(x + (i - (len(parts) - 1) / 2) * width, table[part], width, label=part)
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.axhline(0.0, color="black", lw=0.5)
            ax.set_xticks(x, present, rotation=30)
            what = "location" if row == 0 else "kind"
            ax.set_title(f"{model}: share of AtP's error, by {what}")
            ax.legend(fontsize=7, ncol=2)
    _save(fig, out / "decomposition.png")

    fig = Figure(figsize=(4.2 * len(models), 3.6))
    for col, model in enumerate(models):
        ax = fig.add_subplot(1, len(models), col + 1)
        for site in SITES:
            rows = distance[(distance["model"] == model) & (distance["site"] == site)]
            if len(rows):
                ax.plot(rows["blocks after"], rows["share"], "o-", ms=3, label=site)
        ax.axhline(0.0, color="black", lw=0.5)
        ax.set_xlabel("k: blocks after the component's own")
        ax.set_title(f"{model}: share of AtP's error, block +k")
        ax.legend(fontsize=7)
    _save(fig, out / "decomposition_by_distance.png")


def _site_figure(sites: pd.DataFrame, models: list, present: list, out: Path) -> None:
    x = np.arange(len(present))
    fig = Figure(figsize=(4.2 * len(models), 7.5))
    for col, model in enumerate(models):
        table = sites[sites["model"] == model].set_index("site").reindex(present)
        ax = fig.add_subplot(2, len(models), col + 1)
        ax.bar(x - 0.2, table["AtP rel"], 0.4, label="AtP")
        ax.bar(x + 0.2, table["HVP rel"], 0.4, label="AtP + HVP")
        ax.set_xticks(x, present, rotation=30)
        ax.set_title(f"{model}: relative error")
        ax.legend()
        ax = fig.add_subplot(2, len(models), len(models) + col + 1)
        for i, score in enumerate(SCORES):
            ax.bar(x + (i - 1) * 0.27, table[f"AUROC {score}"], 0.27, label=score)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1)
        ax.set_xticks(x, present, rotation=30)
        ax.set_title(f"{model}: AUROC at flagging unreliable AtP")
        ax.legend(fontsize=7)
    _save(fig, out / "site_types.png")


def _delta_figure(comps: pd.DataFrame, models: list, out: Path) -> None:
    fig = Figure(figsize=(4.2 * len(models), 3.8))
    for col, model in enumerate(models):
        ax = fig.add_subplot(1, len(models), col + 1)
        for site in SITES:
            rows = comps[(comps["model"] == model) & (comps["site"] == site)]
            keep = (rows["atp_error"] > 0) & (rows["reliability_delta_norm"] > 0)
            ax.scatter(
                rows.loc[keep, "reliability_delta_norm"],
                rows.loc[keep, "atp_error"],
                s=8,
                alpha=0.6,
                label=site,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("||delta|| (activation change)")
        ax.set_ylabel("|AtP - truth|")
        ax.set_title(model)
        ax.legend(fontsize=7)
    _save(fig, out / "error_vs_delta.png")


def main(root: Path) -> None:
    jobs, comps = load(root)
    sites, depth, shares = site_table(jobs, comps), depth_table(comps), share_table(jobs)
    distance = distance_table(jobs)
    figures(sites, depth, shares, distance, comps, root / "figures")
    text = [
        "# AtP's error by site type, depth and activation change",
        "",
        f"Made by `python docs/site_types.py {root}` from the runs of `harness -m "
        f"experiment={_experiment(jobs)} results_dir={root}`.",
        "",
        "## By site type (every position; sampled components)",
        "",
        markdown(sites),
        "",
        "Pooled over site types, Spearman correlation of |AtP - truth| with ||delta||: "
        + ", ".join(
            f"{model} {_spearman(group):.3f} (n = {len(group)})"
            for model, group in comps.groupby("model")
        )
        + ".",
        "",
        "## By depth (blocks downstream of the component's own)",
        "",
        markdown(depth),
        "",
        "## Error decomposition: error-weighted share of AtP's error",
        "",
        markdown(shares),
        "",
        "## Error decomposition: error-weighted share of the k-th block after the component's own",
        "",
        markdown(distance),
        "",
    ]
    (root / "tables.md").write_text("\n".join(text))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/site_types"))
