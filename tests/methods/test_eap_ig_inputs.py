"""EAP-IG (inputs): at layer 0's residual stream the embedding path is the patching path, so the
estimate is activation patching there and complete over positions; at every site it equals a
reference written with plain autograd; chunking changes nothing; bad options fail up front."""

from __future__ import annotations

import pytest
import torch
from captum.attr._utils.approximation_methods import approximation_parameters

from harness.components import hook_of, slice_index
from harness.errors import HarnessError
from harness.methods.base import make_method
from harness.task_metric import per_prompt_metric
from tests.helpers import make_context, random_batch

SITES = ("head", "attn_out", "mlp_out", "resid_pre", "neuron")


def eap_ig(ctx, steps: int, **options) -> torch.Tensor:
    return make_method({"name": "eap_ig_inputs", "steps": steps, **options}).estimate(ctx).estimates


def one_difference_batch(n: int, seq: int, seed: int):
    """Pairs whose corrupt prompt differs from the clean one at exactly one position (a
    different one per prompt)."""
    batch = random_batch(n, seq, seed=seed)
    batch.corrupt = batch.clean.clone()
    for i in range(n):
        pos = 1 + i % (seq - 1)
        batch.corrupt[i, pos] = 3 + (batch.clean[i, pos] - 3 + 7) % 61
    return batch


def metric(ctx, tokens) -> float:
    logits = ctx.model.run(tokens)
    return per_prompt_metric(logits, ctx.batch, ctx.metric).mean().item()


@pytest.mark.parametrize("positions", ["all", "each"])
def test_layer0_resid_pre_is_activation_patching(tiny_gpt2, positions):
    # Positions all: patching layer 0's residual stream is running the source prompt, the end of
    # the embedding path. Positions each: with one differing token per prompt, only that
    # position's component moves along the path, and it moves along its own patching path.
    batch = random_batch(4, 6, seed=51) if positions == "all" else one_difference_batch(5, 6, 52)
    ctx, _ = make_context(tiny_gpt2, batch, sites=("head", "resid_pre"), positions=positions)
    everything = list(ctx.components)
    layer0 = [i for i, c in enumerate(everything) if (c.site, c.layer) == ("resid_pre", 0)]
    estimates = eap_ig(ctx, 64)
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates
    assert truth[layer0].abs().max() > 1e-2
    torch.testing.assert_close(estimates[layer0], truth[layer0], rtol=0, atol=1e-6)
    # Elsewhere the path is not the component's own: the same check fails by far.
    later = [i for i in range(len(everything)) if i not in layer0]
    assert (estimates[later] - truth[later]).abs().max() > 1e-3


@pytest.mark.parametrize("direction", ["noising", "denoising"])
def test_complete_over_layer0_positions(tiny_gpt2, direction):
    ctx, _ = make_context(
        tiny_gpt2,
        random_batch(4, 6, seed=55),
        sites=("resid_pre",),
        positions="each",
        direction=direction,
    )
    ctx.components = [c for c in ctx.components if c.layer == 0]
    estimates = eap_ig(ctx, 64)
    gap = metric(ctx, ctx.source_tokens) - metric(ctx, ctx.base_tokens)
    assert abs(gap) > 1e-2
    assert abs(estimates.sum().item() - gap) < 1e-9
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates
    assert abs(truth.sum().item() - gap) > 1e-3  # single-position patches do not add up


