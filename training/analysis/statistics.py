"""Tests for comparing classifiers on one test set: DeLong's paired AUC test and Holm's correction.

DeLong, DeLong & Clarke-Pearson (1988): an AUC is a two-sample U-statistic over (positive, negative)
pairs, so its variance and the covariance of two AUCs scored on the same images follow from each
image's placement value (the share of the other class it outranks). We average placements over a
run's seeds, which gives the variance of the seed-mean AUC that the comparison tables report; the
images are the sampling units, as in the paired bootstrap.

Holm (1979): step-down correction of the p-values of several arms compared with one baseline; it
controls the family-wise error rate without Bonferroni's loss of power.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata


def placements(positive_scores: np.ndarray, negative_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: for each positive, the share of negatives it outranks (ties count
    half), (m,); for each negative, the share of positives that outrank it, (n,). AUC = mean of either."""
    m, n = len(positive_scores), len(negative_scores)
    together = rankdata(np.concatenate([positive_scores, negative_scores]))      # midranks
    v10 = (together[:m] - rankdata(positive_scores)) / n
    v01 = 1.0 - (together[m:] - rankdata(negative_scores)) / m
    return v10, v01


@dataclass(frozen=True)
class AUCDifference:
    """AUC(b) - AUC(a) with its DeLong standard error, two-sided p-value and confidence interval."""

    auc_a: float
    auc_b: float
    difference: float
    standard_error: float
    p_value: float
    ci_low: float
    ci_high: float


def delong(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, level: float = 0.95) -> AUCDifference:
    """Paired DeLong test of two runs scored on the same images.

    Args:
        labels: 1 = positive, shape (N,).
        scores_a, scores_b: each run's scores, (N,) or (seeds, N); several seeds are averaged per placement.
    """
    labels = np.asarray(labels).astype(bool)
    components = []
    for scores in (np.atleast_2d(scores_a), np.atleast_2d(scores_b)):
        per_seed = [placements(s[labels], s[~labels]) for s in scores]
        components.append((np.mean([p[0] for p in per_seed], axis=0), np.mean([p[1] for p in per_seed], axis=0)))
    (v10_a, v01_a), (v10_b, v01_b) = components
    s10 = np.cov(np.stack([v10_a, v10_b]))                  # (2, 2) over positives
    s01 = np.cov(np.stack([v01_a, v01_b]))                  # (2, 2) over negatives
    variance = ((s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / len(v10_a)
                + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / len(v01_a))
    auc_a, auc_b = float(v10_a.mean()), float(v10_b.mean())
    diff, se = auc_b - auc_a, float(np.sqrt(max(variance, 0.0)))
    p = 1.0 if se == 0 else float(2 * norm.sf(abs(diff) / se))
    half = float(norm.ppf(0.5 + level / 2)) * se
    return AUCDifference(auc_a, auc_b, diff, se, p, diff - half, diff + half)


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given: the k-th smallest of m is multiplied by (m - k + 1),
    then made non-decreasing in that order and capped at 1."""
    order = np.argsort(p_values)
    adjusted, running = np.empty(len(p_values)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()
