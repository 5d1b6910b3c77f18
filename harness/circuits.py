"""Circuit recovery: how well a method's ranking finds the components that carry the behaviour.

Rank components by an estimate, keep the top fraction k as the circuit, patch every other
component to its corrupt value in the clean run (all at once, for real), and measure the
normalised faithfulness

    f(k) = (L(circuit) - L(empty)) / (L(full) - L(empty)),

with L(full) the clean run (nothing patched) and L(empty) the clean run with every component
patched. ``cpr`` is the area under f over k in {0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100}%
(higher is better) and ``cmd`` the area under |1 - f| (lower is better), both by the trapezoid
rule over k as a fraction in [0.001, 1], normalised by that interval (MIB, Mueller et al. 2025).

Ranking (as MIB): for ``cpr`` by the signed contribution to the clean behaviour (the noising
effect of a supporting component points from L(full) towards L(empty), so under noising rank by
-estimate when L(full) > L(empty); denoising effects point the other way); for ``cmd`` by
|estimate|. Ties keep forward order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from harness.budget import chunk_plan
from harness.components import group_by_hook, slice_index
from harness.context import AttributionContext
from harness.cost import FORWARD, CostEstimate
from harness.patching import (
    collect_activations,
    copy_patch_hook,
    full_batches,
    pass_row_bytes,
    site_names,
)
from harness.task_metric import per_prompt_metric
from harness.types import Component

FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def circuit_cost() -> CostEstimate:
    """The cost of :func:`circuit_recovery` in forward equivalents: the clean and the corrupt
    run, and one patched copy for the empty circuit and for each fraction of both rankings."""
    copies = 1 + 2 * len(FRACTIONS)
    return CostEstimate(2 * FORWARD + copies * FORWARD, f"{copies} patched copies")


def kept_sets(order: np.ndarray, n: int) -> list[np.ndarray]:
    """For each fraction, the indices of the top ``ceil(k n)`` components of ``order``
    (at least one component for k > 0)."""
    return [order[: max(1, int(np.ceil(k * n)))] for k in FRACTIONS]


def patched_metric_of_sets(
    ctx: AttributionContext,
    components: Sequence[Component],
    patch_sets: Sequence[np.ndarray],
    clean: torch.Tensor,
    corrupt_acts: dict[str, torch.Tensor],
) -> np.ndarray:
    """Mean metric [len(patch_sets)] of the clean run with each set of components patched to
    its corrupt value (one replicated copy of the prompts per set)."""
    n = ctx.batch.n
    totals = np.zeros(len(patch_sets))
    row_cost = pass_row_bytes(ctx, "forward", fast=False)
    plan = chunk_plan(ctx, len(patch_sets), row_cost, "circuits")
    for rows, chunk in full_batches(ctx, len(patch_sets), plan, "circuits"):
        m = rows.stop - rows.start
        copies = len(chunk)
        targets: dict[str, list[tuple[int, tuple]]] = {}
        for j, set_index in enumerate(chunk):
            members = [components[i] for i in patch_sets[set_index]]
            for name, idx in group_by_hook(members).items():
                targets.setdefault(name, []).extend((j, slice_index(members[i])) for i in idx)
        hooks = [
            (name, copy_patch_hook(pairs, corrupt_acts[name][rows], m))
            for name, pairs in targets.items()
        ]
        with torch.no_grad():
            logits = ctx.model.run(
                clean[rows].repeat(copies, 1), hooks, read_pos=ctx.batch.last[rows].repeat(copies)
            )
        ctx.cost.forward(copies * m)
        values = per_prompt_metric(logits, ctx.batch.select(rows), ctx.metric, copies)
        totals[chunk] += values.view(copies, m).double().sum(dim=1).cpu().numpy()
    return totals / n


def circuit_recovery(
    ctx: AttributionContext, estimates: np.ndarray
) -> tuple[dict[str, float], pd.DataFrame]:
    """``cpr``/``cmd`` of ranking ``ctx.components`` by ``estimates``, and the curve
    (one row per fraction and ranking: ``k``, ``ranking``, ``n_kept``, ``metric``,
    ``faithfulness``)."""
    components = ctx.components
    n = len(components)
    clean, corrupt = ctx.batch.clean, ctx.batch.corrupt
    names = site_names(components)
    full_metric, _ = collect_activations(ctx, clean, [])
    _, corrupt_acts = collect_activations(ctx, corrupt, names)
    everything = np.arange(n)
    full = float(full_metric.double().mean())
    empty = patched_metric_of_sets(ctx, components, [everything], clean, corrupt_acts)[0]
    span = full - empty
    # the supporting direction: noising effects of supporting components point from L(full)
    # towards L(empty), i.e. opposite to span; denoising effects point along it
    sign = (-1.0 if ctx.direction == "noising" else 1.0) * (1.0 if span >= 0 else -1.0)
    signed = np.argsort(-sign * estimates, kind="stable")
    absolute = np.argsort(-np.abs(estimates), kind="stable")
    sets = [
        np.setdiff1d(everything, kept)
        for order in (signed, absolute)
        for kept in kept_sets(order, n)
    ]
    metrics = patched_metric_of_sets(ctx, components, sets, clean, corrupt_acts)
    rows = []
    for r, ranking in enumerate(("signed", "absolute")):
        for i, k in enumerate(FRACTIONS):
            value = metrics[r * len(FRACTIONS) + i]
            faith = (value - empty) / span if span != 0 else float("nan")
            rows.append(
                {
                    "k": k,
                    "ranking": ranking,
                    "n_kept": int(len(kept_sets(signed, n)[i])),
                    "metric": value,
                    "faithfulness": faith,
                }
            )
    curve = pd.DataFrame(rows)
    width = FRACTIONS[-1] - FRACTIONS[0]
    signed_f = curve[curve.ranking == "signed"].faithfulness.to_numpy()
    absolute_f = curve[curve.ranking == "absolute"].faithfulness.to_numpy()
    scores = {
        "cpr": float(np.trapezoid(signed_f, FRACTIONS) / width),
        "cmd": float(np.trapezoid(np.abs(1 - absolute_f), FRACTIONS) / width),
        "circuit_full_metric": full,
        "circuit_empty_metric": float(empty),
    }
    return scores, curve
