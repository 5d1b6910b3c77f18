"""AtP*: attribution patching with the QK fix for heads and, optionally, GradDrop scores.

Estimates: Delta_c ~ g_c . D_c, with g_c = dL/da_c on the base run (as in AtP) and D_c the
change of the component's activation:

- non-head sites, and heads with ``qk_fix: false``: D_c = a_c(source) - a_c(base) (plain AtP);
- heads with ``qk_fix: true``: D_c is the change of the head's ``hook_z`` rebuilt from the
  head's query, key and value nodes one at a time, as AtP* estimates them (Kramar et al. 2024,
  section 3.1.1): with A the base pattern, l the base attention scores (after scale and mask),
  v, z the base values and outputs of the head (v of its key-value group) and ' the source,

      D_t = sum_s A_ts (v'_s - v_s)                              value nodes (linear, exact)
          + sum_s (A^(q'_t)_ts - A_ts) v_s                       query node t, exact softmax
          + sum_s w_ts (v_s - z_t)                               key nodes s, exact softmax

  where A^(q'_t)_t = softmax_s(score(q'_t, k_s)) is read from a pass that patches the head's
  queries, and w_ts = (a' - a) / (1 - a) = a (e^x - 1) / (1 - a + a e^x), a = A_ts,
  x = score(q_t, k'_s) - l_ts, is the exact softmax change of row t when key s alone is patched
  (its attention goes from a to a', every other key's scales by (1 - a') / (1 - a)). So
  g_z . D = sum of the AtP* estimates of the head's value, query and key nodes at every
  position, read through the query rows of the component (all rows, or row p for a component
  at position p). Nothing between those nodes and the head output is linearised; what is lost
  against the exact z(source) is the interaction between nodes patched together (two keys in
  one softmax row, a query with a key, a value with the pattern): D = z(source) - z(base)
  whenever only one query or one key of the head changes and the values do not. Everything
  after hook_z stays linear, as in AtP: for hook_z components plain AtP already uses the exact
  z(source), pattern change included, so the QK fix moves the estimate only through the
  per-node split, and can be better or worse than AtP on hook_z.
- GradDrop (``graddrop: true``, Kramar et al. 2024, section 3.1.2): for each block l the AtP
  estimate with the gradient through block l's residual contribution dropped (stop-gradient on
  resid_post_l - resid_pre_l; the skip path keeps its gradient), GD_l(c) = g_c^(l) . D_c, and the
  score (1 / (L - 1)) sum_l |GD_l(c)| (L blocks; 1 / 1 when L = 1), with GD_l the mean over
  prompts. A ranking aid against cancellation, not an effect estimate: written as the column
  ``graddrop_score``; ``estimates`` stay g_c . D_c.
Source: Kramar, Lieberum, Shah & Nanda 2024, "AtP*: An efficient and scalable method for
localizing LLM behaviour to components" (arXiv:2403.00745); AtP: Nanda 2023.
Sign: estimate of L(base | a_c <- a_c(source)) - L(base) (noising: base = clean, source =
corrupt; see :mod:`harness.context`).
Cost: as AtP (one source forward, one base forward and one backward), plus, with head
components and ``qk_fix``, one base forward for the heads' scores, patterns and values and one
forward of three patched copies of the prompts (query, value and key patches of every head
layer at once); plus, with ``graddrop``, one forward and one backward over L copies of the
prompts (one copy per dropped block, chunked to ``batch_size`` sequences).
Proved by: tests/methods/test_atp_star.py (equals AtP with both fixes off; exact where a single
key of the head changes and everything after the head is linear, where AtP through the head's
queries and keys is not; source == base gives zero; GradDrop equals a per-layer reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.budget import chunk_plan
from harness.components import reduce_per_component
from harness.context import AttributionContext
from harness.cost import BACKWARD, FORWARD, CostEstimate
from harness.methods.base import Method, MethodOutput
from harness.patching import (
    Activations,
    collect_activations,
    copy_patch_hook,
    full_batches,
    metric_gradients,
    pass_row_bytes,
    site_names,
)
from harness.task_metric import per_prompt_metric
from harness.types import Component

_QKV = ("q", "k", "v")


class AtPStar(Method):
    """AtP with the QK fix for head components and optional GradDrop ranking scores."""

    @dataclass(frozen=True)
    class Options:
        qk_fix: bool = True
        graddrop: bool = False

    bound = None  # the QK fix moves head estimates off f'(0)
    grows_with_components = False  # a fixed number of passes for every component at once

    def error_bound(self) -> str | None:
        return None if self.options.qk_fix else "atp"  # without the fix it is AtP

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate:
        cost = 2 * FORWARD + BACKWARD
        if self.config["qk_fix"] and any(c.site == "head" for c in ctx.components):
            cost += 4 * FORWARD  # the heads' base pass and three patched copies
        if self.config["graddrop"]:
            cost += ctx.model.shape.n_layers * (FORWARD + BACKWARD)
        return CostEstimate(cost, "AtP + the QK fix's passes + GradDrop's one per layer")

    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        names = site_names(ctx.components)
        head_layers = []
        if self.config["qk_fix"]:
            head_layers = sorted({c.layer for c in ctx.components if c.site == "head"})
        qkv = [ctx.model.attention_hook_name(layer, kind) for layer in head_layers for kind in _QKV]
        _, source = collect_activations(ctx, ctx.source_tokens, names + qkv)
        _, base, grads = metric_gradients(ctx, ctx.base_tokens, names)
        deltas = {name: source[name] - base[name] for name in names}
        if head_layers:
            deltas.update(qk_fixed_deltas(ctx, head_layers, base, source))
        products = {name: deltas[name] * grads[name] for name in names}
        estimates = reduce_per_component(products, ctx.components).double()
        columns = {}
        if self.config["graddrop"]:
            columns["graddrop_score"] = graddrop_scores(ctx, deltas)
        return MethodOutput(estimates=estimates, columns=columns)


def qk_fixed_deltas(
    ctx: AttributionContext, layers: Sequence[int], base: Activations, source: Activations
) -> Activations:
    """hook_z name -> D [n, seq, head, d_head] for each layer (see the module docstring).

    ``base`` holds the base run's hook_z, ``source`` the source run's hook_q/k/v of ``layers``.
    """
    kinds = ("v", "attn_scores", "pattern")
    _, extra = collect_activations(
        ctx,
        ctx.base_tokens,
        [ctx.model.attention_hook_name(layer, kind) for layer in layers for kind in kinds],
    )
    patched = _patched_head_passes(ctx, layers, base, source)
    out: Activations = {}
    for layer in layers:
        z_name = ctx.model.attention_hook_name(layer, "z")
        z = base[z_name]
        z_query, z_value, scores_key = patched[layer]
        values = extra[ctx.model.attention_hook_name(layer, "v")]
        values = values.repeat_interleave(z.shape[2] // values.shape[2], dim=2)
        key_term = _key_term(
            extra[ctx.model.attention_hook_name(layer, "pattern")],
            extra[ctx.model.attention_hook_name(layer, "attn_scores")],
            scores_key,
            values,
            z,
        )
        out[z_name] = (z_query - z) + (z_value - z) + key_term
    return out


def _key_term(
    pattern: torch.Tensor,
    scores: torch.Tensor,
    scores_key: torch.Tensor,
    values: torch.Tensor,
    z: torch.Tensor,
) -> torch.Tensor:
    """sum_s w_ts (v_s - z_t) [n, seq, head, d_head], w the exact change of softmax row t when
    key s alone takes its source value; ``pattern``/``scores``/``scores_key`` [n, head, t, s]
    (``scores_key``: base queries against source keys), ``values`` [n, s, head, d_head]."""
    a = pattern
    moving = (a > 0) & (a < 1)  # masked keys stay masked; a lone key keeps all the attention
    x = torch.where(moving, scores_key - scores, torch.zeros_like(scores))
    e = torch.exp(-x.abs())  # w = a (e^x - 1) / (1 - a + a e^x), written without overflow
    up = a * (1 - e) / ((1 - a) * e + a)
    down = a * (e - 1) / (1 - a + a * e)
    w = torch.where(moving, torch.where(x > 0, up, down), torch.zeros_like(a))
    return torch.einsum("bhts,bshd->bthd", w, values) - w.sum(-1).transpose(1, 2)[..., None] * z


def _patched_head_passes(
    ctx: AttributionContext,
    layers: Sequence[int],
    base: Activations,
    source: Activations,
) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per layer: hook_z with the heads' queries patched, hook_z with their values patched and
    the attention scores with their keys patched, each [n, ...], all from base inputs.

    One pass holds three copies of the prompts (copy 0 patches q, 1 patches v, 2 patches k, at
    every layer); each head's hook_z is reset to its base value after it is read, so every layer
    sees base inputs.
    """
    copies = 3
    row_cost = pass_row_bytes(ctx, "forward", fast=False)
    plan = chunk_plan(ctx, copies, row_cost, "atp_star qk fix", together=True)
    parts: dict[int, list[list[torch.Tensor]]] = {layer: [[], [], []] for layer in layers}
    for rows in ctx.prompt_chunks(plan.prompt_rows):
        m = rows.stop - rows.start
        store: dict[str, torch.Tensor] = {}
        hooks = []
        for layer in layers:
            for copy, kind in ((0, "q"), (1, "v"), (2, "k")):
                name = ctx.model.attention_hook_name(layer, kind)
                hooks.append((name, copy_patch_hook([(copy, ())], source[name][rows], m)))
            for kind in ("attn_scores", "z"):
                name = ctx.model.attention_hook_name(layer, kind)
                reset = base[name][rows] if kind == "z" else None
                hooks.append((name, _read_hook(store, name, copies, reset)))
        with torch.no_grad():
            ctx.model.run(ctx.base_tokens[rows].repeat(copies, 1), hooks)
        ctx.cost.forward(copies * m)
        for layer in layers:
            z_name = ctx.model.attention_hook_name(layer, "z")
            z = store[z_name].view(copies, m, *base[z_name].shape[1:])
            scores = store[ctx.model.attention_hook_name(layer, "attn_scores")]
            scores = scores.view(copies, m, *scores.shape[1:])
            for slot, value in enumerate((z[0], z[1], scores[2])):
                parts[layer][slot].append(value)
    return {layer: tuple(torch.cat(p) for p in parts[layer]) for layer in layers}


