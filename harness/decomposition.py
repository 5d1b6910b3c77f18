"""Where AtP's error comes from: the patched effect with parts of the network linearized.

For component c, f_c(t) = L(base | a_c <- a_c + t d_c) (see :mod:`harness.second_order`); the
truth is f_c(1) - f_c(0) and AtP is f_c'(0). Replace a part of the network downstream of c by
its **first-order expansion around the unpatched run**, part(x) ~ part(x0) + J(x0) (x - x0)
(its tangent map at the base run's input x0, not frozen values), and patch again: the
*linearized effect* of that part. With nothing linearized it is the truth; with every
non-linear operation downstream of c linearized the network from a_c to L is affine with the
chain-rule Jacobian, so the effect is exactly AtP (the chain rule; tests/test_decomposition.py
checks both in float64 on every zoo family). The error a part accounts for is the change in
the patched effect when only that part is linearized; its **share** of AtP's error is

    share_part = (lin_part - truth) / (AtP - truth)

(1: the part alone explains AtP's error; the shares of a cut sum to 1 when the parts'
errors add up, and the sum's distance from 1 measures their interaction).

The non-linear operations ("kinds"), each intercepted at the bridge's hooks in the patched
run and replaced by its expansion around the base run's values recorded at the same hooks:

- ``softmax``: raw attention scores -> pattern (the softmax, with Gemma-2's score softcap);
  P0 + J_softmax(S0) (S - S0).
- ``qk``: the bilinear scores q.k^T (after rotary embeddings); the second-order term
  scale * dq dk^T is removed.
- ``pv``: the bilinear pattern x values; dP dV is removed from z.
- ``norm``: every LayerNorm / RMSNorm in a block (Gemma-2's pre and post norms):
  y0 + jvp(norm, x0, x - x0) (forward-mode AD through the norm's own module).
- ``act``: the MLP activation: act(g0) + act'(g0) (g - g0).
- ``gate``: the gated MLP's product act(gate) x up (gated MLPs only).
- ``readout``: final norm, unembedding (and Gemma-2's final softcap) and the metric, as a
  function of the final residual stream x at the read position: L(x0) + dL/dx(x0) . (x - x0).

The cuts reported per component (columns ``decomp_lin_<part>`` and ``decomp_share_<part>``):

- by location: ``local`` (every kind in c's own block, ``block<l>`` with l = c's layer),
  each later block ``block<j>``, ``readout``, and ``downstream`` (all later blocks and the
  readout together); ``decomp_share_sum_location`` = local + later blocks + readout.
- by kind: each kind in every block from c's own on (``readout`` as above);
  ``decomp_share_sum_kind``.
- ``all``: everything linearized (equal to ``decomp_atp`` up to rounding).

Cost: one patched copy per (component, part), each run on the ground-truth engine's fast path
(:func:`harness.patching.copy_batches`: from the component's block, over the positions a patch
can change) plus one clean forward and backward per prompt chunk. A part whose first linearized
block j lies after the component's own (``block<j>``, ``downstream``) runs like the plain
patched copy up to block j, so it enters at block j from one recorded plain patched pass per
component (the ``readout`` part costs no pass): per head at layer l of L, about
(L - l)^2 / 2 + 11 (L - l) blocks instead of (L - l)(L - l + 10) (1.5x fewer on a 30-layer
model's first block; :func:`linearized_effects`). A model whose operations the harness
cannot intercept, or whose recorded values do not reproduce the bridge's own (an attention
variant the formulas above do not describe), is a one-line :class:`HarnessError`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.adapter import READOUT_HOOK, BlockOps, block_ops, site_hook_name
from harness.budget import chunk_plan
from harness.context import AttributionContext, CostCounter
from harness.cost import BACKWARD, FORWARD, CostEstimate, check_cost, per_component_cost
from harness.errors import HarnessError
from harness.patching import (
    FastPathUnavailable,
    _agree,
    collect_activations,
    copy_batches,
    pass_row_bytes,
    site_names,
)
from harness.second_order import path_derivatives
from harness.task_metric import per_prompt_metric
from harness.types import Component

BLOCK_KINDS = ("softmax", "qk", "pv", "norm", "act", "gate")
"""The kinds of non-linearity inside a block; with ``readout`` they partition the network."""
KINDS = (*BLOCK_KINDS, "readout")
VERSION = 1
"""Bumped when the decomposition's definition changes (part of the cache key)."""

Variant = frozenset[tuple[int, str]]
"""The parts linearized in one patched copy: a frozenset of (layer, kind); the readout is
(n_layers, "readout")."""


