"""The estimator study's table (issue 26): error and cost of every method, the Pareto front marked.

    python scripts/estimator_table.py results/estimators_zoo results/estimators_real [...]

Reads every complete run below each folder (:func:`harness.report.collect`), groups them by
model group (the toy zoo's mean over models and tasks; a real model per task) and component set,
and prints one markdown table per group: mean relative error, mean Spearman, mean cost in
forward equivalents (wall / one clean forward, both measured in the run) and wall seconds, with
``*`` on the Pareto front of (forward equivalents, relative error).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from harness.plots import pareto_front
from harness.report import collect


def group_name(row: pd.Series) -> str:
    model = (
        "toy zoo (mean over models and tasks)"
        if row["model"].startswith("toy-")
        else (f"{row['model']} / {row['task']}")
    )
    return f"{model} / {row['sites']} / positions {row['positions']}"


def tables(results: pd.DataFrame) -> str:
    results = results.assign(group=results.apply(group_name, axis=1))
    out = []
    for group, sub in results.groupby("group", sort=True):
        mean = sub.groupby("method")[["rel_error", "spearman", "fwd_equiv", "wall_s"]].mean()
        mean["runs"] = sub.groupby("method").size()
        mean = mean.sort_values("fwd_equiv")
        front = set(pareto_front(mean["fwd_equiv"].to_numpy(), mean["rel_error"].to_numpy()))
        out.append(f"**{group}**\n")
        out.append("| method | rel. error | Spearman | fwd-equiv | wall s | runs | front |")
        out.append("| --- | --- | --- | --- | --- | --- | --- |")
        for i, (method, row) in enumerate(mean.iterrows()):
            out.append(
                f"| {method} | {row.rel_error:.3f} | {row.spearman:.3f} | {row.fwd_equiv:.3g} "
                f"| {row.wall_s:.3g} | {int(row.runs)} | {'*' if i in front else ''} |"
            )
        out.append("")
    return "\n".join(out)


def main(folders: list[str]) -> None:
    frames = [collect(Path(folder)).results for folder in folders]
    print(tables(pd.concat(frames, ignore_index=True)))


if __name__ == "__main__":
    main(sys.argv[1:])
