"""Tests for comparing classifiers on one test set: DeLong's paired AUC test and Holm's correction.

DeLong, DeLong & Clarke-Pearson (1988): an AUC is a two-sample U-statistic over (positive, negative)
pairs, so its variance and the covariance of two AUCs scored on the same images follow from each
image's placement value (the share of the other class it outranks). We average placements over a
run's seeds, which gives the variance of the seed-mean AUC that the comparison tables report; the
images are the sampling units, as in the paired bootstrap.

Holm (1979): step-down correction of the p-values of several arms compared with one baseline; it
controls the family-wise error rate without Bonferroni's loss of power.

Student t with Welch-Satterthwaite degrees of freedom (Welch 1947): the recipe-level test of
training.analysis.comparison estimates its variance from a few seeds per run, so its tails are a t's,
not a normal's; and the minimum detectable effect a study of that design can find.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata
from scipy.stats import t as student_t


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


def delong(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, level: float = 0.95,
           strata: np.ndarray | None = None) -> AUCDifference:
    """Paired DeLong test of two runs scored on the same images.

    Args:
        labels: 1 = positive, shape (N,).
        scores_a, scores_b: each run's scores, (N,) or (seeds, N); several seeds are averaged per placement.
        strata: each image's fold in a cross-validated study, (N,): each fold's images were scored by that
            fold's models, so only pairs within a fold are ranked. The AUCs are then the folds' AUCs weighted
            by their (positive, negative) pairs, and as the folds' test images are independent samples, the
            variance of the difference is the sum of the folds' DeLong variances times their squared weights.
    """
    if strata is None:
        auc_a, auc_b, variance = _delong_parts(labels, scores_a, scores_b)
    else:
        labels, strata = np.asarray(labels).astype(bool), np.asarray(strata)
        folds = [strata == k for k in np.unique(strata)]
        pairs = np.array([labels[f].sum() * (~labels[f]).sum() for f in folds], dtype=np.float64)
        parts = [_delong_parts(labels[f], np.atleast_2d(scores_a)[:, f], np.atleast_2d(scores_b)[:, f])
                 if n else (0.0, 0.0, 0.0) for f, n in zip(folds, pairs)]
        weights = pairs / pairs.sum()
        auc_a, auc_b = (float(weights @ [p[i] for p in parts]) for i in (0, 1))
        variance = float(weights ** 2 @ [p[2] for p in parts])
    diff, se = auc_b - auc_a, float(np.sqrt(max(variance, 0.0)))
    p = 1.0 if se == 0 else float(2 * norm.sf(abs(diff) / se))
    half = float(norm.ppf(0.5 + level / 2)) * se
    return AUCDifference(auc_a, auc_b, diff, se, p, diff - half, diff + half)


def _delong_parts(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[float, float, float]:
    """The two runs' AUCs of the seed-mean placements and the DeLong variance of their difference."""
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
    return float(v10_a.mean()), float(v10_b.mean()), float(variance)


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given: the k-th smallest of m is multiplied by (m - k + 1),
    then made non-decreasing in that order and capped at 1."""
    order = np.argsort(p_values)
    adjusted, running = np.empty(len(p_values)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()


# ---------------------------------------------------------------------------------------------------------------
# Student t: a difference whose variance comes partly from a few seeds per run.

DF_CAP = 1000.0     # degrees of freedom beyond which t is the normal for every level we use


def welch_df(variance: float, seed_variances: list[float], seed_counts: list[int]) -> float:
    """Welch-Satterthwaite degrees of freedom of `variance`, of which each run contributes
    seed_variances[i] (its per-seed variance / its seeds, estimated from seed_counts[i] - 1 degrees of
    freedom); the rest (test-image resampling) is taken as known. At most DF_CAP; DF_CAP when no seed part."""
    spread = sum(v * v / (n - 1) for v, n in zip(seed_variances, seed_counts) if n > 1)
    if spread <= 0:
        return DF_CAP
    return float(min(DF_CAP, max(1.0, variance * variance / spread)))


def t_p_value(difference: float, standard_error: float, df: float) -> float:
    """Two-sided p-value of "no difference" for difference / standard_error ~ Student t(df); 1 when both are 0."""
    if standard_error <= 0:
        return 1.0 if difference == 0 else 0.0
    return float(min(1.0, 2 * student_t.sf(abs(difference) / standard_error, df)))


def t_interval(difference: float, standard_error: float, df: float, level: float) -> tuple[float, float]:
    """The two-sided `level` interval difference +- t(df) quantile x standard_error."""
    half = float(student_t.ppf(0.5 + level / 2, df)) * standard_error
    return difference - half, difference + half


# ---------------------------------------------------------------------------------------------------------------
# Minimum detectable effect of a two-arm comparison.

# Prior seed-to-seed spread of sensitivity at the primary operating point, before any run is measured: a part
# that more test images do not shrink (training, and the validation-chosen threshold), and, per positive test
# image, the variance across seeds of "this image is detected" (0 when every seed agrees on every image, 0.25
# when each image is a coin flip). Together, sqrt(0.04^2 + 0.10 / 42) = 6.3 pp at 42 test positives: the
# BreastMNIST study measured 5.3-9.1 pp (6.5 pp typical) there, the demo 1.9-6.8 pp at 50.
PRIOR_MODEL_SPREAD = 0.04
PRIOR_DETECTION_VARIANCE = 0.10
MDE_POWER = 0.80


def prior_seed_spread(positives: int, model_spread: float = PRIOR_MODEL_SPREAD,
                      detection_variance: float = PRIOR_DETECTION_VARIANCE) -> float:
    """The seed-to-seed standard deviation of a sensitivity expected on a test set with `positives`
    positive images: sqrt(model_spread^2 + detection_variance / positives)."""
    if positives < 1:
        raise ValueError("positives must be >= 1")
    return float(np.sqrt(model_spread ** 2 + detection_variance / positives))


def minimum_detectable_effect(seed_spread: float, seeds: int, comparisons: int = 1, alpha: float = 0.05,
                              power: float = MDE_POWER) -> float:
    """The smallest true difference of a metric between two recipes that the recipe-level test detects with
    probability `power`, for `seeds` seeds per arm, each arm's per-seed values spread by `seed_spread`
    (standard deviation at the study's test size), and `comparisons` arms against one baseline.

    Holm's first step is the strictest (alpha / comparisons), so that level is used: the detectable effect
    of the arm that has to pass it. The difference of two seed means has standard error
    seed_spread * sqrt(2 / seeds) with 2 (seeds - 1) degrees of freedom (Welch's, equal spreads), so
    MDE = (t(1 - alpha / (2 comparisons)) + t(power)) * standard error. It assumes the effect is the same on
    every test image; an effect that varies between images adds test-set variance and needs more.
    Infinite for one seed: its training variance cannot be measured.
    """
    if seeds < 2:
        return float("inf")
    df = 2.0 * (seeds - 1)
    quantiles = student_t.ppf(1 - alpha / (2 * max(1, comparisons)), df) + student_t.ppf(power, df)
    return float(quantiles * seed_spread * np.sqrt(2.0 / seeds))