def reference(ctx, steps: int, rule: str) -> torch.Tensor:
    """d_c . sum_k w_k dL/da_c(x(t_k)), written with autograd on the hooked activations; captum's
    alpha runs from the source to the base (t = 1 - alpha)."""
    weights_fn, alphas_fn = approximation_parameters(rule)
    embed = ctx.model.embed_hook_name()
    names = list(dict.fromkeys(hook_of(c) for c in ctx.components))
    _, base = ctx.model.cache(ctx.base_tokens, [*names, embed])
    _, source = ctx.model.cache(ctx.source_tokens, [*names, embed])
    shift = (source[embed] - base[embed]).requires_grad_(True)
    integral = {name: torch.zeros_like(base[name]) for name in names}
    store = {}  # each point's hooked activations (overwritten point by point)
    for alpha, weight in zip(alphas_fn(steps), weights_fn(steps), strict=True):

        def move(act, hook, t=1 - alpha):
            return act + t * shift

        def keep(name):
            def hook(act, hook):
                store[name] = act.clone()  # the tensor everything downstream reads
                return store[name]

            return hook

        hooks = [(embed, move)] + [(name, keep(name)) for name in names]
        logits = ctx.model.run(ctx.base_tokens, hooks)
        loss = per_prompt_metric(logits, ctx.batch, ctx.metric).mean()
        grads = torch.autograd.grad(loss, [store[name] for name in names])
        for name, grad in zip(names, grads, strict=True):
            integral[name] += weight * grad
    out = []
    for c in ctx.components:
        index = (slice(None),) + slice_index(c)
        name = hook_of(c)
        out.append(((source[name] - base[name]) * integral[name])[index].sum())
    return torch.stack(out).double()


@pytest.mark.parametrize("direction", ["noising", "denoising"])
def test_every_site_equals_an_autograd_reference(tiny_gpt2, direction):
    ctx, _ = make_context(
        tiny_gpt2, random_batch(3, 5, seed=54), sites=SITES, positions="each", direction=direction
    )
    # riemann_right is asymmetric (its nodes include the base run, not the source run): it
    # checks the path's orientation as well
    estimates = eap_ig(ctx, 4, integration="riemann_right")
    expected = reference(ctx, 4, "riemann_right")
    assert expected.abs().max() > 1e-2
    torch.testing.assert_close(estimates, expected, rtol=1e-9, atol=1e-12)


def test_chunks_change_nothing_and_the_passes_do_not_grow_with_components(tiny_gpt2):
    batch = random_batch(5, 6, seed=55)
    one, _ = make_context(tiny_gpt2, batch, sites=("head", "mlp_out", "resid_pre"), batch_size=1024)
    expected = eap_ig(one, 5)
    assert (one.cost.n_forward, one.cost.n_backward) == (3, 1)  # 2 runs, the 5 steps in one pass
    # 12 rows: every prompt, 2 steps a pass (2 + 2 + 1); 2 rows: 3 prompt chunks, 1 step a pass
    for batch_size, passes in ((12, 3), (2, 3 * 5)):
        ctx, _ = make_context(
            tiny_gpt2, batch, sites=("head", "mlp_out", "resid_pre"), batch_size=batch_size
        )
        torch.testing.assert_close(eap_ig(ctx, 5), expected, rtol=1e-9, atol=1e-12)
        assert ctx.cost.n_backward == passes
    few, _ = make_context(tiny_gpt2, batch, sites=("mlp_out",), batch_size=1024)
    eap_ig(few, 5)
    assert few.cost.as_dict() == one.cost.as_dict()


@pytest.mark.parametrize(
    ("options", "accepted"),
    [
        ({"steps": 0}, "integer >= 1"),
        ({"steps": -1}, "integer >= 1"),
        ({"steps": 2.5}, "integer >= 1"),
        ({"steps": 1, "integration": "riemann_right"}, "integer >= 2"),
    ],
)
def test_bad_steps_is_a_one_line_error(options, accepted):
    with pytest.raises(HarnessError) as info:
        make_method({"name": "eap_ig_inputs", **options})
    message = str(info.value)
    assert "\n" not in message and repr(options["steps"]) in message and accepted in message


def test_unequal_token_shapes_are_a_one_line_error_before_any_pass(tiny_gpt2):
    batch = random_batch(2, 6, seed=56)
    batch.corrupt = batch.corrupt[:, :5]
    ctx, _ = make_context(tiny_gpt2, batch, sites=("mlp_out",))
    with pytest.raises(HarnessError) as info:
        eap_ig(ctx, 2)
    assert "\n" not in str(info.value) and "(2, 6)" in str(info.value)
    assert ctx.cost.n_forward == 0
