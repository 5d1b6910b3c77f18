"""AtP plus the Hessian-vector-product (second-order Taylor) correction.

Estimates: Delta_c ~ f_c'(0) + f_c''(0) / 2 = g_c . d_c + d_c^T H_c d_c / 2, with
f_c(t) = L(base | a_c <- a_c + t d_c), d_c = a_c(source) - a_c(base), g_c = dL/da_c and H_c the
Hessian of L with respect to a_c on the base run, everything downstream recomputed. Modes:

- ``exact`` (default): each component's own Hessian block, f_c''(0) along its own path
  (:func:`harness.second_order.path_derivatives`, many components per batched pass).
- ``shared``: one HVP per site with v = d_s, the whole site's perturbation; component c reads
  d_c^T (H_ss d_s)_c, which adds the cross terms d_c^T H_cc' d_c' of the other components c' of
  the same site. Equal to ``exact`` where a site holds a single component.

Columns: ``first_order`` (g_c . d_c) and ``second_order`` (the halved quadratic term).
Source: the second-order Taylor expansion of attribution patching (Nanda 2023; Syed et al. 2023;
Kramar et al. 2024, AtP*, whose first-order failure modes the curvature term measures).
Sign: that of the true effect L(patched) - L(base) (noising: base clean, source corrupt).
Cost: one source forward, then ``exact``: one base forward and, per prompt chunk, one forward
and one backward (with create_graph) shared by every component and one vectorized HVP per as
many components as the memory budget allows (:func:`harness.budget.chunk_plan`;
:func:`harness.second_order.path_derivatives` at t = 0); ``shared``: per prompt chunk one
forward, one backward (with create_graph) and one HVP per site.
Proved by: tests/methods/test_hvp.py (second-order term equal to a central finite-difference
f_c''(0) in float64; equal to activation patching where f_c is quadratic, and its curvature term
zero where the metric is linear; shared == exact with one component per site; zero when
base == source).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.components import group_by_hook, reduce_per_component
from harness.config import one_of
from harness.context import AttributionContext
from harness.cost import AT_ZERO, BACKWARD, FORWARD, HVP, CostEstimate, per_component_cost
from harness.methods.base import Method, MethodOutput
from harness.patching import Activations, collect_activations, site_names
from harness.second_order import component_owners, path_derivatives
from harness.task_metric import per_prompt_metric
from harness.types import PathEnds

MODES = ("exact", "shared")


class HessianVectorProduct(Method):
    """AtP with the per-component (``exact``) or per-site (``shared``) second-order term."""

    @dataclass(frozen=True)
    class Options:
        mode: str = one_of("exact", MODES)

    bound = "hvp"  # mode exact: the estimate is f'(0) + f''(0) / 2, the HVP interval's centre

    def error_bound(self) -> str | None:
        return "hvp" if self.options.mode == "exact" else None  # shared adds cross terms

    grows_with_components = True  # mode exact: an HVP per component

    def cost_grows(self) -> bool:
        return self.options.mode == "exact"  # shared: one HVP per site

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate:
        if self.config["mode"] == "shared":
            sites = len(site_names(ctx.components))
            cost = 2 * FORWARD + BACKWARD + sites * HVP
            return CostEstimate(cost, f"2 forwards, 1 backward and {sites} HVPs")
        cost = per_component_cost(len(ctx.components), 1, AT_ZERO) + FORWARD + BACKWARD
        return CostEstimate(cost, "1 forward and backward, and 1 HVP per component")

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        names = site_names(ctx.components)
        _, source = collect_activations(ctx, ctx.source_tokens, names)
        ends = None
        if self.config["mode"] == "exact":
            _, base = collect_activations(ctx, ctx.base_tokens, names)
            first, curvature = path_derivatives(ctx, ctx.components, base, source, t=0.0)
            second = curvature / 2
            ends = PathEnds(first0=first, second0=curvature)
        else:
            first, second = shared_terms(ctx, names, source)
        return MethodOutput(
            estimates=first + second,
            columns={"first_order": first, "second_order": second},
            path_ends=ends,
        )


def shared_terms(
    ctx: AttributionContext,
    names: list[str],
    source: Activations,
    signs: torch.Tensor | None = None,
    joint: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per component g_c . d_c and a halved second-order term, float64 [n_components] each.

    ``signs`` None (mode ``shared``): one HVP per site with v = d_s, the whole site's
    perturbation; c reads d_c^T (H_ss d_s)_c / 2. ``signs`` [K, n_components] (the weights
    w_kc of ``hvp_probe``): probe k moves v_k = sum_c w_kc d_c, per site (H_ss v_k, K HVPs a
    site) or, with ``joint``, across every site at once (H v_k, K HVPs); c reads
    (1/K) sum_k w_kc d_c^T (H v_k)_c / 2. Per prompt chunk: one forward, one backward (with
    create_graph) and those HVPs.
    """
    n = ctx.batch.n
    probes = 1 if signs is None else len(signs)
    weights = None if signs is None else probe_weights(ctx, names, source, signs)
    firsts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    seconds: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for rows in ctx.prompt_chunks():
        eps: Activations = {}
        base: Activations = {}

        def make_hook(name: str, eps: Activations = eps, base: Activations = base):
            def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
                base[name] = act.detach()
                eps[name] = torch.zeros_like(act, requires_grad=True)
                return act + eps[name]

            return hook

        with torch.enable_grad():
            sub = ctx.batch.select(rows)
            hooks = [(k, make_hook(k)) for k in names]
            logits = ctx.model.run(ctx.base_tokens[rows], hooks, read_pos=sub.last)
            total = per_prompt_metric(logits, sub, ctx.metric).sum() / n
            grads = torch.autograd.grad(total, [eps[k] for k in names], create_graph=True)
            grads = dict(zip(names, grads, strict=True))
            deltas = {k: source[k][rows].to(grads[k].dtype) - base[k] for k in names}
            sums = {k: torch.zeros_like(d) for k, d in deltas.items()}
            for k in range(probes):
                moves = {
                    name: d if weights is None else weights[name][k] * d
                    for name, d in deltas.items()
                }
                for group in [names] if joint else [[name] for name in names]:
                    products = _hessian_vector(grads, eps, moves, group)
                    for name, hv in zip(group, products, strict=True):
                        sums[name] += hv * moves[name]  # w_kc d_c . (H v_k)_c on c's slice
            for name, d in deltas.items():
                firsts[name].append((grads[name].detach() * d).double())
                seconds[name].append(sums[name].double() / (2 * probes))
        ctx.cost.forward(rows.stop - rows.start)
        ctx.cost.n_backward += 1
        ctx.cost.n_hvp += probes * (1 if joint else len(names))
    first = reduce_per_component({k: torch.cat(v) for k, v in firsts.items()}, ctx.components)
    second = reduce_per_component({k: torch.cat(v) for k, v in seconds.items()}, ctx.components)
    return first.cpu(), second.cpu()


