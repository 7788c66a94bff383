"""How a classifier uses synthetic training images: marked from the manifest, weighted, mixed per batch,
and a real-only fine-tune stage."""

import csv
import json
import shutil

import pytest
import torch

from tests.helpers import synthetic_folder
from training.classify.config import ClassifierConfig
from training.classify.data import load_splits
from training.classify.loop import fit, mixed_order, sample_weights, stages, train_classifier
from training.core.config import build
from training.core.errors import DataError
from training.data.augmented_set import build_augmented


@pytest.fixture(scope="module")
def augmented(tiny_demo, tmp_path_factory):
    """tiny_demo (30 benign, 15 malignant in train) plus 12 synthetic malignant images in train."""
    folder = tmp_path_factory.mktemp("synthetic")
    synthetic = synthetic_folder(folder / "gan", 12)
    return build_augmented(tiny_demo, [synthetic], folder / "augmented", num_synthetic=12) and folder / "augmented"


def raw_config(root, tmp_path, data=None, **train):
    return {"data": {"train_dir": str(root / "train"), "val_dir": str(root / "val"), "test_dir": str(root / "test"),
                     "image_size": 32, "channels": 3, "positive_class": "malignant", **(data or {})},
            "model": {"arch": "cnn", "width": 4},
            "train": {"epochs": 2, "batch_size": 16, "seeds": [0], "device": "cpu", **train},
            "output": {"name": "tiny", "results_dir": str(tmp_path / "results")}}


def splits(root):
    return load_splits({s: root / s for s in ("train", "val", "test")}, 32, 3, "malignant", show_progress=False)


def test_synthetic_images_are_marked_from_the_augmented_manifest(tiny_demo, augmented):
    train = splits(augmented).sets["train"]
    assert int(train.synthetic.sum()) == 12
    assert all("synthetic_" in p for p, s in zip(train.paths, train.synthetic.tolist()) if s)
    assert not splits(tiny_demo).sets["train"].synthetic.any()


def test_a_manifest_that_puts_synthetic_images_in_val_is_refused(augmented, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(augmented, copy)
    with open(copy / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    next(r for r in rows if r["split"] == "val")["source"] = "synthetic"
    with open(copy / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(DataError, match="val.*real only"):
        splits(copy)


def test_a_synthetic_weight_of_zero_is_training_without_synthetic_images(tiny_demo, augmented, tmp_path):
    real = train_classifier(build(ClassifierConfig, raw_config(tiny_demo, tmp_path), "test"))
    weightless = train_classifier(build(ClassifierConfig, raw_config(augmented, tmp_path, {"synthetic_weight": 0.0}), "t"))
    full = train_classifier(build(ClassifierConfig, raw_config(augmented, tmp_path), "test"))
    scores = lambda run: [r.split(",")[3] for r in (run / "seed_0" / "test_predictions.csv").read_text().splitlines()[1:]]
    assert scores(weightless) == scores(real)
    assert scores(full) != scores(real)


def test_sample_weights_scale_synthetic_images_and_keep_class_weights(augmented):
    train = splits(augmented).sets["train"]
    w = sample_weights(train, "none", 0.3, 2)
    assert torch.allclose(w[train.synthetic], torch.tensor(0.3)) and torch.all(w[~train.synthetic] == 1)
    balanced = sample_weights(train, "balanced", 0.5, 2)
    malignant = train.labels == 1
    n = len(train.labels)
    assert torch.allclose(balanced[malignant & ~train.synthetic], torch.tensor(n / (2 * 27)))
    assert torch.allclose(balanced[malignant & train.synthetic], torch.tensor(0.5 * n / (2 * 27)))


def test_every_batch_holds_the_asked_share_of_synthetic_images(augmented):
    train = splits(augmented).sets["train"]
    order = mixed_order(train, False, 0.25, 8, torch.Generator().manual_seed(0))
    batches = [order[i:i + 8] for i in range(0, len(order), 8)]
    assert all(int(train.synthetic[b].sum()) == 2 for b in batches)
    real = order[~train.synthetic[order]]
    assert sorted(real.tolist()) == (~train.synthetic).nonzero().flatten().tolist()   # each real image once
    assert torch.equal(order, mixed_order(train, False, 0.25, 8, torch.Generator().manual_seed(0)))


def test_fine_tuning_runs_on_real_images_only_and_is_recorded(augmented, tmp_path):
    config = build(ClassifierConfig, raw_config(augmented, tmp_path, finetune_real_epochs=2), "test")
    plan = stages(config, splits(augmented).sets["train"], 2)
    assert [s.name for s in plan] == ["train", "finetune_real"]
    assert not plan[1].train.synthetic.any() and plan[1].oversample and plan[1].lr == config.train.lr / 10
    model, history, best_epoch = fit(config, splits(augmented).sets, 2, 1, 0, torch.device("cpu"))
    assert [h["stage"] for h in history] == ["train", "train", "finetune_real", "finetune_real"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[best_epoch - 1]["val_auc"] == max(h["val_auc"] for h in history)


def test_a_batch_fraction_without_synthetic_images_is_refused(tiny_demo, tmp_path):
    config = build(ClassifierConfig, raw_config(tiny_demo, tmp_path, {"synthetic_fraction_per_batch": 0.3}), "test")
    with pytest.raises(DataError, match="no synthetic images"):
        train_classifier(config)


def test_a_validation_only_run_never_reads_the_test_split(tiny_demo, tmp_path):
    raw = raw_config(tiny_demo, tmp_path)
    raw["data"]["test_dir"] = str(tmp_path / "no such folder")
    run = train_classifier(build(ClassifierConfig, raw, "test"), score_test=False)
    metrics = json.loads((run / "seed_0" / "metrics.json").read_text())
    assert "test" not in metrics and 0 <= metrics["val"]["sensitivity_at_spec90"] <= 1
    assert set(json.loads((run / "summary.json").read_text())) >= {"val"}
    assert "test" not in json.loads((run / "summary.json").read_text())
    assert not (run / "seed_0" / "test_predictions.csv").exists()


def test_mixup_weights_each_target_by_its_own_image():
    from types import SimpleNamespace

    import numpy as np
    import torch.nn.functional as F

    from training.classify.loop import mixed_loss
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y, w = torch.randn(6, 1, 2, 2), torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([1.0, 1, 1, 3, 3, 0.5])
    t = SimpleNamespace(mixup_alpha=0.4, label_smoothing=0.0)
    loss = mixed_loss(net, x, y, w, t, torch.Generator().manual_seed(0), np.random.default_rng(0))
    lam = float(np.random.default_rng(0).beta(0.4, 0.4))
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    logits = net(lam * x + (1 - lam) * x[perm])
    ce = lambda target: F.cross_entropy(logits, target, reduction="none")
    expected = lam * (w * ce(y)).sum() + (1 - lam) * (w[perm] * ce(y[perm])).sum()
    assert torch.allclose(loss, expected)
