"""Derivatives along each component's own patching path, many components per pass.

For component c, f_c(t) = L(base | a_c <- a_c(base) + t d_c) with d_c = a_c(source) - a_c(base):
only c moves and everything downstream is recomputed. The true effect is f_c(1) - f_c(0); AtP
is f_c'(0); the HVP correction adds f_c''(0) / 2 = d_c^T H_c d_c / 2.

:func:`path_derivatives` evaluates f_c'(t_c) and f_c''(t_c) for every component at once: the
prompt batch is replicated k times, copy j moves its component by a scalar t_j (a leaf tensor),
one forward gives sum_j f_j(t_j), one backward (with create_graph) gives every f_j'(t_j), and a
second backward of their sum gives every f_j''(t_j): each copy depends on its own t_j only, so
the Hessian in t is diagonal and its diagonal is exactly that gradient (a Hessian-vector product
with the all-ones vector).

At t = 0 no copy is needed (every copy's forward is the unpatched run): :func:`_at_zero` moves
every component of a prompt chunk in one pass, each by its own scalar, and reads f'' off
vectorized Hessian-vector products with unit vectors (``is_grads_batched``), which skips each
copy's forward and first backward.

Every other t runs on the ground-truth engine's fast path
(:func:`harness.patching.copy_batches`): each copy starts at its component's layer from the
recorded unpatched prefix, only positions from the pass's earliest moved position on are
recomputed (earlier keys/values are the recorded ones), and logits are built at the last real
position only. The same checks decide, and the same
fallback applies: ``fast=False``, one full forward per chunk (the reference).

Why reverse mode (double backward) and not forward mode: measured on the GPT-2-small shape
(bench/RESULTS.md, "Path derivatives"), ``torch.func.jvp`` through the TransformerBridge took
about 3x the reverse pass for f' alone; a jvp of a jvp for f'' is not supported for SiLU
(Llama, Qwen-2: ``aten::silu_backward`` has no forward derivative) and gives a wrong f'' for
GPT-NeoX's GELU, and ``torch.autograd.forward_ad`` cannot nest.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from harness.budget import chunk_plan
from harness.components import group_by_hook, hook_of, slice_index
from harness.context import AttributionContext
from harness.patching import (
    Activations,
    FastPathUnavailable,
    _warn,
    copy_batches,
    full_copy_batches,
    pass_row_bytes,
)
from harness.task_metric import per_prompt_metric
from harness.types import Component


def path_derivatives(
    ctx: AttributionContext,
    components: Sequence[Component],
    base: Activations,
    source: Activations,
    t: float | torch.Tensor = 0.0,
    second: bool = True,
    desc: str = "path derivatives",
    fast: bool = True,
    shared: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """f_c'(t_c) and (if ``second``) f_c''(t_c) for each component, float64 [len(components)].

    ``base``/``source``: activations [n, seq, ...] of both runs at every site of
    ``components``; ``t``: one value for all components or one per component.
    Components at t = 0 (with ``fast`` and ``shared``) share one unpatched pass per prompt
    chunk (:func:`_at_zero`); every other one gets a copy of the prompts: per pass one forward
    from the components' layers, one backward, and one Hessian-vector product if ``second``.
    ``fast=False``: every pass is the model's whole forward (the reference engine, and the
    fast path's fallback; module docstring). ``shared=False``: a copy per component at t = 0
    too (the engine before the shared pass; for benchmarks).
    """
    count = len(components)
    t_all = _t_values(t, count)
    first = torch.zeros(count, dtype=torch.float64)
    curvature = torch.zeros(count, dtype=torch.float64) if second else None
    if not count:
        return first, curvature
    rest = list(range(count))
    if fast and shared and bool((t_all == 0).any()):
        zero = [i for i in range(count) if float(t_all[i]) == 0.0]
        try:
            grad, hess = _at_zero(ctx, [components[i] for i in zero], base, source, second, desc)
        except _SharedUnavailable as err:
            _warn(ctx.model.name, "shared", f"{err}; every copy runs its own pass")
        else:
            first[zero] = grad
            if second:
                curvature[zero] = hess
            rest = [i for i in range(count) if float(t_all[i]) != 0.0]
    if rest:
        grad, hess = _per_copy(
            ctx, [components[i] for i in rest], base, source, t_all[rest], second, desc, fast
        )
        first[rest] = grad
        if second:
            curvature[rest] = hess
    return first, curvature


def _per_copy(
    ctx: AttributionContext,
    components: Sequence[Component],
    base: Activations,
    source: Activations,
    t_all: torch.Tensor,
    second: bool,
    desc: str,
    fast: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`path_derivatives` with one copy of the prompts per component (module
    docstring), at any ``t_all`` [len(components)]."""
    count = len(components)
    first = torch.zeros(count, dtype=torch.float64)
    curvature = torch.zeros(count, dtype=torch.float64) if second else None
    kind = "hvp" if second else "backward"
    plan = chunk_plan(ctx, count, pass_row_bytes(ctx, kind, fast=fast), desc)
    dtype, device = ctx.model.dtype, ctx.model.device
    passes = copy_batches if fast else full_copy_batches
    try:
        for rows, batch in passes(ctx, components, plan, desc):
            directions = {}
            for name, targets in batch.targets(components).items():
                window = (slice(None), slice(batch.p0, batch.stop))
                delta = (source[name][rows][window] - base[name][rows][window]).to(dtype)
                directions[name] = _directions(delta, targets)
            t_var = t_all[batch.chunk].to(device=device, dtype=dtype)
            live = batch.live.to(dtype)

            def total(t_var, directions=directions, batch=batch, live=live):
                hooks = [(name, _move_hook(d, t_var)) for name, d in directions.items()]
                logits = batch.run(ctx, hooks)
                values = per_prompt_metric(logits, batch.read, ctx.metric, batch.copies)
                return (values.view(batch.copies, batch.m) * live).sum() / ctx.batch.n

            grad, hess = _derivatives(ctx, total, t_var, second)
            first[batch.chunk] += grad
            if second:
                curvature[batch.chunk] += hess
    except FastPathUnavailable as err:
        _warn(ctx.model.name, err.reason, str(err))
        return _per_copy(ctx, components, base, source, t_all, second, desc, fast=False)
    return first, curvature


