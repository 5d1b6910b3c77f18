"""Integrated Hessians self-interaction: the Gauss rule, the formula, and the true effect."""

from __future__ import annotations

import pytest
import torch

from harness.errors import HarnessError
from harness.methods.base import make_method
from harness.methods.integrated_hessians import (
    MAX_STEPS,
    log_weight_gauss_rule,
    self_interaction,
)
from harness.patching import collect_activations, site_names
from tests.helpers import make_context, path_metric, random_batch


@pytest.mark.parametrize("steps", [1, 2, 5, 32, MAX_STEPS])
def test_gauss_rule_integrates_log_weighted_monomials_exactly(steps):
    nodes, weights = log_weight_gauss_rule(steps)
    assert nodes.shape == weights.shape == (steps,)
    assert 0 < nodes.min() and nodes.max() < 1 and (weights > 0).all()
    for k in range(2 * steps):  # int_0^1 -ln(u) u^k du = 1 / (k + 1)^2
        assert (weights * nodes**k).sum().item() == pytest.approx(1 / (k + 1) ** 2, rel=1e-11)


def test_self_interaction_is_the_double_integral_and_the_total_change():
    # f(t) = sin(3t) + exp(t): the two IH terms against a brute-force midpoint double integral
    # over (a, b), and their sum against f(1) - f(0)
    f = lambda t: torch.sin(3 * t) + torch.exp(t)  # noqa: E731
    df = lambda t: 3 * torch.cos(3 * t) + torch.exp(t)  # noqa: E731
    d2f = lambda t: -9 * torch.sin(3 * t) + torch.exp(t)  # noqa: E731
    nodes, weights = log_weight_gauss_rule(16)
    grad_term, hess_term = self_interaction(df(nodes)[:, None], d2f(nodes)[:, None], nodes, weights)
    k = 1500
    grid = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    u = grid[:, None] * grid[None, :]
    assert grad_term.item() == pytest.approx(df(u).mean().item(), rel=1e-5)
    assert hess_term.item() == pytest.approx((u * d2f(u)).mean().item(), rel=1e-5)
    one, zero = torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    assert (grad_term + hess_term).item() == pytest.approx((f(one) - f(zero)).item(), rel=1e-12)


def test_quadratic_path_is_exact_with_one_step_and_cubic_with_two():
    # f(t) = c1 t + c2 t^2 + c3 t^3; f(1) - f(0) = c1 + c2 + c3
    c1, c2, c3 = 0.7, -1.3, 2.1
    for steps, cubic in ((1, 0.0), (2, c3)):
        nodes, weights = log_weight_gauss_rule(steps)
        first = c1 + 2 * c2 * nodes + 3 * cubic * nodes**2
        second = 2 * c2 + 6 * cubic * nodes
        g, h = self_interaction(first[:, None], second[:, None], nodes, weights)
        assert (g + h).item() == pytest.approx(c1 + c2 + cubic, rel=1e-13)


def test_method_equals_the_formula_from_finite_difference_derivatives(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(3, 6, seed=21), sites=("head", "mlp_out"))
    ctx.components = [c for c in ctx.components if c.head in (-1, 1)][1:4]
    steps = 2
    out = make_method({"name": "integrated_hessians", "steps": steps}).estimate(ctx)
    names = site_names(ctx.components)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    _, base = collect_activations(ctx, ctx.base_tokens, names)
    nodes, weights = log_weight_gauss_rule(steps)
    h = 1e-3
    for index, component in enumerate(ctx.components):
        f = [
            [path_metric(ctx, component, source, base, u + j * h) for j in (-1, 0, 1)]
            for u in nodes.tolist()
        ]
        first = torch.tensor([(fp - fm) / (2 * h) for fm, _, fp in f], dtype=torch.float64)
        second = torch.tensor([(fp - 2 * f0 + fm) / h**2 for fm, f0, fp in f], dtype=torch.float64)
        g, hess = self_interaction(first[:, None], second[:, None], nodes, weights)
        scale = abs(g.item()) + abs(hess.item())
        assert out.columns["ih_gradient_term"][index].item() == pytest.approx(
            g.item(), abs=1e-5 * scale
        )
        assert out.columns["ih_hessian_term"][index].item() == pytest.approx(
            hess.item(), abs=1e-5 * scale
        )
    torch.testing.assert_close(
        out.estimates, out.columns["ih_gradient_term"] + out.columns["ih_hessian_term"]
    )


def test_method_converges_to_activation_patching(tiny_gpt2):
    ctx, _ = make_context(
        tiny_gpt2, random_batch(2, 5, seed=22), sites=("head", "mlp_out", "resid_pre")
    )
    ctx.components = [c for c in ctx.components if c.head in (-1, 0)]  # 9: head 0, mlp, resid
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates
    atp = make_method({"name": "atp"}).estimate(ctx).estimates
    errors = {}
    for steps in (1, 4, 16):
        ih = make_method({"name": "integrated_hessians", "steps": steps}).estimate(ctx).estimates
        errors[steps] = (ih - truth).abs().max().item()
    scale = truth.abs().max().item()
    assert errors[16] < 1e-9 * scale  # Gamma_cc = f(1) - f(0): only quadrature error remains
    assert errors[16] < errors[4] < errors[1] < (atp - truth).abs().max().item()


def test_patching_the_base_with_itself_gives_zero(tiny_gpt2):
    batch = random_batch(2, 5, seed=23)
    batch.corrupt = batch.clean.clone()
    ctx, _ = make_context(tiny_gpt2, batch, sites=("head", "resid_pre"))
    out = make_method({"name": "integrated_hessians", "steps": 2}).estimate(ctx)
    assert out.estimates.abs().max() == 0


def test_cost_is_counted(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(2, 5, seed=24), sites=("mlp_out",), batch_size=4)
    make_method({"name": "integrated_hessians", "steps": 2}).estimate(ctx)
    # 3 components x 2 nodes = 6 path copies of 2 prompts, 2 copies per pass: 3 passes, after
    # the two unpatched runs and the engine's recorded prefix (a forward and the block loop)
    assert ctx.cost.as_dict() == {
        "n_forward": 2 + 2 + 3,
        "n_backward": 3,
        "n_hvp": 3,
        "n_sequences": 2 * 2 + 2 * 2 + 6 * 2,
    }


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, "32", MAX_STEPS + 1])
def test_bad_steps_are_one_line_errors(steps):
    with pytest.raises(HarnessError) as info:
        make_method({"name": "integrated_hessians", "steps": steps})
    message = str(info.value)
    assert "\n" not in message
    assert f"got {steps!r}" in message and f"integer from 1 to {MAX_STEPS}" in message
