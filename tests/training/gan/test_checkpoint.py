"""Generator checkpoints that are damaged, edited or diverged: one line from every loader, never a traceback
or black images; and a full disk during training names the checkpoint it could not write."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from tests.helpers import refused, tiny_gan_raw, write_yaml
from training.core.config import build
from training.core.errors import run_cli
from training.export import main as export_main
from training.gan.checkpoint import load_training_state, save_generator
from training.gan.config import GANConfig
from training.gan.networks import build_generator
from training.generate_samples import main as generate_main
from training.train_dcgan import main as train_main


@pytest.fixture(scope="module")
def generator_record(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gen")
    config = build(GANConfig, tiny_gan_raw(Path("unused"), out), "test")
    torch.manual_seed(0)
    save_generator(out / "g.pth", build_generator(config.model, config.data), config, epoch=1)
    return torch.load(out / "g.pth", weights_only=True)


def _wrong_shape(r):
    key = next(iter(r["state_dict"]))
    r["state_dict"][key] = torch.zeros(3, 3)


def _nan_weights(r):
    next(v for v in r["state_dict"].values() if v.is_floating_point()).fill_(float("nan"))


EDITS = {
    "wrong shape": (_wrong_shape, ["weights do not fit", "is (3, 3), expected"]),
    "missing weight": (lambda r: r["state_dict"].pop(next(iter(r["state_dict"]))), ["weights do not fit", "is missing"]),
    "missing model": (lambda r: r.pop("model"), ["lacks 'model'"]),
    "flipped g_noise": (lambda r: r["model"].update(g_noise=not r["model"]["g_noise"]), ["weights do not fit"]),
    "traversal class": (lambda r: r.update(class_name="../../x"), ["'class_name' must be a plain name", "../../x"]),
    "nan weights": (_nan_weights, ["non-finite weights"]),
}


@pytest.mark.parametrize("edit", EDITS)
def test_a_damaged_generator_is_one_line_in_generate_and_export(edit, generator_record, tmp_path, capsys):
    change, words = EDITS[edit]
    record = {**generator_record, "model": dict(generator_record["model"]),
              "state_dict": {k: v.clone() for k, v in generator_record["state_dict"].items()}}
    change(record)
    path = tmp_path / "g.pth"
    torch.save(record, path)
    out = tmp_path / "out"
    code = run_cli(generate_main, ["--checkpoint", str(path), "--num_samples", "2", "--workers", "1",
                                   "--device", "cpu", "--output_dir", str(out)])
    refused(capsys, code, str(path), *words)
    refused(capsys, run_cli(export_main, ["--checkpoint", str(path), "--format", "torchscript",
                                          "--out", str(tmp_path / "g.pt")]), str(path), *words)
    assert not out.exists() and not (tmp_path / "g.pt").exists() and not (tmp_path.parent / "x").exists()


def test_a_full_disk_during_a_checkpoint_write_names_the_checkpoint_and_keeps_the_last(tiny_demo, tmp_path,
                                                                                      monkeypatch, capsys):
    config = write_yaml(tmp_path / "gan.yaml", tiny_gan_raw(tiny_demo, tmp_path, train={"epochs": 2},
                                                            metrics={"every": 0}))
    save = torch.save

    def full_at_epoch_2(obj, f, *args, **kwargs):
        # What a full disk raises from a file write: errno ENOSPC and no file name.
        if "checkpoint_epoch_0002" in str(getattr(f, "name", f)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_at_epoch_2)
    line = refused(capsys, run_cli(train_main, ["--config", str(config)]), "No space left on device")
    ckpt_dir = tmp_path / "results" / "gan" / "tiny_hinge" / "checkpoints"
    assert str(ckpt_dir / "checkpoint_epoch_0002.pth") in line
    assert load_training_state(ckpt_dir / "checkpoint_epoch_0001.pth")["state"]["epoch"] == 1
    assert not [p.name for p in ckpt_dir.iterdir() if p.name.startswith(".")]      # no temporary file left
