"""The primary metric's threshold and metrics in each seed's metrics.json and in summary.json."""

import csv
import json

import numpy as np
import pytest

from tests.training.classify.test_loop import config
from training.classify.config import ClassifierConfig
from training.classify.evaluate import summarise
from training.classify.loop import train_classifier
from training.classify.metrics import (
    METRICS,
    PRIMARY_SPECIFICITY,
    SPEC90_METRICS,
    binary_metrics,
    specificity_threshold,
)
from training.core.config import build


def read_predictions(path):
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([int(r["label"]) for r in rows]), np.array([float(r["score"]) for r in rows])


def test_metrics_json_holds_the_spec90_threshold_chosen_on_val(tiny_demo, tmp_path):
    raw = config(tiny_demo, tmp_path, seeds=[0, 1])
    raw["model"]["arch"] = "mlp"
    run = train_classifier(build(ClassifierConfig, raw, "test"))
    summary = json.loads((run / "summary.json").read_text())
    for seed in (0, 1):
        metrics = json.loads((run / f"seed_{seed}" / "metrics.json").read_text())
        val_labels, val_scores = read_predictions(run / f"seed_{seed}" / "val_predictions.csv")
        t = metrics["threshold_spec90"]
        assert t == specificity_threshold(val_labels, val_scores, PRIMARY_SPECIFICITY)
        assert metrics["val"]["specificity_at_spec90"] >= PRIMARY_SPECIFICITY
        for split in ("val", "test"):
            labels, scores = read_predictions(run / f"seed_{seed}" / f"{split}_predictions.csv")
            at = binary_metrics(labels, scores, t)
            assert metrics[split]["sensitivity_at_spec90"] == at["sensitivity"]
            assert metrics[split]["specificity_at_spec90"] == at["specificity"]
            assert metrics[split]["threshold"] == metrics["threshold"]        # the decision threshold is unchanged
    for split in ("val", "test"):
        assert set(METRICS + SPEC90_METRICS) <= set(summary[split])
        values = summary[split]["sensitivity_at_spec90"]["values"]
        assert len(values) == 2 and summary[split]["sensitivity_at_spec90"]["mean"] == pytest.approx(np.mean(values))


def test_summarise_skips_spec90_metrics_no_seed_computed():
    plain = binary_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]), 0.5)
    old = summarise([{"val": plain, "test": plain}])                  # e.g. the semi-supervised GAN's seeds
    assert set(old["val"]) == set(METRICS)
    with_spec90 = {**plain, "sensitivity_at_spec90": 0.5, "specificity_at_spec90": 1.0}
    new = summarise([{"val": with_spec90, "test": with_spec90}, {"val": with_spec90, "test": with_spec90}])
    assert new["test"]["sensitivity_at_spec90"] == {"mean": 0.5, "std": 0.0, "values": [0.5, 0.5]}
