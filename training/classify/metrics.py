"""Binary classification metrics for the positive (minority) class, and decision thresholds.

Scores are the classifier's probability of the positive class. The threshold is chosen on
validation and applied unchanged to test: a fixed 0.5 makes sensitivity swing wildly across seeds
when the classes are imbalanced, because the score scale itself moves from run to run.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc")


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


def choose_threshold(labels: np.ndarray, scores: np.ndarray, target_sensitivity: float | None) -> float:
    """Youden's J, or the highest threshold reaching `target_sensitivity` when one is given."""
    if target_sensitivity is not None:
        return sensitivity_threshold(labels, scores, target_sensitivity)
    return youden_threshold(labels, scores)
