"""B3: what each method costs, in forward equivalents (wall time over one clean forward of the
same prompt batch, measured in the same process), in total and per component.

    python bench/b3_method_cost.py                       # GPT-2 arch, 4 layers, d_model 128
    python bench/b3_method_cost.py --zoo toy-gpt2        # a trained zoo model
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import context, model_args, setup_benchmark, sync  # noqa: E402

METHODS = {
    "atp": {"name": "atp"},
    "actpatch": {"name": "actpatch"},
    "hvp_exact": {"name": "hvp", "mode": "exact"},
    "hvp_shared": {"name": "hvp", "mode": "shared"},
    "ms_hvp_K8": {"name": "ms_hvp", "steps": 8},
    "ig_component": {"name": "ig", "path": "component"},
    "ig_joint": {"name": "ig", "path": "joint"},
    "sff_hvp_20pct": {"name": "sff", "fix": "hvp", "flag_fraction": 0.2},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_args(parser)
    parser.set_defaults(layers=4, d_model=128, heads=4)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ig-steps", type=int, default=16)
    parser.add_argument("--sites", default="head")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()

    from harness.context import CostCounter
    from harness.cost import time_forward
    from harness.methods.base import make_method

    detail = f"sites {args.sites} (positions=all); ig steps K={args.ig_steps}"
    loaded, batch = setup_benchmark(args, detail)
    device = loaded.adapter.device
    ctx = context(loaded, batch, args.sites.split(","), "all", args.batch_size)
    n = len(ctx.components)
    t_fwd = time_forward(ctx, warmup=2, repeats=5)
    print(f"{n} components; one clean forward {t_fwd * 1e3:.2f} ms\n")
    print(
        f"  {'method':<17} {'wall_s':>8} {'fwd_equiv':>10} {'per comp':>9} "
        f"{'n_fwd':>6} {'n_bwd':>6} {'n_hvp':>6}"
    )
    for label in args.methods.split(","):
        cfg = dict(METHODS[label])
        if cfg["name"] == "ig":
            cfg["steps"] = args.ig_steps
        method = make_method(cfg)
        cost = CostCounter()
        run_ctx = ctx.with_cost(cost)
        sync(device)
        start = time.perf_counter()
        method.estimate(run_ctx)
        sync(device)
        wall = time.perf_counter() - start
        print(
            f"  {label:<17} {wall:8.3f} {wall / t_fwd:10.1f} {wall / t_fwd / n:9.3f} "
            f"{cost.n_forward:6d} {cost.n_backward:6d} {cost.n_hvp:6d}"
        )


if __name__ == "__main__":
    main()
