"""AtP*: AtP with both fixes off; the QK fix exact where one key moves; GradDrop by layer."""

from __future__ import annotations

import pytest
import torch

from harness.components import reduce_per_component
from harness.errors import HarnessError
from harness.methods.atp_star import graddrop_estimates, qk_fixed_deltas
from harness.methods.base import make_method
from harness.patching import collect_activations, metric_gradients, site_names
from harness.task_metric import per_prompt_metric
from tests.conftest import build_tiny_model
from tests.helpers import make_context, random_batch

ALL_SITES = ("head", "attn_out", "mlp_out", "resid_pre")


def test_atp_star_without_fixes_equals_atp(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(3, 6, seed=11), sites=ALL_SITES)
    atp = make_method({"name": "atp"}).estimate(ctx).estimates
    out = make_method({"name": "atp_star", "qk_fix": False, "graddrop": False}).estimate(ctx)
    assert torch.equal(out.estimates, atp)
    assert out.columns == {}
    # the QK fix moves head components only
    fixed = make_method({"name": "atp_star"}).estimate(ctx).estimates
    heads = torch.tensor([c.site == "head" for c in ctx.components])
    assert torch.equal(fixed[~heads], atp[~heads])
    assert (fixed[heads] - atp[heads]).abs().max() > 1e-8


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_qk_fixed_delta_is_the_sum_of_single_query_key_and_value_patches(tiny_models, family):
    # D = (all values patched) + sum_t (query t alone patched) + sum_s (key s alone patched),
    # each measured at hook_z by a real forward pass (llama: grouped keys and values, rotary).
    batch = random_batch(2, 5, seed=12)
    ctx, _ = make_context(tiny_models[family], batch, sites=("head",))
    layer = 1
    q, k, v, z = (f"blocks.{layer}.attn.hook_{kind}" for kind in ("q", "k", "v", "z"))
    _, source = collect_activations(ctx, ctx.source_tokens, [q, k, v])
    _, base = collect_activations(ctx, ctx.base_tokens, [z])
    fixed = qk_fixed_deltas(ctx, [layer], base, source)[z]

    def z_change(name, pos):
        def hook(act, hook):
            act = act.clone()
            index = slice(None) if pos is None else pos
            act[:, index] = source[name][:, index]
            return act

        return ctx.model.cache(ctx.base_tokens, [z], [(name, hook)])[1][z] - base[z]

    reference = z_change(v, None)
    for pos in range(batch.seq_len):
        reference = reference + z_change(q, pos) + z_change(k, pos)
    # float64 throughout for gpt2; HF's llama attention takes its softmax in float32
    tol = 1e-12 if family == "gpt2" else 1e-6
    torch.testing.assert_close(fixed, reference, rtol=0, atol=tol * reference.abs().max().item())


def single_key_model(folder):
    """A 1-layer GPT-2 whose head outputs reach the metric linearly and whose queries and values
    ignore the token (they read only position directions), so a token change moves keys only.

    LayerNorms are affine (huge epsilon, weights scaled up, as in test_atp.py), the MLP is zeroed
    (its output is a constant), token embeddings live in dims 16..31 with zero mean, position
    embeddings in dims 0..15, W_Q and W_V ignore dims 16..31, and keys are scaled up so the
    attention saturates.
    """
    from transformers import GPT2LMHeadModel

    build_tiny_model(folder, "gpt2", n_layer=1, layer_norm_epsilon=1e12)
    model = GPT2LMHeadModel.from_pretrained(folder)
    block = model.transformer.h[0]
    with torch.no_grad():
        for name, param in model.named_parameters():
            if (".ln_" in name or name.startswith("transformer.ln_f")) and name.endswith("weight"):
                param.mul_(1e6)
        block.mlp.c_fc.weight.zero_()
        block.mlp.c_fc.bias.zero_()
        wte, wpe = model.transformer.wte.weight, model.transformer.wpe.weight
        wte[:, :16] = 0
        wte[:, 16:] -= wte[:, 16:].mean(dim=1, keepdim=True)
        wpe[:, 16:] = 0
        wte.mul_(100.0)
        wpe.mul_(100.0)
        qkv = block.attn.c_attn.weight  # [d_model, 3 d_model]: q | k | v columns
        qkv[16:, :32] = 0
        qkv[16:, 64:] = 0
        qkv[:, 32:64] *= 3.0
    model.save_pretrained(folder)
    return folder


