"""Scores of a method's estimates against the true effects (activation patching)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def score_estimates(estimates: np.ndarray, truth: np.ndarray, topk: int = 10) -> dict[str, float]:
    """Error and ranking scores of ``estimates`` [n] against ``truth`` [n].

    ``mae``, ``rmse``, ``max_abs_error``; ``rel_error`` = MAE / mean |truth|; ``spearman`` and
    ``kendall`` rank correlations; ``sign_agreement`` (fraction of components whose estimate
    has the sign of the truth, zeros agreeing only with zeros); ``topk_recall`` = fraction of the
    k components of largest |truth| that are among the k of largest |estimate|.

    A score the truth cannot define is NaN (written as null), never a perfect score: the rank
    correlations and top-k recall when every |truth| is equal (no ranking to recover), sign
    agreement when every truth is 0 (no sign to agree with), everything over no components.
    """
    estimates = np.asarray(estimates, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    error = np.abs(estimates - truth)
    mean_truth = float(np.mean(np.abs(truth))) if truth.size else 0.0
    k = min(topk, truth.size)
    out = {
        "mae": float(error.mean()) if truth.size else math.nan,
        "rmse": float(np.sqrt(np.mean(error**2))) if truth.size else math.nan,
        "max_abs_error": float(error.max()) if truth.size else math.nan,
        "rel_error": float(error.mean() / mean_truth) if mean_truth > 0 else math.nan,
        "spearman": _correlation(stats.spearmanr, estimates, truth),
        "kendall": _correlation(stats.kendalltau, estimates, truth),
        "sign_agreement": float(np.mean(np.sign(estimates) == np.sign(truth)))
        if np.any(truth != 0)
        else math.nan,
        "topk_recall": topk_recall(estimates, truth, k) if k and has_ranking(truth) else math.nan,
    }
    return out


def has_ranking(truth: np.ndarray) -> bool:
    """True when the magnitudes |truth| [n] are not all equal (there is an order to recover)."""
    magnitude = np.abs(np.asarray(truth, dtype=np.float64))
    return bool(magnitude.size) and bool(np.any(magnitude != magnitude[0]))


def topk_recall(estimates: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Fraction of the top-k components by |truth| found in the top-k by |estimate|."""
    top_truth = set(np.argsort(-np.abs(truth), kind="stable")[:k].tolist())
    top_est = set(np.argsort(-np.abs(estimates), kind="stable")[:k].tolist())
    return len(top_truth & top_est) / k


def _correlation(fn, a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(fn(a, b).statistic)


def roc_auc(score: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for binary ``labels`` (ties count one half);
    NaN when only one class is present."""
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = stats.rankdata(score)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(score: np.ndarray, labels: np.ndarray) -> float:
    """Average precision: sum over distinct thresholds of precision x recall increment (as
    scikit-learn defines it); NaN without positives."""
    labels = np.asarray(labels, dtype=bool)
    positives = int(labels.sum())
    if positives == 0:
        return math.nan
    order = np.argsort(-np.asarray(score), kind="stable")
    sorted_score, sorted_labels = np.asarray(score)[order], labels[order]
    ends = np.r_[np.nonzero(np.diff(sorted_score))[0], sorted_score.size - 1]
    true_pos = np.cumsum(sorted_labels)[ends]
    precision = true_pos / (ends + 1)
    recall = true_pos / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