def component_parts(component: Component, n_layers: int, gated: bool) -> list[tuple[str, Variant]]:
    """(part name, variant) of every part reported for ``component`` (module docstring)."""
    layer = component.layer
    kinds = [k for k in BLOCK_KINDS if gated or k != "gate"]
    readout = frozenset({(n_layers, "readout")})

    def block(j: int) -> Variant:
        return frozenset((j, k) for k in kinds)

    later = frozenset().union(*(block(j) for j in range(layer + 1, n_layers)))
    parts = [
        ("all", block(layer) | later | readout),
        ("local", block(layer)),
        ("downstream", later | readout),
        ("readout", readout),
    ]
    parts += [(f"block{j}", block(j)) for j in range(layer + 1, n_layers)]
    parts += [(kind, frozenset((j, kind) for j in range(layer, n_layers))) for kind in kinds]
    return parts


def linearized_effects(
    ctx: AttributionContext,
    components: Sequence[Component],
    variants: Sequence[Variant],
    source: Mapping[str, torch.Tensor] | None = None,
    desc: str = "error decomposition",
    reuse_prefix: bool = True,
) -> torch.Tensor:
    """Effects [len(components)] (float64): mean over prompts of L(base | a_c <- source_c, the
    parts ``variants[i]`` linearized around the base run) - L(base), for c = components[i].

    ``source``: the source run's activations at every site of ``components`` (collected when
    not given). An empty variant gives the activation-patching effect. Parts before c's own
    block are ignored (nothing there sees the patch).

    ``reuse_prefix``: a copy whose first linearized block j comes after c's own runs like the
    plain patched copy up to block j, so one plain patched pass per component records the
    residual stream entering every later block and the final one, and such a copy enters at
    block j from it (the readout alone, or nothing, costs no pass). This runs
    (n_layers - layer)^2 / 2 + 11 (n_layers - layer) blocks per component of per-head parts
    instead of (n_layers - layer) (n_layers - layer + 10); the same effects up to rounding.
    False: every copy runs from c's own block (the reference).
    """
    count = len(components)
    effects = torch.zeros(count, dtype=torch.float64)
    if not count:
        return effects
    if source is None:
        _, source = collect_activations(ctx, ctx.source_tokens, site_names(components))
    n_layers = ctx.model.shape.n_layers
    ops = [block_ops(ctx.model, layer) for layer in range(n_layers)]
    entries = [_entry(c, v, n_layers) for c, v in zip(components, variants, strict=True)]
    prefix = [reuse_prefix and entries[i] > components[i].layer for i in range(count)]
    own = [i for i in range(count) if not prefix[i]]
    later = [i for i in range(count) if prefix[i]]
    try:
        if own:
            mine = [components[i] for i in own]
            plan = chunk_plan(ctx, len(own), pass_row_bytes(ctx, "backward"), desc)
            cleans = _Cleans(ctx, ops)
            for _, batch in copy_batches(ctx, mine, plan, desc):
                clean = cleans.of(batch)
                chosen = [variants[own[i]] for i in batch.chunk]
                hooks = batch.patch_hooks(mine, source)
                values = _linearized_pass(ctx, clean, batch, ops, chosen, hooks, batch.run)
                diff = _effects(values, clean, batch.live)
                effects[[own[i] for i in batch.chunk]] += diff.cpu()
        if later:
            _from_recorded_prefix(ctx, components, variants, entries, later, source, ops, effects)
    except FastPathUnavailable as err:
        raise HarnessError(
            f"the error decomposition needs the fast patching engine, which model "
            f"{ctx.model.name!r} does not support ({err})"
        ) from None
    return effects / ctx.batch.n


def _entry(component: Component, variant: Variant, n_layers: int) -> int:
    """The first block a copy of ``component`` with ``variant`` linearized differs in from
    the plain patched copy (``n_layers``: none, or only the readout)."""
    return min((layer for layer, _ in variant if layer >= component.layer), default=n_layers)