def test_qk_fix_is_exact_when_one_key_moves_and_the_rest_is_linear(tmp_path):
    folder = single_key_model(tmp_path / "single_key")
    batch = random_batch(8, 6, seed=3)
    batch.corrupt = batch.clean.clone()  # corrupt differs at one position only
    batch.corrupt[:, 3] = torch.randint(3, 64, (8,), generator=torch.Generator().manual_seed(1))
    ctx, _ = make_context(folder, batch, sites=("head",))
    names = [f"blocks.0.attn.hook_{kind}" for kind in ("q", "k", "v")]
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    _, base, grads = metric_gradients(ctx, ctx.base_tokens, names)
    change = {name: source[name] - base[name] for name in names}
    assert change[names[1]].abs().max() > 1.0  # the keys move ...
    assert max(change[n].abs().max().item() for n in (names[0], names[2])) < 1e-6  # q, v don't

    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates
    fixed = make_method({"name": "atp_star"}).estimate(ctx).estimates
    # AtP through the head's queries, keys and values: linear through the softmax
    per_head = sum((change[n] * grads[n]).sum(dim=(0, 1, 3)) for n in names)  # [head]
    linear = per_head[[c.head for c in ctx.components]]
    scale = truth.abs().max().item()
    fixed_error = (fixed - truth).abs().max().item()
    linear_error = (linear.double() - truth).abs().max().item()
    assert scale > 0.1
    assert fixed_error < 1e-7 * scale  # exact up to the LayerNorms' 1e-12 non-affinity
    assert linear_error > 0.5 * scale  # saturated softmax: linearising it fails ...
    assert linear_error > 1e5 * fixed_error  # ... by a factor of about 1e9 here
    # AtP on hook_z is exact here too: it uses the exact z(source), whose pattern change is
    # already exact; the QK fix matters against linearising through queries and keys.
    atp = make_method({"name": "atp"}).estimate(ctx).estimates
    assert (atp - truth).abs().max().item() < 1e-7 * scale


@pytest.mark.parametrize("qk_fix", [True, False])
def test_patching_the_base_with_itself_gives_zero(tiny_gpt2, qk_fix):
    batch = random_batch(3, 6, seed=13)
    batch.corrupt = batch.clean.clone()
    ctx, _ = make_context(tiny_gpt2, batch, sites=ALL_SITES, positions="each")
    out = make_method({"name": "atp_star", "qk_fix": qk_fix, "graddrop": True}).estimate(ctx)
    assert out.estimates.abs().max() < 1e-12
    assert out.columns["graddrop_score"].abs().max() < 1e-12


def dropped_reference(ctx, deltas, layer):
    """GD_layer(c) with one plain backward per layer: attn_out and mlp_out of the block detached
    (GPT-2 blocks are sequential, so that is the block's whole residual contribution)."""
    names = list(deltas)
    dropped = {f"blocks.{layer}.hook_attn_out", f"blocks.{layer}.hook_mlp_out"}
    eps = {}

    def make_hook(name):
        def hook(act, hook):
            if name in names:
                eps[name] = torch.zeros_like(act, requires_grad=True)
                act = act + eps[name]
            return act.detach() if name in dropped else act

        return hook

    hooks = [(name, make_hook(name)) for name in dict.fromkeys(names + sorted(dropped))]
    with torch.enable_grad():
        logits = ctx.model.run(ctx.base_tokens, hooks)
        metric = per_prompt_metric(logits, ctx.batch, ctx.metric).mean()
        grads = torch.autograd.grad(metric, [eps[n] for n in names], allow_unused=True)
    products = {
        n: deltas[n] * (torch.zeros_like(deltas[n]) if g is None else g)
        for n, g in zip(names, grads, strict=True)
    }
    return reduce_per_component(products, ctx.components).double()


@pytest.mark.parametrize("batch_size", [64, 4])
def test_graddrop_matches_a_per_layer_reference(tiny_gpt2, batch_size):
    ctx, _ = make_context(
        tiny_gpt2, random_batch(3, 6, seed=14), sites=ALL_SITES, batch_size=batch_size
    )
    names = site_names(ctx.components)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    _, base = collect_activations(ctx, ctx.base_tokens, names)
    deltas = {name: source[name] - base[name] for name in names}
    per_layer = graddrop_estimates(ctx, ctx.components, deltas)
    n_layers = ctx.model.shape.n_layers
    for layer in range(n_layers):
        reference = dropped_reference(ctx, deltas, layer)
        torch.testing.assert_close(per_layer[layer], reference, rtol=1e-9, atol=1e-12)
    # upstream blocks do not change a component's gradient; its own block carries all of it
    atp = make_method({"name": "atp"}).estimate(ctx).estimates
    for index, c in enumerate(ctx.components):
        for layer in range(c.layer):
            assert per_layer[layer, index].item() == pytest.approx(atp[index].item(), abs=1e-12)
        if c.site != "resid_pre":
            assert per_layer[c.layer, index].item() == 0.0
    out = make_method({"name": "atp_star", "qk_fix": False, "graddrop": True}).estimate(ctx)
    expected = per_layer.abs().sum(dim=0) / (n_layers - 1)
    torch.testing.assert_close(out.columns["graddrop_score"], expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.estimates, atp, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"qk_fix": "yes"}, "option qk_fix of method 'atp_star' must be true or false, got 'yes'"),
        ({"graddrop": 1}, "option graddrop of method 'atp_star' must be true or false, got 1"),
        ({"qk_fixx": True}, "unknown option 'qk_fixx' for method 'atp_star'; accepted: graddrop"),
    ],
)
def test_bad_options_are_one_line_errors(options, needle):
    with pytest.raises(HarnessError) as info:
        make_method({"name": "atp_star", **options})
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert "accepted: " in message


def test_cost_is_counted(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=15), sites=("head", "mlp_out"))
    make_method({"name": "atp_star", "graddrop": True}).estimate(ctx)
    # source, base (+ backward), base scores, one patched pass, one GradDrop pass (+ backward)
    assert ctx.cost.as_dict() == {
        "n_forward": 5,
        "n_backward": 2,
        "n_hvp": 0,
        "n_sequences": 4 * (1 + 1 + 1 + 3 + 3),
    }
