"""B6: path derivatives on the ground-truth engine - cost against the ground truth, in one process.

On the same model, prompts and components: the ground truth (``patch_effects``); the ``hvp``
method's path derivatives (f' and f'' at t = 0) from the shared unpatched pass and, as before
it, from one copy per component (``shared=False``); the diagnostics' (f', f'' at t = 0 and f'
at t = 1, :func:`harness.diagnostics.path_quantities`) and, as before, f' and f'' at both ends
from a copy each; and the same with the full-forward reference engine
(``path_derivatives(..., fast=False)``: every copy runs every layer and position). Prints CPU
seconds of the process (all threads: robust to other jobs on the machine; wall seconds on a
GPU), ratios to the ground truth, and the agreement of the engines. On the CPU it runs one
thread (``--threads``): with two, the CPU time of a loaded machine counts threads waiting for
each other.

    python bench/b6_path_engine.py                                  # GPT-2-small shape
    python bench/b6_path_engine.py --layers 4 --d-model 256 --skip-full
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import context, model_args, setup_benchmark, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_args(parser)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--sites", default="resid_pre")
    parser.add_argument("--positions", default="each")
    parser.add_argument("--skip-full", action="store_true", help="skip the reference engine")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch)")
    parser.add_argument("--memory-gb", type=float, default=None, help="the run's memory_gb")
    args = parser.parse_args()

    from harness.diagnostics import PathQuantities, path_quantities
    from harness.patching import collect_activations, patch_effects, site_names
    from harness.second_order import path_derivatives

    torch.set_num_threads(args.threads)
    loaded, batch = setup_benchmark(args, "logit_diff, noising")
    ctx = context(loaded, batch, args.sites.split(","), args.positions)
    if args.memory_gb:
        ctx.memory_bytes = int(args.memory_gb * 2**30)
    device = loaded.adapter.device
    count = len(ctx.components)
    print(f"{count} components ({args.sites}, positions={args.positions})")
    names = site_names(ctx.components)
    base_metric, base = collect_activations(ctx, ctx.base_tokens, names)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    both = list(ctx.components) * 2
    ends = torch.cat([torch.zeros(count), torch.ones(count)]).double()

    def timed_cpu(fn):
        if device.type != "cpu":
            return timed(fn, device)
        start = time.process_time()
        result = fn()
        return time.process_time() - start, result

    tensors = PathQuantities(None, None, None, base=base, source=source)
    truth_s, _ = timed_cpu(lambda: patch_effects(ctx, ctx.components, source, base_metric))
    hvp_s, hvp = timed_cpu(lambda: path_derivatives(ctx, ctx.components, base, source))
    hvp_old_s, hvp_old = timed_cpu(
        lambda: path_derivatives(ctx, ctx.components, base, source, shared=False)
    )
    diag_s, _ = timed_cpu(lambda: path_quantities(ctx, tensors=tensors))
    diag_old_s, old = timed_cpu(
        lambda: path_derivatives(ctx, both, base, source, t=ends, shared=False)
    )
    rows = [
        ("ground truth (patch_effects)", truth_s),
        ("hvp: f', f'' at t=0, shared pass", hvp_s),
        ("hvp: f', f'' at t=0, copy each", hvp_old_s),
        ("diagnostics: f',f'' at 0, f' at 1", diag_s),
        ("before: f', f'' at 0 and 1, copies", diag_old_s),
    ]
    scale = max(float(hvp_old[1].abs().max()), 1e-30)
    diff = max(float((a - b).abs().max()) for a, b in zip(hvp, hvp_old, strict=True))
    print(f"shared pass vs a copy each at t=0: max |difference| / max |f''| = {diff / scale:.1e}")
    if not args.skip_full:
        full_s, full = timed_cpu(
            lambda: path_derivatives(ctx, both, base, source, t=ends, fast=False)
        )
        rows.append(("before, full-forward engine", full_s))
        scale = max(float(full[1].abs().max()), 1e-30)
        diff = max(float((a - b).abs().max()) for a, b in zip(old, full, strict=True))
        print(f"fast vs full engine: max |difference| / max |f''| = {diff / scale:.1e}")
    for label, seconds in rows:
        print(f"  {label:34s} {seconds:9.3f} s   x{seconds / truth_s:6.2f} of the ground truth")
    print(f"chunks: {ctx.chunks}")


if __name__ == "__main__":
    main()
