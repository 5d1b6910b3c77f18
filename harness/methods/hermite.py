"""The cubic Hermite rule: integrate the quadratic f_c' through f_c'(0), f_c''(0) and f_c'(1).

With f_c(t) = L(base | a_c <- a_c + t d_c), the quadratic q(t) = f'(0) + f''(0) t + c t^2 with
q(1) = f'(1) has c = f'(1) - f'(0) - f''(0), and its integral over [0, 1] is

    Delta_c ~ f'(0) + f''(0) / 2 + (f'(1) - f'(0) - f''(0)) / 3,

the HVP estimate plus a third of the end-point residual: exact for a cubic f_c. Where the Taylor
step overshoots (f'' large at 0 and the path saturating), the end point pulls it back.
Columns: ``first_order`` (f'(0)), ``second_order`` (f''(0) / 2), ``first_order_end`` (f'(1)).
Sign: that of the true effect L(patched) - L(base).
Cost: :func:`harness.methods.endpoint.end_points_cost` with f''(0) and f'(1): the exact HVP's
passes plus one patched forward and backward per component; nothing where the context holds
them (``AttributionContext.path_ends``, the exact diagnostics' cache). All three are lent to the
diagnostics (``MethodOutput.path_ends``).
Proved by: tests/methods/test_endpoint.py (exact for a cubic path; equal to the formula on the
diagnostics' own path quantities).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.context import AttributionContext
from harness.cost import CostEstimate
from harness.methods.base import Method, MethodOutput
from harness.methods.endpoint import end_points, end_points_cost


class CubicHermite(Method):
    """f'(0) + f''(0) / 2 + (f'(1) - f'(0) - f''(0)) / 3 per component."""

    @dataclass(frozen=True)
    class Options:
        pass

    bound = None  # the HVP interval's centre plus a correction: no bound of the diagnostics

    grows_with_components = True  # an HVP and a patched copy per component

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate:
        return end_points_cost(len(ctx.components), second=True, end=True)

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        ends = end_points(ctx, second=True, end=True)
        first0, second0, first1 = ends.first0, ends.second0, ends.first1
        return MethodOutput(
            estimates=first0 + second0 / 2 + (first1 - first0 - second0) / 3,
            columns={
                "first_order": first0,
                "second_order": second0 / 2,
                "first_order_end": first1,
            },
            path_ends=ends,
        )
