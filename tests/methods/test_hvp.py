"""HVP: the second-order term is f_c''(0) / 2, exact for a quadratic; shared == exact when each
site holds one component; nothing moves when base == source."""

from __future__ import annotations

import pytest
import torch

from harness.errors import HarnessError
from harness.methods.base import make_method
from harness.patching import collect_activations, site_names
from tests.conftest import build_tiny_model
from tests.helpers import make_context, path_metric, quadratic_path_context, random_batch

ALL_SITES = ("head", "attn_out", "mlp_out", "resid_pre")


@pytest.mark.parametrize(("family", "direction"), [("gpt2", "noising"), ("neox", "denoising")])
def test_second_order_term_equals_finite_difference(tiny_models, family, direction):
    batch = random_batch(3, 6, seed=11)
    ctx, _ = make_context(tiny_models[family], batch, sites=ALL_SITES, direction=direction)
    picks = [c for c in ctx.components if c.head in (-1, 1)]
    assert len({c.site for c in picks}) == 4 and len({c.layer for c in picks}) == 3
    ctx.components = picks
    out = make_method({"name": "hvp"}).estimate(ctx)
    names = site_names(picks)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    _, base = collect_activations(ctx, ctx.base_tokens, names)
    h = 1e-3
    atp = make_method({"name": "atp"}).estimate(ctx).estimates
    torch.testing.assert_close(out.columns["first_order"], atp, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.estimates, atp + out.columns["second_order"])
    f0 = path_metric(ctx, picks[0], source, base, 0.0)
    large = 0
    for i, component in enumerate(picks):
        f = [path_metric(ctx, component, source, base, t) for t in (-h, h)]
        fd = (f[0] - 2 * f0 + f[1]) / h**2
        second = 2 * out.columns["second_order"][i].item()
        assert second == pytest.approx(fd, rel=1e-4, abs=1e-7), component.id
        large += abs(fd) > 1e-3
    assert large >= len(picks) // 2, "curvatures too small for a meaningful check"


def test_hvp_is_exact_for_a_quadratic(tmp_path, monkeypatch):
    ctx = quadratic_path_context(tmp_path, monkeypatch)  # f_c(t) exactly quadratic in t
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates
    atp_error = (make_method({"name": "atp"}).estimate(ctx).estimates - truth).abs().max()
    assert atp_error > 1e-6 * truth.abs().max(), "no curvature: the check would be vacuous"
    for cfg in ({"name": "hvp"}, {"name": "ms_hvp", "steps": 3}):
        estimates = make_method(cfg).estimate(ctx).estimates
        assert (estimates - truth).abs().max() < 1e-8 * atp_error, cfg


def test_second_order_term_vanishes_where_the_metric_is_linear(tmp_path):
    # test_atp.py's trick: a huge layer-norm epsilon makes the metric linear in the last MLP
    # output, so the curvature term is round-off and both modes equal activation patching.
    from transformers import GPT2LMHeadModel

    folder = build_tiny_model(tmp_path / "linear", "gpt2", layer_norm_epsilon=1e12)
    model = GPT2LMHeadModel.from_pretrained(folder)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if (".ln_" in name or name.startswith("transformer.ln_f")) and name.endswith("weight"):
                param.mul_(1e6)
    model.save_pretrained(folder)
    ctx, _ = make_context(folder, random_batch(4, 6, seed=5), sites=("mlp_out",), positions="each")
    ctx.components = [c for c in ctx.components if c.layer == 2]
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates
    for mode in ("exact", "shared"):
        out = make_method({"name": "hvp", "mode": mode}).estimate(ctx)
        assert out.columns["second_order"].abs().max() < 1e-8 * truth.abs().max(), mode
        torch.testing.assert_close(out.estimates, truth, rtol=1e-6, atol=1e-6 * truth.abs().max())


def test_shared_equals_exact_with_one_component_per_site(tiny_gpt2):
    batch = random_batch(4, 6, seed=12)
    ctx, _ = make_context(tiny_gpt2, batch, sites=("attn_out", "mlp_out", "resid_pre"))
    exact = make_method({"name": "hvp"}).estimate(ctx)
    ctx.cost.__init__()
    shared = make_method({"name": "hvp", "mode": "shared"}).estimate(ctx)
    assert (ctx.cost.n_backward, ctx.cost.n_hvp) == (1, len(site_names(ctx.components)))
    assert exact.columns["second_order"].abs().max() > 1e-4
    torch.testing.assert_close(shared.estimates, exact.estimates, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(shared.columns, exact.columns, rtol=1e-9, atol=1e-12)
    # Heads share a site: the shared HVP adds cross terms between heads of one layer.
    ctx, _ = make_context(tiny_gpt2, batch, sites=("head",))
    exact = make_method({"name": "hvp"}).estimate(ctx).columns["second_order"]
    shared = make_method({"name": "hvp", "mode": "shared"}).estimate(ctx).columns["second_order"]
    assert (shared - exact).abs().max() > 0.1 * exact.abs().max()


@pytest.mark.parametrize("mode", ["exact", "shared"])
def test_patching_own_activations_gives_zero(tiny_gpt2, mode):
    batch = random_batch(3, 6, seed=13)
    batch.corrupt = batch.clean.clone()
    ctx, _ = make_context(tiny_gpt2, batch, sites=ALL_SITES, batch_size=1024)
    out = make_method({"name": "hvp", "mode": mode}).estimate(ctx)
    assert out.estimates.abs().max() == 0


def test_bad_mode_is_a_one_line_error():
    with pytest.raises(HarnessError) as info:
        make_method({"name": "hvp", "mode": "exakt"})
    message = str(info.value)
    assert "\n" not in message and "'exakt'" in message and "exact, shared" in message
