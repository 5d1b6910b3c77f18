"""B2: AtP through the harness against the bare minimum it must do, in one process.

The bare minimum: the same Hugging Face model with plain PyTorch, no hooks - one forward of the
source prompts (no grad), one forward of the base prompts with the input embeddings requiring
grad, the metric, and one backward to the embeddings (every activation gradient AtP needs is
computed on the way). The harness: ``make_method({"name": "atp"}).estimate(ctx)`` over per-head
components (and optionally more sites). Both are timed as the median of ``--repeats`` calls
after a warm-up; the target is atp <= 1.15x the minimum.

    python bench/b2_atp.py                 # GPT-2-small shape, random weights, 8 x 16 tokens
    python bench/b2_atp.py --sites head,mlp_out,resid_pre
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import context, median_time, model_args, setup_benchmark  # noqa: E402


def bare_minimum(hf_model, ctx) -> torch.Tensor:
    """Two forwards and one backward of the HF model, no hooks; returns the input gradient."""
    from harness.task_metric import per_prompt_metric

    embed = hf_model.get_input_embeddings()
    outs = []
    for rows in ctx.prompt_chunks():
        with torch.no_grad():
            hf_model(input_ids=ctx.source_tokens[rows])
        with torch.enable_grad():
            embeds = embed(ctx.base_tokens[rows]).detach().requires_grad_(True)
            logits = hf_model(inputs_embeds=embeds).logits
            metric = per_prompt_metric(logits, ctx.batch.select(rows), ctx.metric).sum()
            (grad,) = torch.autograd.grad(metric / ctx.batch.n, [embeds])
        outs.append(grad)
    return torch.cat(outs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_args(parser)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sites", default="head")
    args = parser.parse_args()

    from harness.cost import time_forward
    from harness.methods.base import make_method

    loaded, batch = setup_benchmark(args, f"sites {args.sites}")
    device = loaded.adapter.device
    ctx = context(loaded, batch, args.sites.split(","), "all", args.batch_size)
    hf_model = loaded.adapter.bridge.original_model
    atp = make_method({"name": "atp"})

    t_fwd = time_forward(ctx)
    t_min = median_time(lambda: bare_minimum(hf_model, ctx), device, args.repeats)
    t_atp = median_time(lambda: atp.estimate(ctx), device, args.repeats)
    t_min2 = median_time(lambda: bare_minimum(hf_model, ctx), device, args.repeats)
    t_min = min(t_min, t_min2)  # measured before and after atp: the machine is shared
    print(f"\n  one clean forward (harness, bridge) {t_fwd * 1e3:9.2f} ms")
    print(
        f"  bare minimum (HF, 2 fwd + 1 bwd)    {t_min * 1e3:9.2f} ms  "
        f"= {t_min / t_fwd:5.2f} forward equivalents"
    )
    print(
        f"  atp (harness, {len(ctx.components)} components)     {t_atp * 1e3:9.2f} ms  "
        f"= {t_atp / t_fwd:5.2f} forward equivalents"
    )
    ratio = t_atp / t_min
    verdict = "met" if ratio <= 1.15 else "not met"
    print(f"\n  atp / bare minimum = {ratio:.3f}  (target <= 1.15: {verdict})")


if __name__ == "__main__":
    main()
