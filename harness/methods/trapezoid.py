"""The trapezoid rule on the single-component path: Delta_c ~ (f_c'(0) + f_c'(1)) / 2.

f_c(t) = L(base | a_c <- a_c + t d_c), d_c = a_c(source) - a_c(base); f_c'(0) = g_c . d_c is
AtP, f_c'(1) the same directional derivative at the patched end (only c moved, everything
downstream recomputed). Exact where f_c' is linear on [0, 1] (f_c quadratic), and never
overshoots by more than the spread of f' between the ends where f_c' is monotone.
Columns: ``first_order`` (f'(0)) and ``first_order_end`` (f'(1)).
Sign: that of the true effect L(patched) - L(base).
Cost: :func:`harness.methods.endpoint.end_points_cost` without f''(0): one forward and backward
for f'(0) of every component, one patched forward and backward per component for f'(1).
Proved by: tests/methods/test_endpoint.py (exact for a quadratic path; equal to the mean of
AtP and an independent f'(1)).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.context import AttributionContext
from harness.cost import CostEstimate
from harness.methods.base import Method, MethodOutput
from harness.methods.endpoint import end_points, end_points_cost


class Trapezoid(Method):
    """The mean of the path's first derivative at its two ends."""

    @dataclass(frozen=True)
    class Options:
        pass

    bound = None  # inside the AtP interval, at its centre: no bound of the diagnostics is centred

    grows_with_components = True  # a patched copy with its backward per component

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate:
        return end_points_cost(len(ctx.components), second=False, end=True)

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        ends = end_points(ctx, second=False, end=True)
        return MethodOutput(
            estimates=(ends.first0 + ends.first1) / 2,
            columns={"first_order": ends.first0, "first_order_end": ends.first1},
            path_ends=ends,
        )
