"""Reliability scores, flags and bounds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import harness.diagnostics as diagnostics
from harness.context import CostCounter
from harness.diagnostics import (
    BASELINE_SCORE,
    NO_BOUNDS,
    SCORE_TIER,
    TIER_SCORES,
    DiagnosticSettings,
    bound_quality,
    check_reliability_config,
    flag_components,
    flag_quality,
    hvp_spread,
    path_quantities,
    reliability_scores,
    run_diagnostics,
    tier_values,
    unreliable_labels,
)
from harness.errors import HarnessError
from harness.evaluation import average_precision, roc_auc
from harness.methods.base import make_method
from harness.patching import collect_activations, site_names
from harness.second_order import path_derivatives
from tests.helpers import local_run_args, make_context, random_batch


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


def _passes(ctx, tier: str) -> dict[str, int]:
    """The passes one fresh run of the ``tier``'s diagnostics makes on ``ctx``."""
    counter = CostCounter()
    truth = np.zeros(len(ctx.components))
    settings = DiagnosticSettings(TIER_SCORES[tier], {"fraction": 0.2}, {}, tier)
    run_diagnostics(ctx.with_cost(counter), truth, settings, "atp")
    return {k: v for k, v in counter.as_dict().items() if k != "n_sequences"}


def test_cheap_tier_takes_no_path_derivative_and_as_many_passes_for_any_component_count(
    tiny_gpt2, monkeypatch
):
    batch = random_batch(4, 6, seed=15)
    few, _ = make_context(tiny_gpt2, batch, sites=("head",), batch_size=4)
    many, _ = make_context(tiny_gpt2, batch, sites=("head", "mlp_out", "neuron"), batch_size=4)
    assert len(many.components) > 10 * len(few.components)
    exact = [_passes(ctx, "exact") for ctx in (few, many)]
    assert exact[1]["n_forward"] > exact[0]["n_forward"]  # the count does see the components

    def refuse(*args, **kwargs):
        raise AssertionError("the cheap tier took a path derivative")

    monkeypatch.setattr(diagnostics, "path_derivatives", refuse)
    cheap = [_passes(ctx, "cheap") for ctx in (few, many)]
    assert cheap[0] == cheap[1] == {"n_forward": 2, "n_backward": 2, "n_hvp": 0}


def test_a_default_run_records_its_diagnostics_passes_flat_in_the_components(
    tiny_gpt2, tmp_path, capsys, monkeypatch
):
    from tests.test_cli import run_cli
    from tests.test_ground_truth import _pairs

    def refuse(*args, **kwargs):
        raise AssertionError("the default diagnostics took a path derivative")

    monkeypatch.setattr(diagnostics, "path_derivatives", refuse)
    summaries = []
    for i, sites in enumerate(("[head]", "[head,mlp_out,neuron]")):
        args = local_run_args(tiny_gpt2, _pairs(tmp_path), tmp_path / str(i))
        code, _, err = run_cli([*args, f"components.sites={sites}", "circuits=false"], capsys)
        assert code == 0, err
        run = next((tmp_path / str(i) / "runs").glob("*/*/summary.json"))
        summaries.append(json.loads(run.read_text()))
    assert summaries[1]["n_components"] > 10 * summaries[0]["n_components"]
    keys = ("diagnostics_n_forward", "diagnostics_n_backward", "diagnostics_n_hvp")
    assert [summaries[0][k] for k in keys] == [summaries[1][k] for k in keys] == [2, 2, 0]
    assert {s["diagnostics_tier"] for s in summaries} == {"cheap"}


def test_cheap_scores_equal_the_exact_tiers(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=16), sites=("head", "mlp_out"))
    cheap, exact = tier_values(ctx, "cheap"), tier_values(ctx, "exact")
    assert set(cheap) < set(exact) and "reliability_curvature_ratio" not in cheap
    for key, value in cheap.items():
        np.testing.assert_allclose(value, exact[key], rtol=1e-9, atol=1e-12, err_msg=key)
    np.testing.assert_array_equal(exact["reliability_abs_atp"], np.abs(exact["atp"]))


@pytest.mark.parametrize("tier", ["cheap", "exact"])
def test_both_labels_and_the_abs_atp_baseline_beside_every_score(tiny_gpt2, tier):
    ctx, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=17), sites=("head", "mlp_out"))
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates.numpy()
    atp = tier_values(ctx, tier)["atp"]
    floor = float(np.median(np.abs(atp - truth)))  # both labels have members on the toy
    listed = ["delta_norm", "grad_disagreement"]  # abs_atp is reported all the same
    unreliable = {"abs": floor, "rel": 0.3}
    settings = DiagnosticSettings(listed, {"fraction": 0.25}, unreliable, tier)
    columns, summary = run_diagnostics(ctx, truth, settings, "atp")
    relative = np.abs(atp - truth) > 0.3 * np.abs(truth)
    magnitude = np.abs(atp - truth) > floor + 0.3 * np.abs(truth)
    np.testing.assert_array_equal(columns["unreliable_rel"], relative)
    np.testing.assert_array_equal(columns["unreliable"], magnitude)
    assert relative.sum() > magnitude.sum() > 0 and not relative.all()
    assert summary["n_unreliable_rel"] == relative.sum()
    assert summary["flag_auroc_abs_atp"] == pytest.approx(roc_auc(np.abs(atp), magnitude))
    for name in (*listed, BASELINE_SCORE):
        score = columns[f"reliability_{name}"]
        assert summary[f"flag_auroc_{name}_rel"] == roc_auc(score, relative)
        assert summary[f"flag_ap_{name}_rel"] == average_precision(score, relative)
        assert summary[f"flag_auroc_{name}"] == roc_auc(score, magnitude)
        assert summary[f"score_tier_{name}"] == SCORE_TIER[name] == "cheap"
    assert summary["diagnostics_tier"] == tier and summary["flag_score"] == "delta_norm"
    if tier == "cheap":
        assert not any(key.startswith(("atp_bound", "hvp_bound")) for key in columns)
        assert np.isnan(columns["bound_lo"]).all() and np.isnan(summary["bound_coverage"])
        assert summary["bounds_missing"] == NO_BOUNDS
    else:
        assert np.isfinite(summary["bound_coverage"]) and "bounds_missing" not in summary


def test_reliability_scores_each_tier_reports():
    assert check_reliability_config({"scores": None}, "cheap") == list(TIER_SCORES["cheap"])
    exact = check_reliability_config({"scores": None}, "exact")
    assert exact[0] == "curvature_ratio" and exact[-1] == BASELINE_SCORE
    assert check_reliability_config({"scores": ["delta_norm"]}, "cheap") == [
        "delta_norm",
        BASELINE_SCORE,
    ]
    with pytest.raises(HarnessError, match=r"^reliability score 'curvature_ratio' needs "):
        check_reliability_config({"scores": ["curvature_ratio"]}, "cheap")
    cheap = DiagnosticSettings(["curvature_ratio"], {}, {}, "cheap")
    values = {"atp": np.zeros(2), "reliability_abs_atp": np.zeros(2)}
    with pytest.raises(HarnessError, match=r"needs diagnostics=exact; diagnostics=cheap computes"):
        diagnostics.diagnostic_columns(values, np.zeros(2), cheap, None)
