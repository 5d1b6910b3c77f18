"""Scores against the truth: their bootstrap confidence intervals, and undefined scores are
undefined, not perfect (issue 11, item 9): when the truth has no ranking or no sign, the scores
it cannot define are NaN in memory, ``null`` in strict JSON, and 'n/a' in the printed table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.diagnostics import bound_quality
from harness.evaluation import _scores_of_rows, bootstrap_intervals, score_estimates
from harness.run import RunRecord, format_summary
from harness.storage import atomic_write_json, read_hashed_json, write_hashed_json


def test_all_zero_truth_gives_no_perfect_scores():
    zeros = np.zeros(6)
    scores = score_estimates(zeros, zeros, topk=3)
    for key in ("spearman", "kendall", "sign_agreement", "topk_recall", "rel_error"):
        assert math.isnan(scores[key]), (key, scores[key])
    assert scores["mae"] == 0.0
    assert math.isnan(bound_quality(zeros, zeros, zeros)["coverage"])


def test_equal_truths_have_no_ranking_but_a_sign():
    truth = np.full(5, 0.3)
    scores = score_estimates(np.array([0.1, 0.2, 0.3, 0.4, -0.5]), truth, topk=2)
    assert math.isnan(scores["spearman"]) and math.isnan(scores["topk_recall"])
    assert scores["sign_agreement"] == pytest.approx(0.8)


def test_defined_scores_are_unchanged():
    truth = np.array([0.0, 1.0, -2.0, 3.0])
    scores = score_estimates(truth * 2, truth, topk=2)
    assert scores["spearman"] == pytest.approx(1.0) and scores["topk_recall"] == 1.0
    assert scores["sign_agreement"] == 1.0
    assert bound_quality(truth - 1, truth + 1, truth)["coverage"] == 1.0


def test_json_files_are_strict_with_null_for_undefined(tmp_path):
    payload = {"spearman": math.nan, "wall_s": 1.5, "nested": [math.inf, {"x": -math.inf}]}
    atomic_write_json(tmp_path / "summary.json", payload)
    text = (tmp_path / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text

    def strict(token: str) -> None:
        raise ValueError(token)

    data = json.loads(text, parse_constant=strict)  # a strict reader accepts it
    assert data == {"spearman": None, "wall_s": 1.5, "nested": [None, {"x": None}]}
    # a hashed entry with undefined values still reads back (hashed as stored)
    write_hashed_json(tmp_path / "entry.json", payload)
    assert read_hashed_json(tmp_path / "entry.json") == data


def test_printed_table_shows_undefined_scores_as_missing():
    keys = ("mae", "rmse", "max_abs_error", "rel_error", "spearman", "kendall")
    summary = {
        "method": "atp",
        "model": "m",
        "task": "t",
        "metric": "logit_diff",
        "direction": "noising",
        "dtype": "float32",
        "n_components": 2,
        "n_prompts": 1,
        "clean_metric": 0.5,
        "corrupt_metric": None,
        "sign_agreement": None,
        "topk_recall": math.nan,
        "wall_s": 0.25,
        "config": {"topk": 10},
        **{k: None for k in keys},
    }
    frame = pd.DataFrame(
        {"component": ["a", "b"], "truth": [0.0, 0.0], "estimate": [0.0, 0.0], "abs_error": 0.0}
    )
    text = format_summary(RunRecord(summary, frame, Path("out"), files={}))
    table_row = text.splitlines()[4]
    assert table_row.split() == ["n/a"] * 9 + ["0.250"]  # the Spearman interval too
    assert "corrupt metric n/a" in text


def test_summary_json_of_a_real_run_is_strict(tiny_gpt2, tmp_path, capsys):
    """actpatch has no error bound: its bound coverage is undefined, written as null (it was a
    bare NaN that strict JSON readers reject)."""
    from tests.helpers import GOOD, write_lines
    from tests.test_cli import run_cli

    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)] * 2)
    args = ["model=local", f"model.path={tiny_gpt2}", "task=prompts", f"task.path={pairs}"]
    args += [f"results_dir={tmp_path / 'results'}", "method=actpatch", "circuits=false"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err

    def strict(token: str) -> None:
        raise ValueError(f"bare {token} in summary.json")

    (path,) = (tmp_path / "results").rglob("summary.json")
    summary = json.loads(path.read_text(), parse_constant=strict)
    assert summary["bound_coverage"] is None and summary["bound_width"] is None
    assert isinstance(summary["spearman"], float)


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
