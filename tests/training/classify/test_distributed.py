"""Data-parallel classifier training: a real 2-process torchrun run equals a 1-process run; CUDA-only options on CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO_ROOT, write_yaml
from training.classify.config import ClassifierConfig, ClassifierTrainConfig
from training.classify.loop import train_classifier
from training.core.config import build
from training.core.distributed import World
from training.train_classifier import main as classifier_main

REPO = REPO_ROOT


def raw_config(root: Path, results: Path, **train) -> dict:
    return {"data": {"train_dir": str(root / "train"), "val_dir": str(root / "val"), "test_dir": str(root / "test"),
                     "image_size": 32, "channels": 3, "positive_class": "malignant"},
            "model": {"arch": "cnn", "width": 4, "dropout": 0.0},
            "train": {"epochs": 2, "batch_size": 16, "seeds": [0], "device": "cpu", **train},
            "output": {"name": "ddp", "results_dir": str(results)}}


def test_two_processes_train_what_one_process_trains(tiny_demo, tmp_path, capsys):
    # 45 train images in global batches of 16: 16, 16 and a ragged 13 that splits 7 + 6. Class weights
    # and label smoothing make each rank's loss share depend on its labels, batch norm its statistics.
    # No augmentation, mixup or dropout: those draw per-rank streams by design.
    # AdamW turns float32 noise in near-zero gradients (~1e-6 relative) into weight differences of
    # about lr / 10; at lr 1e-4 that is ~1e-5, while local-batch BN, a wrong loss share or a dropped
    # ragged batch each move weights by 1.6e-4 or more.
    yaml_path = write_yaml(tmp_path / "ddp.yaml", raw_config(tiny_demo, tmp_path / "results", augment=False, lr=1e-4,
                                                             class_weights="balanced", label_smoothing=0.1))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "training/train_classifier.py", "--config", str(yaml_path), "train.mixup_alpha=0"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("test (mean +- std over seeds)") == 1 and "x 2 processes" in done.stdout   # rank 0 prints
    runs = tmp_path / "results" / "classifiers" / "ddp"
    assert [p.name for p in runs.iterdir()] == ["run_000"]

    assert classifier_main(["--config", str(yaml_path), "train.mixup_alpha=0"]) == 0
    capsys.readouterr()
    two, one = runs / "run_000", runs / "run_001"
    files = lambda run: sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert files(two) == files(one)                                      # one set of outputs, no temp files
    compute = json.loads((two / "run_info.json").read_text())["compute"]
    assert compute == {"world_size": 2, "backend": "gloo", "batch_size_per_process": 8,
                       "precision": "fp32", "channels_last": False, "cudnn_benchmark": False, "tf32": False}
    assert json.loads((one / "run_info.json").read_text())["compute"]["world_size"] == 1

    a, b = (torch.load(run / "seed_0" / "best_model.pth", weights_only=False) for run in (two, one))
    assert a["best_epoch"] == b["best_epoch"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), rtol=1e-5, atol=5e-5), key
    metrics = [json.loads((run / "seed_0" / "metrics.json").read_text())["test"] for run in (two, one)]
    assert metrics[0]["roc_auc"] == pytest.approx(metrics[1]["roc_auc"], abs=1e-6)


def test_cuda_options_on_cpu_run_fp32_with_one_note(tiny_demo, tmp_path, capsys):
    raw = raw_config(tiny_demo, tmp_path / "results", epochs=1, precision="bf16", channels_last=True)
    raw["model"]["arch"] = "mlp"
    run = train_classifier(build(ClassifierConfig, raw, "test"))
    out = capsys.readouterr().out
    assert out.count("note:") == 1
    assert "train.precision=bf16 applies to CUDA only; on cpu training runs in fp32" in out
    compute = json.loads((run / "run_info.json").read_text())["compute"]
    assert (compute["precision"], compute["channels_last"]) == ("fp32", True)      # what ran: the layout applies on CPU
    assert "precision: bf16" in (run / "config.yaml").read_text()                    # what was asked
    assert (run / "seed_0" / "best_model.pth").is_file()


def test_cuda_keeps_the_requested_options_and_fp32_on_cpu_needs_no_note():
    from training.core.precision import resolve_precision

    if torch.cuda.is_available():
        precision, record = resolve_precision(ClassifierTrainConfig(precision="fp16", channels_last=True),
                                              torch.device("cuda", 0))
        assert precision.dtype is torch.float16 and precision.channels_last and "note" not in record
    precision, record = resolve_precision(ClassifierTrainConfig(), torch.device("cpu"))
    assert precision.dtype is None and not precision.channels_last and "note" not in record


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_rank_shares_partition_every_global_batch(size):
    for batch in range(size, 40):
        shares = [World(rank, size, rank).share(batch) for rank in range(size)]
        rows = [i for s in shares for i in range(batch)[s]]
        assert rows == list(range(batch))                                # disjoint, in order, complete
        lengths = [s.stop - s.start for s in shares]
        assert max(lengths) - min(lengths) <= 1 and min(lengths) >= 1
        if batch % size == 0:
            assert shares == [World(rank, size, rank).local_slice(batch) for rank in range(size)]
