"""AtP plus a probe (Hutchinson) estimate of each component's own second-order term.

Estimates: Delta_c ~ f_c'(0) + f_c''(0) / 2, with f_c(t) = L(base | a_c <- a_c + t d_c),
d_c = a_c(source) - a_c(base), f_c'(0) = g_c . d_c (AtP) and f_c''(0) = d_c^T H d_c estimated
from K random-sign probes: s_kc in {-1, +1} for every component (Rademacher, drawn from a
``torch.Generator`` seeded by ``seed``, one draw for all prompts),
v_k = sum_j s_kj d_j over the components of a group, and

    f_c''(0) ~ (1/K) sum_k s_kc d_c . (H v_k)_c     (the dot product over c's slice)
             = d_c^T H d_c + (1/K) sum_k sum_{j != c} s_kc s_kj d_c^T H d_j.

E[s_kc s_kj] = 0 for j != c, so the cross terms cancel in expectation (unbiased); their
variance, sum_{j != c} (d_c^T H d_j)^2 / K, falls as 1/K. With one component per group (sites
``attn_out``/``mlp_out``/``resid_pre`` at positions ``all``) the estimate is the exact
f_c''(0) for any K. ``scope``:

- ``layer`` (default): a group is one site of one layer (one hook); v_k moves that site only, so
  H is the site's own block and other layers never enter (K HVPs per site).
- ``all``: one group, v_k moves every component at once, so the cross terms also span layers
  (K HVPs in all).

The HVPs are :func:`harness.methods.hvp.shared_terms`' (mode ``shared`` is one probe of all +1
per site). Columns ``first_order`` (g_c . d_c) and ``second_order`` (the probe f_c''(0) / 2).
Sign: that of the true effect L(patched) - L(base) (noising: base clean, source corrupt).
Cost: one source forward, then per prompt chunk one forward and one backward (with
create_graph) and K HVPs per site (``layer``) or K HVPs (``all``): it grows with the number of
sites (layers), never with the components within one.
Proved by: tests/methods/test_hvp_probe.py (equal to hvp's exact term with one component per
site for any K; over a Hadamard design, where every pair of components' signs is orthogonal, the
probe mean is exactly hvp's term with several heads a layer while one probe is not; seeded;
chunk-invariant).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.config import POSITIVE_INT, Range, bounded, one_of
from harness.context import AttributionContext
from harness.cost import BACKWARD, FORWARD, HVP, CostEstimate
from harness.methods.base import Method, MethodOutput
from harness.methods.hvp import shared_terms
from harness.patching import collect_activations, site_names

SCOPES = ("layer", "all")


def rademacher(probes: int, count: int, seed: int) -> torch.Tensor:
    """float64 [probes, count] of independent +1/-1 signs, reproducible from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (probes, count), generator=gen).double() * 2 - 1


class ProbeHVP(Method):
    """AtP plus the Hutchinson estimate of f_c''(0) / 2 from ``probes`` random-sign HVPs."""

    @dataclass(frozen=True)
    class Options:
        probes: int = bounded(4, POSITIVE_INT)
        seed: int = bounded(0, Range(lo=0, integer=True))
        scope: str = one_of("layer", SCOPES)

    bound = None  # a noisy f''(0): not the exact HVP's centre

    grows_with_components = False  # K HVPs per site (or in all), whatever a site's components

    def _hvps(self, ctx: AttributionContext) -> int:
        groups = 1 if self.options.scope == "all" else len(site_names(ctx.components))
        return self.options.probes * groups

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate:
        hvps = self._hvps(ctx)
        cost = 2 * FORWARD + BACKWARD + hvps * HVP
        return CostEstimate(cost, f"2 forwards, 1 backward and {hvps} HVPs")

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        names = site_names(ctx.components)
        signs = rademacher(self.options.probes, len(ctx.components), self.options.seed)
        _, source = collect_activations(ctx, ctx.source_tokens, names)
        joint = self.options.scope == "all"
        first, second = shared_terms(ctx, names, source, signs=signs, joint=joint)
        return MethodOutput(
            estimates=first + second,
            columns={"first_order": first, "second_order": second},
        )
