"""Semi-supervised K+1 GAN: its losses, the labelled subset, the run folder, early stopping, and refusals."""

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import REPO_ROOT, one_line_error, run_script
from training.analysis.comparison import check_comparable, load_run
from training.classify.checkpoint import load_classifier
from training.core.config import build
from training.core.errors import ConfigError, DataError, run_cli
from training.data.folders import to_float
from training.data.images import read_image
from training.data.processed import write_dataset
from training.data.sources.digits import digits_records
from training.sgan.config import SGANConfig
from training.sgan.loop import choose_labelled, cycle_batches, frozen_batchnorm_statistics, train_sgan
from training.sgan.losses import feature_matching_loss, real_logit, supervised_loss, unsupervised_loss
from training.train_sgan import main as sgan_main

ROOT = REPO_ROOT
CLASSES = ("0", "1", "2")
PER_SPLIT = {"train": 16, "val": 6, "test": 6}       # images per class


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is fastest, and two stall badly when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory) -> Path:
    """Real scikit-learn digits 0, 1, 2 at 16 px: 16 train, 6 val, 6 test images per class."""
    records, _ = digits_records(seed=0, image_size=16)
    kept, counts = [], {}
    for rec in records:
        key = (rec.split, rec.class_name)
        if rec.class_name in CLASSES and counts.get(key, 0) < PER_SPLIT[rec.split]:
            counts[key] = counts.get(key, 0) + 1
            kept.append(rec)
    out = tmp_path_factory.mktemp("digits") / "tiny_digits"
    write_dataset(kept, out)
    return out


def raw_config(root: Path, results: Path, **train) -> dict:
    return {"data": {"root": str(root), "image_size": 16, "channels": 1, "labeled_per_class": 3, "split_seed": 7},
            "model": {"width": 4, "z_dim": 8, "g_channels": 8},
            "train": {"epochs": 2, "batch_size": 8, "seeds": [0, 1], "device": "cpu", "sample_grid_size": 2,
                      "early_stopping_patience": None, **train},
            "output": {"name": "tiny", "results_dir": str(results)}}


# ---------------------------------------------------------------------------------------------------------------
# Losses.

def test_real_logit_is_the_k_plus_1_probability():
    logits = torch.randn(5, 4)
    z = logits.exp().sum(1)
    assert torch.allclose(torch.sigmoid(real_logit(logits)), z / (z + 1), atol=1e-6)   # D = Z / (Z + 1)


def test_unsupervised_loss_falls_as_real_logits_rise_and_fake_logits_fall():
    base = torch.zeros(8, 3)
    k = torch.tensor(3.0)
    at_zero = 0.5 * (torch.nn.functional.softplus(-k.log()) + torch.nn.functional.softplus(k.log()))
    assert unsupervised_loss(base, base).item() == pytest.approx(at_zero.item(), rel=1e-6)
    real_up = [unsupervised_loss(base + s, base).item() for s in (0.0, 1.0, 3.0)]
    fake_down = [unsupervised_loss(base, base - s).item() for s in (0.0, 1.0, 3.0)]
    assert real_up[0] > real_up[1] > real_up[2] and fake_down[0] > fake_down[1] > fake_down[2]
    assert unsupervised_loss(base + 20, base - 20).item() < 1e-6        # a perfect D: loss -> 0


def test_supervised_loss_is_cross_entropy_over_the_k_classes():
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    expected = -torch.log_softmax(logits, 1)[torch.arange(6), labels].mean()
    assert supervised_loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_feature_matching_is_zero_for_identical_batches_and_only_moves_fakes():
    real = torch.randn(16, 5)
    assert feature_matching_loss(real, real.clone()).item() == 0.0
    real.requires_grad_(True)
    fake = (real.detach() + 1.0).requires_grad_(True)
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(1.0)                            # every feature mean is 1 apart
    loss.backward()
    assert real.grad is None and fake.grad.abs().sum() > 0


def test_fake_batches_leave_batchnorm_running_statistics_alone():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)).train()
    before = net[1].running_mean.clone()
    with frozen_batchnorm_statistics(net):
        net(torch.randn(4, 1, 8, 8) + 5)
    assert torch.equal(net[1].running_mean, before) and net[1].momentum == 0.1
    net(torch.randn(4, 1, 8, 8) + 5)
    assert not torch.equal(net[1].running_mean, before)


# ---------------------------------------------------------------------------------------------------------------
# The labelled subset.

