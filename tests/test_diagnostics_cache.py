"""Diagnostics are method-independent: computed once per ground truth and settings, cached,
and identical to a fresh computation for every bound kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from harness.diagnostics import (
    DiagnosticSettings,
    cached_diagnostics,
    path_quantities,
    run_diagnostics,
)
from harness.errors import HarnessError
from harness.methods.base import make_method
from tests.helpers import make_context, random_batch

SCORES = ["curvature_ratio", "delta_norm", "grad_disagreement"]


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
    # another truth or other settings: another entry; a corrupted entry: recomputed
    cached_diagnostics(tmp_path, "other", ctx, truth, settings, "atp")
    assert len(list((tmp_path / "diagnostics").glob("*.json"))) == 2
    entry.write_text(entry.read_text().replace("true", "false", 1))
    _, summary = cached_diagnostics(tmp_path, "truthkey", ctx, truth, settings, "atp")
    assert summary["diagnostics_cached"] is False
    _, summary = cached_diagnostics(None, "truthkey", ctx, truth, settings, None)
    assert summary["diagnostics_cached"] is False and np.isnan(summary["bound_coverage"])


def test_at_zero_of_the_wrong_shape_is_one_line(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(2, 6, seed=3))
    n = len(ctx.components)
    wrong = (torch.zeros(n - 1, dtype=torch.float64), torch.zeros(n - 1, dtype=torch.float64))
    with pytest.raises(HarnessError, match=rf"^the method's at_zero has shape \({n - 1},\), "):
        path_quantities(ctx, both_ends=False, at_zero=wrong)
