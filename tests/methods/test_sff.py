"""Screen-Flag-Fix: the fix replaces exactly the flagged AtP estimates."""

from __future__ import annotations

import math

import pytest
import torch

from harness.context import CostCounter
from harness.diagnostics import reliability_scores
from harness.errors import HarnessError
from harness.methods.base import make_method
from harness.patching import collect_activations, site_names
from harness.second_order import path_derivatives
from tests.helpers import make_context, random_batch


@pytest.fixture()
def ctx(tiny_gpt2):
    context, _ = make_context(
        tiny_gpt2, random_batch(4, 6, seed=21), sites=("head", "mlp_out"), batch_size=16
    )
    return context


def sff(ctx, **options):
    return make_method({"name": "sff", **options}).estimate(ctx)


def test_fix_everything_with_actpatch_is_the_truth(ctx):
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates
    out = sff(ctx, flag_fraction=1.0, fix="actpatch", score="delta_norm")
    assert out.columns["flagged"].all()
    torch.testing.assert_close(out.estimates, truth, rtol=0, atol=1e-12)


def test_fix_nothing_is_atp_and_partial_fix_touches_only_flagged(ctx):
    atp = make_method({"name": "atp"}).estimate(ctx).estimates
    none = sff(ctx, flag_fraction=0.0)
    assert not none.columns["flagged"].any()
    torch.testing.assert_close(none.estimates, atp, rtol=1e-12, atol=1e-15)
    part = sff(ctx, flag_fraction=0.25, fix="hvp", score="grad_disagreement")
    flags = part.columns["flagged"]
    assert int(flags.sum()) == math.ceil(0.25 * len(ctx.components))
    torch.testing.assert_close(part.estimates[~flags], atp[~flags], rtol=1e-12, atol=1e-15)
    names = site_names(ctx.components)
    _, base = collect_activations(ctx, ctx.base_tokens, names)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    first, second = path_derivatives(ctx, ctx.components, base, source)
    torch.testing.assert_close(part.estimates[flags], (first + second / 2)[flags])
    # the flagged ones are those with the largest score
    score = part.columns["sff_score"]
    assert score[flags].min() >= score[~flags].max()


@pytest.mark.parametrize("score", ["abs_atp", "delta_norm", "grad_disagreement", "curvature_ratio"])
def test_every_reliability_score_flags_and_abs_atp_the_largest_estimates(ctx, score):
    out = sff(ctx, flag_fraction=0.25, fix="actpatch", score=score)
    flags, atp = out.columns["flagged"], out.columns["atp_estimate"]
    assert int(flags.sum()) == math.ceil(0.25 * len(ctx.components))
    expected = reliability_scores(ctx, [score])[score]
    torch.testing.assert_close(out.columns["sff_score"], expected, rtol=1e-9, atol=1e-12)
    if score == "abs_atp":  # |AtP| itself, at no pass beyond AtP's
        torch.testing.assert_close(out.columns["sff_score"], atp.abs(), rtol=0, atol=0)
        assert atp.abs()[flags].min() >= atp.abs()[~flags].max()
        counted = ctx.with_cost(CostCounter())
        sff(counted, flag_fraction=0.0, score=score)
        assert (counted.cost.n_forward, counted.cost.n_backward) == (2, 1)


def test_ms_hvp_fix_and_threshold(ctx):
    out = sff(ctx, threshold=1.0, fix="ms_hvp", steps=16, score="curvature_ratio")
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates
    flags = out.columns["flagged"]
    assert flags.any()
    assert (out.estimates[flags] - truth[flags]).abs().max() < 1e-2 * truth.abs().max()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"fix": "magic"}, "unknown sff fix 'magic'"),
        ({"score": "norm"}, "unknown sff score 'norm'"),
        ({"flag_fraction": 2}, "flag_fraction must be in [0, 1], got 2"),
        ({"steps": 0}, "steps must be an integer >= 1, got 0"),
        ({"fixx": "hvp"}, "unknown option 'fixx' for method 'sff'"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(HarnessError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_method({"name": "sff", **options})
