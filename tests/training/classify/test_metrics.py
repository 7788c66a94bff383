"""Classification metrics against scikit-learn, and threshold choice on hand-made scores."""

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

from training.classify.metrics import binary_metrics, choose_threshold, youden_threshold


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