def _from_recorded_prefix(
    ctx: AttributionContext,
    components: Sequence[Component],
    variants: Sequence[Variant],
    entries: Sequence[int],
    items: Sequence[int],
    source: Mapping[str, torch.Tensor],
    ops: Sequence[BlockOps],
    effects: torch.Tensor,
) -> None:
    """Add to ``effects`` the summed effects of the copies ``items``, whose first linearized
    block (``entries``) lies after their component's own: one plain patched pass per
    component records the residual stream entering each later block and the final one; each
    copy enters at its block from that record (or, entering at the readout, only its value
    is taken from it)."""
    n_layers = ctx.model.shape.n_layers
    distinct = sorted({components[i] for i in items})
    at = {component: index for index, component in enumerate(distinct)}
    owned: list[list[int]] = [[] for _ in distinct]
    for i in items:
        owned[at[components[i]]].append(i)
    desc = "error decomposition (recorded prefixes)"
    plan = chunk_plan(ctx, len(items), pass_row_bytes(ctx, "backward"), desc)
    cleans = _Cleans(ctx, ops)
    for _, batch in copy_batches(ctx, distinct, plan, desc):
        clean = cleans.of(batch)
        m = batch.m
        first = min(batch.layers)
        record: dict[str, torch.Tensor] = {}
        names = [site_hook_name("resid_pre", j) for j in range(first + 1, n_layers)]
        keep = [(name, _keep(record, name)) for name in [*names, READOUT_HOOK]]
        hooks = batch.patch_hooks(distinct, source) + keep
        empty = [frozenset()] * batch.copies
        plain = _linearized_pass(ctx, clean, batch, ops, empty, hooks, batch.run)
        plain_effects = _effects(plain, clean, batch.live, summed=False)  # [copies, m]
        final = record[READOUT_HOOK]
        copies = []  # (entry, copy q in batch, item) of the copies that run blocks
        for q, d in enumerate(batch.chunk):
            for i in owned[d]:
                if entries[i] < n_layers:
                    copies.append((entries[i], q, i))
                    continue
                value = plain_effects[q]
                if (n_layers, "readout") in variants[i]:
                    rows = slice(q * m, (q + 1) * m)
                    lin = _readout_lin(clean, final[rows])
                    value = _effects(lin, clean, batch.live[q : q + 1], summed=False)[0]
                effects[i] += value.sum().cpu()
        copies.sort(key=lambda entry: entry[0])
        for start in range(0, len(copies), plan.copies):
            part = copies[start : start + plan.copies]
            enter: dict[int, list[torch.Tensor]] = {}
            for layer, q, _ in part:
                enter.setdefault(layer, []).append(
                    record[site_hook_name("resid_pre", layer)][q * m : (q + 1) * m]
                )
            stacked = {layer: torch.cat(values) for layer, values in enter.items()}
            chosen = [variants[i] for _, _, i in part]
            run = partial(batch.run, entries=stacked)
            values = _linearized_pass(ctx, clean, batch, ops, chosen, [], run)
            live = batch.live[[q for _, q, _ in part]]
            effects[[i for _, _, i in part]] += _effects(values, clean, live).cpu()


class _Cleans:
    """The base run of the current prompt chunk (:func:`_clean_run`), recomputed only when a
    pass moves to another chunk."""

    def __init__(self, ctx: AttributionContext, ops: Sequence[BlockOps]) -> None:
        self.ctx, self.ops = ctx, ops
        self.rows: tuple[int, int] | None = None
        self.clean: _Clean | None = None

    def of(self, batch: Any) -> _Clean:
        rows = (batch.rows.start, batch.rows.stop)
        if self.clean is None or self.rows != rows:
            self.clean, self.rows = _clean_run(self.ctx, batch, self.ops), rows
        return self.clean


def _linearized_pass(
    ctx: AttributionContext,
    clean: _Clean,
    batch: Any,
    ops: Sequence[BlockOps],
    chosen: Sequence[Variant],
    hooks: list,
    run: Any,
) -> torch.Tensor:
    """The metric [copies * m] of one pass whose copy j has ``chosen[j]`` linearized (copies
    ordered by the block they enter at); ``hooks``: the pass's other hooks (the patches);
    ``run(ctx, hooks)``: the pass's logits at the read positions."""
    n_layers = ctx.model.shape.n_layers
    masks: dict[tuple[int, str], torch.Tensor] = {}
    for j, variant in enumerate(chosen):
        for part in variant:
            masks.setdefault(part, torch.zeros(len(chosen), dtype=torch.bool))
            masks[part][j] = True
    device = clean.metric.device
    rowmask = {part: mask.to(device).repeat_interleave(batch.m) for part, mask in masks.items()}
    view = _Window(clean, batch.p0, batch.stop)
    store: dict[str, torch.Tensor] = {}
    own: list[tuple[str, Any]] = []
    for layer in range(n_layers):
        own += _block_hooks(ops[layer], layer, view, rowmask, store)
    readout = rowmask.get((n_layers, "readout"))
    if readout is not None:
        own.append((READOUT_HOOK, _keep(store, READOUT_HOOK)))
    with torch.no_grad():
        logits = run(ctx, own + hooks)
        values = per_prompt_metric(logits, batch.read, ctx.metric, len(chosen))
        if readout is not None:
            lin = _readout_lin(clean, store[READOUT_HOOK])
            values = torch.where(readout, lin.to(values.dtype), values)
    return values


