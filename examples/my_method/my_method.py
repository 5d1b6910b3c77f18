"""A method defined outside the harness package: trapezoid attribution patching.

Estimates: Delta_c ~ d_c . ((1 - w) g_c(base) + w g_c(source)), with d_c = a_c(source) - a_c(base),
g_c(base) = dL/da_c on the unpatched run (AtP's gradient) and g_c(source) = dL/da_c on the fully
patched-in run (noising: the corrupt prompt). ``w = 0`` is AtP; ``w = 1/2`` is the trapezoid rule
for the path integral of the gradient, with the far end taken on the whole source run rather than
on the single-component patched run (an approximation, which is what the harness measures).
Its ``w = 1/2`` is the built-in ``clean_corrupted`` method; this copy stays as the template of a
method written outside the package.
Sign: that of the true effect L(patched) - L(unpatched), like every harness method.
Cost: one source forward and backward, one base forward and backward, for all components.

Use it with:

    PYTHONPATH=examples/my_method harness method=atp_trapezoid \\
        hydra.searchpath=[file://examples/my_method/conf]
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.components import reduce_per_component
from harness.config import Range, bounded
from harness.context import AttributionContext
from harness.methods.base import Method, MethodOutput
from harness.patching import metric_gradients, site_names


class TrapezoidAtP(Method):
    """AtP with the gradient averaged between the base and the source run."""

    @dataclass(frozen=True)
    class Options:  # the accepted options, their types, defaults and ranges (conf: method.weight)
        weight: float = bounded(0.5, Range(lo=0, hi=1))

    bound = None  # no error bound of harness.diagnostics brackets this estimate

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        w = float(self.options.weight)
        names = site_names(ctx.components)
        _, source, source_grads = metric_gradients(ctx, ctx.source_tokens, names)
        _, base, base_grads = metric_gradients(ctx, ctx.base_tokens, names)
        per_hook = {
            k: (source[k] - base[k]) * ((1 - w) * base_grads[k] + w * source_grads[k])
            for k in names
        }
        atp = {k: (source[k] - base[k]) * base_grads[k] for k in names}
        return MethodOutput(
            estimates=reduce_per_component(per_hook, ctx.components).double(),
            # extra per-component columns land in estimates.parquet, extra scalars in summary.json
            columns={"atp": reduce_per_component(atp, ctx.components).double()},
            summary={"weight": w},
        )
