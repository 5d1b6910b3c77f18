"""Scores against the truth and their bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np
import pytest

from harness.evaluation import _scores_of_rows, bootstrap_intervals, score_estimates


@pytest.mark.parametrize("n", [12, 300])  # pairwise Kendall for short rows, scipy for long ones
def test_vectorised_resample_scores_equal_score_estimates(n):
    rng = np.random.default_rng(0)
    truth = rng.normal(size=n)
    estimates = truth + rng.normal(scale=0.5, size=n)
    estimates[:3] = estimates[3]  # ties, as resampling with replacement makes them
    rows = rng.integers(0, n, size=(5, n))
    rows[0] = 0  # a constant resample: the correlations are undefined (NaN)
    batched = _scores_of_rows(estimates[rows], truth[rows], k=4)
    for b, row in enumerate(rows):
        single = score_estimates(estimates[row], truth[row], topk=4)
        for name, value in single.items():
            np.testing.assert_allclose(batched[name][b], value, rtol=1e-12, atol=1e-14)


def test_intervals_bracket_the_score_shrink_with_more_components_and_follow_the_seed():
    rng = np.random.default_rng(1)

    def intervals(n: int, seed: int = 0) -> tuple[dict, dict]:
        truth = rng.normal(size=n) if n else np.zeros(0)
        estimates = truth + rng.normal(scale=0.8, size=n)
        scores = score_estimates(estimates, truth)
        return scores, bootstrap_intervals(estimates, truth, n_boot=400, seed=seed)

    small_scores, small = intervals(30)
    large_scores, large = intervals(3000)
    for scores, ci in ((small_scores, small), (large_scores, large)):
        for name in ("spearman", "kendall", "mae", "topk_recall"):
            assert ci[f"{name}_ci_lo"] <= ci[f"{name}_ci_hi"]
            assert ci[f"{name}_ci_width"] == pytest.approx(
                ci[f"{name}_ci_hi"] - ci[f"{name}_ci_lo"]
            )
        assert ci["spearman_ci_lo"] < scores["spearman"] < ci["spearman_ci_hi"]
    assert large["spearman_ci_width"] < small["spearman_ci_width"] / 4
    truth = np.linspace(-1, 1, 20)
    estimates = truth**3
    same = [bootstrap_intervals(estimates, truth, n_boot=50, seed=s) for s in (3, 3, 4)]
    assert same[0] == same[1] and same[0] != same[2]
    assert bootstrap_intervals(estimates, truth, n_boot=0) == {}
    assert bootstrap_intervals(estimates[:1], truth[:1]) == {}
