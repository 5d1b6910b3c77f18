"""Clean-corrupted attribution: the gradient averaged over the base and the source run.

Estimates: Delta_c ~ d_c . (g_c(base) + g_c(source)) / 2, with d_c = a_c(source) - a_c(base),
g_c(base) = dL/da_c on the unpatched run (AtP's gradient) and g_c(source) = dL/da_c on the
fully patched-in run (noising: the corrupt prompt). It is the trapezoid rule
(:mod:`harness.methods.trapezoid`) with the source run's gradient standing in for each
component's own f_c'(1), so one more backward serves every component.
Columns: ``first_order`` (AtP, g_c(base) . d_c) and ``first_order_source`` (g_c(source) . d_c).
Sign: that of the true effect L(patched) - L(base).
Cost: one forward and one backward on each of the base and the source run, for every component
at once (per prompt chunk of ``batch_size``).
Proved by: tests/methods/test_clean_corrupted.py (the mean of AtP noising and minus AtP
denoising, whose gradient is the source run's).
"""

from __future__ import annotations

from harness.components import reduce_per_component
from harness.context import AttributionContext
from harness.cost import BACKWARD, FORWARD, CostEstimate
from harness.methods.base import Method, MethodOutput
from harness.patching import metric_gradients, site_names


class CleanCorrupted(Method):
    """AtP with the gradient averaged between the base and the source run."""

    bound = None  # neither f'(0) nor the HVP estimate
    grows_with_components = False  # two backwards for every component at once

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate:
        return CostEstimate(2 * (FORWARD + BACKWARD), "2 forwards and 2 backwards")

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        names = site_names(ctx.components)
        first = at_source = None
        for rows in ctx.prompt_chunks():  # one chunk's activations at a time: flat memory
            sub = ctx.subset(rows)
            _, source, source_grads = metric_gradients(
                sub, sub.source_tokens, names, n_total=ctx.batch.n
            )
            _, base, base_grads = metric_gradients(sub, sub.base_tokens, names, n_total=ctx.batch.n)
            delta = {name: source[name] - base[name] for name in names}
            parts = (
                reduce_per_component({k: delta[k] * grads[k] for k in names}, ctx.components)
                for grads in (base_grads, source_grads)
            )
            base_part, source_part = (part.double() for part in parts)
            first = base_part if first is None else first + base_part
            at_source = source_part if at_source is None else at_source + source_part
        return MethodOutput(
            estimates=(first + at_source) / 2,
            columns={"first_order": first, "first_order_source": at_source},
        )