def _hessian_vector(
    grads: Activations, eps: Activations, moves: Activations, group: list[str]
) -> list[torch.Tensor]:
    """(H v)_s at every site s of ``group``, v = ``moves`` on the group's sites (0 elsewhere):
    one second backward of sum_s (g_s . v_s) (zeros where nothing depends on the sites)."""
    live = [name for name in group if grads[name].requires_grad]
    products = [None] * len(group)
    if live:
        inner = sum((grads[name] * moves[name]).sum() for name in live)
        products = torch.autograd.grad(
            inner, [eps[name] for name in group], retain_graph=True, allow_unused=True
        )
    return [
        torch.zeros_like(moves[name]) if hv is None else hv
        for name, hv in zip(group, products, strict=True)
    ]


def probe_weights(
    ctx: AttributionContext, names: list[str], source: Activations, signs: torch.Tensor
) -> Activations:
    """Per site, [K, *activation shape without batch] in the model's dtype: ``signs[k, c]``
    (``signs`` [K, n_components]) on component c's slice, 0 on elements no component owns
    (:func:`harness.second_order.component_owners`)."""
    groups = group_by_hook(ctx.components)
    out: Activations = {}
    for name in names:
        idx = groups[name]
        owner = component_owners(ctx.components, idx, source[name].shape[1:])
        padded = torch.cat([signs[:, idx], signs.new_zeros(len(signs), 1)], dim=1)
        out[name] = padded[:, owner].to(device=ctx.model.device, dtype=ctx.model.dtype)
    return out
