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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from harness.components import group_by_hook, slice_index
from harness.context import AttributionContext
from harness.patching import Activations
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
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """f_c'(t_c) and (if ``second``) f_c''(t_c) for each component, float64 [len(components)].

    ``base``/``source``: activations [n, seq, ...] of both runs at every site of
    ``components``; ``t``: one value for all components or one per component.
    Cost: per chunk one forward, one backward, and one Hessian-vector product if ``second``.
    """
    n = ctx.batch.n
    count = len(components)
    t_all = torch.as_tensor(t, dtype=torch.float64).expand(count) if count else torch.zeros(0)
    first = torch.zeros(count, dtype=torch.float64)
    curvature = torch.zeros(count, dtype=torch.float64) if second else None
    prompt_rows = min(n, ctx.batch_size)
    per_pass = max(1, ctx.batch_size // prompt_rows)
    todo = [
        (rows, start)
        for rows in ctx.prompt_chunks(prompt_rows)
        for start in range(0, count, per_pass)
    ]
    for rows, start in tqdm(todo, desc=desc, disable=not ctx.progress, leave=False):
        chunk = list(range(start, min(start + per_pass, count)))
        copies = len(chunk)
        dtype = ctx.model.dtype
        t_var = t_all[chunk].to(device=ctx.model.device, dtype=dtype).clone().requires_grad_(True)
        hooks = []
        for name, members in group_by_hook([components[i] for i in chunk]).items():
            direction = torch.zeros(
                copies, *base[name][rows].shape, dtype=dtype, device=ctx.model.device
            )
            for j in members:
                full = (slice(None),) + slice_index(components[chunk[j]])
                direction[j][full] = (source[name][rows][full] - base[name][rows][full]).to(dtype)
            hooks.append((name, _move_hook(direction, t_var)))
        tokens = ctx.base_tokens[rows].repeat(copies, 1)
        with torch.enable_grad():
            logits = ctx.model.run(tokens, hooks)
            per_prompt = per_prompt_metric(logits, ctx.batch.select(rows), ctx.metric, copies)
            total = per_prompt.sum() / n
            (grad,) = torch.autograd.grad(total, t_var, create_graph=second)
            if second:
                (hess,) = torch.autograd.grad(grad.sum(), t_var)
        ctx.cost.forward(tokens.shape[0])
        ctx.cost.n_backward += 1
        first[chunk] += grad.detach().double().cpu()
        if second:
            ctx.cost.n_hvp += 1
            curvature[chunk] += hess.detach().double().cpu()
    return first, curvature


def _move_hook(direction: torch.Tensor, t_var: torch.Tensor):
    """Hook adding t_j * d_j to copy j (``direction`` [copies, m, seq, ...])."""

    def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
        shape = (-1,) + (1,) * (direction.dim() - 1)
        delta = (t_var.view(shape) * direction).reshape(act.shape)
        return act + delta

    return hook
