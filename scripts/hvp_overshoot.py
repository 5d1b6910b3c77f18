"""Where the exact HVP overshoots on a results folder's hvp runs, and which score flags it.

    python scripts/hvp_overshoot.py results/paper_real

For every task's ``hvp`` run (exact diagnostics): the five scored components with the largest
|HVP estimate - truth|, their share of the summed error, and the AUROC of each reliability
score for the label "the HVP is worse than AtP and off by more than 25% of the truth".
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from harness.evaluation import roc_auc
from harness.report import collect_runs


def main(folder: str) -> None:
    try:
        collected = collect_runs(Path(folder))
    except ValueError as err:
        sys.exit(f"error: {err}")
    runs = collected.results[collected.results["method"] == "hvp"]
    if runs.empty:
        sys.exit(f"error: no run of method 'hvp' below {folder!r}")
    for _, run in runs.sort_values("task").iterrows():
        frame = collected.estimates[collected.estimates["run_id"] == run["run_id"]]
        frame = frame[frame["sampled"].fillna(True).astype(bool)].copy()  # older: every one
        frame["error"] = (frame["estimate"] - frame["truth"]).abs()
        top = frame.sort_values("error", ascending=False).head(5)
        share = top["error"].sum() / frame["error"].sum()
        print(f"## {run['task']}: {len(frame)} components, top 5 carry {share:.0%} of the error")
        columns = ["component", "truth", "first_order", "second_order", "estimate", "flagged"]
        print(top[columns].round(3).to_string(index=False))
        atp_error = (frame["first_order"] - frame["truth"]).abs()
        label = (frame["error"] > 0.25 * frame["truth"].abs()) & (frame["error"] > atp_error)
        scores = [c for c in frame.columns if c.startswith("reliability_")]
        aurocs = {c[len("reliability_") :]: roc_auc(frame[c].to_numpy(), label) for c in scores}
        shown = ", ".join(f"{k} {v:.2f}" for k, v in aurocs.items() if np.isfinite(v))
        print(f"overshoot label: {int(label.sum())} components; AUROC {shown or 'undefined'}\n")


if __name__ == "__main__":
    main(sys.argv[1])
