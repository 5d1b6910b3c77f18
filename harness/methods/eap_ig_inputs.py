"""EAP-IG ("inputs"): gradients integrated along the path between the two prompts' embeddings.

Estimates: Delta_c ~ d_c . sum_k w_k g_c(t_k), with d_c = a_c(source) - a_c(base) from the two
unpatched runs and g_c(t) = dL/da_c on the base run whose token embedding is replaced by
x(t) = e(base) + t (e(source) - e(base)) (e: the embedding output,
:meth:`~harness.adapter.ModelAdapter.embed_hook_name`; positional embeddings are the same for
both prompts, pairs having equal length). Every component's gradient comes from the same K
interpolated runs, whatever its site (head, attn_out, mlp_out, resid_pre, neuron; positions all or
each). (alpha_k, w_k): captum's quadrature rule ``integration`` oriented as captum's and as
:mod:`harness.methods.ig`, from the source (alpha = 0) to the base (alpha = 1): t_k = 1 - alpha_k.
For ``resid_pre`` of layer 0 the interpolation is the component's own patching path when the
prompts differ only inside the component's slice (positions all: always), so the estimate
converges to the activation-patching effect; summed over layer 0's ``resid_pre`` at each position
it converges to L(source) - L(base) (completeness). Elsewhere the path is not the component's own
and the estimate differs from its effect. A rule whose nodes include t = 0 with K = 1 would be AtP.
Source: Hanna et al. 2024, "Have faith in faithfulness" (EAP-IG, the ``inputs`` form), as in the
MIB benchmark (Mueller et al. 2025); captum (Kokhlikyan et al. 2020) for the quadrature rules.
Sign: that of the true effect L(patched) - L(base) (noising: base clean, source corrupt).
Shapes: estimates float64 [n_components]; the embedding shift [n, seq, d_model].
Cost: per prompt chunk two unpatched forwards (activations and embeddings of the base and the
source run), then the K interpolation points stacked as copies of the chunk
(:func:`harness.budget.chunk_plan`), one forward and one backward per pass: K forwards and K
backwards over the prompt batch for every component at once.
Proved by: tests/methods/test_eap_ig_inputs.py (layer-0 ``resid_pre`` equal to activation
patching and complete; every site equal to a reference written with autograd in the test,
noising and denoising; chunking changes nothing; bad ``steps`` and unequal token shapes are
one-line errors).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS, SUPPORTED_RIEMANN_METHODS

from harness.budget import chunk_plan
from harness.components import reduce_per_component
from harness.config import POSITIVE_INT, bounded, one_of
from harness.context import AttributionContext
from harness.cost import BACKWARD, FORWARD, CostEstimate
from harness.errors import HarnessError
from harness.methods.base import Method, MethodOutput
from harness.methods.ig import path_quadrature
from harness.methods.ms_hvp import check_steps
from harness.patching import collect_activations, metric_gradients, pass_row_bytes, site_names


class EAPIGInputs(Method):
    """EAP-IG: every component's gradient integrated along the embedding interpolation."""

    @dataclass(frozen=True)
    class Options:
        steps: int = bounded(8, POSITIVE_INT)
        integration: str = one_of("gausslegendre", SUPPORTED_METHODS)  # captum's rules

    bound = None  # a quadrature along the input path: neither f'(0) nor the HVP estimate
    grows_with_components = False  # K forward/backward passes for every component at once

    def validate(self) -> None:
        if self.options.integration in SUPPORTED_RIEMANN_METHODS:  # two points or more
            check_steps(self.name, self.options.steps, 2)

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate:
        steps = self.config["steps"]
        cost = 2 * FORWARD + steps * (FORWARD + BACKWARD)
        return CostEstimate(cost, f"2 forwards and {steps} forward/backward steps")

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        base_tokens, source_tokens = ctx.base_tokens, ctx.source_tokens
        if base_tokens.shape != source_tokens.shape:
            raise HarnessError(
                f"{self.name} interpolates the embeddings of equal-length prompts; base tokens "
                f"{tuple(base_tokens.shape)} and source tokens {tuple(source_tokens.shape)} differ"
            )
        steps = self.config["steps"]
        t, weights = path_quadrature(self.config["integration"], steps)
        embed = ctx.model.embed_hook_name()
        names = site_names(ctx.components)
        row = pass_row_bytes(ctx, "backward", vocabulary=True)
        plan = chunk_plan(ctx, steps, row, self.name)
        estimates = None
        for rows in ctx.prompt_chunks(plan.prompt_rows):  # one chunk's activations at a time
            sub = ctx.subset(rows)
            _, base = collect_activations(sub, sub.base_tokens, [*names, embed])
            _, source = collect_activations(sub, sub.source_tokens, [*names, embed])
            shift = source.pop(embed) - base.pop(embed)
            integral = {}
            for start in range(0, steps, plan.copies):
                nodes = slice(start, min(start + plan.copies, steps))
                grads = _interpolated_gradients(sub, names, embed, shift, t[nodes], ctx.batch.n)
                for name, grad in grads.items():
                    weighted = torch.tensordot(weights[nodes].to(grad.device), grad, dims=1)
                    integral[name] = integral.get(name, 0) + weighted
            delta = {name: (source[name] - base[name]).double() * integral[name] for name in names}
            part = reduce_per_component(delta, ctx.components)
            estimates = part if estimates is None else estimates + part
        return MethodOutput(estimates=estimates)


def _interpolated_gradients(
    sub: AttributionContext,
    names: list[str],
    embed: str,
    shift: torch.Tensor,
    nodes: torch.Tensor,
    n_total: int,
) -> dict[str, torch.Tensor]:
    """dL/da at ``names`` on ``sub``'s m base prompts with their embedding moved by t * ``shift``
    [m, seq, d_model], for each t of ``nodes`` [k]: float64 [k, m, ...] per hook, from one pass
    stacking the k copies (copy-major; L the mean over ``n_total`` prompts)."""
    m, copies = sub.batch.n, len(nodes)
    index = torch.arange(m, device=sub.batch.clean.device).repeat(copies)
    stacked = replace(sub, batch=sub.batch.select(index))
    scale = nodes.to(shift.device, shift.dtype).repeat_interleave(m).view(-1, 1, 1)
    offsets = {embed: scale * shift.repeat(copies, 1, 1)}
    _, _, grads = metric_gradients(
        stacked, stacked.base_tokens, [*names, embed], offsets, n_total=n_total
    )
    return {name: grads[name].double().view(copies, m, *grads[name].shape[1:]) for name in names}
