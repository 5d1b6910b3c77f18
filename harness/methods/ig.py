"""Integrated Gradients along the patching path, per component or jointly per site.

Estimates: Delta_c ~ integral_0^1 of dL/da_c(path(t)) . d_c dt, d_c = a_c(source) - a_c(base).

- ``path: component`` (default): only c moves, f_c(t) = L(base | a_c <- a_c + t d_c), so the
  integral is f_c(1) - f_c(0), exactly the activation-patching effect in the limit of many
  steps. Evaluated with captum's quadrature rule (points alpha_k, weights w_k) oriented as
  captum's, from the source (alpha = 0) to the base (alpha = 1):
  sum_k w_k f_c'(1 - alpha_k), via :func:`harness.second_order.path_derivatives`.
- ``path: joint``: captum's ``LayerIntegratedGradients`` on the site's hook point, inputs the base
  tokens and baselines the source tokens, so all of a site's activations interpolate together;
  component c gets the layer attribution summed over its slice and the prompts, over n. The
  attributions of a site sum to L(base | whole site <- source) - L(base) (completeness), not to
  the sum of single-component effects. ``convergence_delta`` in the summary is the largest
  completeness gap over sites, measured against that patched run (captum's own
  ``return_convergence_delta`` compares with the unpatched source run, which differs unless the
  site cuts the whole network, e.g. ``resid_pre`` of layer 0). captum rounds its step sizes
  to float32, so joint attributions carry a relative error of about 1e-7 even in float64.

Source: Sundararajan et al. 2017, "Axiomatic attribution for deep networks"; captum
(Kokhlikyan et al. 2020) for the quadrature rules and LayerIntegratedGradients; applied to
components as in Marks et al. 2024 and Hanna et al. 2024 (EAP-IG).
Sign: that of the true effect L(patched) - L(base) (captum attributes F(input) - F(baseline) =
L(base) - L(patched), so the joint attributions are negated).
Cost: ``component``: two unpatched forwards, then K x n_components gradient evaluations packed
as many per pass as the memory budget allows (one forward from the components' layers and one
backward each). ``joint``: per site and prompt chunk two layer-evaluation forwards,
ceil(K / copies) forward+backward (copies per pass from :func:`harness.budget.chunk_plan`)
passes, plus one patched forward for the completeness check; two unpatched forwards in all.
Proved by: tests/methods/test_ig.py (completeness of the joint path; per-component IG converging
to activation patching; sign; zero when base == source).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import LayerIntegratedGradients
from captum.attr._utils.approximation_methods import (
    SUPPORTED_METHODS,
    SUPPORTED_RIEMANN_METHODS,
    approximation_parameters,
)

from harness.budget import chunk_plan
from harness.components import group_by_hook, reduce_per_component
from harness.config import POSITIVE_INT, bounded, one_of
from harness.context import AttributionContext
from harness.cost import BACKWARD, FORWARD, CostEstimate, per_component_cost
from harness.errors import HarnessError
from harness.methods.base import Method, MethodOutput
from harness.methods.ms_hvp import check_steps
from harness.patching import Activations, collect_activations, pass_row_bytes, site_names
from harness.second_order import path_derivatives_at
from harness.task_metric import per_prompt_metric

PATHS = ("component", "joint")


class IntegratedGradients(Method):
    """Integrated Gradients over each component's own path or a site's joint path."""

    @dataclass(frozen=True)
    class Options:
        path: str = one_of("component", PATHS)
        steps: int = bounded(32, POSITIVE_INT)
        integration: str = one_of("gausslegendre", SUPPORTED_METHODS)  # captum's rules

    bound = None  # a quadrature of f' over the path: neither f'(0) nor the HVP estimate
    grows_with_components = True  # path component: K gradients per component

    def cost_grows(self) -> bool:
        return self.options.path == "component"  # joint: K steps per site

    def validate(self) -> None:
        if self.options.integration in SUPPORTED_RIEMANN_METHODS:  # two points or more
            check_steps(self.name, self.options.steps, 2)

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate:
        steps, step = self.config["steps"], FORWARD + BACKWARD
        if self.config["path"] == "joint":
            sites = len(site_names(ctx.components))
            cost = 2 * FORWARD + sites * (steps * step + 3 * FORWARD)
            return CostEstimate(cost, f"{steps} forward/backward steps for each of {sites} sites")
        cost = per_component_cost(len(ctx.components), steps, step)
        return CostEstimate(cost, f"{steps} forward/backward steps per component")

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        if self.config["path"] == "component":
            return MethodOutput(estimates=self._component(ctx))
        return self._joint(ctx)

    def _component(self, ctx: AttributionContext) -> torch.Tensor:
        t, weights = path_quadrature(self.config["integration"], self.config["steps"])
        names = site_names(ctx.components)
        _, base = collect_activations(ctx, ctx.base_tokens, names)
        _, source = collect_activations(ctx, ctx.source_tokens, names)
        grads, _ = path_derivatives_at(
            ctx, ctx.components, base, source, t, second=False, desc="integrated gradients"
        )
        return (weights[:, None] * grads).sum(dim=0)

    def _joint(self, ctx: AttributionContext) -> MethodOutput:
        n = ctx.batch.n
        groups = group_by_hook(ctx.components)
        base_metric, _ = collect_activations(ctx, ctx.base_tokens, [])
        _, source = collect_activations(ctx, ctx.source_tokens, list(groups))
        estimates = torch.zeros(len(ctx.components), dtype=torch.float64)
        gap = 0.0
        for name, members in groups.items():
            attributions, patched = [], 0.0
            for rows in ctx.prompt_chunks():
                attributions.append(self._site_chunk(ctx, name, rows, source[name][rows].shape))
                patched += _site_patched_sum(ctx, name, rows, source)
            attribution = -torch.cat(attributions).double() / n  # captum: L(base) - L(patched)
            site_effect = (patched - base_metric.double().sum().item()) / n
            gap = max(gap, abs(attribution.sum().item() - site_effect))
            comps = [ctx.components[i] for i in members]
            estimates[members] = reduce_per_component({name: attribution}, comps).cpu()
        return MethodOutput(estimates=estimates, summary={"convergence_delta": gap})

    def _site_chunk(
        self, ctx: AttributionContext, name: str, rows: slice, shape: torch.Size
    ) -> torch.Tensor:
        """captum's layer attribution of the per-prompt metric at hook ``name``, in the hook's
        TransformerLens layout ``shape`` (captum's module hook sees the raw tensor: hook_z is
        [m, seq, n_heads * d_head] there, [m, seq, n_heads, d_head] for TransformerLens hooks)."""
        sub = ctx.batch.select(rows)
        m = rows.stop - rows.start

        def forward_fn(tokens: torch.Tensor) -> torch.Tensor:
            ctx.cost.forward(tokens.shape[0])
            ctx.cost.n_backward += int(torch.is_grad_enabled())  # captum differentiates these
            copies = tokens.shape[0] // m
            logits = ctx.model.run(tokens, read_pos=sub.last.repeat(copies))
            return per_prompt_metric(logits, sub, ctx.metric, copies)

        row_cost = pass_row_bytes(ctx, "backward", fast=False)
        plan = chunk_plan(ctx, self.config["steps"], row_cost, "ig joint")
        lig = LayerIntegratedGradients(forward_fn, ctx.model.hook_point(name))
        attribution = lig.attribute(
            ctx.base_tokens[rows],
            baselines=ctx.source_tokens[rows],
            n_steps=self.config["steps"],
            method=self.config["integration"],
            internal_batch_size=max(m, plan.rows // m * m),  # whole copies of the m prompts
        )
        if attribution.numel() != shape.numel():
            raise HarnessError(
                f"captum's attribution at {name!r} has shape {tuple(attribution.shape)}, "
                f"which cannot be laid out as the hook's {tuple(shape)}"
            )
        return attribution.reshape(shape)


def _site_patched_sum(
    ctx: AttributionContext, name: str, rows: slice, source: Activations
) -> float:
    """Sum over the chunk's prompts of the metric with the whole site ``name`` from source."""
    value = source[name][rows]
    sub = ctx.batch.select(rows)
    with torch.no_grad():
        logits = ctx.model.run(
            ctx.base_tokens[rows], [(name, lambda act, hook: value)], read_pos=sub.last
        )
    ctx.cost.forward(rows.stop - rows.start)
    metric = per_prompt_metric(logits, sub, ctx.metric)
    return metric.double().sum().item()


def path_quadrature(integration: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """captum's rule ``integration`` with ``steps`` nodes on the path from the base (t = 0) to
    the source (t = 1): the nodes t [steps] and weights [steps], float64. captum's alpha runs
    from the baseline (the source) to the input (the base), so t = 1 - alpha."""
    weights_fn, alphas_fn = approximation_parameters(integration)
    weights = torch.tensor(weights_fn(steps), dtype=torch.float64)
    return 1 - torch.tensor(alphas_fn(steps), dtype=torch.float64), weights
