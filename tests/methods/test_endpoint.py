"""End-point rules (trapezoid, cubic Hermite) and the guarded HVP: exact where the path is
quadratic, f'(1) equal to an independent finite difference, the guard's limits (AtP at trust 0,
the HVP where it does not act, a clip of exactly tau |f'(0)|)."""

from __future__ import annotations

import pytest
import torch

from harness.methods.base import make_method
from harness.patching import collect_activations, site_names
from tests.helpers import make_context, path_metric, quadratic_path_context, random_batch


@pytest.fixture(scope="module")
def toy(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(3, 6, seed=31), sites=("head", "mlp_out"))
    ctx.components = [c for c in ctx.components if c.head in (-1, 1)]
    return ctx


def test_end_derivative_equals_a_finite_difference_and_trapezoid_is_its_mean(toy):
    ctx = toy
    out = make_method({"name": "trapezoid"}).estimate(ctx)
    atp = make_method({"name": "atp"}).estimate(ctx).estimates
    torch.testing.assert_close(out.columns["first_order"], atp, rtol=1e-9, atol=1e-12)
    names = site_names(ctx.components)
    _, base = collect_activations(ctx, ctx.base_tokens, names)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    h = 1e-4
    for i, component in enumerate(ctx.components):
        up, down = (path_metric(ctx, component, source, base, 1 + s) for s in (h, -h))
        end = out.columns["first_order_end"][i].item()
        assert end == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-8), component.id
    torch.testing.assert_close(
        out.estimates, (atp + out.columns["first_order_end"]) / 2, rtol=1e-12, atol=0
    )


def test_hermite_is_the_formula_on_the_path_quantities(toy):
    ctx = toy
    hermite = make_method({"name": "hermite"}).estimate(ctx)
    hvp = make_method({"name": "hvp"}).estimate(ctx)
    end = make_method({"name": "trapezoid"}).estimate(ctx).columns["first_order_end"]
    first, half_second = hvp.columns["first_order"], hvp.columns["second_order"]
    expected = first + half_second + (end - first - 2 * half_second) / 3
    torch.testing.assert_close(hermite.estimates, expected, rtol=1e-9, atol=1e-12)
    assert hermite.path_ends.covers(second=True, end=True)  # lent to the diagnostics
    assert (hermite.estimates - hvp.estimates).abs().max() > 1e-4  # the end point matters


def test_guard_limits(toy):
    ctx = toy
    hvp = make_method({"name": "hvp"}).estimate(ctx)
    first, term = hvp.columns["first_order"], hvp.columns["second_order"]
    atp_like = make_method({"name": "hvp_guarded", "trust": 0.0}).estimate(ctx)
    torch.testing.assert_close(atp_like.estimates, first, rtol=0, atol=0)
    wide = make_method({"name": "hvp_guarded", "trust": 1e6}).estimate(ctx)
    torch.testing.assert_close(wide.estimates, hvp.estimates, rtol=1e-12, atol=0)
    assert not wide.columns["clipped"].any()
    tau = float((term.abs() / first.abs()).median())  # about half the components clipped
    guarded = make_method({"name": "hvp_guarded", "trust": tau}).estimate(ctx)
    clipped = guarded.columns["clipped"].bool()
    assert 0 < int(clipped.sum()) < len(clipped)
    expected = torch.where(clipped, first + term.sign() * tau * first.abs(), hvp.estimates)
    torch.testing.assert_close(guarded.estimates, expected, rtol=1e-12, atol=1e-15)


def test_end_point_rules_are_exact_on_a_quadratic_path(tmp_path, monkeypatch):
    ctx = quadratic_path_context(tmp_path, monkeypatch)  # the trapezoid and Hermite are exact
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates
    atp_error = (make_method({"name": "atp"}).estimate(ctx).estimates - truth).abs().max()
    assert atp_error > 1e-6 * truth.abs().max(), "no curvature: the check would be vacuous"
    for slug in ("trapezoid", "hermite"):
        estimates = make_method({"name": slug}).estimate(ctx).estimates
        assert (estimates - truth).abs().max() < 1e-8 * atp_error, slug


def test_path_ends_the_context_holds_cost_no_pass(toy):
    """Where the context holds f'(0), f''(0) and f'(1) (the exact diagnostics' cache), the
    end-point rules take them and make no pass; where one is missing (NaN), they take all."""
    from dataclasses import replace

    from harness.context import CostCounter
    from harness.types import PathEnds

    n = len(toy.components)
    ends = PathEnds(*(torch.linspace(-1, 1, n, dtype=torch.float64) * k for k in (1.0, 2.0, 3.0)))
    held = replace(toy, path_ends=ends, cost=CostCounter())
    hermite = make_method({"name": "hermite"}).estimate(held)
    first0, second0, first1 = ends.first0, ends.second0, ends.first1
    expected = first0 + second0 / 2 + (first1 - first0 - second0) / 3
    torch.testing.assert_close(hermite.estimates, expected, rtol=1e-12, atol=0)
    assert held.cost.as_dict() == CostCounter().as_dict()  # no pass at all
    sub = held.select_components([1, 0])  # a sample keeps its own components' values
    torch.testing.assert_close(sub.path_ends.first1, first1[[1, 0]])
    partial = PathEnds(first0, second0, torch.full((n,), float("nan"), dtype=torch.float64))
    taken = replace(toy, path_ends=partial, cost=CostCounter())
    fresh = make_method({"name": "trapezoid"}).estimate(taken)
    assert taken.cost.n_backward > 0
    assert (fresh.estimates - (first0 + first1) / 2).abs().max() > 1e-3
