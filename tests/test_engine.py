"""The shared copy engine: chunk sizes follow the memory budget (equal numbers, more passes); a
budget too small for one copy is a one-line error; a model that fails a check falls back to the
reference; actpatch reads the run's ground truth. (Path derivatives from each component's layer
against the full-forward reference: tests/test_second_order.py.)"""

from __future__ import annotations

import pytest
import torch

from harness.adapter import ModelAdapter
from harness.budget import GB
from harness.config import check_ranges
from harness.errors import HarnessError
from harness.methods.actpatch import ActivationPatching
from harness.patching import collect_activations, patch_effects, site_names
from harness.run import memory_bytes as memory_gb_in_bytes
from harness.second_order import path_derivatives
from tests.helpers import make_context, random_batch

SITES = ("head", "attn_out", "mlp_out", "resid_pre")


def _tensors(ctx):
    names = site_names(ctx.components)
    base_metric, base = collect_activations(ctx, ctx.base_tokens, names)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    return base_metric, base, source


def test_small_budget_gives_equal_numbers_in_more_passes(tiny_gpt2):
    batch = random_batch(4, 6, seed=5)
    numbers, passes = [], []
    for memory_bytes in (None, 1):
        ctx, _ = make_context(tiny_gpt2, batch, sites=("head", "resid_pre"), positions="each")
        if memory_bytes is not None:  # room for exactly one sequence row of the costliest pass
            from harness.patching import pass_row_bytes

            rows = pass_row_bytes(ctx, "hvp"), pass_row_bytes(ctx, "hvp", vocabulary=True)
            ctx.memory_bytes = max(rows)
        base_metric, base, source = _tensors(ctx)
        start = ctx.cost.n_forward
        effects = patch_effects(ctx, ctx.components, source, base_metric)
        first, second = path_derivatives(ctx, ctx.components, base, source)  # shared pass
        at_one = path_derivatives(ctx, ctx.components, base, source, t=1.0)  # a copy each
        numbers.append(torch.cat([effects, first, second, *at_one]))
        passes.append(ctx.cost.n_forward - start)
        chunks = dict(ctx.chunks)
    torch.testing.assert_close(numbers[0], numbers[1], rtol=1e-9, atol=1e-12)
    assert passes[1] > passes[0]
    for name in ("path derivatives at t=0", "path derivatives"):  # the shared pass, the copies'
        assert chunks[name]["copies"] == 1 and chunks[name]["prompt_rows"] == 1, name


def test_budget_too_small_for_one_copy_is_a_one_line_error(tiny_gpt2):
    batch = random_batch(2, 6, seed=6)
    ctx, _ = make_context(tiny_gpt2, batch, sites=("head",))
    ctx.memory_bytes = 16
    _, base, source = _tensors(ctx)
    with pytest.raises(HarnessError, match="memory_gb=.*too small.*raise memory_gb") as err:
        path_derivatives(ctx, ctx.components, base, source)
    assert "\n" not in str(err.value)
    with pytest.raises(HarnessError, match=r"memory_gb must be in \(0, inf\), got 0"):
        check_ranges({"memory_gb": 0})  # the config schema refuses it before any pass
    assert memory_gb_in_bytes(2) == 2 * GB


def test_failed_check_falls_back_to_the_reference(tiny_gpt2, monkeypatch, caplog):
    batch = random_batch(3, 6, seed=7)
    ctx, _ = make_context(tiny_gpt2, batch, sites=("head", "mlp_out"), positions="each")
    base_metric, base, source = _tensors(ctx)
    expected = path_derivatives(ctx, ctx.components, base, source, t=0.5, fast=False)
    truth = patch_effects(ctx, ctx.components, source, base_metric)

    def broken(self, *args, **kwargs):
        raise RuntimeError("no block loop here")

    monkeypatch.setattr(ModelAdapter, "block_inputs", broken)
    got = path_derivatives(ctx, ctx.components, base, source, t=0.5)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(
        patch_effects(ctx, ctx.components, source, base_metric), truth, rtol=1e-9, atol=1e-12
    )


def test_actpatch_reads_the_runs_truth_and_computes_without_it(tiny_gpt2):
    batch = random_batch(3, 6, seed=8)
    ctx, _ = make_context(tiny_gpt2, batch, sites=("head",))
    computed = ActivationPatching().estimate(ctx)
    assert ctx.cost.n_forward > 0 and "reads_truth" not in computed.summary
    ctx.truth = computed.estimates * 0 + 7.0  # a stand-in: proves it is read, not recomputed
    before = ctx.cost.n_forward
    read = ActivationPatching().estimate(ctx)
    assert read.summary["reads_truth"] is True
    assert ctx.cost.n_forward == before
    assert torch.equal(read.estimates, ctx.truth)
