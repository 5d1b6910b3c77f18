"""Table and figure of AtP's and the HVP correction's error against the number of blocks
downstream of a component, over models of one family trained at several depths.

    python docs/depth_series.py results/depth_series

Reads every job's ``summary.json`` and ``estimates.parquet`` below the folder (runs of
``harness -m experiment=depth_series``) and writes ``tables.md`` and ``figures/depth.png``.
The model of a job is named by its folder (``model.path``), its depth by its number of layers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.report import markdown_table as markdown


def load(root: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(root.rglob("summary.json")):
        s = json.loads(path.read_text())
        if s.get("status") != "ok":
            continue
        frame = pd.read_parquet(path.parent / "estimates.parquet")
        model = Path(str(s["config"]["model"].get("path") or s["model"])).name
        n_layers = int(frame["layer"].max()) + 1
        frame = frame.assign(
            model=model,
            n_layers=n_layers,
            downstream=n_layers - 1 - frame["layer"],
            atp_error=(frame["estimate"] - frame["truth"]).abs(),
            hvp_error=((frame["hvp_bound_lo"] + frame["hvp_bound_hi"]) / 2 - frame["truth"]).abs(),
            task_solved=s.get("task_solved"),
            share_local=s.get("decomp_error_share_local"),
            share_downstream=s.get("decomp_error_share_downstream"),
        )
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def tables(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    by_depth = (
        frame.groupby(["n_layers", "model", "downstream"])
        .agg(
            n=("truth", "size"),
            mean_abs_truth=("truth", lambda t: t.abs().mean()),
            atp_mae=("atp_error", "mean"),
            hvp_mae=("hvp_error", "mean"),
        )
        .reset_index()
    )
    by_depth["atp_rel"] = by_depth["atp_mae"] / by_depth["mean_abs_truth"]
    by_depth["hvp_rel"] = by_depth["hvp_mae"] / by_depth["mean_abs_truth"]
    per_model = (
        frame.groupby(["n_layers", "model"])
        .agg(
            task_solved=("task_solved", "first"),
            mean_abs_truth=("truth", lambda t: t.abs().mean()),
            atp_mae=("atp_error", "mean"),
            hvp_mae=("hvp_error", "mean"),
            share_local=("share_local", "first"),
            share_downstream=("share_downstream", "first"),
        )
        .reset_index()
    )
    per_model.insert(6, "atp_rel", per_model["atp_mae"] / per_model["mean_abs_truth"])
    per_model.insert(7, "hvp_rel", per_model["hvp_mae"] / per_model["mean_abs_truth"])
    return by_depth, per_model


def figure(by_depth: pd.DataFrame, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(9, 3.8))
    for col, (metric, title) in enumerate([("mae", "MAE"), ("rel", "MAE / mean |truth|")]):
        ax = fig.add_subplot(1, 2, col + 1)
        for (_, model), rows in by_depth.groupby(["n_layers", "model"]):
            line = ax.plot(rows["downstream"], rows[f"atp_{metric}"], "o-", label=model)[0]
            ax.plot(rows["downstream"], rows[f"hvp_{metric}"], "x--", color=line.get_color())
        ax.set_yscale("log")
        ax.set_xlabel("blocks downstream of the head")
        ax.set_title(f"{title} (o AtP, x AtP + HVP)")
        ax.legend(fontsize=7)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(out / "depth.png", dpi=120)


def main(root: Path) -> None:
    by_depth, per_model = tables(load(root))
    figure(by_depth, root / "figures")
    text = [
        "# AtP's error against depth",
        "",
        f"Made by `python docs/depth_series.py {root}`.",
        "",
        "## Per model",
        "",
        markdown(per_model),
        "",
        "## By blocks downstream of the head",
        "",
        markdown(by_depth),
        "",
    ]
    (root / "tables.md").write_text("\n".join(text))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/depth_series"))
