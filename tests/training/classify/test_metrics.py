"""Classification metrics against scikit-learn, and threshold choice on hand-made scores and by brute force."""

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from training.classify.metrics import (
    PRIMARY_SPECIFICITY,
    binary_metrics,
    choose_threshold,
    spec90_metrics,
    specificity_threshold,
    youden_threshold,
)
from training.core.errors import DataError


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.clip(labels * 0.3 + rng.random(200) * 0.7, 0, 1)
    m = binary_metrics(labels, scores, 0.5)
    predicted = (scores >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predicted))
    assert m["sensitivity"] == pytest.approx(recall_score(labels, predicted))
    assert m["specificity"] == pytest.approx(recall_score(1 - labels, 1 - predicted))
    assert m["precision"] == pytest.approx(precision_score(labels, predicted))
    assert m["f1"] == pytest.approx(f1_score(labels, predicted))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))


def test_single_class_split_has_no_auc():
    m = binary_metrics(np.zeros(5), np.linspace(0, 1, 5), 0.5)
    assert m["roc_auc"] is None and m["pr_auc"] is None and m["specificity"] == pytest.approx(0.4)


def test_youden_and_target_sensitivity_thresholds_on_hand_made_scores():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.05, 0.10, 0.20, 0.35, 0.30, 0.40, 0.60, 0.90])
    # Youden: at 0.40 sens 3/4, spec 4/4 -> J 0.75 (at 0.30: sens 1, spec 3/4 -> J 0.75 too; the higher wins first)
    t = youden_threshold(labels, scores)
    m = binary_metrics(labels, scores, t)
    assert m["sensitivity"] - (1 - m["specificity"]) == pytest.approx(0.75)
    t_all = choose_threshold(labels, scores, target_sensitivity=1.0)
    assert t_all == pytest.approx(0.30) and binary_metrics(labels, scores, t_all)["sensitivity"] == 1.0
    assert choose_threshold(labels, scores, None) == pytest.approx(t)


def test_target_sensitivity_takes_the_highest_threshold_reaching_it():
    labels = np.array([1, 1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.7, 0.6, 0.4, 0.3, 0.1])
    assert choose_threshold(labels, scores, target_sensitivity=0.5) == pytest.approx(0.7)


# --- the primary metric's threshold: lowest keeping specificity >= target -------------------------------------

def _lowest_keeping(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """Brute force: every distinct score (and one above the top) as threshold, the lowest keeping the target."""
    candidates = np.append(np.unique(scores), np.nextafter(scores.max(), np.inf))
    return min(t for t in candidates if binary_metrics(labels, scores, t)["specificity"] >= target)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [0.5, 0.9, 0.95])
def test_specificity_threshold_is_the_lowest_keeping_the_target(seed, target):
    rng = np.random.default_rng(seed)
    labels = (rng.random(80) < 0.3).astype(int)
    scores = np.round(np.clip(labels * 0.3 + rng.random(80) * 0.7, 0, 1), 1 + seed % 2)   # rounded: ties
    t = specificity_threshold(labels, scores, target)
    assert binary_metrics(labels, scores, t)["specificity"] >= target
    assert t == _lowest_keeping(labels, scores, target)
    below = scores[scores < t]
    if len(below):                                       # one tie group lower breaks the target
        assert binary_metrics(labels, scores, below.max())["specificity"] < target


def test_specificity_threshold_with_ties_and_an_exact_target():
    labels = np.array([0] * 10 + [1] * 3)
    # two negatives tie with a positive at 0.8: taking that group gives specificity 0.8 < 0.9
    scores = np.array([0.1, 0.1, 0.2, 0.3, 0.3, 0.4, 0.5, 0.6, 0.8, 0.8, 0.8, 0.9, 0.95])
    t = specificity_threshold(labels, scores, PRIMARY_SPECIFICITY)
    assert t == pytest.approx(0.9)
    m = binary_metrics(labels, scores, t)
    assert m["specificity"] == 1.0 and m["sensitivity"] == pytest.approx(2 / 3)
    # exactly 9 / 10 specificity meets a 0.9 target (no floating-point near miss)
    scores = np.array([0.1, 0.1, 0.2, 0.3, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 0.8, 0.9, 0.95])
    t = specificity_threshold(labels, scores, PRIMARY_SPECIFICITY)
    assert t == pytest.approx(0.8) and binary_metrics(labels, scores, t)["specificity"] == pytest.approx(0.9)


def test_specificity_threshold_when_no_score_keeps_the_target():
    labels = np.array([0, 0, 1, 1])
    scores = np.full(4, 0.7)                             # all tied: any threshold at a score calls all positive
    t = specificity_threshold(labels, scores, 0.9)
    assert t > 0.7 and binary_metrics(labels, scores, t)["specificity"] == 1.0
    at = spec90_metrics(labels, scores, t)
    assert at == {"sensitivity_at_spec90": 0.0, "specificity_at_spec90": 1.0}
    with pytest.raises(DataError, match="no negatives"):
        specificity_threshold(np.ones(4), np.linspace(0, 1, 4), 0.9)
