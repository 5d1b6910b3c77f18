"""The estimator study's table and figure (issue 26): error and cost of every method, the Pareto
front marked.

    python scripts/estimator_table.py results/estimators_zoo results/estimators_real \
        [--figure results/estimators_real/estimators.png]

Reads every complete run below each folder (:func:`harness.report.collect_runs`; a folder with
none is a one-line error), groups them by
model group (the toy zoo's mean over models and tasks; a real model per task) and component set,
and prints one markdown table per group: mean relative error, mean Spearman, mean cost in
forward equivalents (wall / one clean forward, both measured in the run) and wall seconds, with
``*`` on the Pareto front of (forward equivalents, relative error). ``--figure``: the same means
as :func:`harness.plots.error_vs_cost` panels, one per group.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from harness import plots
from harness.report import collect_runs

COLUMNS = ["rel_error", "spearman", "fwd_equiv", "wall_s"]


def group_means(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (model group, task group, sites, positions, method): the mean of
    :data:`COLUMNS` over its runs, and ``runs``."""
    zoo = results["model"].str.startswith("toy-")
    results = results.assign(
        model=results["model"].where(~zoo, "toy zoo (mean)"),
        task=results["task"].where(~zoo, "4 tasks"),
    )
    keys = ["model", "task", "sites", "positions", "method"]
    grouped = results.groupby(keys, sort=True)
    means = grouped[COLUMNS].mean()
    means["runs"] = grouped.size()
    return means.reset_index()


def tables(means: pd.DataFrame) -> str:
    out = []
    for group, sub in means.groupby(["model", "task", "sites", "positions"], sort=True):
        sub = sub.sort_values("fwd_equiv").reset_index(drop=True)
        front = set(plots.pareto_front(sub["fwd_equiv"].to_numpy(), sub["rel_error"].to_numpy()))
        out.append(f"**{' / '.join(group)}**\n")
        out.append("| method | rel. error | Spearman | fwd-equiv | wall s | runs | front |")
        out.append("| --- | --- | --- | --- | --- | --- | --- |")
        for i, row in sub.iterrows():
            out.append(
                f"| {row.method} | {row.rel_error:.3f} | {row.spearman:.3f} | "
                f"{row.fwd_equiv:.3g} | {row.wall_s:.3g} | {int(row.runs)} | "
                f"{'*' if i in front else ''} |"
            )
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--figure", type=Path, default=None, help="a .png to write")
    args = parser.parse_args()
    try:
        collected = [collect_runs(folder) for folder in args.folders]
    except ValueError as err:
        sys.exit(f"error: {err}")
    results = pd.concat([c.results for c in collected], ignore_index=True)
    means = group_means(results)
    print(tables(means))
    if args.figure is not None:
        fig = plots.error_vs_cost(means, error="rel_error", cost="fwd_equiv")
        plots.save(fig, args.figure.parent, args.figure.stem, ["png"])
        plots.close([fig])


if __name__ == "__main__":
    main()
