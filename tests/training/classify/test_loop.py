"""Classifier training: artefacts per architecture, numbered runs, determinism, and refusals."""

import json
import shutil

import pytest
import torch

from training.classify.config import ClassifierConfig
from training.classify.loop import augment, epoch_order, score_on_test, train_classifier
from training.classify.metrics import METRICS
from training.core.config import build
from training.core.errors import ConfigError, DataError
from training.train_classifier import main as classifier_main


def config(root, tmp_path, **train):
    raw = {"data": {"train_dir": str(root / "train"), "val_dir": str(root / "val"), "test_dir": str(root / "test"),
                    "image_size": 32, "channels": 3, "positive_class": "malignant"},
           "model": {"arch": "cnn", "width": 4},
           "train": {"epochs": 1, "batch_size": 16, "seeds": [0], "device": "cpu", **train},
           "output": {"name": "tiny", "results_dir": str(tmp_path / "results")}}
    return raw


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet18"])
def test_one_epoch_per_architecture_writes_every_artefact(tiny_demo, tmp_path, arch):
    raw = config(tiny_demo, tmp_path)
    raw["model"]["arch"] = arch
    run = train_classifier(build(ClassifierConfig, raw, "test"))
    assert run.name == "run_000"
    seed = run / "seed_0"
    for name in ("metrics.json", "val_predictions.csv", "test_predictions.csv", "classification_report.txt",
                 "confusion_matrix.png", "roc_curve.png", "training_curves.png", "model_info.txt", "best_model.pth"):
        assert (seed / name).is_file(), name
    metrics = json.loads((seed / "metrics.json").read_text())
    assert set(METRICS) <= set(metrics["test"]) and metrics["test"]["threshold"] == metrics["threshold"]
    assert 0 <= metrics["test"]["roc_auc"] <= 1
    rows = (seed / "test_predictions.csv").read_text().splitlines()
    assert rows[0] == "sha256,path,label,score" and len(rows) == 1 + len(list((tiny_demo / "test").rglob("*.png")))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["positive_class"] == "malignant"
    assert summary["test"]["sensitivity"]["values"] == [metrics["test"]["sensitivity"]]
    assert f"architecture: {arch}" in (seed / "model_info.txt").read_text()


def test_runs_are_numbered_and_the_same_seed_gives_the_same_numbers(tiny_demo, tmp_path):
    raw = config(tiny_demo, tmp_path, class_weights="balanced", oversample=True, mixup_alpha=0.2, label_smoothing=0.1)
    raw["model"]["arch"] = "mlp"
    first = train_classifier(build(ClassifierConfig, raw, "test"))
    second = train_classifier(build(ClassifierConfig, raw, "test"))
    assert (first.name, second.name) == ("run_000", "run_001")
    read = lambda run: json.loads((run / "seed_0" / "metrics.json").read_text())["test"]
    assert read(first) == read(second)


def test_bad_data_is_refused(tiny_demo, tmp_path):
    with pytest.raises(DataError, match="positive_class' = nevus is not a class"):
        train_classifier(build(ClassifierConfig, {**config(tiny_demo, tmp_path), "data": {
            **config(tiny_demo, tmp_path)["data"], "positive_class": "nevus"}}, "test"))
    other = tmp_path / "other"
    shutil.copytree(tiny_demo, other)
    (other / "val" / "nevus").mkdir()
    shutil.copy(next((other / "val" / "benign").glob("*.png")), other / "val" / "nevus" / "x.png")
    with pytest.raises(DataError, match="different class folders"):
        train_classifier(build(ClassifierConfig, config(other, tmp_path), "test"))
    assert not (tmp_path / "results").exists()          # nothing written


def test_mixed_sizes_are_not_upsampled(tiny_demo, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(tiny_demo, mixed)
    from PIL import Image
    small = next((mixed / "train" / "malignant").glob("*.png"))
    Image.open(small).resize((16, 16)).save(mixed / "train" / "malignant" / "synthetic_small.png")
    with pytest.raises(DataError, match="set data.image_size <= 16"):
        train_classifier(build(ClassifierConfig, config(mixed, tmp_path), "test"))


def test_oversampling_balances_classes_and_augment_keeps_range():
    labels = torch.tensor([0] * 90 + [1] * 10)
    drawn = labels[epoch_order(labels, True, torch.Generator().manual_seed(0))]
    assert 0.35 < drawn.float().mean() < 0.65
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    y = augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1 and not torch.equal(x, y)


def test_config_errors_and_dry_run(capsys):
    with pytest.raises(ConfigError, match="unknown key 'train.epohcs'"):
        classifier_main(["--config", "experiments/classifier_baseline.yaml", "train.epohcs=2"])
    assert classifier_main(["--config", "experiments/classifier_oversampled.yaml", "train.seeds=[4]", "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "oversample: true" in out and "- 4" in out and "name: classifier_oversampled" in out


@pytest.mark.parametrize("train", [{}, {"embedding_oversampling": True}], ids=["plain", "eos"])
def test_a_validation_only_run_scored_on_test_gives_the_retrained_runs_numbers(tiny_demo, tmp_path, train):
    raw = config(tiny_demo, tmp_path, epochs=2, seeds=[0, 1], **train)
    named = lambda name, **changes: build(ClassifierConfig, {**raw, "output": {**raw["output"], "name": name},
                                                             "train": {**raw["train"], **changes}}, "test")
    candidate = train_classifier(named("candidate"), score_test=False)
    retrained = train_classifier(named("retrained"))
    scored = score_on_test(candidate, named("chosen"))
    for seed in (0, 1):
        read = lambda run, seed=seed: json.loads((run / f"seed_{seed}" / "metrics.json").read_text())
        assert "test" not in read(candidate) and read(scored) == read(retrained)
        assert read(scored)["val"] == read(candidate)["val"]
        assert sorted(p.name for p in (scored / f"seed_{seed}").iterdir()) == \
            sorted(p.name for p in (retrained / f"seed_{seed}").iterdir())
    summary = lambda run: {k: v for k, v in json.loads((run / "summary.json").read_text()).items() if k != "name"}
    assert summary(scored) == summary(retrained)
    assert json.loads((scored / "run_info.json").read_text())["models_from"] == str(candidate)
    with pytest.raises(ValueError, match="trained with another config"):
        score_on_test(candidate, named("chosen", lr=0.5))
