"""Tabulate a Screen-Flag-Fix sweep: error and cost per fix and flagged fraction, and the cost
of each fix at equal accuracy.

    python docs/sff_comparison.py results/sff_comparison > docs/sff_comparison.md

Reads every ``summary.json`` below the folder (runs of ``method=sff`` made by
``harness -m experiment=sff_comparison``). Error: ``rel_error`` (MAE over mean |truth|) against
activation patching. Cost: ``fwd_equiv`` (the method's wall time in clean forwards of the same
batch, measured in the same run) and ``wall_s``. "Equal accuracy": for each model, task and
target error, the cheapest fraction of each fix whose error is at or below the target.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from harness.report import markdown_table as markdown


def load(root: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(root.rglob("summary.json")):
        s = json.loads(path.read_text())
        method = (s.get("config") or {}).get("method") or {}
        if s.get("status") != "ok" or method.get("name") != "sff":
            continue
        rows.append(
            {
                "model": s["model"],
                "task": s["task"],
                "fix": method["fix"],
                "fraction": float(method["flag_fraction"]),
                "rel_error": s["rel_error"],
                "mae": s["mae"],
                "spearman": s["spearman"],
                "fwd_equiv": s.get("fwd_equiv"),
                "wall_s": s["wall_s"],
                "n_flagged": s.get("sff_n_flagged"),
                "n_components": s["n_components"],
            }
        )
    if not rows:
        sys.exit(f"no sff runs with status ok below {root}")
    return pd.DataFrame(rows)


def equal_accuracy(frame: pd.DataFrame, targets=(0.5, 0.25, 0.1, 0.0)) -> pd.DataFrame:
    """For each model x task and target (a fraction of AtP's own relative error), the cost of
    the cheapest run of each fix that reaches it (NaN where no fraction reaches it)."""
    out = []
    for (model, task), sub in frame.groupby(["model", "task"]):
        atp_error = sub.loc[sub.fraction == 0.0, "rel_error"].mean()
        for target in targets:
            row = {"model": model, "task": task, "target": f"{target:g} x AtP error"}
            for fix, runs in sub.groupby("fix"):
                ok = runs[runs.rel_error <= target * atp_error + 1e-12]
                row[fix] = ok.fwd_equiv.min() if len(ok) else float("nan")
            out.append(row)
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python docs/sff_comparison.py RESULTS_DIR")
    frame = load(Path(argv[0]))
    print("# Screen-Flag-Fix: which fix is cheaper at equal accuracy?\n")
    print(f"Made by `python docs/sff_comparison.py {argv[0]}` from {len(frame)} runs.\n")
    print("## Error and cost per fix and flagged fraction (mean over models and tasks)\n")
    mean = (
        frame.groupby(["fix", "fraction"])[["rel_error", "spearman", "fwd_equiv", "wall_s"]]
        .mean()
        .reset_index()
    )
    print(markdown(mean))
    print("\n## Cost (forward equivalents) of the cheapest run reaching a target error\n")
    print("Target: a multiple of AtP's own relative error on that model and task; `-`: no")
    print("flagged fraction of that fix reaches it.\n")
    table = equal_accuracy(frame)
    print(markdown(table))
    print("\n## Per model and task\n")
    wide = frame.pivot_table(
        index=["model", "task", "fraction"], columns="fix", values=["rel_error", "fwd_equiv"]
    )
    wide.columns = [f"{a} ({b})" for a, b in wide.columns]
    print(markdown(wide.reset_index()))


if __name__ == "__main__":
    main()
