"""B5: how every method's cost grows with the number of components N, and where it crosses
full activation patching.

For each component set (heads summed over positions, heads at each position, neurons summed
over positions, neurons at each position) and each N in ``--sizes`` that the set holds, N
components are taken evenly spread over the set (every layer represented), and every method
estimates them once, in this process: wall time, forward equivalents (wall time over one clean
forward of the same prompt batch, ``harness.cost.time_forward``), the counted passes, the
method's own cost estimate (``Method.cost_estimate``, what ``max_fwd_equiv`` checks) and peak
memory (CUDA: ``torch.cuda.max_memory_allocated`` since the call started; CPU: the largest rise
of the process's resident set over the call, sampled every 5 ms). A method whose call took
longer than ``--budget`` seconds is not run at larger N of that set (``skipped``).

Then per method and set: ``flat`` when the passes it counted (sequences pushed through the
model, backwards, Hessian-vector products) are the same at every measured N, else ``linear``;
a least-squares line wall = a + b N over the measured points, and the N where it crosses
actpatch's (full patching of the same N components). ``--replot RUN.jsonl`` prints that and
redraws the figure from an earlier run. Writes ``b5_scale_<model>.jsonl`` (one measurement a
line) and ``b5_scale_<model>.png`` (wall time, forward equivalents and peak memory against N, one
row of panels per set) under ``--out``.

    python bench/b5_scale.py --zoo toy-gpt2 --sizes 16,64,256,1024,5000
    python bench/b5_scale.py --sizes 16,144,1024,5000 --prompts 4  # GPT-2-small shape
    python bench/b5_scale.py --zoo toy-gpt2 --sizes 16,64 --sets heads_each --methods atp,hvp
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import model_args, setup_benchmark, sync  # noqa: E402

METHODS = {
    "atp": {"name": "atp"},
    "actpatch": {"name": "actpatch"},
    "hvp": {"name": "hvp", "mode": "exact"},
    "hvp_shared": {"name": "hvp", "mode": "shared"},
    "ms_hvp": {"name": "ms_hvp"},
    "ig": {"name": "ig", "path": "component"},
    "ig_joint": {"name": "ig", "path": "joint"},
    "integrated_hessians": {"name": "integrated_hessians"},
    "atp_star": {"name": "atp_star"},
    "sff": {"name": "sff"},
}
SETS = {
    "heads": (["head"], "all"),
    "heads_each": (["head"], "each"),
    "neurons": (["neuron"], "all"),
    "neurons_each": (["neuron"], "each"),
}
STEPPED = {"ms_hvp", "ig", "ig_joint", "integrated_hessians"}


class PeakRSS:
    """The largest rise of this process's resident set over a block, sampled every 5 ms from
    ``/proc/self/statm`` (a CPU stand-in for CUDA's peak-memory counter; Linux only, 0
    elsewhere)."""

    def __init__(self) -> None:
        self.peak_mb = 0.0

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def __enter__(self) -> PeakRSS:
        self._base = self._high = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._high = max(self._high, self.rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._high = max(self._high, self.rss())
        self.peak_mb = (self._high - self._base) / 2**20


def release_freed_memory() -> None:
    """Hand memory freed by earlier calls back to the OS (glibc ``malloc_trim``), so the next
    call's RSS rise is its own; a no-op where there is no glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def spread(count: int, n: int) -> list[int]:
    """``n`` indices evenly spread over range(count) (all of them when n >= count)."""
    if n >= count:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, n).round()})


def measure(method, ctx, device: torch.device) -> dict:
    """One call of ``method.estimate(ctx)``: wall time, counted passes, peak memory."""
    from harness.context import CostCounter

    cost = CostCounter()
    run_ctx = ctx.with_cost(cost)
    release_freed_memory()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    with PeakRSS() as rss:
        sync(device)
        start = time.perf_counter()
        method.estimate(run_ctx)
        sync(device)
        wall = time.perf_counter() - start
    peak = rss.peak_mb
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return {"wall_s": wall, "peak_mb": peak, **cost.as_dict()}


def fit(points: list[dict]) -> tuple[float, float]:
    """Least-squares (a, b) of wall = a + b N; (wall, 0) for a single point."""
    n = np.array([p["n"] for p in points], dtype=float)
    wall = np.array([p["wall_s"] for p in points], dtype=float)
    if len(points) < 2:
        return float(wall[0]), 0.0
    b, a = np.polyfit(n, wall, 1)
    return float(a), float(max(b, 0.0))


