"""Reliability scores, flags and bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.diagnostics import (
    DiagnosticSettings,
    bound_quality,
    flag_components,
    flag_quality,
    hvp_spread,
    path_quantities,
    reliability_scores,
    run_diagnostics,
    unreliable_labels,
)
from harness.evaluation import average_precision, roc_auc
from harness.methods.base import make_method
from harness.patching import collect_activations, site_names
from harness.second_order import path_derivatives
from tests.helpers import make_context, random_batch


def test_auroc_and_average_precision_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(3, 40))
        score = np.round(rng.normal(size=n), 1)  # ties included
        labels = rng.random(n) < 0.4
        if labels.all() or not labels.any():
            continue
        assert roc_auc(score, labels) == pytest.approx(metrics.roc_auc_score(labels, score))
        assert average_precision(score, labels) == pytest.approx(
            metrics.average_precision_score(labels, score)
        )


def test_flags_labels_and_quality():
    score = np.array([0.9, 0.1, 0.6, 0.3, 0.7])
    assert flag_components(score, 0.5, 0.2).tolist() == [True, False, True, False, True]
    assert flag_components(score, None, 0.4).tolist() == [True, False, False, False, True]
    labels = unreliable_labels(np.array([1.0, 1.0, 1.0]), np.array([1.2, 2.0, 1.0]), 0.1, 0.2)
    assert labels.tolist() == [False, True, False]
    q = flag_quality(
        np.array([True, True, False, False]),
        np.array([4, 3, 2, 1.0]),
        np.array([True, False, True, False]),
    )
    assert (q["precision"], q["recall"], q["f1"], q["auroc"]) == (0.5, 0.5, 0.5, 0.75)
    b = bound_quality(np.array([0.0, 0.0]), np.array([1.0, 1.0]), np.array([0.5, 2.0]))
    assert b["coverage"] == 0.5 and b["width"] == pytest.approx(1 / 1.25)


def test_scores_and_bounds_on_a_model(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=12), sites=("head", "mlp_out"))
    path = path_quantities(ctx)
    atp = make_method({"name": "atp"}).estimate(ctx).estimates
    torch.testing.assert_close(path.first0, atp, rtol=1e-9, atol=1e-12)
    scores = reliability_scores(ctx, ["curvature_ratio", "delta_norm", "grad_disagreement"], path)
    names = site_names(ctx.components)
    _, base = collect_activations(ctx, ctx.base_tokens, names)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    head = ctx.components[5]
    d = (
        source[f"blocks.{head.layer}.attn.hook_z"][:, :, head.head]
        - base[f"blocks.{head.layer}.attn.hook_z"][:, :, head.head]
    )
    assert scores["delta_norm"][5].item() == pytest.approx(d.norm().item(), rel=1e-9)
    ratio = path.second0.abs() / (2 * path.first0.abs())
    torch.testing.assert_close(scores["curvature_ratio"], ratio, rtol=1e-6, atol=0)
    assert (scores["grad_disagreement"] >= 0).all()

    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates.numpy()
    columns, summary = run_diagnostics(
        ctx,
        truth,
        DiagnosticSettings(
            ["curvature_ratio", "delta_norm"], {"fraction": 0.25}, {"abs": 0.0, "rel": 0.1}
        ),
        "atp",
    )
    for key in (
        "reliability_curvature_ratio",
        "flagged",
        "unreliable",
        "bound_lo",
        "bound_hi",
        "hvp_bound_lo",
        "atp_bound_hi",
    ):
        assert columns[key].shape == truth.shape
    assert (columns["bound_lo"] <= columns["bound_hi"]).all()
    assert 0 <= summary["bound_coverage"] <= 1 and summary["bound_width"] > 0
    assert summary["flag_score"] == "curvature_ratio"
    assert {"flag_precision", "flag_recall", "flag_f1", "flag_auroc", "flag_ap"} <= set(summary)


def test_self_patch_has_zero_width_bounds(tiny_gpt2):
    batch = random_batch(3, 5, seed=13)
    batch.corrupt = batch.clean.clone()
    ctx, _ = make_context(tiny_gpt2, batch, sites=("head",))
    columns, summary = run_diagnostics(
        ctx,
        np.zeros(len(ctx.components)),
        DiagnosticSettings(["delta_norm"], {"fraction": 0.2}, {"abs": 0.05, "rel": 0.25}),
        "hvp",
    )
    assert np.all(columns["bound_lo"] == 0) and np.all(columns["bound_hi"] == 0)
    assert not columns["unreliable"].any()


def test_hvp_interval_is_exact_for_a_cubic_path():
    # f(t) = c1 t + c2 t^2 + c3 t^3: truth f(1) - f(0) = c1 + c2 + c3, hvp = c1 + c2
    c1, c2, c3 = np.array([0.5, -1.0, 2.0]), np.array([0.3, 0.2, -0.7]), np.array([0.1, -0.4, 0.0])
    spread = hvp_spread(c1, 2 * c2, c1 + 2 * c2 + 3 * c3)
    np.testing.assert_allclose(spread, np.abs(c3), rtol=1e-12, atol=1e-15)
    truth, hvp = c1 + c2 + c3, c1 + c2
    assert np.all((truth >= hvp - spread - 1e-12) & (truth <= hvp + spread + 1e-12))


def test_bounds_come_from_the_path_derivatives_at_both_ends(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(3, 6, seed=14), sites=("head",))
    names = site_names(ctx.components)
    _, base = collect_activations(ctx, ctx.base_tokens, names)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    f0, s0 = path_derivatives(ctx, ctx.components, base, source, t=0.0, fast=False)
    f1, _ = path_derivatives(ctx, ctx.components, base, source, t=1.0, fast=False)
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates.numpy()
    settings = DiagnosticSettings(["delta_norm"], {"fraction": 0.2}, {"abs": 0.05, "rel": 0.25})
    columns, _ = run_diagnostics(ctx, truth, settings, "hvp")
    f0, s0, f1 = f0.numpy(), s0.numpy(), f1.numpy()
    hvp, spread = f0 + s0 / 2, np.abs(f1 - f0 - s0) / 3
    assert spread.max() > 1e-4, "the toy must have a third derivative along some path"
    np.testing.assert_allclose(columns["hvp_bound_lo"], hvp - spread, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(columns["hvp_bound_hi"], hvp + spread, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(columns["atp_bound_lo"], np.minimum(f0, f1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(columns["atp_bound_hi"], np.maximum(f0, f1), rtol=1e-9, atol=1e-12)
