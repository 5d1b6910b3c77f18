"""B1: ground truth (exact activation patching) - the harness engine against the loops it
replaces, on the same model, prompts and components, in one process.

- harness: ``harness.ground_truth.compute_ground_truth`` (source and base runs, then
  ``patch_effects``: many patched copies per pass, only the layers and positions a patch can
  change);
- harness-full: ``patch_effects(..., fast=False)`` (the same batching, every pass runs the
  whole model);
- TL loop: ``transformer_lens.patching.get_act_patch_attn_head_out_all_pos`` /
  ``get_act_patch_resid_pre`` on the TransformerBridge (one forward per component);
- naive: one forward per component with ``run_with_hooks`` and a slice-replacing hook.

Every variant's time includes its own source-run cache and base-run metric. ``--sample K``
times the two one-forward-per-component loops on K components spread over all layers and scales
their loop time to all components (each of their passes is one full forward of the same batch,
whatever the component). The effects are compared (max |difference| over the scale
max |effect|). The recomputation floor is sum over components of (layers the patch can change)
x (positions it can change) times the measured cost of one layer-position (the block loop over
all layers and positions, logits at the last position, at the engine's batch width, divided by
copies x layers x positions).

    python bench/b1_ground_truth.py                      # GPT-2-small shape, random weights
    python bench/b1_ground_truth.py --layers 2 --d-model 64  # a quick smoke run
    python bench/b1_ground_truth.py --memory             # + peak RSS of a large ground truth
    python bench/b1_ground_truth.py --prompts 2 --sample 24 --skip-full --memory  # RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import context, load, model_args, random_batch, setup_benchmark, timed  # noqa: E402

SETS = {"heads": (["head"], "all"), "resid": (["resid_pre"], "each")}


def sample(n: int, k: int | None) -> list[int]:
    """``k`` component indices spread evenly over ``n`` (all when ``k`` is None or >= n)."""
    if not k or k >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


def tl_loop(ctx, kind: str, subset: list[int]) -> tuple[torch.Tensor, float, float]:
    """Effects of ``subset`` from TransformerLens's own patching helper (denoising convention:
    it patches its "clean cache" into its "corrupted tokens"; here those are our source and
    base runs), with the seconds of the set-up (source cache, base metric) and of the loop."""
    import pandas as pd
    import transformer_lens.patching as tlp

    from harness.task_metric import per_prompt_metric

    bridge = ctx.model.bridge
    start = time.perf_counter()
    with torch.no_grad():
        _, cache = bridge.run_with_cache(ctx.source_tokens)
        base = per_prompt_metric(bridge(ctx.base_tokens), ctx.batch, ctx.metric).double().mean()
    setup = time.perf_counter() - start

    def metric(logits):
        return per_prompt_metric(logits, ctx.batch, ctx.metric).double().mean()

    comps = [ctx.components[i] for i in subset]
    start = time.perf_counter()
    with torch.no_grad():
        layers = [c.layer for c in comps]
        if kind == "heads":
            index = pd.DataFrame({"layer": layers, "head": [c.head for c in comps]})
            fn = tlp.get_act_patch_attn_head_out_all_pos
        else:
            index = pd.DataFrame({"layer": layers, "pos": [c.pos for c in comps]})
            fn = tlp.get_act_patch_resid_pre
        out = fn(bridge, ctx.base_tokens, cache, metric, index_axis_names=None, index_df=index)
    loop = time.perf_counter() - start
    return (out.double() - base).flatten().cpu(), setup, loop


def naive_loop(ctx, subset: list[int]) -> tuple[torch.Tensor, float, float]:
    """One forward per component of ``subset`` with run_with_hooks (effects, set-up s, loop s)."""
    from harness.components import hook_of, slice_index
    from harness.patching import collect_activations, site_names
    from harness.task_metric import per_prompt_metric

    start = time.perf_counter()
    base, _ = collect_activations(ctx, ctx.base_tokens, [])
    _, source = collect_activations(ctx, ctx.source_tokens, site_names(ctx.components))
    setup = time.perf_counter() - start
    start = time.perf_counter()
    effects = []
    for component in (ctx.components[i] for i in subset):
        name, index = hook_of(component), (slice(None),) + slice_index(component)

        def hook(act, hook, name=name, index=index):
            act = act.clone()
            act[index] = source[name][index]
            return act

        with torch.no_grad():
            logits = ctx.model.run(ctx.base_tokens, [(name, hook)])
        patched = per_prompt_metric(logits, ctx.batch, ctx.metric)
        effects.append((patched.double() - base.double()).mean())
    loop = time.perf_counter() - start
    return torch.stack(effects).cpu(), setup, loop


def harness_engine(ctx, full: bool = False) -> torch.Tensor:
    from harness.ground_truth import compute_ground_truth
    from harness.patching import collect_activations, patch_effects, site_names

    if not full:
        return compute_ground_truth(ctx)[0].cpu()
    base, _ = collect_activations(ctx, ctx.base_tokens, [])
    _, source = collect_activations(ctx, ctx.source_tokens, site_names(ctx.components))
    return patch_effects(ctx, ctx.components, source, base, fast=False).cpu()


def layer_position_cost(ctx, repeats: int) -> float:
    """Seconds of one layer over one position of the prompt batch, at the engine's batch width:
    the block loop over all layers and positions (logits at the last position) on as many
    copies of the prompts as one ``batch_size`` pass holds, divided by copies x layers x
    positions; the fastest of ``repeats`` timings."""
    model, n = ctx.model, ctx.batch.n
    copies = max(1, ctx.batch_size // n)
    inputs = model.block_inputs(ctx.base_tokens, record_kv=False)
    resid = inputs.resid[0].repeat(copies, 1, 1)
    read = ctx.batch.last.repeat(copies)

    def loop():
        with torch.no_grad():
            return model.run_from_layer(resid, 0, (), inputs, read_pos=read)

    loop()
    seconds, _ = timed(loop, model.device, repeats)
    return seconds / (copies * model.shape.n_layers * ctx.batch.seq_len)


def floor_units(ctx) -> int:
    """Sum over components of (layers it can change) x (positions it can change)."""
    n_layers, seq = ctx.model.shape.n_layers, ctx.batch.seq_len
    return sum((n_layers - c.layer) * (seq - max(c.pos, 0)) for c in ctx.components)


def agreement(reference: torch.Tensor, other: torch.Tensor) -> float:
    scale = float(reference.abs().max())
    return float((reference - other).abs().max()) / (scale if scale > 0 else 1.0)


def memory_child(args) -> None:
    """Peak RSS of one ground truth over per-head and resid_pre components at every position
    of the last ``--mem-layers`` layers (the full model is loaded; what a pass holds does not
    depend on the layer a copy enters at, and later layers keep the run short)."""
    from harness.cost import peak_mem_mb

    loaded = load(args)
    device = loaded.adapter.device
    before = peak_mem_mb(device)
    vocab = min(len(loaded.tokenizer), 250)
    batch = random_batch(args.prompts, args.seq, args.seed, vocab, device)
    ctx = context(loaded, batch, ["head", "resid_pre"], "each", args.batch_size)
    first = loaded.adapter.shape.n_layers - args.mem_layers
    ctx.components = [c for c in ctx.components if c.layer >= first]
    _, effects = timed(lambda: harness_engine(ctx), device)
    print(
        json.dumps(
            {
                "components": len(ctx.components),
                "layers": args.mem_layers,
                "rss_before_mb": before,
                "rss_peak_mb": peak_mem_mb(device),
                "finite": bool(torch.isfinite(effects).all()),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_args(parser)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64, help="the harness's chunk size")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sets", default="resid,heads")
    parser.add_argument(
        "--sample", type=int, default=None, help="time the TL/naive loops on this many components"
    )
    parser.add_argument("--skip-full", action="store_true", help="skip harness-full")
    parser.add_argument("--memory", action="store_true", help="also measure ground-truth RSS")
    parser.add_argument(
        "--mem-layers", type=int, default=2, help="--memory: components of the last N layers"
    )
    parser.add_argument("--mem-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.mem_child:
        memory_child(args)
        return

    loaded, batch = setup_benchmark(args, f"harness batch_size {args.batch_size}")
    device = loaded.adapter.device
    ok = True
    for kind in args.sets.split(","):
        sites, positions = SETS[kind]
        ctx = context(loaded, batch, sites, positions, args.batch_size)
        harness_engine(ctx)  # warm-up (and the fast path's checks)
        t_h, e_h = timed(lambda ctx=ctx: harness_engine(ctx), device, args.repeats)
        subset = sample(len(ctx.components), args.sample)
        scale_up = len(ctx.components) / len(subset)
        e_tl, setup, loop = tl_loop(ctx, kind, subset)
        t_tl = setup + loop * scale_up
        e_nv, setup, loop = naive_loop(ctx, subset)
        t_nv = setup + loop * scale_up
        e_sub = e_h[subset]
        t_lp = layer_position_cost(ctx, max(3, args.repeats))
        floor = floor_units(ctx) * t_lp
        print(f"\n[{kind}] {len(ctx.components)} components ({sites[0]}, positions={positions})")
        if scale_up > 1:
            print(
                f"  (TL and naive loops: one full forward per component; timed on {len(subset)} "
                f"components spread over all layers and scaled to {len(ctx.components)})"
            )
        print(f"  harness (fast engine) {t_h:8.3f} s")
        if not args.skip_full:
            t_f, e_f = timed(lambda ctx=ctx: harness_engine(ctx, full=True), device, args.repeats)
            print(
                f"  harness-full          {t_f:8.3f} s   speed-up {t_f / t_h:5.2f}x"
                f"   (agreement {agreement(e_h, e_f):.1e})"
            )
        print(
            f"  TL patching loop      {t_tl:8.3f} s   speed-up {t_tl / t_h:5.2f}x"
            f"   (agreement {agreement(e_sub, e_tl):.1e})"
        )
        print(
            f"  naive hook loop       {t_nv:8.3f} s   speed-up {t_nv / t_h:5.2f}x"
            f"   (agreement {agreement(e_sub, e_nv):.1e})"
        )
        print(
            f"  floor                 {floor:8.3f} s   ({floor_units(ctx)} layer-positions x "
            f"{t_lp * 1e3:.3f} ms); engine / floor = {t_h / floor:5.2f}"
        )
        worst = max(agreement(e_sub, e_tl), agreement(e_sub, e_nv))
        good = worst <= 1e-5
        ok &= good
        print(
            f"  effects scale {float(e_h.abs().max()):.3e}; max |difference| / scale "
            f"{worst:.1e} -> {'agree' if good else 'DISAGREE'} (tolerance 1e-5)"
        )
    if args.memory:
        child = [sys.executable, __file__, "--mem-child", *sys.argv[1:]]
        child = [a for a in child if a != "--memory"]
        out = subprocess.run(child, capture_output=True, text=True, check=True).stdout
        mem = json.loads(out.strip().splitlines()[-1])
        print(
            f"\n[memory] ground truth of {mem['components']} components (head + resid_pre, each "
            f"position, last {mem['layers']} layers), batch_size {args.batch_size}: peak "
            f"{'CUDA memory' if device.type == 'cuda' else 'RSS'} "
            f"{mem['rss_peak_mb']:.0f} MiB "
            f"(after loading the model {mem['rss_before_mb']:.0f} MiB) -> "
            f"{'< 2 GB' if mem['rss_peak_mb'] < 2000 else '>= 2 GB'}"
        )
    print("\nall effects agree" if ok else "\nEFFECTS DISAGREE")


if __name__ == "__main__":
    main()
