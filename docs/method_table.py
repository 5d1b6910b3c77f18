"""The method comparison table of docs/results.md, from a finished ``paper_zoo`` grid.

    harness -m experiment=paper_zoo results_dir=results/paper_zoo
    python docs/method_table.py results/paper_zoo > docs/results.md

For IOI with name-swap (``ioi``) and random-token (``ioi_random_token``) corruption: Spearman
rank correlation and MAE of every method against activation patching on every zoo family, and
the method's cost in forward equivalents (its wall time over one clean forward of the same
batch, measured in the same run), averaged over the families.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from harness.report import collect, markdown_table

TASKS = {"ioi": "IOI, name-swap corruption", "ioi_random_token": "IOI, random-token corruption"}


def method_table(results: pd.DataFrame, task: str) -> pd.DataFrame:
    """Rows: methods; columns: Spearman and MAE per model, their means, and mean cost."""
    sub = results[results.task == task]
    spearman = sub.pivot_table(index="method", columns="model", values="spearman")
    mae = sub.pivot_table(index="method", columns="model", values="mae")
    table = pd.DataFrame(index=spearman.index)
    for model in spearman.columns:
        short = model.removeprefix("toy-")
        table[f"{short} rho"] = spearman[model]
        table[f"{short} MAE"] = mae[model]
    table["mean rho"] = spearman.mean(axis=1)
    table["mean MAE"] = mae.mean(axis=1)
    table["fwd equiv"] = sub.groupby("method")["fwd_equiv"].mean()
    return table.sort_values("fwd equiv").reset_index()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python docs/method_table.py RESULTS_DIR")
    results = collect(Path(argv[0])).results
    if results.empty:
        sys.exit(f"no finished runs below {argv[0]}")
    n_prompts = "/".join(str(n) for n in sorted(results.n_prompts.unique().tolist()))
    print("# Methods against activation patching on the toy zoo\n")
    print(f"Made by `python docs/method_table.py {argv[0]}` from {len(results)} runs of")
    print("`harness -m experiment=paper_zoo` (per-head components summed over positions, logit")
    print(f"difference, noising, float32, CPU, {n_prompts} prompts). rho: Spearman against the")
    print("true effects; MAE in logit-difference units; fwd equiv: method wall time over one")
    print("clean forward of the same batch (mean over families; rows sorted by it). Method")
    print("variants: `conf/method/` (`*_fast`: fewer steps).\n")
    for task, title in TASKS.items():
        if (results.task == task).any():
            print(f"## {title} (`task={task}`)\n")
            print(markdown_table(method_table(results, task)))
            print()


if __name__ == "__main__":
    main()
