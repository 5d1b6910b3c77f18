"""B4: the error-versus-cost front on the zoo - every method on every zoo model (toy-*), each
run through ``harness.run.run_one`` (the same code as the CLI), its error against the cached
ground truth beside its cost in forward equivalents; the Pareto-optimal methods (no other is
both cheaper and more accurate) are marked with *.

    python bench/b4_front.py                          # all zoo models, task ioi
    python bench/b4_front.py --models toy-gpt2 --task induction
    python bench/b4_front.py --local /path/to/hf/folder --task prompts --task-path pairs.jsonl
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, zoo_or_exit  # noqa: E402

METHODS = ["atp", "atp_star", "hvp", "hvp_shared", "ms_hvp", "ig", "ig_joint", "sff"]


def run(model_overrides: list[str], method: str, args, results: Path) -> dict:
    from hydra import compose, initialize_config_module

    from harness.run import run_one

    overrides = [
        *model_overrides,
        f"task={args.task}",
        f"method={method}",
        f"n_prompts={args.prompts}",
        f"device={args.device}",
        f"components.sites=[{args.sites}]",
        "diagnostics=false",
        "circuits=false",
        f"cache_dir={results / 'cache'}",
        *args.extra,
    ]
    if args.task_path:
        overrides.append(f"task.path={args.task_path}")
    with initialize_config_module(config_module="harness.conf", version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    name = "-".join(model_overrides[0].split("=")[1:]).replace("/", "_")
    return run_one(cfg, results / f"{Path(name).name}-{method}").summary


def front(rows: list[dict]) -> set[str]:
    """Methods no other method beats on both cost and error."""
    best = set()
    for row in rows:
        if not any(
            o["fwd_equiv"] <= row["fwd_equiv"]
            and o["mae"] <= row["mae"]
            and (o["fwd_equiv"] < row["fwd_equiv"] or o["mae"] < row["mae"])
            for o in rows
        ):
            best.add(row["method"])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated zoo slugs")
    parser.add_argument("--local", default=None, help="a local HF folder instead of the zoo")
    parser.add_argument("--task", default="ioi")
    parser.add_argument("--task-path", default=None)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--sites", default="head")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("extra", nargs="*", help="more harness overrides, e.g. method.steps=8")
    args = parser.parse_args()

    if args.local:
        models = {Path(args.local).name: ["model=local", f"model.path={args.local}"]}
    else:
        names = args.models.split(",") if args.models else None
        models = {m: [f"model={m}"] for m in zoo_or_exit(names)}
    print(machine_info(args.device))
    print(f"task {args.task}, {args.prompts} prompts, sites {args.sites}; * = on the front\n")
    with tempfile.TemporaryDirectory(prefix="bench-front-") as tmp:
        for model, overrides in models.items():
            rows = [run(overrides, m, args, Path(tmp)) for m in args.methods.split(",")]
            best = front(rows)
            print(
                f"{model}: {rows[0]['n_components']} components, truth wall "
                f"{rows[0]['truth_wall_s'] or 0:.2f} s"
            )
            print(f"  {'method':<12} {'fwd_equiv':>10} {'wall_s':>8} {'mae':>10} {'spearman':>9}")
            for row in sorted(rows, key=lambda r: r["fwd_equiv"]):
                mark = "*" if row["method"] in best else " "
                print(
                    f" {mark}{row['method']:<12} {row['fwd_equiv']:10.1f} {row['wall_s']:8.3f} "
                    f"{row['mae']:10.4g} {row['spearman']:9.3f}"
                )
            print()


if __name__ == "__main__":
    main()