def test_labelled_subset_is_balanced_fixed_by_its_seed_and_refused_when_too_large():
    labels = torch.tensor([0] * 10 + [1] * 7 + [2] * 12)
    chosen = choose_labelled(labels, ["a", "b", "c"], 5, seed=3)
    assert np.bincount(labels[chosen].numpy()).tolist() == [5, 5, 5] and list(chosen) == sorted(chosen)
    assert np.array_equal(chosen, choose_labelled(labels, ["a", "b", "c"], 5, seed=3))
    assert not np.array_equal(chosen, choose_labelled(labels, ["a", "b", "c"], 5, seed=4))
    with pytest.raises(DataError, match="class 'b' has only 7 training images"):
        choose_labelled(labels, ["a", "b", "c"], 8, seed=3)


def test_labelled_batches_cycle_through_every_image():
    batches = cycle_batches(5, 3, torch.Generator().manual_seed(0))
    seen = torch.cat([next(batches) for _ in range(5)])              # three full passes
    assert len(seen) == 15 and sorted(seen.tolist()) == sorted(list(range(5)) * 3)


# ---------------------------------------------------------------------------------------------------------------
# Runs.

def test_sgan_and_baseline_share_the_subset_and_write_comparable_classifier_runs(tiny_digits, tmp_path):
    raw = raw_config(tiny_digits, tmp_path / "results")
    sgan = train_sgan(build(SGANConfig, raw, "test"))
    raw["train"]["method"] = "baseline"
    base = train_sgan(build(SGANConfig, raw, "test"))
    assert (sgan.parent.name, base.parent.name) == ("tiny", "tiny_baseline")

    # Same balanced labelled subset, listed by file.
    subsets = [json.loads((run / "labelled_subset.json").read_text()) for run in (sgan, base)]
    assert subsets[0]["files"] == subsets[1]["files"]
    assert sorted(f["class"] for f in subsets[0]["files"]) == sorted(CLASSES * 3)
    assert subsets[0]["unlabelled"] == 3 * 16 - 9

    for run in (sgan, base):
        for name in ("config.yaml", "run_info.json", "summary.json", "val_accuracy.png"):
            assert (run / name).is_file(), name
        for seed in (0, 1):
            for name in ("metrics.json", "val_predictions.csv", "test_predictions.csv", "test_probabilities.csv",
                         "training_curves.png", "best_model.pth"):
                assert (run / f"seed_{seed}" / name).is_file(), name
    assert (sgan / "seed_0" / "samples.png").is_file() and not (base / "seed_0" / "samples.png").exists()
    metrics = json.loads((sgan / "seed_0" / "metrics.json").read_text())
    assert [set(h) >= {"loss_supervised", "loss_unsupervised", "loss_feature_matching", "val_accuracy"}
            for h in metrics["history"]] == [True, True]
    multiclass = json.loads((sgan / "summary.json").read_text())["multiclass"]["test"]
    assert set(multiclass["per_class_sensitivity"]) == set(CLASSES) and 0 <= multiclass["macro_auc"]["mean"] <= 1

    # The saved D is a classifier: load_classifier rebuilds it, K logits, the same probabilities as the run wrote.
    model, record = load_classifier(sgan / "seed_0" / "best_model.pth")
    assert record["class_names"] == list(CLASSES) and record["config"]["model"]["arch"] == "cnn"
    with open(sgan / "seed_0" / "test_probabilities.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    images = torch.stack([torch.from_numpy(read_image(r["path"]).copy()).unsqueeze(0) for r in rows])
    with torch.no_grad():
        probs = torch.softmax(model(to_float(images)), 1)
    assert probs.shape == (len(rows), len(CLASSES))
    assert np.allclose(probs.numpy(), [[float(r[c]) for c in CLASSES] for r in rows], atol=1e-5)

    # compare.py's loader and pseudo_label.py's classifier take them as they are.
    assert len(check_comparable([load_run(base), load_run(sgan)])) == 2
    from training.synthesis.labelling import classify

    classified, names, _ = classify([Path(r["path"]) for r in rows[:4]], sgan / "seed_0" / "best_model.pth")
    assert names == list(CLASSES) and np.allclose(classified, probs[:4].numpy(), atol=1e-5)


def test_early_stopping_stops_after_patience_epochs_without_a_better_val_accuracy(tiny_digits, tmp_path):
    raw = raw_config(tiny_digits, tmp_path, method="baseline", epochs=30, early_stopping_patience=2, lr_d=0.0,
                     seeds=[0])
    run = train_sgan(build(SGANConfig, raw, "test"))
    metrics = json.loads((run / "seed_0" / "metrics.json").read_text())
    assert metrics["epochs_run"] < 30 and metrics["epochs_run"] == metrics["best_epoch"] + 2
    accuracies = [h["val_accuracy"] for h in metrics["history"]]
    assert accuracies[metrics["best_epoch"] - 1] == max(accuracies)


def test_too_many_labels_and_a_missing_dataset_are_one_line_errors_and_write_nothing(tiny_digits, tmp_path, capsys):
    results = tmp_path / "results"
    raw = raw_config(tiny_digits, results)
    raw["data"]["labeled_per_class"] = 17
    with pytest.raises(DataError, match="class '0' has only 16 training images"):
        train_sgan(build(SGANConfig, raw, "test"))
    raw["data"].update(labeled_per_class=16)                   # labels every image: nothing left for the GAN
    with pytest.raises(DataError, match="needs unlabelled images"):
        train_sgan(build(SGANConfig, raw, "test"))
    raw["data"].update(labeled_per_class=3, root=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="dataset folder not found"):
        train_sgan(build(SGANConfig, raw, "test"))
    with pytest.raises(ConfigError, match="'train.seeds' has repeated seeds"):
        build(SGANConfig, raw_config(tiny_digits, results, seeds=[1, 1]), "test")
    assert not results.exists()

    config = tmp_path / "sgan.yaml"
    config.write_text(json.dumps(raw_config(tiny_digits, results)))       # JSON is YAML
    assert run_cli(sgan_main, ["--config", str(config), "data.labeled_per_class=40"]) == 2
    assert run_cli(sgan_main, ["--config", str(config), "train.diffaugment=blur", "--dry_run"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "labeled_per_class' = 40 but class '0' has only 16" in errors[0]
    assert "unknown op 'blur'" in errors[1]
    assert run_cli(sgan_main, ["--config", str(config), "--baseline", "--dry_run"]) == 0
    assert "method: baseline" in capsys.readouterr().out and not results.exists()


@pytest.mark.parametrize("args, message", [
    (["experiments/sgan_digits.yaml", "data.root=/nonexistent/digits", "output.results_dir=/nonexistent/r"],
     "dataset folder not found: /nonexistent/digits"),
    (["experiments/sgan_digits.yaml", "data.labeled_per_clas=5", "--dry_run"],
     "unknown key 'data.labeled_per_clas' (did you mean 'data.labeled_per_class'?)"),
])
def test_the_script_reports_bad_input_in_one_line(args, message, capsys):
    one_line_error(run_script(capsys, "training/train_sgan.py", "--config", *args), message)


@pytest.mark.parametrize("name", ["sgan_digits", "sgan_breastmnist"])
def test_shipped_configs_load(name):
    from training.core.config import load_config

    config = load_config(SGANConfig, ROOT / "experiments" / f"{name}.yaml")
    assert config.output.name == name and config.train.method == "sgan"


def test_torchrun_runs_write_once_and_the_baseline_equals_one_process(tiny_digits, tmp_path):
    """2 processes (gloo): the K+1 GAN finishes and writes one run folder; the baseline, without
    augmentation or dropout (per-process randomness by design), reaches the one-process weights."""
    import os
    import sys

    from training.core.checkpoint_io import load_checkpoint
    from training.sgan.loop import train_sgan

    repo = REPO_ROOT

    def torchrun(raw: dict, name: str) -> subprocess.CompletedProcess:
        config = tmp_path / f"{name}.yaml"
        config.write_text(json.dumps(raw))
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               "training/train_sgan.py", "--config", str(config)], cwd=repo, capture_output=True,
                              text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})

    gan = torchrun(raw_config(tiny_digits, tmp_path / "gan", seeds=[0], epochs=1), "gan")
    assert gan.returncode == 0, gan.stderr[-3000:]
    assert gan.stdout.count("test (mean +- std over seeds)") == 1
    runs = list((tmp_path / "gan" / "classifiers" / "tiny").iterdir())
    assert [r.name for r in runs] == ["run_000"] and (runs[0] / "seed_0" / "best_model.pth").is_file()
    assert json.loads((runs[0] / "run_info.json").read_text())["processes"] == 2

    raw = raw_config(tiny_digits, tmp_path / "base", method="baseline", seeds=[0], diffaugment=None, lr_d=1e-4)
    raw["model"]["dropout"] = 0.0
    base = torchrun(raw, "base")
    assert base.returncode == 0, base.stderr[-3000:]
    train_sgan(build(SGANConfig, raw, "one"))
    two, one = (load_checkpoint(tmp_path / "base" / "classifiers" / "tiny_baseline" / run / "seed_0" / "best_model.pth")
                for run in ("run_000", "run_001"))
    for key, value in one["state_dict"].items():
        assert torch.allclose(value.float(), two["state_dict"][key].float(), rtol=1e-5, atol=5e-5), key
