"""The second-order step inside a trust region: Delta_c ~ f'(0) + clip(f''(0) / 2, +/- tau |f'(0)|).

f_c(t) = L(base | a_c <- a_c + t d_c). The HVP estimate f'(0) + f''(0) / 2 overshoots where the
path is far from quadratic, which shows as a second-order term large against the first. The
guard keeps the curvature term's sign and limits its size to ``trust`` (tau) times |f'(0)|:
tau = 0 is AtP, tau -> infinity the exact HVP. Column ``clipped``: 1.0 where the guard acted.
Columns also: ``first_order`` (f'(0)) and ``second_order`` (the unclipped f''(0) / 2).
Sign: that of the true effect L(patched) - L(base).
Cost: the exact HVP's (:func:`harness.methods.endpoint.end_points_cost` with f''(0), no f'(1));
f'(0) and f''(0) are lent to the diagnostics (``MethodOutput.path_ends``).
Proved by: tests/methods/test_endpoint.py (equal to the HVP where the guard does not act, to AtP
at trust 0, clipped exactly at tau |f'(0)|).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.config import Range, bounded
from harness.context import AttributionContext
from harness.cost import CostEstimate
from harness.methods.base import Method, MethodOutput
from harness.methods.endpoint import end_points, end_points_cost


class GuardedHVP(Method):
    """AtP plus the curvature term, its size limited to ``trust`` times |AtP|."""

    @dataclass(frozen=True)
    class Options:
        trust: float = bounded(1.0, Range(lo=0))

    bound = None  # equal to the HVP only where the guard does not act

    grows_with_components = True  # an HVP per component

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate:
        return end_points_cost(len(ctx.components), second=True, end=False)

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        ends = end_points(ctx, second=True, end=False)
        first0, second0 = ends.first0, ends.second0
        radius = float(self.options.trust) * first0.abs()
        term = second0 / 2
        guarded = torch.maximum(torch.minimum(term, radius), -radius)
        return MethodOutput(
            estimates=first0 + guarded,
            columns={
                "first_order": first0,
                "second_order": term,
                "clipped": (guarded != term).double(),
            },
            summary={"trust": float(self.options.trust)},
            path_ends=ends,
        )