def summarise(rows: list[dict]) -> list[dict]:
    """Per (set, method): ``flat`` or ``linear`` from the counted passes (sequences pushed
    through the model, backwards, HVPs: exact where seconds are noisy) over the measured N,
    or from the method's own estimate over every N when fewer than two were measured (``kind``
    then ends in ``*``); the least-squares line wall = a + b N; and the N where that line
    crosses actpatch's (full patching of the same components), when both have two measured
    points or more."""
    out = []
    for set_name in dict.fromkeys(r["set"] for r in rows):
        in_set = [r for r in rows if r["set"] == set_name]
        measured = [r for r in in_set if not r.get("skipped")]
        full = [r for r in measured if r["method"] == "actpatch"]
        a0, b0 = fit(full) if len(full) >= 2 else (math.nan, math.nan)
        for method in dict.fromkeys(r["method"] for r in in_set):
            points = [r for r in measured if r["method"] == method]
            if len(points) >= 2:
                pushed = {(p["n_sequences"], p["n_backward"], p["n_hvp"]) for p in points}
                kind = "flat" if len(pushed) == 1 else "linear"
            else:
                rows_n = [r for r in in_set if r["method"] == method]
                estimates = {r["est_fwd_equiv"] for r in rows_n}
                kind = ("flat" if len(estimates) == 1 else "linear") + "*"
                if len({r["n"] for r in rows_n}) < 2:
                    kind = "?"  # one N only: nothing to compare
            a, b = fit(points) if len(points) >= 2 else (math.nan, math.nan)
            cross: float | str = math.nan
            if method != "actpatch" and b0 == b0 and a == a and b0 != b:
                at = (a - a0) / (b0 - b)
                cross = at if at > min(p["n"] for p in points) else math.nan
            walls = {p["n"]: p["wall_s"] for p in full}
            common = [p for p in points if p["n"] in walls]
            if method != "actpatch" and cross != cross and common:  # no crossing ahead
                cheaper = [p["wall_s"] < walls[p["n"]] for p in common]
                cross = "cheaper" if all(cheaper) else "dearer" if not any(cheaper) else cross
            n_max = max((p["n"] for p in points), default=0)
            out.append(
                {
                    "set": set_name,
                    "method": method,
                    "a_s": a,
                    "b_s": b,
                    "kind": kind,
                    "n_max": n_max,
                    "crosses_actpatch_at": cross,
                }
            )
    return out


def report(rows: list[dict], out: Path, label: str, title: str) -> None:
    """Print the fitted lines and write the figure."""
    from harness.plots import save

    print("flat or linear (passes counted; * = from the estimate), fitted wall = a + b N, and")
    print("where that line crosses actpatch (full patching; cheaper / dearer: at every measured")
    print("N, with no crossing ahead):")
    print(
        f"  {'set':<13} {'method':<20} {'kind':>7} {'a (s)':>9} {'b (ms/comp)':>12} "
        f"{'crosses actpatch at N':>22}"
    )
    for s in summarise(rows):
        cross = s["crosses_actpatch_at"]
        cross_text = cross if isinstance(cross, str) else "-" if cross != cross else f"{cross:.0f}"
        a_text = "-" if s["a_s"] != s["a_s"] else f"{s['a_s']:.3f}"
        b_text = "-" if s["b_s"] != s["b_s"] else f"{s['b_s'] * 1e3:.3f}"
        print(
            f"  {s['set']:<13} {s['method']:<20} {s['kind']:>7} {a_text:>9} {b_text:>12} "
            f"{cross_text:>22}"
        )
    paths = save(figure(rows, title), out, f"b5_scale_{label}", formats=("png",))
    print(f"\nwritten: {out / f'b5_scale_{label}.jsonl'}, {', '.join(map(str, paths))}")


