"""Pseudo-labelling generated images with a trained classifier, then using them like any synthetic folder."""

import json

import numpy as np
import pytest

from tests.training.data.test_augmented_set import synthetic_folder
from training.classify.config import ClassifierConfig
from training.classify.loop import train_classifier
from training.core.config import build
from training.core.errors import UserError
from training.data.augmented_set import build_augmented
from training.pseudo_label import main as pseudo_main
from training.synthesis.pseudo_label import classify, source_images


@pytest.fixture(scope="module")
def classifier(tiny_demo, tmp_path_factory):
    results = tmp_path_factory.mktemp("classifier")
    raw = {"data": {"train_dir": str(tiny_demo / "train"), "val_dir": str(tiny_demo / "val"),
                    "test_dir": str(tiny_demo / "test"), "image_size": 16},
           "model": {"arch": "mlp", "width": 4}, "train": {"epochs": 1, "seeds": [0], "device": "cpu"},
           "output": {"name": "pseudo", "results_dir": str(results)}}
    return train_classifier(build(ClassifierConfig, raw, "test")) / "seed_0" / "best_model.pth"


def test_confident_images_are_sorted_by_class_and_usable_for_augmentation(tiny_demo, classifier, tmp_path, capsys):
    synthetic = synthetic_folder(tmp_path / "gan", 30)
    probabilities, _, _ = classify(source_images(synthetic), classifier)
    threshold = float(np.median(probabilities.max(1)))
    out = tmp_path / "labelled"
    assert pseudo_main(["--synth_dir", str(synthetic), "--model_path", str(classifier), "--output_dir", str(out),
                        "--conf_thresh", str(threshold)]) == 0
    report = json.loads((out / "pseudo_label_report.json").read_text())
    assert report["images"] == 30 and 15 <= report["accepted"] < 30
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == report["accepted"] and all(r["confidence"] >= threshold for r in records)
    for r in records:
        assert (out / r["file"]).is_file() and r["file"].startswith(f"{r['class']}/pseudo_{r['class']}_")
    assert sum(c["accepted"] for c in report["per_class"].values()) == report["accepted"]
    assert "kept" in capsys.readouterr().out
    composition = build_augmented(tiny_demo, [out], tmp_path / "augmented")
    added = sum(v["synthetic"] for v in composition["counts"]["train"].values())
    assert added == report["accepted"]


def test_low_acceptance_suggests_a_lower_threshold_and_refusals(tiny_demo, classifier, tmp_path, capsys):
    synthetic = synthetic_folder(tmp_path / "gan", 5)
    assert pseudo_main(["--synth_dir", str(synthetic), "--model_path", str(classifier),
                        "--output_dir", str(tmp_path / "out"), "--conf_thresh", "1.0"]) == 0
    assert "try a lower --conf_thresh" in capsys.readouterr().out
    with pytest.raises(UserError, match="not empty"):
        pseudo_main(["--synth_dir", str(synthetic), "--model_path", str(classifier), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(UserError, match="split of"):
        pseudo_main(["--synth_dir", str(synthetic), "--model_path", str(classifier),
                     "--output_dir", str(tiny_demo / "val" / "new")])


def test_classifier_trains_on_a_pseudo_labelled_folder_via_synthetic_dir(tiny_demo, classifier, tmp_path):
    synthetic = synthetic_folder(tmp_path / "gan", 12)
    out = tmp_path / "labelled"
    assert pseudo_main(["--synth_dir", str(synthetic), "--model_path", str(classifier), "--output_dir", str(out),
                        "--conf_thresh", "0"]) == 0
    raw = {"data": {"train_dir": str(tiny_demo / "train"), "val_dir": str(tiny_demo / "val"),
                    "test_dir": str(tiny_demo / "test"), "image_size": 16, "synthetic_dir": str(out)},
           "model": {"arch": "mlp", "width": 4}, "train": {"epochs": 1, "seeds": [0], "device": "cpu"},
           "output": {"name": "with_synthetic", "results_dir": str(tmp_path / "results")}}
    run = train_classifier(build(ClassifierConfig, raw, "test"))
    counts = json.loads((run / "summary.json").read_text())["data"]["counts"]["train"]
    assert sum(counts.values()) == 45 + 12