class _SharedUnavailable(Exception):
    """The shared pass at t = 0 cannot run on this model (its message says why)."""


def _at_zero(
    ctx: AttributionContext,
    components: Sequence[Component],
    base: Activations,
    source: Activations,
    second: bool,
    desc: str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """f_c'(0) and (if ``second``) f_c''(0) for every component from one unpatched pass per
    prompt chunk, float64 [len(components)].

    At t = 0 every copy's forward is the unpatched run, so no copy is needed: one forward
    moves every component c of a site by its own scalar s_c (a = a_base + sum_c s_c d_c, the
    d_c on disjoint slices), one backward with ``create_graph`` gives every f_c'(0) = dL/ds_c,
    and f_c''(0) = d^2 L / ds_c^2 is the diagonal of the Hessian in s, read off
    Hessian-vector products with unit vectors, ``plan.copies`` of them per vectorized second
    backward (``is_grads_batched``), site by site so each reaches back to its own layer only.
    Raises :class:`_SharedUnavailable` when components of one site overlap or the vectorized
    backward fails.
    """
    count = len(components)
    first = torch.zeros(count, dtype=torch.float64)
    curvature = torch.zeros(count, dtype=torch.float64) if second else None
    kind = "hvp" if second else "backward"
    row = pass_row_bytes(ctx, kind, vocabulary=True)
    plan = chunk_plan(ctx, count, row, f"{desc} at t=0")  # reported apart from the copies' plan
    groups = group_by_hook(components)
    owners = {
        name: component_owners(components, idx, base[name].shape[1:])
        for name, idx in groups.items()
    }
    dtype = ctx.model.dtype
    for rows in ctx.progress.passes(ctx.prompt_chunks(plan.prompt_rows), f"{desc} at t=0"):
        sub = ctx.batch.select(rows)
        scales = {
            name: torch.zeros(len(idx), dtype=dtype, device=ctx.model.device).requires_grad_(True)
            for name, idx in groups.items()
        }
        hooks = [
            (
                name,
                _scale_hook(
                    (source[name][rows] - base[name][rows]).to(dtype),
                    owners[name],
                    scales[name],
                ),
            )
            for name in groups
        ]
        with torch.enable_grad():
            logits = ctx.model.run(ctx.base_tokens[rows], hooks, read_pos=sub.last)
            total = per_prompt_metric(logits, sub, ctx.metric).sum() / ctx.batch.n
            grads = torch.autograd.grad(
                total, list(scales.values()), create_graph=second, allow_unused=True
            )
            ctx.cost.forward(rows.stop - rows.start)
            ctx.cost.n_backward += 1
            for (name, idx), grad in zip(groups.items(), grads, strict=True):
                if grad is None:
                    continue
                first[idx] += grad.detach().double().cpu()
                if second and grad.requires_grad:
                    curvature[idx] += _hessian_diagonal(ctx, grad, scales[name], plan.copies)
    return first, curvature


def component_owners(
    components: Sequence[Component], idx: list[int], shape: torch.Size
) -> torch.Tensor:
    """[*shape] long: the position in ``idx`` of the component owning each element of a site's
    activation (``len(idx)``: none); :class:`_SharedUnavailable` where two overlap. Used by
    the shared pass here and by the probes of :func:`harness.methods.hvp.shared_terms`."""
    owner = torch.full(tuple(shape), len(idx), dtype=torch.long)
    for j, i in enumerate(idx):
        index = slice_index(components[i])
        if bool((owner[index] != len(idx)).any()):
            raise _SharedUnavailable(f"components of {hook_of(components[i])} overlap")
        owner[index] = j
    return owner


def _scale_hook(delta: torch.Tensor, owner: torch.Tensor, scale: torch.Tensor):
    """Hook adding s_c d_c for every component c of a site: ``delta`` [m, ...] (the whole
    source - base difference), ``owner`` [...] (:func:`component_owners`), ``scale`` [k] leaf."""
    owner = owner.to(delta.device)

    def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
        per_element = torch.cat([scale, scale.new_zeros(1)])[owner]
        return act + per_element * delta

    return hook


def _hessian_diagonal(
    ctx: AttributionContext, grad: torch.Tensor, scale: torch.Tensor, width: int
) -> torch.Tensor:
    """diag(d grad / d scale) (float64 [k], CPU): ``width`` unit vectors per vectorized
    Hessian-vector product."""
    k = scale.numel()
    out = torch.zeros(k, dtype=torch.float64)
    for start in ctx.progress.passes(range(0, k, width), "Hessian diagonal"):
        stop = min(k, start + width)
        picks = torch.arange(stop - start)
        units = torch.zeros(stop - start, k, dtype=grad.dtype, device=grad.device)
        units[picks, picks + start] = 1
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*performance drop.*")
                (rows,) = torch.autograd.grad(
                    grad,
                    scale,
                    units,
                    retain_graph=True,
                    is_grads_batched=True,
                    allow_unused=True,
                )
        except RuntimeError as err:
            raise _SharedUnavailable(f"vectorized Hessian-vector product failed ({err})") from None
        ctx.cost.n_hvp += 1
        if rows is not None:
            out[start:stop] = rows[picks, picks + start].detach().double().cpu()
    return out


def path_derivatives_at(
    ctx: AttributionContext,
    components: Sequence[Component],
    base: Activations,
    source: Activations,
    nodes: torch.Tensor,
    second: bool = True,
    desc: str = "path derivatives",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """f_c'(t_k) and (if ``second``) f_c''(t_k) at every node t_k of ``nodes`` [K] for every
    component, float64 [K, len(components)]: every (node, component) pair in the same batched
    passes of :func:`path_derivatives` (the quadratures of ig, integrated_hessians, ms_hvp)."""
    count = len(components)
    first, curvature = path_derivatives(
        ctx,
        list(components) * len(nodes),
        base,
        source,
        nodes.repeat_interleave(count),
        second,
        desc,
    )
    shape = (len(nodes), count)
    return first.view(shape), None if curvature is None else curvature.view(shape)


def _t_values(t: float | torch.Tensor, count: int) -> torch.Tensor:
    return torch.as_tensor(t, dtype=torch.float64).expand(count) if count else torch.zeros(0)


def _derivatives(
    ctx: AttributionContext, total, t_value: torch.Tensor, second: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(d total / dt_j, d^2 total / dt_j^2) for every copy j (float64, on the CPU) of the
    scalar ``total(t)``, whose copy j depends on t_j alone: one backward (with create_graph
    when ``second``) and one Hessian-vector product with the all-ones vector."""
    t_var = t_value.clone().requires_grad_(True)
    with torch.enable_grad():
        value = total(t_var)
        (grad,) = torch.autograd.grad(value, t_var, create_graph=second)
        hess = None
        if second:
            (hess,) = torch.autograd.grad(grad.sum(), t_var)
    ctx.cost.n_backward += 1
    if second:
        ctx.cost.n_hvp += 1
        hess = hess.detach().double().cpu()
    return grad.detach().double().cpu(), hess


def _directions(
    delta: torch.Tensor, targets: list[tuple[int, tuple]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(copy indices [k], directions [k, m, ...]): target i moves copy ``targets[i][0]`` along
    ``delta`` [m, ...] restricted to its component's slice (0 elsewhere)."""
    out = torch.zeros(len(targets), *delta.shape, dtype=delta.dtype, device=delta.device)
    for i, (_, index) in enumerate(targets):
        full = (slice(None),) + index
        out[i][full] = delta[full]
    copies = torch.tensor([j for j, _ in targets], device=delta.device)
    return copies, out


def _move_hook(direction: tuple[torch.Tensor, torch.Tensor], t_var: torch.Tensor):
    """Hook adding t_j * d_j to copy j for each (j, d_j) of ``direction`` (copy-major rows of
    m prompts; a fast-path batch holds only the copies that entered at or before this layer,
    which include every copy moved here)."""
    copies, moves = direction

    def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
        shape = (-1,) + (1,) * (moves.dim() - 1)
        delta = t_var[copies].view(shape) * moves
        view = act.view(-1, *moves.shape[1:])
        return view.index_add(0, copies, delta).view(act.shape)

    return hook