def _read_hook(store: dict[str, torch.Tensor], name: str, copies: int, reset: torch.Tensor | None):
    """A hook recording the activation; with ``reset`` [m, ...] it then returns that value in
    every copy."""

    def hook(act: torch.Tensor, hook: object) -> torch.Tensor | None:
        store[name] = act.detach()
        if reset is None:
            return None
        return reset.to(act.dtype).repeat(copies, *([1] * (act.dim() - 1)))

    return hook


def graddrop_scores(ctx: AttributionContext, deltas: Activations) -> torch.Tensor:
    """(1 / max(L - 1, 1)) sum_l |GD_l(c)| [n_components], GD_l(c) = g_c^(l) . D_c with the
    gradient through block l's residual contribution dropped (mean over prompts)."""
    per_layer = graddrop_estimates(ctx, ctx.components, deltas)
    return per_layer.abs().sum(dim=0) / max(per_layer.shape[0] - 1, 1)


def graddrop_estimates(
    ctx: AttributionContext, components: Sequence[Component], deltas: Activations
) -> torch.Tensor:
    """GD_l(c) [n_layers, n_components] (float64): the AtP estimate with block l's residual
    contribution under stop-gradient. Copies of the prompts, one per dropped block, share a
    forward and a backward pass."""
    n_layers = ctx.model.shape.n_layers
    names = list(deltas)
    out = torch.zeros(n_layers, len(components), dtype=torch.float64)
    row_cost = pass_row_bytes(ctx, "backward", fast=False)
    plan = chunk_plan(ctx, n_layers, row_cost, "atp_star graddrop")
    for rows, dropped in full_batches(ctx, n_layers, plan, "graddrop"):
        grads = _dropped_gradients(ctx, rows, names, dropped)
        for copy, layer in enumerate(dropped):
            products = {
                name: deltas[name][rows] * _copy(grads[name], copy, len(dropped)) for name in names
            }
            out[layer] += reduce_per_component(products, components).double().cpu()
    return out