def figure(rows: list[dict], title: str):
    """Wall time, forward equivalents and peak memory against N (log-log), a row per set."""
    from harness.plots import colors_for, legend_below, new_figure

    sets = list(dict.fromkeys(r["set"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = colors_for(methods)
    fig = new_figure(12, 3.2 * len(sets) + 0.8)
    axes = fig.subplots(len(sets), 3, squeeze=False)
    handles = {}
    for i, set_name in enumerate(sets):
        for j, (key, label) in enumerate(
            (
                ("wall_s", "wall time, s"),
                ("fwd_equiv", "forward equivalents"),
                ("peak_mb", "peak memory, MiB"),
            )
        ):
            ax = axes[i][j]
            for method in methods:
                points = [
                    r
                    for r in rows
                    if r["set"] == set_name and r["method"] == method and not r.get("skipped")
                ]
                if not points:
                    continue
                x = [p["n"] for p in points]
                y = [max(p[key], 1e-3) for p in points]
                style = "-" if method != "actpatch" else "--"
                (line,) = ax.plot(
                    x,
                    y,
                    style,
                    marker="o",
                    ms=3,
                    color=colors[method],
                    label=method,
                    lw=2 if method == "actpatch" else 1.2,
                )
                handles.setdefault(method, line)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("components N")
            ax.set_ylabel(label)
            ax.set_title(f"{set_name}: {label}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    legend_below(fig, list(handles.values()), list(handles))
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_args(parser)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sizes", default="16,64,256,1024,5000")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=8, help="K of ms_hvp, ig, ig_joint, IH")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds; larger N skipped")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "figures"))
    parser.add_argument("--replot", default=None, help="a .jsonl of an earlier run: report it")
    args = parser.parse_args()
    if args.replot:
        path = Path(args.replot)
        rows = [json.loads(line) for line in path.open()]
        label = rows[0]["model"]
        report(rows, path.parent, label, f"B5 scale: {label} ({path.name})")
        return

    from harness.components import enumerate_components
    from harness.context import AttributionContext
    from harness.cost import time_forward
    from harness.methods.base import make_method

    sizes = [int(s) for s in args.sizes.split(",")]
    loaded, batch = setup_benchmark(
        args, f"sizes {sizes}; steps K={args.steps}; budget {args.budget:g} s per call"
    )
    device, shape = loaded.adapter.device, loaded.adapter.shape
    label = args.zoo or f"{args.model}-random"
    probe = AttributionContext(
        model=loaded.adapter, batch=batch, components=[], batch_size=args.batch_size
    )
    t_fwd = time_forward(probe, warmup=2, repeats=5)
    warm = enumerate_components(shape, ["head"], "all", batch.seq_len)[:1]
    make_method({"name": "atp"}).estimate(AttributionContext(loaded.adapter, batch, warm))
    print(f"one clean forward {t_fwd * 1e3:.2f} ms\n")
    rows: list[dict] = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / f"b5_scale_{label}.jsonl").open("w")
    for set_name in args.sets.split(","):
        sites, positions = SETS[set_name]
        every = enumerate_components(shape, sites, positions, batch.seq_len)
        over: set[str] = set()
        print(f"[{set_name}] {len(every)} components in the set")
        print(
            f"  {'method':<20} {'N':>6} {'wall_s':>9} {'fwd_eq':>9} {'est_fwd_eq':>10} "
            f"{'peak_MiB':>9} {'n_fwd':>6} {'n_bwd':>6} {'n_hvp':>6}"
        )
        for n in sizes:
            if n > len(every):
                continue
            components = [every[i] for i in spread(len(every), n)]
            ctx = AttributionContext(
                model=loaded.adapter,
                batch=batch,
                components=components,
                batch_size=args.batch_size,
            )
            for name in args.methods.split(","):
                cfg = dict(METHODS[name])
                if name in STEPPED:
                    cfg["steps"] = args.steps
                method = make_method(cfg)
                estimate = method.cost_estimate(ctx)
                row = {
                    "model": label,
                    "set": set_name,
                    "method": name,
                    "n": n,
                    "est_fwd_equiv": estimate.fwd_equiv if estimate else None,
                    "forward_s": t_fwd,
                }
                if name in over:
                    row["skipped"] = True
                    print(f"  {name:<20} {n:>6} skipped (over {args.budget:g} s at a smaller N)")
                else:
                    row.update(measure(method, ctx, device))
                    row["fwd_equiv"] = row["wall_s"] / t_fwd
                    if row["wall_s"] > args.budget:
                        over.add(name)
                    print(
                        f"  {name:<20} {n:>6} {row['wall_s']:9.3f} {row['fwd_equiv']:9.1f} "
                        f"{row['est_fwd_equiv']:10.1f} {row['peak_mb']:9.1f} "
                        f"{row['n_forward']:6d} {row['n_backward']:6d} {row['n_hvp']:6d}",
                        flush=True,
                    )
                rows.append(row)
                log.write(json.dumps(row) + "\n")
                log.flush()
        print()
    log.close()
    report(rows, out, label, f"B5 scale: {label}, {args.prompts} prompts x {args.seq} tokens")


if __name__ == "__main__":
    main()
