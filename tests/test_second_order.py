"""Path derivatives (harness/second_order.py): the fast engine from each component's layer
equals the full-forward reference."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from harness.adapter import ModelAdapter
from harness.second_order import path_derivatives
from tests.conftest import FAMILIES
from tests.helpers import make_context, random_batch
from tests.test_engine import SITES, _tensors


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("positions", ["all", "each"])
def test_fast_path_derivatives_equal_the_full_reference(
    tiny_models, family, positions, monkeypatch
):
    batch = random_batch(3, 6, seed=4, lengths=[6, 4, 5])
    ctx, _ = make_context(tiny_models[family], batch, sites=SITES, positions=positions)
    _, base, source = _tensors(ctx)
    count = len(ctx.components)
    t = torch.linspace(0, 1, count, dtype=torch.float64)
    starts = []
    original = ModelAdapter.run_from_layer

    def counting(self, resid, layer, *args, **kwargs):
        starts.append((layer, kwargs.get("start_pos", 0)))
        return original(self, resid, layer, *args, **kwargs)

    monkeypatch.setattr(ModelAdapter, "run_from_layer", counting)
    first, second = path_derivatives(ctx, ctx.components, base, source, t=t)
    monkeypatch.setattr(ModelAdapter, "run_from_layer", original)
    # the fast path ran: passes start at later layers (and, per position, later positions)
    assert max(layer for layer, _ in starts) > 0
    assert positions == "all" or max(pos for _, pos in starts) > 0
    ref_first, ref_second = path_derivatives(ctx, ctx.components, base, source, t=t, fast=False)
    assert ref_second.abs().max() > 1e-3, "curvature too small for a meaningful comparison"
    torch.testing.assert_close(first, ref_first, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(second, ref_second, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("positions", ["all", "each"])
def test_at_zero_one_unpatched_pass_gives_every_components_derivatives(
    tiny_models, family, positions
):
    batch = random_batch(3, 6, seed=8, lengths=[6, 4, 5])
    ctx, _ = make_context(tiny_models[family], batch, sites=(*SITES, "neuron"), positions=positions)
    ctx.components = ctx.components[:: max(1, len(ctx.components) // 24)]  # every site, fewer
    _, base, source = _tensors(ctx)
    before = ctx.cost.n_sequences
    first, second = path_derivatives(ctx, ctx.components, base, source, t=0.0)
    # one forward of the prompts, not one copy of them per component
    assert ctx.cost.n_sequences - before == batch.clean.shape[0]
    ref_first, ref_second = path_derivatives(ctx, ctx.components, base, source, fast=False)
    assert ref_second.abs().max() > 1e-3, "curvature too small for a meaningful comparison"
    torch.testing.assert_close(first, ref_first, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(second, ref_second, rtol=1e-9, atol=1e-10)


def test_overlapping_components_at_zero_run_a_copy_each(tiny_gpt2, caplog, monkeypatch):
    monkeypatch.setattr("harness.patching._WARNED", set())  # the warning is logged once
    batch = random_batch(2, 5, seed=9)
    ctx, _ = make_context(tiny_gpt2, batch, sites=("resid_pre",), positions="each")
    whole = dataclasses.replace(ctx.components[0], pos=-1)  # covers every position
    components = [*ctx.components[:3], whole]
    _, base, source = _tensors(ctx)
    first, second = path_derivatives(ctx, components, base, source, t=0.0)
    assert "overlap" in caplog.text
    ref_first, ref_second = path_derivatives(ctx, components, base, source, fast=False)
    torch.testing.assert_close(first, ref_first, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(second, ref_second, rtol=1e-9, atol=1e-10)
