"""Attribution patching (AtP): the first-order Taylor estimate of every component's effect.

Estimates: Delta_c ~ f_c'(0) = g_c . d_c, with d_c = a_c(source) - a_c(base) and
g_c = dL/da_c on the base run (noising: gradient at the clean run times corrupt - clean; the
estimate has the sign of the true effect L(patched) - L(unpatched)).
Source: Nanda 2023, "Attribution patching"; Syed et al. 2023; Kramar et al. 2024 (AtP*).
Cost: one source forward, one base forward and one backward for every component at once (per
prompt chunk of ``batch_size``; only one chunk's activations are held at a time).
Proved by: tests/methods/test_atp.py (exact when the metric is linear in the patched activation;
equal to a finite-difference derivative of the patched metric in float64).
"""

from __future__ import annotations

from harness.components import reduce_per_component
from harness.context import AttributionContext
from harness.cost import BACKWARD, FORWARD, CostEstimate
from harness.methods.base import Method, MethodOutput
from harness.patching import collect_activations, metric_gradients, site_names


class AttributionPatching(Method):
    """First-order attribution patching."""

    bound = "atp"  # the estimate is f'(0)
    grows_with_components = False  # one backward for every component at once

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate:
        return CostEstimate(2 * FORWARD + BACKWARD, "2 forwards and 1 backward")

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        names = site_names(ctx.components)
        estimates = None
        for rows in ctx.prompt_chunks():  # one chunk's activations at a time: flat memory
            sub = ctx.subset(rows)
            _, source = collect_activations(sub, sub.source_tokens, names)
            _, base, grads = metric_gradients(sub, sub.base_tokens, names, n_total=ctx.batch.n)
            products = {name: (source[name] - base[name]) * grads[name] for name in names}
            part = reduce_per_component(products, ctx.components).double()
            estimates = part if estimates is None else estimates + part
        return MethodOutput(estimates=estimates)