def _copy(stacked: torch.Tensor, copy: int, copies: int) -> torch.Tensor:
    """Copy ``copy`` [m, ...] of ``copies`` prompt copies stacked along the batch."""
    return stacked.view(copies, stacked.shape[0] // copies, *stacked.shape[1:])[copy]


def _dropped_gradients(
    ctx: AttributionContext, rows: slice, names: Sequence[str], dropped: Sequence[int]
) -> dict[str, torch.Tensor]:
    """dL/da at ``names`` for len(dropped) stacked copies of the prompts in ``rows``; copy j has
    block dropped[j]'s contribution resid_post - resid_pre under stop-gradient."""
    n, m, copies = ctx.batch.n, rows.stop - rows.start, len(dropped)
    eps: dict[str, torch.Tensor] = {}
    pre: dict[int, torch.Tensor] = {}
    block_of = {}
    for copy, layer in enumerate(dropped):
        pre_name, post_name = ctx.model.block_hook_names(layer)
        block_of[pre_name] = ("pre", copy, layer)
        block_of[post_name] = ("post", copy, layer)

    def make_hook(name: str):
        def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
            if name in names:
                eps[name] = torch.zeros_like(act, requires_grad=True)
                act = act + eps[name]
            role = block_of.get(name)
            if role is None:
                return act
            kind, copy, layer = role
            if kind == "pre":
                pre[layer] = act
                return act
            out = act.clone()
            index = slice(copy * m, (copy + 1) * m)
            out[index] = pre[layer][index] + (act[index] - pre[layer][index]).detach()
            return out

        return hook

    hooked = list(dict.fromkeys(list(names) + list(block_of)))
    tokens = ctx.base_tokens[rows].repeat(copies, 1)
    with torch.enable_grad():
        sub = ctx.batch.select(rows)
        logits = ctx.model.run(
            tokens, [(name, make_hook(name)) for name in hooked], read_pos=sub.last.repeat(copies)
        )
        per_prompt = per_prompt_metric(logits, sub, ctx.metric, copies)
        inputs = [eps[name] for name in names]
        grads = torch.autograd.grad(per_prompt.sum() / n, inputs, allow_unused=True)
    ctx.cost.forward(tokens.shape[0])
    ctx.cost.n_backward += 1
    return {
        name: torch.zeros_like(eps[name]) if grad is None else grad
        for name, grad in zip(names, grads, strict=True)
    }
