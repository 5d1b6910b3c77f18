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


def bootstrap_intervals(
    estimates: np.ndarray,
    truth: np.ndarray,
    topk: int = 10,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Percentile bootstrap intervals of every score of :func:`score_estimates`.

    The scored components are resampled with replacement ``n_boot`` times (a generator seeded
    by ``seed``); each score is recomputed on every resample as :func:`score_estimates` would
    compute it there, and ``<score>_ci_lo`` / ``<score>_ci_hi`` are its (1 - confidence) / 2
    and (1 + confidence) / 2 quantiles (resamples where a score is undefined are left out),
    ``<score>_ci_width`` their difference. Nothing when ``n_boot`` is 0 or fewer than two
    components are scored. Memory: resamples go in blocks of about 2e6 values.
    """
    estimates = np.asarray(estimates, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    n = truth.size
    if n_boot <= 0 or n < 2:
        return {}
    rng = np.random.default_rng([seed, 0xB007])
    block = max(1, min(n_boot, 2_000_000 // (n * (n if n <= 256 else 1))))
    parts = []
    for start in range(0, n_boot, block):
        rows = rng.integers(0, n, size=(min(block, n_boot - start), n))
        parts.append(_scores_of_rows(estimates[rows], truth[rows], min(topk, n)))
    values = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    tail = (1 - confidence) / 2 * 100
    out: dict[str, float] = {}
    for name, samples in values.items():
        finite = samples[np.isfinite(samples)]
        lo, hi = np.percentile(finite, [tail, 100 - tail]) if finite.size else (np.nan,) * 2
        out[f"{name}_ci_lo"], out[f"{name}_ci_hi"] = float(lo), float(hi)
        out[f"{name}_ci_width"] = float(hi - lo)
    return out


def _scores_of_rows(est: np.ndarray, truth: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """:func:`score_estimates` of each row of ``est`` / ``truth`` [B, n], vectorised."""
    error = np.abs(est - truth)
    mae = error.mean(axis=1)
    mean_truth = np.abs(truth).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(mean_truth > 0, mae / mean_truth, np.nan)
    return {
        "mae": mae,
        "rmse": np.sqrt((error**2).mean(axis=1)),
        "max_abs_error": error.max(axis=1),
        "rel_error": rel,
        "spearman": _row_pearson(stats.rankdata(est, axis=1), stats.rankdata(truth, axis=1)),
        "kendall": _row_kendall(est, truth),
        # the same undefined cases as score_estimates: no sign / no ranking in the truth row
        "sign_agreement": np.where(
            np.any(truth != 0, axis=1), (np.sign(est) == np.sign(truth)).mean(axis=1), np.nan
        ),
        "topk_recall": np.where(_rows_have_ranking(truth), _row_topk(est, truth, k), np.nan),
    }


def _rows_have_ranking(truth: np.ndarray) -> np.ndarray:
    """:func:`has_ranking` of each row of ``truth`` [B, n]."""
    magnitude = np.abs(truth)
    return np.any(magnitude != magnitude[:, :1], axis=1)


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair; NaN where a row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=1) / denom, np.nan)


def _row_kendall(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair (as scipy's ``kendalltau``); NaN where a row is
    constant. Pairwise signs for short rows, scipy per row otherwise."""
    n = a.shape[1]
    if n > 256:
        return np.array([_correlation(stats.kendalltau, x, y) for x, y in zip(a, b, strict=True)])
    upper = np.triu_indices(n, k=1)
    sa = np.sign(a[:, :, None] - a[:, None, :])[:, upper[0], upper[1]]
    sb = np.sign(b[:, :, None] - b[:, None, :])[:, upper[0], upper[1]]
    denom = np.sqrt(np.abs(sa).sum(axis=1) * np.abs(sb).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, (sa * sb).sum(axis=1) / denom, np.nan)


def _row_topk(est: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """:func:`topk_recall` of each row pair (same stable tie order)."""
    rows = np.arange(est.shape[0])[:, None]
    top_truth = np.zeros(est.shape, dtype=bool)
    top_est = np.zeros(est.shape, dtype=bool)
    top_truth[rows, np.argsort(-np.abs(truth), axis=1, kind="stable")[:, :k]] = True
    top_est[rows, np.argsort(-np.abs(est), axis=1, kind="stable")[:, :k]] = True
    return (top_truth & top_est).sum(axis=1) / k
