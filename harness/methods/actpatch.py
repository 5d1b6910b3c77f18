"""Activation patching: the exact effect of every component (the ground truth).

Estimates: Delta_c = L(base | a_c <- a_c(source)) - L(base) exactly (noising: base = clean,
source = corrupt; see :mod:`harness.context`).
Source: e.g. Meng et al. 2022; Wang et al. 2022; Heimersheim & Nanda 2024 (how to use and
interpret activation patching).
Cost: two unpatched forward passes plus the patched copies (many per pass, each from its
component's layer; :func:`harness.patching.patch_effects`); no backward pass. In a run, the
ground truth computed for the same components is read instead (``reads_truth`` in the
summary; the run reports the truth's cost as the method's).
Proved by: tests/test_patching.py (patching a run with its own activations changes
nothing; patching every position of the first residual stream reproduces the source run; the
batched engine equals one forward pass per component).
"""

from __future__ import annotations

from harness.context import AttributionContext
from harness.cost import FORWARD, CostEstimate, per_component_cost
from harness.methods.base import Method, MethodOutput
from harness.patching import collect_activations, patch_effects, site_names


class ActivationPatching(Method):
    """Exact activation patching of each component, batched."""

    bound = None  # exact: the estimate is the truth itself, no interval to measure
    grows_with_components = True  # a patched copy per component

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate:
        cost = per_component_cost(len(ctx.components), 1, FORWARD)
        return CostEstimate(cost, "1 patched forward per component")

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        truth = ctx.truth
        if truth is not None and len(truth) == len(ctx.components) and truth.isfinite().all():
            # the run's ground truth is this very computation: read it (its cost is the truth's)
            return MethodOutput(estimates=ctx.truth.clone(), summary={"reads_truth": True})
        names = site_names(ctx.components)
        base_metric, _ = collect_activations(ctx, ctx.base_tokens, [])
        _, source = collect_activations(ctx, ctx.source_tokens, names)
        effects = patch_effects(ctx, ctx.components, source, base_metric)
        return MethodOutput(estimates=effects)