def _readout_lin(clean: _Clean, x: torch.Tensor) -> torch.Tensor:
    """The linearized readout L(x0) + dL/dx(x0) . (x - x0) [rows] of final residuals x
    [rows, 1, d] (copies of the chunk's prompts, copy-major)."""
    rows = x.shape[0]
    grad = _rep(clean.readout_grad, rows)
    return _rep(clean.metric, rows) + (
        (x - _rep(clean.tensors[READOUT_HOOK], rows)) * grad
    ).flatten(1).sum(dim=1)


def _effects(
    values: torch.Tensor, clean: _Clean, live: torch.Tensor, summed: bool = True
) -> torch.Tensor:
    """Per copy, the effect summed over prompts [copies] (``summed``; else [copies, m]) of
    metric ``values`` [copies * m]; 0 where ``live`` [copies, m] is False."""
    diff = values.view(live.shape[0], -1).double() - clean.metric.double()
    diff = diff.masked_fill(~live, 0.0)
    return diff.sum(dim=1) if summed else diff


@dataclass
class _Clean:
    """The base run of one prompt chunk as the hooks saw it (full positions, m rows).

    ``tensors``: hook name -> value; ``metric`` [m]: L per prompt; ``readout_grad`` [m, 1, d]:
    dL_p/dx at the final residual's read position; ``act``/``dact``: act(g0) and act'(g0) per
    layer; ``scale``: the attention score scale per layer; ``rotated``: per layer, whether the
    recorded q/k need rotary embeddings applied (the bridge hooks them before rotation)."""

    tensors: dict[str, torch.Tensor]
    metric: torch.Tensor
    readout_grad: torch.Tensor
    act: dict[int, torch.Tensor] = field(default_factory=dict)
    dact: dict[int, torch.Tensor] = field(default_factory=dict)
    scale: dict[int, float] = field(default_factory=dict)
    qk_names: dict[int, tuple[str, str]] = field(default_factory=dict)
    rotate: dict[int, bool] = field(default_factory=dict)


def _hook_names(ops: BlockOps) -> list[str]:
    names = []
    if ops.attention is not None:
        att = ops.attention
        names += [att.q, att.k, att.v, att.scores, att.pattern, att.z]
        names += [n for n in (att.rot_q, att.rot_k, att.cos, att.sin) if n]
    for prefix in ops.norms:
        names += [f"{prefix}.hook_in", f"{prefix}.hook_out"]
    if ops.mlp is not None:
        names += [n for n in (ops.mlp.pre, ops.mlp.up, ops.mlp.post) if n]
    return names


def _clean_run(ctx: AttributionContext, batch: Any, ops: Sequence[BlockOps]) -> _Clean:
    """Record the base run of ``batch``'s prompt chunk at every intercepted hook, the readout
    gradient, and check that the recorded values reproduce each intercepted operation."""
    inputs, sub = batch.inputs, batch.sub
    store: dict[str, torch.Tensor] = {}
    eps: dict[str, torch.Tensor] = {}
    names = [name for block in ops for name in _hook_names(block)]
    hooks = [(name, _keep(store, name)) for name in names]

    def readout(act: torch.Tensor, hook: object) -> torch.Tensor:
        store[READOUT_HOOK] = act.detach()
        eps[READOUT_HOOK] = torch.zeros_like(act, requires_grad=True)
        return act + eps[READOUT_HOOK]

    hooks.append((READOUT_HOOK, readout))
    with torch.enable_grad():
        logits = ctx.model.run_from_layer(inputs.resid[0], 0, hooks, inputs, read_pos=sub.last)
        metric = per_prompt_metric(logits, sub, ctx.metric)
        (grad,) = torch.autograd.grad(metric.sum(), eps[READOUT_HOOK])
    ctx.cost.forward(sub.n)
    ctx.cost.n_backward += 1
    clean = _Clean(tensors=store, metric=metric.detach(), readout_grad=grad.detach())
    for layer, block in enumerate(ops):
        _check_block(ctx, clean, block, layer)
    return clean


