"""Circuit recovery patches the removed sets for real."""

from __future__ import annotations

import numpy as np
import pytest

from harness.circuits import FRACTIONS, circuit_recovery, patched_metric_of_sets
from harness.ground_truth import compute_ground_truth
from harness.patching import collect_activations, site_names
from tests.helpers import make_context, random_batch


def test_single_component_sets_match_activation_patching(tiny_gpt2):
    ctx, _ = make_context(
        tiny_gpt2, random_batch(4, 6, seed=31), sites=("head", "mlp_out"), batch_size=8
    )
    truth, base_metric, _ = compute_ground_truth(ctx)
    _, corrupt = collect_activations(ctx, ctx.batch.corrupt, site_names(ctx.components))
    sets = [np.array([i]) for i in range(len(ctx.components))]
    values = patched_metric_of_sets(ctx, ctx.components, sets, ctx.batch.clean, corrupt)
    np.testing.assert_allclose(values - base_metric, truth.numpy(), atol=1e-10)


def test_curve_endpoints_and_scores(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=32), sites=("head",))
    truth, _, _ = compute_ground_truth(ctx)
    scores, curve = circuit_recovery(ctx, truth.numpy())
    assert list(curve.k.unique()) == list(FRACTIONS)
    full = curve[curve.k == 1.0]
    assert np.allclose(full.faithfulness, 1.0)  # keep everything: nothing patched
    assert np.isfinite(scores["cpr"]) and scores["cmd"] >= 0
    # a ranking by the truth recovers the behaviour faster than the reverse ranking
    reverse, _ = circuit_recovery(ctx, -truth.numpy())
    assert scores["cpr"] > reverse["cpr"]


@pytest.mark.parametrize("direction", ["noising", "denoising"])
def test_resid_pre_layer0_empty_circuit_is_the_corrupt_run(tiny_gpt2, direction):
    ctx, _ = make_context(
        tiny_gpt2, random_batch(3, 5, seed=33), sites=("resid_pre",), direction=direction
    )
    ctx.components = ctx.components[:1]
    scores, _ = circuit_recovery(ctx, np.array([1.0]))
    corrupt_metric, _ = collect_activations(ctx, ctx.batch.corrupt, [])
    assert scores["circuit_empty_metric"] == pytest.approx(float(corrupt_metric.mean()), abs=1e-10)
