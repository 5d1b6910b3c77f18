"""The patching engine: exactness properties and batched == one pass per component."""

from __future__ import annotations

import pytest
import torch

from harness.components import hook_of, slice_index
from harness.patching import collect_activations, patch_effects, site_names
from harness.task_metric import per_prompt_metric
from tests.helpers import make_context, random_batch

ALL_SITES = ("head", "attn_out", "mlp_out", "resid_pre")


def naive_effects(ctx, source):
    """One forward pass per component, written independently of the engine."""
    base = per_prompt_metric(ctx.model.run(ctx.base_tokens), ctx.batch, ctx.metric).mean()
    out = []
    for component in ctx.components:
        index = (slice(None),) + slice_index(component)
        value = source[hook_of(component)]

        def hook(act, hook, index=index, value=value):
            act = act.clone()
            act[index] = value[index]
            return act

        logits = ctx.model.run(ctx.base_tokens, [(hook_of(component), hook)])
        out.append(per_prompt_metric(logits, ctx.batch, ctx.metric).mean() - base)
    return torch.stack(out).double()


@pytest.mark.parametrize("positions", ["all", "each"])
@pytest.mark.parametrize("direction", ["noising", "denoising"])
def test_batched_engine_equals_one_pass_per_component(tiny_gpt2, positions, direction):
    batch = random_batch(5, 6, seed=1, lengths=[6, 4, 6, 5, 3])
    ctx, _ = make_context(
        tiny_gpt2, batch, sites=ALL_SITES, positions=positions, direction=direction, batch_size=7
    )
    names = site_names(ctx.components)
    base_metric, _ = collect_activations(ctx, ctx.base_tokens, [])
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    fast = patch_effects(ctx, ctx.components, source, base_metric)
    slow = naive_effects(ctx, source)
    assert fast.abs().max() > 1e-3, "effects too small for a meaningful comparison"
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-10)
    assert ctx.cost.n_forward > len(ctx.components) * 5 // 7


def test_patching_own_activations_changes_nothing(tiny_gpt2):
    batch = random_batch(4, 6, seed=2)
    ctx, _ = make_context(tiny_gpt2, batch, sites=ALL_SITES, positions="each")
    names = site_names(ctx.components)
    base_metric, base = collect_activations(ctx, ctx.base_tokens, names)
    effects = patch_effects(ctx, ctx.components, base, base_metric)
    # zero to float64 rounding: a patched copy runs in another batch shape than the base run,
    # and CPU kernels may sum in another order for another shape (an ulp of the metric)
    assert effects.abs().max() <= 1e-12


def test_first_residual_patch_reproduces_source_run(tiny_models):
    for folder in tiny_models.values():
        batch = random_batch(4, 6, seed=3)
        ctx, _ = make_context(folder, batch, sites=("resid_pre",), positions="all")
        names = site_names(ctx.components)
        base_metric, _ = collect_activations(ctx, ctx.base_tokens, [])
        source_metric, source = collect_activations(ctx, ctx.source_tokens, names)
        effects = patch_effects(ctx, ctx.components, source, base_metric)
        expected = (source_metric - base_metric).mean().double()
        torch.testing.assert_close(effects[0], expected, rtol=1e-9, atol=1e-9)
