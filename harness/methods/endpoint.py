"""The path quantities the end-point estimators share, from the one path-derivative engine.

For f_c(t) = L(base | a_c <- a_c + t d_c) (:mod:`harness.second_order`), the true effect is
Delta_c = f_c(1) - f_c(0) = integral of f_c'(t) over [0, 1]. The per-component rules of
:mod:`harness.methods.trapezoid`, :mod:`harness.methods.hermite` and
:mod:`harness.methods.hvp_guarded` combine f_c'(0), f_c''(0) and f_c'(1), each taken by
:func:`harness.second_order.path_derivatives`: f'(0) and f''(0) in the shared unpatched pass at
t = 0, f'(1) with one patched copy and its backward per component; none of them where the
context already holds them (``AttributionContext.path_ends``: a run's exact diagnostics cache).
"""

from __future__ import annotations

from harness.context import AttributionContext
from harness.cost import AT_ZERO, BACKWARD, FORWARD, CostEstimate, per_component_cost
from harness.patching import collect_activations, site_names
from harness.second_order import path_derivatives
from harness.types import PathEnds


def end_points(ctx: AttributionContext, second: bool, end: bool) -> PathEnds:
    """f'(0) of every component's path, with ``second`` its f''(0) and with ``end`` its f'(1);
    the context's ``path_ends`` where they hold all of these (no pass then)."""
    known = ctx.path_ends
    if known is not None and known.covers(second, end):
        second0, first1 = known.second0 if second else None, known.first1 if end else None
        return PathEnds(known.first0, second0, first1)
    names = site_names(ctx.components)
    _, base = collect_activations(ctx, ctx.base_tokens, names)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    first0, second0 = path_derivatives(ctx, ctx.components, base, source, t=0.0, second=second)
    first1 = None
    if end:
        first1, _ = path_derivatives(ctx, ctx.components, base, source, t=1.0, second=False)
    return PathEnds(first0, second0 if second else None, first1)


def end_points_cost(n_components: int, second: bool, end: bool) -> CostEstimate:
    """The cost of :func:`end_points`: the shared pass at t = 0 (a forward and a backward, and
    one HVP per component with ``second``) and, with ``end``, a patched forward and backward per
    component."""
    per_component = (AT_ZERO if second else 0.0) + ((FORWARD + BACKWARD) if end else 0.0)
    cost = per_component_cost(n_components, 1, per_component) + FORWARD + BACKWARD
    parts = ["1 forward and backward"]
    if second:
        parts.append("1 HVP per component")
    if end:
        parts.append("1 patched forward and backward per component")
    return CostEstimate(cost, ", ".join(parts))
