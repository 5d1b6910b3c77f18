"""B6: path derivatives on the ground-truth engine - cost against the ground truth, in one process.

On the same model, prompts and components: the ground truth (``patch_effects``), the
diagnostics' path derivatives (f' and f'' at t = 0 and t = 1, one call of ``path_derivatives``),
the ``hvp`` method's (f' and f'' at t = 0), and the same derivatives with the full-forward
reference engine (``path_derivatives(..., fast=False)``: every copy runs every layer and
position). Prints seconds, ratios to the ground truth and the agreement of the two engines.

    python bench/b6_path_engine.py                                  # GPT-2-small shape
    python bench/b6_path_engine.py --layers 4 --d-model 256 --skip-full
"""

from __future__ import annotations

import argparse
import sys
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
    parser.add_argument("--memory-gb", type=float, default=None, help="the run's memory_gb")
    args = parser.parse_args()

    from harness.patching import collect_activations, patch_effects, site_names
    from harness.second_order import path_derivatives

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

    truth_s, _ = timed(lambda: patch_effects(ctx, ctx.components, source, base_metric), device)
    diag_s, fast = timed(lambda: path_derivatives(ctx, both, base, source, t=ends), device)
    hvp_s, _ = timed(lambda: path_derivatives(ctx, ctx.components, base, source), device)
    rows = [
        ("ground truth (patch_effects)", truth_s),
        ("diagnostics: f', f'' at t=0,1", diag_s),
        ("hvp: f', f'' at t=0", hvp_s),
    ]
    if not args.skip_full:
        full_s, full = timed(
            lambda: path_derivatives(ctx, both, base, source, t=ends, fast=False), device
        )
        rows.append(("diagnostics, full-forward engine", full_s))
        scale = max(float(full[1].abs().max()), 1e-30)
        diff = max(float((a - b).abs().max()) for a, b in zip(fast, full, strict=True))
        print(f"fast vs full engine: max |difference| / max |f''| = {diff / scale:.1e}")
    for label, seconds in rows:
        print(f"  {label:34s} {seconds:9.3f} s   x{seconds / truth_s:6.2f} of the ground truth")
    print(f"chunks: {ctx.chunks}")


if __name__ == "__main__":
    main()
