"""Screen-Flag-Fix: AtP everywhere, a reliability score, the expensive fix only where flagged.

Estimates: AtP's g_c . d_c for every component (screen); a reliability score
(:mod:`harness.diagnostics`) flags the components whose first-order estimate is not to be trusted
(``threshold`` on the score, or its top ``flag_fraction``); only those are re-estimated by the
``fix``: ``hvp`` (f'(0) + f''(0) / 2 along the component's own path), ``ms_hvp`` (``steps``
second-order steps along that path) or ``actpatch`` (exact activation patching of the flagged
components, so their error is zero). Unflagged components keep their AtP estimate. Sign: that of
the true effect L(patched) - L(unpatched) (noising: clean run, corrupt values patched in).
Source: the Screen-Flag-Fix protocol of this harness's study; which fix is cheaper at equal
accuracy is what the harness measures (docs/sff_comparison.md).
Default score ``delta_norm``: it costs nothing beyond AtP, and on the zoo's 20 (model, task)
pairs it ranked AtP's unreliable components with AUROC 0.77 against 0.57 for
``grad_disagreement`` (``curvature_ratio``: 0.86, at the price of an HVP pass over every
component, as much as the ``hvp`` method itself); results/README.md.
Score ``abs_atp`` (|AtP| itself) flags the largest first-order estimates, also at no cost.
Cost: AtP (2 forwards, 1 backward) + the score (``delta_norm``, ``abs_atp``: none;
``grad_disagreement``: one forward and backward on the source run; ``curvature_ratio``: the
shared pass at t = 0, one HVP per component) + the fix on the flagged fraction only (``hvp``:
the shared pass, an HVP each; ``ms_hvp``: ``steps`` of them; ``actpatch``: one patched copy per
flagged component). Under ``truth.sample`` the screen and score still cover every component
(the same flags as a run on all), and only the flagged components of the sample are fixed; the
other flagged ones are NaN.
Proved by: tests/methods/test_sff.py (flag_fraction=1 with fix=actpatch reproduces the truth;
with fix=hvp it equals the hvp method; unflagged components equal AtP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.components import reduce_per_component
from harness.config import FRACTION, POSITIVE_INT, Range, bounded, one_of
from harness.context import AttributionContext
from harness.cost import AT_ZERO, BACKWARD, FORWARD, PER_PATH_POINT, CostEstimate
from harness.diagnostics import SCORES, PathQuantities, flag_components, reliability_scores
from harness.methods.base import Method, MethodOutput
from harness.methods.ms_hvp import multi_step
from harness.patching import collect_activations, metric_gradients, patch_effects, site_names

FIXES = ("hvp", "ms_hvp", "actpatch")


class ScreenFlagFix(Method):
    """AtP, then a fix of the flagged components only."""

    @dataclass(frozen=True)
    class Options:
        score: str = one_of("delta_norm", tuple(SCORES))
        flag_fraction: float = bounded(0.2, FRACTION)
        threshold: float | None = bounded(None, Range(), optional=True)
        fix: str = one_of("hvp", FIXES)
        steps: int = bounded(8, POSITIVE_INT)

    bound = None  # AtP on some components, the fix on others: no one interval brackets both
    grows_with_components = True  # the fix: per flagged component

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate:
        return self._cost(ctx, len(ctx.components))

    def sample_cost_estimate(self, ctx: AttributionContext, index: Sequence[int]) -> CostEstimate:
        return self._cost(ctx, len(index))

    def _cost(self, ctx: AttributionContext, fixable: int) -> CostEstimate:
        """The screen and score of every component, the fix of the flagged ones among
        ``fixable`` components (all: ``fixable`` = the component count)."""
        cfg, count = self.config, len(ctx.components)
        score = {"delta_norm": 0.0, "abs_atp": 0.0, "grad_disagreement": FORWARD + BACKWARD}
        at_zero = FORWARD + BACKWARD + count * AT_ZERO  # curvature_ratio: the shared pass
        cost = 2 * FORWARD + BACKWARD + score.get(cfg["score"], at_zero)
        flagged = fixable if cfg["threshold"] is not None else cfg["flag_fraction"] * fixable
        per_fix = {"hvp": AT_ZERO, "ms_hvp": cfg["steps"] * PER_PATH_POINT}
        cost += flagged * per_fix.get(cfg["fix"], FORWARD)
        return CostEstimate(cost, f"AtP + the score + the {cfg['fix']} fix of {flagged:g} flagged")

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        return self._screen_flag_fix(ctx, None)

    def estimate_sample(self, ctx: AttributionContext, index: Sequence[int]) -> MethodOutput:
        """AtP and the score of every component, flagged as in a run on all of them; the fix of
        the flagged ones among ``index`` only (a flagged component outside it is NaN)."""
        return self._screen_flag_fix(ctx, index)

    def _screen_flag_fix(
        self, ctx: AttributionContext, index: Sequence[int] | None
    ) -> MethodOutput:
        cfg = self.config
        names = site_names(ctx.components)
        _, source = collect_activations(ctx, ctx.source_tokens, names)
        base_metric, base, grads = metric_gradients(ctx, ctx.base_tokens, names)
        atp = reduce_per_component(
            {k: (source[k] - base[k]) * grads[k] for k in names}, ctx.components
        )
        atp = atp.double().cpu()
        score = self._score(ctx, base, source, grads)
        flags = torch.from_numpy(
            flag_components(score.numpy(), cfg["threshold"], float(cfg["flag_fraction"]))
        )
        fixable = torch.ones_like(flags)
        if index is not None:
            fixable = torch.zeros_like(flags)
            fixable[list(index)] = True
        estimates = atp.clone()
        fixed = flags & fixable
        flagged = [c for c, f in zip(ctx.components, fixed.tolist(), strict=True) if f]
        if flagged:
            estimates[fixed] = self._fix(ctx, flagged, base, source, base_metric)
        computed = None if index is None else fixable | ~flags
        if computed is not None:
            estimates[~computed] = float("nan")
        return MethodOutput(
            estimates=estimates,
            columns={"flagged": flags, "sff_score": score, "atp_estimate": atp},
            summary={"sff_n_flagged": int(flags.sum()), "sff_n_fixed": int(fixed.sum())},
            computed=computed,
        )

    def _score(self, ctx, base, source, grads) -> torch.Tensor:
        """The configured reliability score (:func:`harness.diagnostics.reliability_scores`,
        given the tensors AtP already has)."""
        name = self.config["score"]
        tensors = PathQuantities(None, None, None, base=base, source=source)
        return reliability_scores(ctx, [name], tensors, base_grads=grads)[name]

    def _fix(self, ctx, flagged, base, source, base_metric) -> torch.Tensor:
        fix = self.config["fix"]
        if fix == "actpatch":
            return patch_effects(ctx, flagged, source, base_metric, desc="sff fix").cpu()
        if fix == "hvp":
            return multi_step(ctx, flagged, base, source, 1)
        return multi_step(ctx, flagged, base, source, int(self.config["steps"]))
