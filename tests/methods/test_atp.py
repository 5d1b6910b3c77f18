"""AtP: equal to the derivative of the patched metric, exact where the metric is linear."""

from __future__ import annotations

import pytest
import torch

from harness.methods.base import make_method
from harness.patching import collect_activations, site_names
from tests.conftest import build_tiny_model
from tests.helpers import make_context, path_metric, random_batch


@pytest.mark.parametrize("family", ["gpt2", "neox"])
@pytest.mark.parametrize("direction", ["noising", "denoising"])
def test_atp_equals_finite_difference_derivative(tiny_models, family, direction):
    batch = random_batch(3, 6, seed=4)
    ctx, _ = make_context(
        tiny_models[family],
        batch,
        direction=direction,
        sites=("head", "attn_out", "mlp_out", "resid_pre"),
        positions="each",
    )
    estimates = make_method({"name": "atp"}).estimate(ctx).estimates
    names = site_names(ctx.components)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    _, base = collect_activations(ctx, ctx.base_tokens, names)
    picks = [c for c in ctx.components if c.pos in (1, 5) and c.head in (-1, 2)]
    picks = picks[:: max(1, len(picks) // 12)]
    assert {c.site for c in picks} == {"head", "attn_out", "mlp_out", "resid_pre"}
    assert len({c.layer for c in picks}) == 3
    h = 1e-4
    checked = 0
    for component in picks:
        fd = (
            path_metric(ctx, component, source, base, h)
            - path_metric(ctx, component, source, base, -h)
        ) / (2 * h)
        estimate = estimates[ctx.components.index(component)].item()
        assert estimate == pytest.approx(fd, rel=1e-4, abs=1e-9), component.id
        checked += abs(fd) > 1e-4
    assert checked >= len(picks) // 2, "derivatives too small for a meaningful check"


def test_atp_is_exact_when_metric_is_linear_in_the_activation(tmp_path):
    # A huge layer-norm epsilon makes every LayerNorm affine, (x - mean(x)) / sqrt(eps); its
    # weights are scaled by sqrt(eps) to keep magnitudes. The metric is then linear in the last
    # block's MLP output (only the final norm and the unembedding lie downstream), so AtP equals
    # activation patching there, while attention and GELU keep earlier layers non-linear.
    from transformers import GPT2LMHeadModel

    folder = build_tiny_model(tmp_path / "linear", "gpt2", layer_norm_epsilon=1e12)
    model = GPT2LMHeadModel.from_pretrained(folder)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".ln_" in name or name.startswith("transformer.ln_f"):
                if name.endswith("weight"):
                    param.mul_(1e6)
    model.save_pretrained(folder)
    batch = random_batch(4, 6, seed=5)
    ctx, _ = make_context(folder, batch, sites=("mlp_out",), positions="each")
    last = [c for c in ctx.components if c.layer == 2]
    ctx.components = last
    atp = make_method({"name": "atp"}).estimate(ctx).estimates
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates
    assert truth.abs().max() > 0
    torch.testing.assert_close(atp, truth, rtol=1e-6, atol=truth.abs().max().item() * 1e-6)
    # ... and it is not exact where the network downstream is non-linear (an earlier layer).
    ctx.components = [
        c for c in make_context(folder, batch, sites=("head",))[0].components if c.layer == 0
    ]
    atp0 = make_method({"name": "atp"}).estimate(ctx).estimates
    truth0 = make_method({"name": "actpatch"}).estimate(ctx).estimates
    # (far above float64 round-off, which the linear case above meets)
    assert (atp0 - truth0).abs().max() > 1e-6 * truth0.abs().max()


def test_atp_cost_is_one_backward(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=6), sites=("head", "mlp_out"))
    make_method({"name": "atp"}).estimate(ctx)
    assert ctx.cost.n_backward == 1 and ctx.cost.n_forward == 2
