"""Pseudo-labelling generated images with a trained classifier, then using them like any synthetic folder."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import refused
from tests.training.data.test_augmented_set import synthetic_folder
from training.classify.checkpoint import save_classifier
from training.classify.config import ClassifierConfig
from training.classify.loop import train_classifier
from training.classify.networks import build_classifier
from training.core.config import build
from training.core.errors import UserError, run_cli
from training.data.augmented_set import build_augmented
from training.pseudo_label import main as pseudo_main
from training.synthesis.labelling import classify, source_images


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


def untrained_classifier(path: Path, names: tuple[str, str] = ("benign", "malignant"), weights: str = "random",
                         image_size: int = 32) -> Path:
    """A classifier file without training (its scores are not under test). `weights`: 'overflowing' (finite
    weights, biases 3e38: hidden units 3e38, both logits inf, probabilities NaN) or 'nan'."""
    config = build(ClassifierConfig, {"data": {"image_size": image_size}, "model": {"arch": "mlp", "width": 4}}, "test")
    torch.manual_seed(0)
    model = build_classifier(config.model, 3, image_size, 2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if weights == "overflowing":
                p.fill_(1.0 if name.endswith("weight") else 3e38)
            elif weights == "nan":
                p.fill_(float("nan"))
    save_classifier(path, model, config, list(names), 1, threshold=0.5, seed=0, best_epoch=1)
    return path


@pytest.mark.parametrize("kind, words", [
    ("overflowing", ["outputs are not finite", "cannot label them"]),
    ("nan weights", ["non-finite weights"]),
    ("traversal class", ["must be a plain name", "../../x"]),
])
def test_an_unusable_classifier_is_blamed_not_the_threshold(kind, words, tmp_path, capsys):
    path = tmp_path / "c.pth"
    if kind == "traversal class":
        untrained_classifier(path, names=("benign", "../../x"))
    else:
        untrained_classifier(path, weights="overflowing" if kind == "overflowing" else "nan")
    synthetic, out = synthetic_folder(tmp_path / "gan", 4), tmp_path / "labelled"
    code = run_cli(pseudo_main, ["--synth_dir", str(synthetic), "--model_path", str(path), "--output_dir", str(out),
                                 "--conf_thresh", "0.5"])
    refused(capsys, code, str(path), *words)
    assert not out.exists() and not (tmp_path / "x").exists()