def _check_block(ctx: AttributionContext, clean: _Clean, ops: BlockOps, layer: int) -> None:
    """Derived base-run values of block ``layer`` and the reconstruction checks."""
    t = clean.tensors
    model = ctx.model.name

    def fail(what: str) -> HarnessError:
        return HarnessError(
            f"model {model!r}: cannot linearize {what} of block {layer} (its recorded "
            "values do not reproduce the bridge's own; unsupported variant)"
        )

    for prefix, function in ops.norms.items():
        if f"{prefix}.hook_in" not in t:
            raise fail(f"norm {prefix}")
        with torch.no_grad():
            if not _agree(function(t[f"{prefix}.hook_in"]), t[f"{prefix}.hook_out"]):
                raise fail(f"norm {prefix}")
    mlp = ops.mlp
    if mlp is not None:
        if mlp.pre not in t or mlp.post not in t:
            raise fail("the MLP")
        pre = t[mlp.pre].clone().requires_grad_(True)
        with torch.enable_grad():
            act = mlp.act(pre)
            (dact,) = torch.autograd.grad(act.sum(), pre)
        act = act.detach()
        post = act * t[mlp.up] if mlp.up in t else act
        if (mlp.up is not None) != (mlp.up in t) or not _agree(post, t[mlp.post]):
            raise fail(f"the MLP activation ({type(mlp.act).__name__})")
        clean.act[layer], clean.dact[layer] = act, dact.detach()
    att = ops.attention
    if att is None:
        return
    if att.scores not in t or att.pattern not in t or att.z not in t:
        raise fail(f"the attention ({att.kind})")
    if att.rot_q in t and att.rot_k in t:
        clean.qk_names[layer], clean.rotate[layer] = (att.rot_q, att.rot_k), False
    else:
        clean.qk_names[layer] = (att.q, att.k)
        clean.rotate[layer] = att.cos in t and att.rotary is not None
    q_name, k_name = clean.qk_names[layer]
    view = _Window(clean, 0, t[att.pattern].shape[-1])
    q, k = view.rotated(att, clean.rotate[layer], t[q_name], t[k_name])
    raw = _scores(q, k, t[att.pattern].shape[-1])
    scores = t[att.scores]
    visible = _visible(scores)
    target = scores if att.softcap is None else _uncap(scores, att.softcap, visible)
    den = float((raw * raw)[visible].sum())
    scale = float((raw * target)[visible].sum()) / den if den > 0 else 1.0
    if not _agree(torch.where(visible, scale * raw, 0), torch.where(visible, target, 0)):
        raise fail(f"the attention scores ({att.kind})")
    clean.scale[layer] = scale
    z = _pattern_values(t[att.pattern], t[att.v], t[att.pattern].shape[-1])
    if not _agree(z, t[att.z]):
        raise fail(f"the attention output ({att.kind})")


