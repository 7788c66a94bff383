"""Binary classification metrics for the positive (minority) class, and decision thresholds.

Scores are the classifier's probability of the positive class. The threshold is chosen on
validation and applied unchanged to test: a fixed 0.5 makes sensitivity swing wildly across seeds
when the classes are imbalanced, because the score scale itself moves from run to run.

The primary metric of classifier comparisons is the sensitivity at the operating point that keeps
validation specificity >= PRIMARY_SPECIFICITY: a screening classifier is judged by how many lesions it
finds at a false-alarm rate fixed in advance, not at a threshold that trades the two off differently
per run (Youden's J).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

from training.core.errors import DataError

METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc")

PRIMARY_SPECIFICITY = 0.90          # validation specificity the primary metric's threshold must keep
PRIMARY_METRIC = "sensitivity_at_spec90"
# Sensitivity and specificity at the threshold chosen for PRIMARY_SPECIFICITY on validation (metrics.json
# stores it as "threshold_spec90"); on test the specificity may fall below the target.
SPEC90_METRICS = (PRIMARY_METRIC, "specificity_at_spec90")


def _safe_div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Every metric of `METRICS` at `threshold` (positive when score >= threshold), plus counts.

    AUCs are None when a split holds one class only (they are undefined, not 0.5).
    """
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)
    predicted = (scores >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    sensitivity, specificity = _safe_div(tp, tp + fn), _safe_div(tn, tn + fp)
    precision = _safe_div(tp, tp + fp)
    both_classes = 0 < labels.sum() < len(labels)
    return {
        "accuracy": _safe_div(tp + tn, len(labels)),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": precision,
        "f1": _safe_div(2 * precision * sensitivity, precision + sensitivity),
        "roc_auc": float(roc_auc_score(labels, scores)) if both_classes else None,
        "pr_auc": float(average_precision_score(labels, scores)) if both_classes else None,
        "threshold": float(threshold),
        "confusion": {"tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)},
    }


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (Youden's J) on these scores."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))        # roc_curve's first threshold is +inf


def sensitivity_threshold(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity on these scores reaches `target`."""
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)   # every candidate threshold
    reaching = np.flatnonzero(tpr >= target)
    return float(min(thresholds[reaching[0]], 1.0))


def specificity_threshold(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The lowest threshold whose specificity on these scores is >= `target` (positive when score >= threshold).

    That is the most sensitive operating point keeping the specificity. Candidates are the distinct
    scores, so a group of tied scores is wholly positive or wholly negative, as when the threshold is
    applied; when even the highest score breaks the target (it is shared by too many negatives), the
    threshold lies just above it and nothing is called positive.
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target specificity must lie in [0, 1], got {target}")
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)
    n_negative = int((labels == 0).sum())
    if n_negative == 0:
        raise DataError("cannot choose a threshold for a target specificity: the validation split has no negatives")
    fpr, _, thresholds = roc_curve(labels, scores, drop_intermediate=False)     # every distinct score, high to low
    # Specificity as binary_metrics computes it (tn / negatives from integer counts), so the comparison with
    # the target is exact when the two are equal, e.g. 9 / 10 >= 0.9.
    false_positives = np.rint(fpr * n_negative)
    specificity = (n_negative - false_positives) / n_negative
    keeping = np.flatnonzero(specificity >= target)         # a prefix: specificity only falls as thresholds fall
    if keeping[-1] == 0:                                    # index 0 is roc_curve's "nothing positive" (+inf)
        return float(np.nextafter(scores.max(), np.inf))
    return float(thresholds[keeping[-1]])


def spec90_metrics(labels: np.ndarray, scores: np.ndarray, threshold_spec90: float) -> dict:
    """The SPEC90_METRICS at `threshold_spec90` (chosen on validation by `specificity_threshold`)."""
    m = binary_metrics(labels, scores, threshold_spec90)
    return {"sensitivity_at_spec90": m["sensitivity"], "specificity_at_spec90": m["specificity"]}


def choose_threshold(labels: np.ndarray, scores: np.ndarray, target_sensitivity: float | None) -> float:
    """Youden's J, or the highest threshold reaching `target_sensitivity` when one is given."""
    if target_sensitivity is not None:
        return sensitivity_threshold(labels, scores, target_sensitivity)
    return youden_threshold(labels, scores)
