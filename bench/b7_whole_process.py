"""B7: whole processes, as a user runs them - the ground-truth-only run, the default run and
TransformerLens's own patching loop on the same model, prompts and components.

Issue 12's first table: each row is a separate process (start-up, imports, model build, prompts,
the work, the records), timed here from the outside with ``os.wait4`` (wall seconds, CPU seconds
user + system, peak RSS of that process alone), side by side in one run:

- ``ground truth only``: ``harness <common> method=actpatch diagnostics=false circuits=false``;
- ``defaults``: ``harness <common> method=actpatch`` (diagnostics and circuits on);
- ``TL loop``: this script with ``--tl-child``: the same config composed by Hydra's compose API
  and built by the harness's own :func:`harness.run.build_context` (same model, prompts and
  components), then TransformerLens's ``get_act_patch_resid_pre`` /
  ``get_act_patch_attn_head_out_all_pos`` over every component (:func:`b1_ground_truth.tl_loop`),
  its effects written to a JSON file and compared with the harness's ``truth`` column.

Targets (issue 12): TL loop / ground truth only >= 2.5; defaults / ground truth only <= 2.5;
peak RSS of the defaults <= 1.5 GB. Ratios are printed by wall and by CPU time; on a shared
machine the CPU ratio is the steadier one (set ``OMP_NUM_THREADS=1`` for it to mean work).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

KINDS = {"resid": ("resid_pre", "each"), "heads": ("head", "all")}


def common_overrides(args: argparse.Namespace) -> list[str]:
    """The overrides every row shares (the run the issue's table describes)."""
    site, positions = KINDS[args.kind]
    return [
        f"model={args.model}",
        "model.random_init=true",
        f"task={args.task}",
        f"n_prompts={args.prompts}",
        f"components.sites=[{site}]",
        f"components.positions={positions}",
        "method=actpatch",
        "logger=none",
        "resume=false",
        "progress=false",
        *args.set,
    ]


def measured(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``command`` to the end: wall s, CPU s (user + sys) and peak RSS MB of that process."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}:\n{output[-3000:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,  # kB on Linux
    }


def tl_child(args: argparse.Namespace) -> None:
    """The TL-loop process: the harness's config and context, TransformerLens's loop."""
    import torch
    from b1_ground_truth import tl_loop
    from hydra import compose, initialize_config_dir

    from harness.job import job_spec
    from harness.run import build_context, resolved_config

    torch.set_grad_enabled(False)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides=common_overrides(args))
    ctx = build_context(job_spec(resolved_config(cfg))).ctx
    effects, _, _ = tl_loop(ctx, args.kind, list(range(len(ctx.components))))
    ids = [c.id for c in ctx.components]
    Path(args.tl_child).write_text(json.dumps(dict(zip(ids, effects.tolist(), strict=True))))


STAGES = ("truth_wall_s", "wall_s", "diagnostics_wall_s", "circuits_wall_s")
"""The stage timings of a run's summary.json (``wall_s``: the method's)."""


def stage_seconds(results: Path) -> dict[str, float]:
    """The stage timings of the one run under ``results``."""
    (summary,) = results.glob("runs/*/*/summary.json")
    record = json.loads(summary.read_text())
    return {name: float(record[name]) for name in STAGES if name in record}


def harness_truth(results: Path) -> dict[str, float]:
    """component id -> true effect, from the one run under ``results``."""
    import pandas as pd

    (parquet,) = results.glob("runs/*/*/estimates.parquet")
    frame = pd.read_parquet(parquet, columns=["component", "truth"])
    return dict(zip(frame["component"], frame["truth"], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2", help="a shipped hub architecture (random init)")
    parser.add_argument("--task", default="ioi")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--kind", choices=sorted(KINDS), default="resid")
    parser.add_argument("--skip-defaults", action="store_true", help="skip the default run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="OVERRIDE",
        help="one more harness override for every row, e.g. +model.arch_overrides.n_layer=2",
    )
    parser.add_argument("--tl-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tl_child:
        tl_child(args)
        return

    from _common import machine_info

    print(machine_info("cpu"))
    print(f"common: harness {' '.join(common_overrides(args))}")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    harness = [str(Path(sys.executable).with_name("harness"))]  # the console script users run
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        only = ["diagnostics=false", "circuits=false", f"results_dir={tmp / 'truth'}"]
        rows["ground truth only"] = measured([*harness, *common_overrides(args), *only], env)
        if not args.skip_defaults:
            rest = [f"results_dir={tmp / 'defaults'}"]
            rows["defaults"] = measured([*harness, *common_overrides(args), *rest], env)
        effects = tmp / "tl_effects.json"
        child = [sys.executable, __file__, *sys.argv[1:], "--tl-child", str(effects)]
        rows["TL loop"] = measured(child, env)
        truth = harness_truth(tmp / "truth")
        runs = ["truth"] if args.skip_defaults else ["truth", "defaults"]
        stages = {name: stage_seconds(tmp / name) for name in runs}
        tl = json.loads(effects.read_text())
    scale = max(abs(v) for v in truth.values()) or 1.0
    worst = max(abs(tl[k] - truth[k]) for k in truth) / scale
    base = rows["ground truth only"]
    print(
        f"\n{len(truth)} components; TL loop against the harness's truth: max |difference| / "
        f"scale {worst:.1e} ({'agree' if worst <= 1e-5 else 'DISAGREE'}, tolerance 1e-5)\n"
    )
    print(f"  {'process':<20}{'wall_s':>9}{'cpu_s':>9}{'rss_MB':>9}{'wall x':>9}{'cpu x':>9}")
    for name, row in rows.items():
        print(
            f"  {name:<20}{row['wall_s']:9.1f}{row['cpu_s']:9.1f}{row['rss_mb']:9.0f}"
            f"{row['wall_s'] / base['wall_s']:9.2f}{row['cpu_s'] / base['cpu_s']:9.2f}"
        )
    for name, seconds in stages.items():
        line = ", ".join(f"{key} {value:.1f}" for key, value in seconds.items())
        print(f"  stages of the {name} run (summary.json, wall s): {line}")
    tl_ratio = rows["TL loop"]["cpu_s"] / base["cpu_s"]
    print(f"\nTL loop / ground truth only (CPU): {tl_ratio:.2f}x (target >= 2.5x)")
    if "defaults" in rows:
        ratio = rows["defaults"]["cpu_s"] / base["cpu_s"]
        print(f"defaults / ground truth only (CPU): {ratio:.2f}x (target <= 2.5x)")
        print(f"defaults peak RSS: {rows['defaults']['rss_mb']:.0f} MB (target <= 1.5 GB)")


if __name__ == "__main__":
    main()
