"""Diagnostics are method-independent: computed once per ground truth and settings, cached,
and identical to a fresh computation for every bound kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from harness.context import CostCounter
from harness.diagnostics import (
    TIER_SCORES,
    DiagnosticSettings,
    cached_diagnostics,
    path_quantities,
    run_diagnostics,
)
from harness.errors import HarnessError
from harness.methods.base import make_method
from harness.types import PathEnds
from tests.helpers import make_context, random_batch

SCORES = ["curvature_ratio", "delta_norm", "grad_disagreement", "abs_atp"]


def same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.dtype == y.dtype, key
        np.testing.assert_array_equal(x, y, err_msg=key)


@pytest.mark.slow
def test_cached_diagnostics_equal_fresh_ones(tiny_gpt2, tmp_path):
    ctx, _ = make_context(tiny_gpt2, random_batch(3, 6, seed=21))
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates.numpy()
    flag = OmegaConf.create({"fraction": 0.25, "thresholds": {"curvature_ratio": 0.5}})
    unreliable = {"abs": 0.0, "rel": 0.1}
    settings = DiagnosticSettings(SCORES, flag, unreliable)
    for i, kind in enumerate(["atp", "hvp", None, "atp"]):
        fresh_cols, fresh = run_diagnostics(ctx, truth, settings, kind)
        cols, summary = cached_diagnostics(tmp_path, "truthkey", ctx, truth, settings, kind)
        assert summary.pop("diagnostics_cached") is (i > 0)
        same(cols, fresh_cols)
        assert json.dumps(summary, sort_keys=True) == json.dumps(fresh, sort_keys=True)
    (entry,) = (tmp_path / "diagnostics").glob("*.json")
    # other flag and label settings: the same entry, applied on reading it, no pass
    other = DiagnosticSettings(SCORES[::-1], {"fraction": 0.5}, {"abs": 0.01, "rel": 0.5})
    counted = ctx.with_cost(CostCounter())
    cols, summary = cached_diagnostics(tmp_path, "truthkey", counted, truth, other, "hvp")
    assert summary.pop("diagnostics_cached") is True and counted.cost.n_forward == 0
    fresh_cols, fresh = run_diagnostics(ctx, truth, other, "hvp")
    same(cols, fresh_cols)
    assert json.dumps(summary, sort_keys=True) == json.dumps(fresh, sort_keys=True)
    # another truth: another entry; a corrupted entry: recomputed
    cached_diagnostics(tmp_path, "other", ctx, truth, settings, "atp")
    assert len(list((tmp_path / "diagnostics").glob("*.json"))) == 2
    entry.write_text(entry.read_text().replace('"exact"', '"cheap"', 1))
    _, summary = cached_diagnostics(tmp_path, "truthkey", ctx, truth, settings, "atp")
    assert summary["diagnostics_cached"] is False
    _, summary = cached_diagnostics(None, "truthkey", ctx, truth, settings, None)
    assert summary["diagnostics_cached"] is False and np.isnan(summary["bound_coverage"])


def test_an_exact_entry_serves_a_cheap_request_and_a_cheap_one_never_an_exact(tiny_gpt2, tmp_path):
    ctx, _ = make_context(tiny_gpt2, random_batch(3, 6, seed=22))
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates.numpy()
    flag, unreliable = {"fraction": 0.25}, {"abs": 0.0, "rel": 0.1}
    cheap = DiagnosticSettings(TIER_SCORES["cheap"], flag, unreliable, "cheap")
    exact = DiagnosticSettings(TIER_SCORES["exact"], flag, unreliable, "exact")

    def cached(root, settings):
        counted = ctx.with_cost(CostCounter())
        columns, summary = cached_diagnostics(root, "key", counted, truth, settings, "atp")
        return columns, summary, counted.cost.n_forward

    # cheap first: its entry does not serve the exact request, which computes its own
    _, summary, passes = cached(tmp_path / "a", cheap)
    assert not summary["diagnostics_cached"] and passes > 0
    columns, summary, passes = cached(tmp_path / "a", exact)
    assert not summary["diagnostics_cached"] and passes > 0 and "hvp_bound_lo" in columns
    # exact first: the cheap request reads the cheap scores off its entry, no pass
    cached(tmp_path / "b", exact)
    columns, summary, passes = cached(tmp_path / "b", cheap)
    assert summary.pop("diagnostics_cached") and passes == 0
    fresh_columns, fresh = run_diagnostics(ctx, truth, cheap, "atp")
    assert set(columns) == set(fresh_columns) and "hvp_bound_lo" not in columns
    for key, column in fresh_columns.items():  # f'(0) of the path engine vs AtP's own: rounding
        np.testing.assert_allclose(columns[key], column, rtol=1e-9, atol=1e-12, err_msg=key)
    assert summary["diagnostics_tier"] == "cheap" and np.isnan(summary["bound_coverage"])
    assert summary.keys() == fresh.keys()


def test_path_ends_of_the_wrong_shape_are_one_line(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(2, 6, seed=3))
    n = len(ctx.components)
    wrong = PathEnds(torch.zeros(n - 1, dtype=torch.float64), torch.zeros(n, dtype=torch.float64))
    message = rf"^the method's path_ends.first0 has shape \({n - 1},\), "
    with pytest.raises(HarnessError, match=message):
        path_quantities(ctx, both_ends=False, known=wrong)
