"""The patching and gradient engine every method builds on.

- :func:`collect_activations`: activations of all component sites on one run (no grad).
- :func:`patch_effects`: exact activation patching, many patched copies of the prompt batch per
  forward pass (one copy per component), chunked so at most ``batch_size`` sequences run at once.
- :func:`metric_gradients`: dL/da at every site of the base run in one backward pass, through
  every downstream path (hooks return ``act + eps``; nothing is detached).

All functions take an :class:`~harness.context.AttributionContext` and count their passes in
its cost counter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from harness.components import group_by_hook, hook_of, slice_index
from harness.context import AttributionContext
from harness.task_metric import per_prompt_metric
from harness.types import Component

Activations = dict[str, torch.Tensor]
"""Hook name -> activation [n, seq, ...] for all n prompts."""


def site_names(components: Sequence[Component]) -> list[str]:
    """Hook names of the components' sites, in first-seen order."""
    return list(dict.fromkeys(hook_of(c) for c in components))


def collect_activations(
    ctx: AttributionContext, tokens: torch.Tensor, names: Sequence[str]
) -> tuple[torch.Tensor, Activations]:
    """Per-prompt metric [n] and activations at ``names`` of an unpatched run on ``tokens``."""
    metrics, parts = [], {name: [] for name in names}
    for rows in ctx.prompt_chunks():
        sub = ctx.batch.select(rows)
        logits, acts = ctx.model.cache(tokens[rows], names)
        ctx.cost.forward(rows.stop - rows.start)
        metrics.append(per_prompt_metric(logits, sub, ctx.metric))
        for name in names:
            parts[name].append(acts[name])
    return torch.cat(metrics), {name: torch.cat(chunks) for name, chunks in parts.items()}


def patch_effects(
    ctx: AttributionContext,
    components: Sequence[Component],
    source: Activations,
    base_metric: torch.Tensor,
    desc: str = "activation patching",
) -> torch.Tensor:
    """Exact effects [len(components)]: mean over prompts of L(base | a_c <- source_c) - L(base).

    ``source`` holds the source run's activations at every site of ``components``;
    ``base_metric`` [n] is the per-prompt metric of the unpatched base run. Each forward pass
    stacks k copies of up to ``batch_size // k`` prompts, copy j patching one component.
    """
    n = ctx.batch.n
    effects = torch.zeros(len(components), dtype=torch.float64, device=base_metric.device)
    prompt_rows = min(n, ctx.batch_size)
    per_pass = max(1, ctx.batch_size // prompt_rows)
    todo = [
        (rows, start)
        for rows in ctx.prompt_chunks(prompt_rows)
        for start in range(0, len(components), per_pass)
    ]
    for rows, start in tqdm(todo, desc=desc, disable=not ctx.progress, leave=False):
        chunk = list(range(start, min(start + per_pass, len(components))))
        m = rows.stop - rows.start
        copies = len(chunk)
        tokens = ctx.base_tokens[rows].repeat(copies, 1)
        hooks = []
        for name, members in group_by_hook([components[i] for i in chunk]).items():
            targets = [(j, slice_index(components[chunk[j]])) for j in members]
            hooks.append((name, _replace_hook(targets, source[name][rows], copies)))
        with torch.no_grad():
            logits = ctx.model.run(tokens, hooks)
        ctx.cost.forward(tokens.shape[0])
        patched = per_prompt_metric(logits, ctx.batch.select(rows), ctx.metric, copies)
        diff = patched.view(copies, m).double() - base_metric[rows].double()
        effects[chunk] += diff.sum(dim=1)
    return effects / n


def _replace_hook(targets: list[tuple[int, tuple]], source: torch.Tensor, copies: int):
    """A hook that writes ``source``'s slice into copy j for each (j, slice) target."""

    def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
        out = act.clone()
        view = out.view(copies, source.shape[0], *out.shape[1:])
        for copy, index in targets:
            full = (slice(None),) + index
            view[copy][full] = source[full].to(out.dtype)
        return out

    return hook


def metric_gradients(
    ctx: AttributionContext,
    tokens: torch.Tensor,
    names: Sequence[str],
    offsets: Activations | None = None,
) -> tuple[torch.Tensor, Activations, Activations]:
    """Per-prompt metric [n], activations and gradients dL/da at ``names`` on ``tokens``.

    L is the mean over all n prompts, so gradients carry the 1/n. ``offsets`` (optional, per
    hook [n, seq, ...]) are added to the activations before differentiating (the gradient is
    then taken at a + offset). Activations returned are the unpatched ones. One forward and one
    backward per prompt chunk.
    """
    n = ctx.batch.n
    metrics, acts_parts, grad_parts = [], {k: [] for k in names}, {k: [] for k in names}
    for rows in ctx.prompt_chunks():
        store: Activations = {}
        eps: Activations = {}

        def make_hook(name: str, store: Activations, eps: Activations, rows: slice):
            def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
                store[name] = act.detach()
                delta = torch.zeros_like(act, requires_grad=True)
                eps[name] = delta
                if offsets is not None and name in offsets:
                    return act + offsets[name][rows].to(act.dtype) + delta
                return act + delta

            return hook

        with torch.enable_grad():
            logits = ctx.model.run(
                tokens[rows], [(name, make_hook(name, store, eps, rows)) for name in names]
            )
            per_prompt = per_prompt_metric(logits, ctx.batch.select(rows), ctx.metric)
            grads = torch.autograd.grad(per_prompt.sum() / n, [eps[name] for name in names])
        ctx.cost.forward(rows.stop - rows.start)
        ctx.cost.n_backward += 1
        metrics.append(per_prompt.detach())
        for name, grad in zip(names, grads, strict=True):
            acts_parts[name].append(store[name])
            grad_parts[name].append(grad)
    cat = lambda parts: {k: torch.cat(v) for k, v in parts.items()}  # noqa: E731
    return torch.cat(metrics), cat(acts_parts), cat(grad_parts)
