"""Integrated Hessians along each component's own path: the component's self-interaction.

Estimates: Delta_c through the Integrated Hessians self-interaction of component c taken as one
feature on its own patching path. With f_c(t) = L(base | a_c <- a_c(base) + t d_c) and
d_c = a_c(source) - a_c(base) (see :mod:`harness.second_order`), the Integrated Hessians
self-interaction Gamma_ii (Janizek et al. 2021) of a single feature, baseline t = 0 and input
t = 1, with the derivatives in t already scaled by d_c (f_c' = g_c . d_c, f_c'' = d_c^T H_c d_c),
is

    Gamma_cc = int_0^1 int_0^1 [f_c'(a b) + a b f_c''(a b)] da db
             = int_0^1 (-ln u) [f_c'(u) + u f_c''(u)] du          (u = a b)

a gradient term int (-ln u) f_c'(u) du plus a Hessian term int (-ln u) u f_c''(u) du. Since
f'(u) + u f''(u) = d/du [u f'(u)], integrating by parts gives Gamma_cc = int_0^1 f_c'(u) du =
f_c(1) - f_c(0): for one feature the self-interaction equals Integrated Gradients along the same
path (IH's completeness, sum_j Gamma_ij = IG_i, with a single j) and both equal the true effect.
The estimate therefore differs from Delta_c only by quadrature error: the integral is computed
with the ``steps``-point Gauss rule for the weight -ln u on [0, 1], exact when u f_c'(u) is a
polynomial of degree <= 2 * steps (so one step is exact for a quadratic f_c). On the joint path
of many features the self-interaction is not the IG attribution (IG_i also holds the
cross terms Gamma_ij); only c moves here, so no cross terms exist.
Source: Janizek, Sturmfels & Lee 2021, "Explaining Explanations: Axiomatic Feature Interactions
for Deep Networks" (JMLR 22); f_c' and f_c'' come from
:func:`harness.second_order.path_derivatives`.
Sign: estimate of L(base | a_c <- a_c(source)) - L(base) (noising: base = clean, source =
corrupt; see :mod:`harness.context`).
Cost: two unpatched forward passes, then ``steps`` derivative evaluations per component, packed
as ceil(steps * n_components * n_prompts / batch_size) passes, each one forward, one backward
and one Hessian-vector product.
Proved by: tests/methods/test_integrated_hessians.py (the Gauss rule integrates -ln u u^k
exactly; the method equals the formula evaluated from finite-difference derivatives; it matches
activation patching; a quadratic path is exact with one step; source == base gives zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.config import Range, bounded
from harness.context import AttributionContext
from harness.cost import PER_PATH_POINT, CostEstimate, per_component_cost
from harness.methods.base import Method, MethodOutput
from harness.patching import collect_activations, site_names
from harness.second_order import path_derivatives_at

MAX_STEPS = 200
"""Largest Gauss rule built in float64 (the modified moments underflow beyond about 250)."""


def log_weight_gauss_rule(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights (float64 [steps]) of the Gauss rule for int_0^1 -ln(u) phi(u) du.

    Exact for polynomials phi of degree <= 2 * steps - 1; the weights sum to 1. Built by
    Gautschi's modified Chebyshev algorithm from the moments of the shifted Legendre
    polynomials, int_0^1 -ln(u) P*_k(u) du = (-1)^k / (k (k + 1)) (k >= 1), then Golub-Welsch.
    """
    size = 2 * steps
    a = [0.5] * size  # monic shifted Legendre recurrence p_{k+1} = (u - a_k) p_k - b_k p_{k-1}
    b = [0.0] + [k * k / (4.0 * (4.0 * k * k - 1.0)) for k in range(1, size)]
    moments, lead = [1.0], 1.0
    for k in range(1, size):
        lead *= k / (2.0 * (2 * k - 1))  # (k!)^2 / (2k)!, the monic scaling of P*_k
        moments.append((-1) ** k / (k * (k + 1)) * lead)
    alpha, beta = [a[0] + moments[1] / moments[0]], [moments[0]]
    older, old = [0.0] * (size + 1), moments + [0.0]
    for k in range(1, steps):
        new = [0.0] * (size + 1)
        for j in range(k, size - k):
            new[j] = (
                old[j + 1]
                - (alpha[k - 1] - a[j]) * old[j]
                - beta[k - 1] * older[j]
                + b[j] * old[j - 1]
            )
        alpha.append(a[k] + new[k + 1] / new[k] - old[k] / old[k - 1])
        beta.append(new[k] / old[k - 1])
        older, old = old, new
    off = torch.tensor(beta[1:], dtype=torch.float64).sqrt()
    jacobi = torch.diag(torch.tensor(alpha, dtype=torch.float64))
    jacobi = jacobi + torch.diag(off, 1) + torch.diag(off, -1)
    nodes, vectors = torch.linalg.eigh(jacobi)
    return nodes, beta[0] * vectors[0] ** 2


def self_interaction(
    first: torch.Tensor, second: torch.Tensor, nodes: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient and Hessian terms of Gamma_cc from f_c'(u_j), f_c''(u_j) ([steps, n_components])
    at the rule's nodes u_j: sum_j w_j f'(u_j) and sum_j w_j u_j f''(u_j), each [n_components]."""
    w = weights.view(-1, 1)
    return (w * first).sum(dim=0), (w * nodes.view(-1, 1) * second).sum(dim=0)


class IntegratedHessians(Method):
    """Integrated Hessians self-interaction of each component on its own patching path."""

    @dataclass(frozen=True)
    class Options:
        steps: int = bounded(32, Range(lo=1, hi=MAX_STEPS, integer=True))

    bound = None  # a weighted quadrature of f' and f'': neither f'(0) nor the HVP estimate
    grows_with_components = True  # ``steps`` path points per component

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate:
        steps = self.config["steps"]
        cost = per_component_cost(len(ctx.components), steps, PER_PATH_POINT)
        return CostEstimate(cost, f"{steps} forward/backward/HVP points per component")

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        steps = int(self.config["steps"])
        names = site_names(ctx.components)
        _, base = collect_activations(ctx, ctx.base_tokens, names)
        _, source = collect_activations(ctx, ctx.source_tokens, names)
        nodes, weights = log_weight_gauss_rule(steps)
        # one entry per (node, component): every evaluation packs into the same batched passes
        first, second = path_derivatives_at(
            ctx, ctx.components, base, source, nodes, desc="integrated hessians"
        )
        gradient_term, hessian_term = self_interaction(first, second, nodes, weights)
        return MethodOutput(
            estimates=gradient_term + hessian_term,
            columns={"ih_gradient_term": gradient_term, "ih_hessian_term": hessian_term},
        )
