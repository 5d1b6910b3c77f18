"""The patching and gradient engine every method builds on.

- :func:`collect_activations`: activations of all component sites on one run (no grad).
- :func:`patch_effects`: exact activation patching, many patched copies of the prompt batch per
  forward pass (one copy per component), chunked so at most ``batch_size`` sequences run at once,
  and nothing recomputed that a patch cannot change (see below).
- ``patch_effects(..., fast=False)``: the same effects with one full forward per chunk of
  copies (the reference, and the fallback of the fast path).
- :func:`metric_gradients`: dL/da at every site of the base run in one backward pass, through
  every downstream path (hooks return ``act + eps``; nothing is detached).

The fast path of :func:`patch_effects`. A patch at layer l cannot change blocks 0..l-1, and with
causal attention a patch at position p cannot change positions before p. Per prompt chunk, one
unpatched run records the residual stream entering every block (``blocks.{l}.hook_resid_pre``
before hooks), each block's call arguments and each attention layer's keys and values. A chunk
of copies then runs only blocks l..L-1 and positions p0..last: copies enter the batch at their
own component's layer (copy-major rows, ordered by layer), positions before the chunk's earliest
patched position p0 are read from the recorded keys/values, and logits are computed at each
prompt's last position only. Components are sorted by (position, layer) so chunks share p0.
Before using it, each call checks the block loop against the model's own forward on the
unpatched chunk (bitwise in practice), and re-entry at a middle layer and a middle position
against the same logits; when a check fails it logs a warning and falls back to
``fast=False`` (or, when only the position check fails, re-enters at position 0).

All functions take an :class:`~harness.context.AttributionContext` and count their passes in
its cost counter.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from harness.adapter import BlockInputs
from harness.budget import ChunkPlan, chunk_plan, row_bytes
from harness.components import group_by_hook, hook_of, slice_index
from harness.context import AttributionContext
from harness.errors import HarnessError
from harness.task_metric import metric_columns, per_prompt_metric
from harness.types import Component, PromptBatch

log = logging.getLogger(__name__)

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
    for rows in ctx.progress.passes(ctx.prompt_chunks(), "activations"):
        sub = ctx.batch.select(rows)
        logits, acts = ctx.model.cache(tokens[rows], names, read_pos=sub.last)
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
    fast: bool = True,
) -> torch.Tensor:
    """Exact effects [len(components)]: mean over prompts of L(base | a_c <- source_c) - L(base).

    ``source`` holds the source run's activations at every site of ``components``;
    ``base_metric`` [n] is the per-prompt metric of the unpatched base run. Each forward pass
    stacks k copies of a prompt chunk, copy j patching one component (k and the chunk from
    :func:`harness.budget.chunk_plan`). ``fast``: only the layers and positions the patches can
    change run (module docstring; :func:`copy_batches`); otherwise, and as the fast path's
    fallback, every pass is the model's whole forward (:func:`full_copy_batches`, the
    reference). Both give the same effects up to rounding.
    """
    effects = torch.zeros(len(components), dtype=torch.float64, device=base_metric.device)
    if not components:
        return effects
    row = pass_row_bytes(ctx, "forward", fast=fast)
    plan = chunk_plan(ctx, len(components), row, "activation patching")
    passes = copy_batches if fast else full_copy_batches
    try:
        for rows, batch in passes(ctx, components, plan, desc):
            hooks = batch.patch_hooks(components, source)
            with torch.no_grad():
                logits = batch.run(ctx, hooks)
            patched = per_prompt_metric(logits, batch.read, ctx.metric, batch.copies)
            diff = patched.view(batch.copies, batch.m).double() - base_metric[rows].double()
            diff = diff.masked_fill(~batch.live, 0.0)
            effects[batch.index(effects.device)] += diff.sum(dim=1).to(effects.device)
    except FastPathUnavailable as err:
        _warn(ctx.model.name, err.reason, str(err))
        return patch_effects(ctx, components, source, base_metric, desc, fast=False)
    return effects / ctx.batch.n


def full_batches(
    ctx: AttributionContext, count: int, plan: ChunkPlan, desc: str
) -> Iterator[tuple[slice, list[int]]]:
    """(prompt rows, indices of up to ``plan.copies`` items) of the full-forward passes."""
    todo = [
        (rows, list(range(start, min(start + plan.copies, count))))
        for rows in ctx.prompt_chunks(plan.prompt_rows)
        for start in range(0, count, plan.copies)
    ]
    yield from ctx.progress.passes(todo, desc)


def pass_row_bytes(
    ctx: AttributionContext, kind: str, fast: bool = True, vocabulary: bool = False
) -> int:
    """:func:`harness.budget.row_bytes` of one sequence row of ``ctx``'s prompts in a pass of
    ``kind``; logits at the read position only and over the columns the metric reads on the
    fast path (over the vocabulary with ``vocabulary``: a pass of :meth:`ModelAdapter.run`), at
    every position over the vocabulary otherwise."""
    seq = ctx.batch.seq_len
    if not fast:
        return row_bytes(ctx.model.shape, ctx.model.dtype, seq, kind, logit_positions=seq)
    columns, _ = metric_columns(ctx.batch, ctx.metric)
    return row_bytes(
        ctx.model.shape,
        ctx.model.dtype,
        seq,
        kind,
        logit_columns=None if columns is None or vocabulary else columns.numel(),
    )


def copy_patch_hook(targets: list[tuple[int, tuple]], source: torch.Tensor, prompts: int):
    """A hook writing ``source``'s slice into copy j for each (j, slice) target (slice ``()``:
    the whole activation); ``source`` is [prompts, ...].

    The activation holds copies of ``prompts`` prompts, copy-major: rows j*prompts..(j+1)*prompts-1
    are copy j (a fast-path batch may hold fewer copies at early layers than at late ones).
    """

    def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
        out = act.clone()
        view = out.view(-1, prompts, *out.shape[1:])
        for copy, index in targets:
            full = (slice(None),) + index
            view[copy][full] = source[full].to(out.dtype)
        return out

    return hook


class FastPathUnavailable(HarnessError):
    """The model failed a check of the fast path (``reason``): use the full-forward engine."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class CopyBatch:
    """One fast-path pass: ``copies`` stacked copies of the ``m`` prompts of a prompt chunk.

    Copy j moves component ``chunk[j]`` (chunk ordered by layer: copies enter the batch at
    their own component's layer); positions ``p0``..``stop - 1`` run, earlier ones are read from
    the recorded keys/values. ``sub``: the prompt chunk. ``columns``: the vocabulary ids whose
    logits :meth:`run` computes (None: all), and ``read``: ``sub`` with its answers re-indexed
    into them (:func:`harness.task_metric.metric_columns`), the batch to score :meth:`run`'s
    logits with (``sub`` for logits over the vocabulary); ``live`` [copies, m]: False where the
    component's position lies after the prompt's last real token (no effect: the caller zeroes
    those entries). ``inputs`` None: a pass of the reference engine, the model's whole forward
    on ``copies`` copies of the prompts ``rows`` (every layer and position, the vocabulary).
    """

    chunk: list[int]
    p0: int
    stop: int
    rows: slice
    sub: PromptBatch
    inputs: BlockInputs | None
    live: torch.Tensor
    layers: list[int]
    columns: torch.Tensor | None = None
    read: PromptBatch | None = None

    def __post_init__(self) -> None:
        if self.read is None:
            self.read = self.sub

    @property
    def copies(self) -> int:
        return len(self.chunk)

    @property
    def m(self) -> int:
        return self.sub.n

    def index(self, device: torch.device) -> torch.Tensor:
        return torch.tensor(self.chunk, device=device)

    def targets(self, components: Sequence[Component]) -> dict[str, list[tuple[int, tuple]]]:
        """Hook name -> (copy j, the slice of ``chunk[j]``'s component in the window)."""
        members = [components[i] for i in self.chunk]
        return {
            name: [(j, _window_index(members[j], self.p0)) for j in idx]
            for name, idx in group_by_hook(members).items()
        }

    def patch_hooks(
        self, components: Sequence[Component], source: Activations
    ) -> list[tuple[str, object]]:
        """Hooks writing each copy's component slice from ``source`` (the source run's
        activations [n, seq, ...] of every prompt) in this pass's window."""
        window = (self.rows, slice(self.p0, self.stop))
        return [
            (name, copy_patch_hook(targets, source[name][window], self.m))
            for name, targets in self.targets(components).items()
        ]

    def run(
        self,
        ctx: AttributionContext,
        hooks: Sequence[tuple[str, object]],
        entries: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits [copies * m, 1, vocab or k] at each prompt's last position, with ``hooks``
        (only the ``columns`` the metric reads, when it reads a few).

        ``entries`` (fast path only): layer -> residual streams [copies_l * m, window, d] that
        enter block l, copy-major, instead of the recorded unpatched ones at the copies' own
        layers; the pass then holds sum_l copies_l copies."""
        if self.inputs is None:
            read_pos = self.sub.last.repeat(self.copies)
            tokens = ctx.base_tokens[self.rows].repeat(self.copies, 1)
            logits = ctx.model.run(tokens, hooks, read_pos=read_pos)
            ctx.cost.forward(tokens.shape[0])
            return logits
        if entries is None:
            entries = {
                layer: self.inputs.resid[layer][:, self.p0 : self.stop].repeat(count, 1, 1)
                for layer, count in Counter(self.layers).items()
            }
        entries = dict(entries)
        rows = sum(stream.shape[0] for stream in entries.values())
        first = min(entries)
        logits = ctx.model.run_from_layer(
            entries.pop(first),
            first,
            hooks,
            self.inputs,
            enter=entries,
            start_pos=self.p0,
            stop_pos=self.stop,
            read_pos=self.sub.last.repeat(rows // self.m),
            columns=self.columns,
        )
        ctx.cost.forward(rows)
        return logits


def copy_batches(
    ctx: AttributionContext, components: Sequence[Component], plan: ChunkPlan, desc: str
) -> Iterator[tuple[slice, CopyBatch]]:
    """Every fast-path pass over ``components`` (one copy each), prompt chunk by prompt chunk.

    Per prompt chunk, :meth:`ModelAdapter.block_inputs` records the unpatched run; the first
    chunk checks the block loop and re-entry (module docstring). Raises
    :class:`FastPathUnavailable` when a check fails, before anything is returned for a chunk
    whose check failed; the caller discards what it accumulated and uses its full engine.
    Components are ordered by (position, layer) so a pass shares its first position.
    """
    windows = any(c.pos > 0 for c in components)
    order = sorted(
        range(len(components)),
        key=lambda i: (max(components[i].pos, 0), components[i].layer, i),
    )
    todo = [
        (index, rows, start)
        for index, rows in enumerate(ctx.prompt_chunks(plan.prompt_rows))
        for start in range(0, len(order), plan.copies)
    ]
    for index, rows, start in ctx.progress.passes(todo, desc):
        if start == 0:  # a new prompt chunk: its recorded unpatched run
            inputs, windows = _prefix(ctx, rows, windows, check=index == 0)
            sub = ctx.batch.select(rows)
            columns, read = metric_columns(sub, ctx.metric)
            last = sub.last
            stop = int(last.max()) + 1
        chunk = order[start : start + plan.copies]
        p0 = min(max(components[i].pos, 0) for i in chunk) if windows else 0
        if p0 >= stop:  # every patch lies after every prompt's last real token
            continue
        chunk = sorted(chunk, key=lambda i: components[i].layer)
        live = _live(components, chunk, last)
        layers = [components[i].layer for i in chunk]
        batch = CopyBatch(chunk, p0, stop, rows, sub, inputs, live, layers, columns, read)
        yield rows, batch


def full_copy_batches(
    ctx: AttributionContext, components: Sequence[Component], plan: ChunkPlan, desc: str
) -> Iterator[tuple[slice, CopyBatch]]:
    """The passes of :func:`copy_batches` for the reference engine: each one the model's whole
    forward (every layer and position, logits over the vocabulary) on up to ``plan.copies``
    copies of a prompt chunk."""
    for rows, chunk in full_batches(ctx, len(components), plan, desc):
        sub = ctx.batch.select(rows)
        live = _live(components, chunk, sub.last)
        layers = [0] * len(chunk)
        yield rows, CopyBatch(chunk, 0, ctx.batch.seq_len, rows, sub, None, live, layers)


def _live(components: Sequence[Component], chunk: list[int], last: torch.Tensor) -> torch.Tensor:
    """[copies, m]: False where copy j's component lies after a prompt's last real token."""
    positions = torch.tensor([components[i].pos for i in chunk], device=last.device)
    return ~(positions[:, None] > last[None, :])


def _prefix(
    ctx: AttributionContext, rows: slice, windows: bool, check: bool
) -> tuple[BlockInputs, bool]:
    """The recorded unpatched run of the prompts ``rows`` (two forwards), after the checks;
    ``windows`` turns False when re-entering at a later position fails its check."""
    model = ctx.model
    tokens = ctx.base_tokens[rows]
    try:
        inputs = model.block_inputs(tokens, record_kv=windows)
    except Exception as err:  # noqa: BLE001 - any failure means: use the full path
        raise FastPathUnavailable(
            "setup", f"the block loop cannot run ({type(err).__name__}: {err})"
        ) from None
    ctx.cost.forward(tokens.shape[0])
    ctx.cost.forward(tokens.shape[0])
    if not _agree(inputs.loop_logits, inputs.logits):
        raise FastPathUnavailable("loop", "the block loop differs from the model's forward")
    if check:
        if windows and not _reentry_agrees(model, inputs, max(1, inputs.seq_len // 2)):
            _warn(
                model.name,
                "window",
                "re-entering at a later position with recorded keys/values differs "
                "from the model's forward; every position is recomputed",
            )
            windows = False
        if not windows and not _reentry_agrees(model, inputs, 0):
            raise FastPathUnavailable("reentry", "re-entering at a later layer differs")
    inputs.logits = inputs.loop_logits = None
    return inputs, windows


def _window_index(component: Component, start: int) -> tuple:
    """:func:`slice_index` in a window of positions that begins at ``start``."""
    index = slice_index(component)
    if component.pos >= 0:
        return (component.pos - start,) + index[1:]
    return index


def _reentry_agrees(model, inputs, start: int) -> bool:
    """Re-entering the unpatched run at a middle layer (and, staggered, at the last layer)
    from position ``start`` reproduces the model's own logits."""
    n_layers = len(inputs.resid)
    layer = n_layers // 2
    enter = {}
    if n_layers - 1 > layer:
        enter[n_layers - 1] = inputs.resid[n_layers - 1][:, start:]
    try:
        with torch.no_grad():
            logits = model.run_from_layer(
                inputs.resid[layer][:, start:], layer, (), inputs, enter=enter, start_pos=start
            )
    except Exception as err:  # noqa: BLE001 - a failed re-entry is a failed check
        log.debug("re-entry check failed: %s: %s", type(err).__name__, err)
        return False
    expected = inputs.logits[:, start:].repeat(1 + len(enter), 1, 1)
    return _agree(logits, expected)


def _agree(actual: torch.Tensor | None, expected: torch.Tensor) -> bool:
    """Equal up to rounding: max |difference| <= min(1000 eps, 0.01) * max(1, max |expected|)."""
    if actual is None or actual.shape != expected.shape:
        return False
    tol = min(1000 * torch.finfo(expected.dtype).eps, 1e-2)
    scale = max(1.0, float(expected.abs().max()))
    return float((actual - expected).abs().max()) <= tol * scale


_WARNED: set[tuple[str, str]] = set()


def _warn(model_name: str, reason: str, message: str) -> None:
    """Log a fast-path fallback once per model and reason."""
    if (model_name, reason) in _WARNED:
        return
    _WARNED.add((model_name, reason))
    fallback = "" if reason == "window" else "; using one full forward per patched batch"
    log.warning("fast patching path, model %r: %s%s", model_name, message, fallback)


def metric_gradients(
    ctx: AttributionContext,
    tokens: torch.Tensor,
    names: Sequence[str],
    offsets: Activations | None = None,
    n_total: int | None = None,
) -> tuple[torch.Tensor, Activations, Activations]:
    """Per-prompt metric [n], activations and gradients dL/da at ``names`` on ``tokens``.

    L is the mean over all n prompts (``n_total`` when ``ctx`` holds a chunk of a larger
    batch), so gradients carry the 1/n. ``offsets`` (optional, per
    hook [n, seq, ...]) are added to the activations before differentiating (the gradient is
    then taken at a + offset). Activations returned are the unpatched ones. One forward and one
    backward per prompt chunk.
    """
    n = n_total or ctx.batch.n
    metrics, acts_parts, grad_parts = [], {k: [] for k in names}, {k: [] for k in names}
    for rows in ctx.progress.passes(ctx.prompt_chunks(), "gradients"):
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
            sub = ctx.batch.select(rows)
            logits = ctx.model.run(
                tokens[rows],
                [(name, make_hook(name, store, eps, rows)) for name in names],
                read_pos=sub.last,
            )
            per_prompt = per_prompt_metric(logits, sub, ctx.metric)
            grads = torch.autograd.grad(per_prompt.sum() / n, [eps[name] for name in names])
        ctx.cost.forward(rows.stop - rows.start)
        ctx.cost.n_backward += 1
        metrics.append(per_prompt.detach())
        for name, grad in zip(names, grads, strict=True):
            acts_parts[name].append(store[name])
            grad_parts[name].append(grad)
    cat = lambda parts: {k: torch.cat(v) for k, v in parts.items()}  # noqa: E731
    return torch.cat(metrics), cat(acts_parts), cat(grad_parts)