class _Window:
    """The base run's recorded values cut to a pass's positions ``p0``..``stop - 1`` (keys
    0..``stop - 1``) and repeated over its copies."""

    def __init__(self, clean: _Clean, p0: int, stop: int) -> None:
        self.clean, self.p0, self.stop = clean, p0, stop

    def get(self, name: str, rows: int, scores: bool = False) -> torch.Tensor:
        value = self.clean.tensors[name]
        if scores:
            value = value[:, :, self.p0 : self.stop, : self.stop]
        elif name != READOUT_HOOK:
            value = value[:, self.p0 : self.stop]
        return _rep(value, rows)

    def derived(self, table: dict[int, torch.Tensor], layer: int, rows: int) -> torch.Tensor:
        return _rep(table[layer][:, self.p0 : self.stop], rows)

    def rotated(
        self, att: Any, rotate: bool, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries and keys [rows, pos, heads, d] after rotary embeddings (a linear map, so
        it applies to differences as well)."""
        if not rotate:
            return q, k
        cos = self.clean.tensors[att.cos][:, self.p0 : self.stop]
        sin = self.clean.tensors[att.sin][:, self.p0 : self.stop]
        q, k = att.rotary(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
        return q.transpose(1, 2), k.transpose(1, 2)


def _rep(value: torch.Tensor, rows: int) -> torch.Tensor:
    """``value`` [m, ...] repeated copy-major to ``rows`` rows."""
    reps = rows // value.shape[0]
    return value if reps == 1 else value.repeat(reps, *([1] * (value.dim() - 1)))


def _keys(k: torch.Tensor, n_keys: int, n_heads: int) -> torch.Tensor:
    """Keys/values of a window [rows, win, kv_heads, d] as the scores read them: positions
    before the window are zero (a difference there is zero: they are the base run's), KV heads
    expanded to the query heads -> [rows, n_keys, n_heads, d]."""
    pad = n_keys - k.shape[1]
    if pad > 0:
        k = torch.cat([k.new_zeros(k.shape[0], pad, *k.shape[2:]), k], dim=1)
    if k.shape[2] != n_heads:
        k = k.repeat_interleave(n_heads // k.shape[2], dim=2)
    return k


def _scores(q: torch.Tensor, k: torch.Tensor, n_keys: int) -> torch.Tensor:
    """Unscaled q.k [rows, heads, q_pos, k_pos] of q [rows, q_pos, heads, d] and keys
    [rows, win, kv_heads, d] (see :func:`_keys`)."""
    return torch.einsum("rqhd,rkhd->rhqk", q, _keys(k, n_keys, q.shape[2]))


def _pattern_values(pattern: torch.Tensor, v: torch.Tensor, n_keys: int) -> torch.Tensor:
    """pattern [rows, heads, q, k] x values [rows, win, kv_heads, d] -> [rows, q, heads, d]."""
    return torch.einsum("rhqk,rkhd->rqhd", pattern, _keys(v, n_keys, pattern.shape[1]))


def _visible(scores: torch.Tensor) -> torch.Tensor:
    """Entries the mask leaves visible (finite and above half the dtype's minimum)."""
    return torch.isfinite(scores) & (scores > torch.finfo(scores.dtype).min / 2)


def _uncap(scores: torch.Tensor, cap: float, visible: torch.Tensor) -> torch.Tensor:
    """Raw scores under a softcap scores = c tanh(raw / c) (0 where masked)."""
    return cap * torch.atanh(torch.where(visible, scores, 0) / cap)


def _keep(store: dict[str, torch.Tensor], name: str):
    def hook(act: torch.Tensor, hook: object) -> None:
        store[name] = act.detach()

    return hook


def _block_hooks(
    ops: BlockOps,
    layer: int,
    view: _Window,
    rowmask: dict[tuple[int, str], torch.Tensor],
    store: dict[str, torch.Tensor],
) -> list[tuple[str, Any]]:
    """The hooks that linearize block ``layer``'s operations in the copies whose row mask
    asks for it (a no-op elsewhere)."""
    hooks: list[tuple[str, Any]] = []
    masks = {kind: rowmask.get((layer, kind)) for kind in BLOCK_KINDS}
    clean = view.clean

    def rows_of(mask: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return mask[: act.shape[0]].view(-1, *([1] * (act.dim() - 1)))

    for prefix, function in ops.norms.items() if masks["norm"] is not None else ():
        name_in, name_out = f"{prefix}.hook_in", f"{prefix}.hook_out"

        def norm_out(act, hook, name_in=name_in, name_out=name_out, function=function):
            rows = act.shape[0]
            x0 = view.get(name_in, rows)
            _, tangent = torch.func.jvp(function, (x0,), (store[name_in] - x0,))
            lin = view.get(name_out, rows) + tangent
            return torch.where(rows_of(masks["norm"], act), lin.to(act.dtype), act)

        hooks += [(name_in, _keep(store, name_in)), (name_out, norm_out)]

    mlp = ops.mlp
    if mlp is not None and (masks["act"] is not None or masks["gate"] is not None):
        hooks.append((mlp.pre, _keep(store, mlp.pre)))
        if mlp.up is not None:
            hooks.append((mlp.up, _keep(store, mlp.up)))

        def post(act, hook):
            rows = act.shape[0]
            g = store[mlp.pre]
            a_true = mlp.act(g)
            a0 = view.derived(clean.act, layer, rows)
            a = a_true
            if masks["act"] is not None:
                g0 = view.get(mlp.pre, rows)
                lin = a0 + view.derived(clean.dact, layer, rows) * (g - g0)
                a = torch.where(rows_of(masks["act"], act), lin, a_true)
            if mlp.up is None:
                return act + (a - a_true)
            u = store[mlp.up]
            value = a * u
            if masks["gate"] is not None:
                u0 = view.get(mlp.up, rows)
                lin = a * u0 + a0 * u - a0 * u0
                value = torch.where(rows_of(masks["gate"], act), lin, value)
            return act + (value - a_true * u)

        hooks.append((mlp.post, post))

    att = ops.attention
    if att is None or all(masks[k] is None for k in ("softmax", "qk", "pv")):
        return hooks
    q_name, k_name = clean.qk_names[layer]
    rotate, scale, cap = clean.rotate[layer], clean.scale[layer], att.softcap
    if masks["qk"] is not None:
        hooks += [(q_name, _keep(store, q_name)), (k_name, _keep(store, k_name))]
    if masks["pv"] is not None:
        hooks.append((att.v, _keep(store, att.v)))

    def scores(act, hook):
        if masks["qk"] is not None:
            rows = act.shape[0]
            visible = _visible(view.get(att.scores, rows, scores=True))
            dq, dk = view.rotated(
                att,
                rotate,
                store[q_name] - view.get(q_name, rows),
                store[k_name] - view.get(k_name, rows),
            )
            second = scale * _scores(dq, dk, act.shape[-1])
            if cap is None:
                lin = act - second
            else:
                lin = cap * torch.tanh((_uncap(act, cap, visible) - second) / cap)
            act = torch.where(rows_of(masks["qk"], act) & visible, lin.to(act.dtype), act)
        store[att.scores] = act
        return act

    def pattern(act, hook):
        if masks["softmax"] is not None:
            rows = act.shape[0]
            s0 = view.get(att.scores, rows, scores=True)
            p0 = view.get(att.pattern, rows, scores=True)
            visible = _visible(s0)
            s = store[att.scores]
            if cap is None:
                ds = s - s0
            else:  # softmax(c tanh(raw / c)): d/draw = softmax' * (1 - tanh^2)
                raw_diff = _uncap(s, cap, visible) - _uncap(s0, cap, visible)
                ds = (1 - (torch.where(visible, s0, 0) / cap) ** 2) * raw_diff
            ds = torch.where(visible, ds, 0)
            lin = p0 + p0 * (ds - (p0 * ds).sum(dim=-1, keepdim=True))
            act = torch.where(rows_of(masks["softmax"], act), lin.to(act.dtype), act)
        store[att.pattern] = act
        return act

    def z_out(act, hook):
        rows = act.shape[0]
        dp = store[att.pattern] - view.get(att.pattern, rows, scores=True)
        dv = store[att.v] - view.get(att.v, rows)
        second = _pattern_values(dp, dv, dp.shape[-1])
        return act - rows_of(masks["pv"], act) * second.to(act.dtype)

    hooks += [(att.scores, scores), (att.pattern, pattern)]
    if masks["pv"] is not None:
        hooks.append((att.z, z_out))
    return hooks


def decompose(
    ctx: AttributionContext, truth: np.ndarray | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-component columns and summary aggregates of the error decomposition.

    ``truth`` [n_components]: the activation-patching effects (computed when not given).
    Columns (float64, NaN where a part does not apply): ``decomp_atp``, ``decomp_lin_<part>``,
    ``decomp_share_<part>``, ``decomp_share_sum_location``, ``decomp_share_sum_kind``.
    """
    components = list(ctx.components)
    n_layers = ctx.model.shape.n_layers
    gated = any(
        ops.mlp is not None and ops.mlp.up is not None
        for ops in (block_ops(ctx.model, layer) for layer in range(n_layers))
    )
    names = site_names(components)
    _, base = collect_activations(ctx, ctx.base_tokens, names)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    atp, _ = path_derivatives(ctx, components, base, source, t=0.0, second=False)
    atp_np = atp.numpy()
    items, variants, owners = [], [], []
    for index, component in enumerate(components):
        for part, variant in component_parts(component, n_layers, gated):
            items.append(component)
            variants.append(variant)
            owners.append((index, part))
    if truth is None:
        for index, component in enumerate(components):
            items.append(component)
            variants.append(frozenset())
            owners.append((index, "none"))
    effects = linearized_effects(ctx, items, variants, source).numpy()
    count = len(components)
    part_names = ["all", "local", "downstream", "readout"]
    part_names += [f"block{j}" for j in range(n_layers)]
    part_names += [k for k in BLOCK_KINDS if gated or k != "gate"]
    lin = {part: np.full(count, np.nan) for part in [*part_names, "none"]}
    for (index, part), value in zip(owners, effects, strict=True):
        lin[part][index] = value
    for index, component in enumerate(components):  # c's own block is its local part
        lin[f"block{component.layer}"][index] = lin["local"][index]
    truth_np = lin.pop("none") if truth is None else np.asarray(truth, dtype=np.float64)
    error = atp_np - truth_np
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = {part: (lin[part] - truth_np) / error for part in part_names}
    layers = np.array([c.layer for c in components])
    later = sum(
        np.where(layers < j, np.nan_to_num(shares[f"block{j}"]), 0.0) for j in range(n_layers)
    )
    columns: dict[str, np.ndarray] = {"decomp_atp": atp_np}
    for part in part_names:
        columns[f"decomp_lin_{part}"] = lin[part]
    for part in part_names:
        columns[f"decomp_share_{part}"] = shares[part]
    columns["decomp_share_sum_location"] = shares["local"] + later + shares["readout"]
    kinds = [k for k in KINDS if gated or k != "gate"]
    columns["decomp_share_sum_kind"] = sum(shares[k] for k in kinds)
    return columns, _summary(columns, truth_np, layers, n_layers, part_names, kinds)


def _summary(
    columns: dict[str, np.ndarray],
    truth: np.ndarray,
    layers: np.ndarray,
    n_layers: int,
    part_names: list[str],
    kinds: list[str],
) -> dict[str, Any]:
    """Aggregates: ``decomp_error_share_<part>``, the error-weighted share (sum over components
    of sign(e_c) (lin_c - truth_c) over sum |e_c|, e_c = AtP_c - truth_c: the fraction of the
    total absolute AtP error the part accounts for); ``decomp_mean_abs_share_<part>`` over the
    components whose |e_c| is at least 1e-3 of the largest; by relative block
    (``decomp_error_share_block_plus<k>``: k blocks after c's own); the invariant gaps."""
    atp = columns["decomp_atp"]
    error = atp - truth
    total = float(np.abs(error).sum())
    big = np.abs(error) >= 1e-3 * float(np.abs(error).max()) if error.size else error > 0
    out: dict[str, Any] = {
        "decomp_total_abs_error": total,
        "decomp_n_scored": int(big.sum()),
        "decomp_max_gap_all_vs_atp": float(np.nanmax(np.abs(columns["decomp_lin_all"] - atp))),
    }

    def weighted(lin: np.ndarray) -> float:
        contribution = np.sign(error) * (lin - truth)
        return float(np.nansum(contribution) / total) if total > 0 else math.nan

    for part in ["all", "local", "downstream", "readout", *kinds]:
        out[f"decomp_error_share_{part}"] = weighted(columns[f"decomp_lin_{part}"])
        share = np.abs(columns[f"decomp_share_{part}"][big])
        out[f"decomp_mean_abs_share_{part}"] = float(np.mean(share)) if share.size else math.nan
    for k in range(1, n_layers):
        lin = np.full(truth.shape, np.nan)
        for j in range(n_layers):
            rows = layers + k == j
            lin[rows] = columns[f"decomp_lin_block{j}"][rows]
        out[f"decomp_error_share_block_plus{k}"] = weighted(np.where(np.isnan(lin), truth, lin))
    for cut in ("location", "kind"):
        values = columns[f"decomp_share_sum_{cut}"][big]
        out[f"decomp_mean_share_sum_{cut}"] = float(np.mean(values)) if values.size else math.nan
    local = np.abs(columns["decomp_share_local"][big])
    downstream = np.abs(columns["decomp_share_downstream"][big])
    out["decomp_frac_downstream_gt_local"] = (
        float(np.mean(downstream > local)) if local.size else math.nan
    )
    return out


def decomposition_cost(components: Sequence[Component], n_layers: int) -> CostEstimate:
    """Upper bound of :func:`decompose`'s cost in forward equivalents: one patched copy per
    (component, part) and AtP's forward and backward."""
    parts = sum(n_layers - c.layer + len(KINDS) + 3 for c in components)
    cost = per_component_cost(1, parts, FORWARD) + len(components) * (FORWARD + BACKWARD)
    return CostEstimate(cost, f"{parts} patched copies for {len(components)} components")


def run_decomposition(
    cfg: Any,
    ctx: AttributionContext,
    truth_key: str,
    sample: np.ndarray | None,
    truth: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The ``decomposition`` stage of a run: refuse it above ``cfg.max_fwd_equiv``, then
    :func:`cached_decomposition` keyed by the ground truth (and ``sample``, the indices of a
    ``truth.sample`` subset); adds ``decomposition_wall_s``."""
    from harness.storage import content_hash

    check_cost(
        f"the error decomposition of {len(ctx.components)} components",
        decomposition_cost(ctx.components, ctx.model.shape.n_layers),
        cfg.max_fwd_equiv,
        "patch a sample (truth.sample=COUNT or a fraction) or set decomposition=false",
    )
    if sample is not None:
        truth_key = content_hash({"truth": truth_key, "sample": sample.tolist()})[:24]
    start = time.perf_counter()
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None
    columns, summary = cached_decomposition(
        cache_dir, truth_key, ctx.with_cost(CostCounter()), truth
    )
    return columns, {**summary, "decomposition_wall_s": time.perf_counter() - start}


def cached_decomposition(
    cache_dir: Any, truth_key: str | None, ctx: AttributionContext, truth: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`decompose`, computed once per ground truth (model, prompts, components, metric,
    direction: what ``truth_key`` identifies) and cached under
    ``cache_dir/decomposition/<hash>.json`` with a content hash; a corrupted entry is
    recomputed; without ``cache_dir`` or ``truth_key`` nothing is cached. Adds
    ``decomposition_cached`` to the summary."""
    from harness.storage import content_hash, read_hashed_json, write_hashed_json

    if cache_dir is None or truth_key is None:
        columns, summary = decompose(ctx, truth)
        return columns, {**summary, "decomposition_cached": False}
    settings = {"truth": truth_key, "version": VERSION}
    path = Path(cache_dir) / "decomposition" / f"{content_hash(settings)[:24]}.json"
    entry = read_hashed_json(path)
    if entry is not None and len(entry["columns"]["decomp_atp"]) == len(truth):
        columns = {
            name: np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)
            for name, values in entry["columns"].items()
        }
        summary = {k: math.nan if v is None else v for k, v in entry["summary"].items()}
        return columns, {**summary, "decomposition_cached": True}
    columns, summary = decompose(ctx, truth)
    write_hashed_json(
        path,
        {
            "settings": settings,
            "columns": {name: _nulls(column) for name, column in columns.items()},
            "summary": {k: None if _nan(v) else v for k, v in summary.items()},
        },
    )
    return columns, {**summary, "decomposition_cached": False}


def _nan(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _nulls(column: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in column]
