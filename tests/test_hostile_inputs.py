"""Hostile and broken inputs, through the entry points a user runs: nothing executes, nothing escapes its
folder, nothing leaks into val/test, and every refusal is one line with a non-zero exit.

Payloads are built in tmp_path; the scripts run as a user would run them, their `main` through `run_cli` in this
process (tests.helpers.run_script: an interpreter launch costs seconds of imports), and one payload through a real
interpreter.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import REPO_ROOT, one_line_error, run_script, synthetic_folder, tiny_gan_raw, write_yaml
from training.core.config import build, load_config
from training.core.errors import ConfigError, DataError, UserError, run_cli
from training.data.augmented_set import build_augmented
from training.data.processed import read_splits_manifest
from training.data.synthetic_folder import SYNTHETIC_MANIFEST, writer_lock
from training.gan.checkpoint import save_generator
from training.gan.config import GANConfig
from training.gan.loop import train_gan
from training.gan.networks import build_generator
from training.study.preflight import dataset_info
from training.synthesis import sampling


class Payload:
    """Unpickling this creates `marker`: the proof that code in a checkpoint ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_checkpoint(path: Path, marker: Path, fmt: str) -> Path:
    torch.save({"format": fmt, "state_dict": {}, "payload": Payload(marker)}, path)
    return path


def launch(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """A real interpreter running a script, as a user launches it."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def one_line_refusal(result, *words: str) -> str:
    """The one `error:` line of a refused run (exit 2, nothing else on stderr, no traceback)."""
    return one_line_error(result, *words)


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    config = build(GANConfig, tiny_gan_raw(Path("unused"), out), "test")
    torch.manual_seed(0)
    path = out / "best_generator.pth"
    save_generator(path, build_generator(config.model, config.data), config, epoch=1)
    return path


# --- a checkpoint can run code ------------------------------------------------------------------

def test_a_pickle_payload_never_runs_through_any_entry_point(tmp_path, generator_file, tiny_demo, capsys):
    marker = tmp_path / "owned"
    bad_g = malicious_checkpoint(tmp_path / "g.pth", marker, "medgan-generator/1")
    bad_c = malicious_checkpoint(tmp_path / "c.pth", marker, "medgan-classifier/1")
    # The detector works in this process: a plain pickle load of the file runs the payload, which leaves the marker.
    torch.load(bad_c, weights_only=False)
    assert marker.exists()
    marker.unlink()
    out = tmp_path / "out"

    # One entry point through a real interpreter: nothing of this process (its imports, torch's safe globals) helps.
    one_line_refusal(launch("training/generate_samples.py", "--checkpoint", str(bad_g), "--preview_only",
                            "--output_dir", str(out / "a")), "refusing to load")
    assert not marker.exists(), "the payload ran through a launched training/generate_samples.py"

    attempts = [
        ("training/generate_samples.py", "--checkpoint", str(generator_file), "--num_samples", "4",
         "--filter_classifier", str(bad_c), "--output_dir", str(out / "b")),
        ("training/export.py", "--checkpoint", str(bad_g), "--format", "torchscript"),
        ("training/export.py", "--checkpoint", str(bad_c), "--format", "torchscript"),
        ("training/pseudo_label.py", "--synth_dir", str(synthetic_folder(tmp_path / "synthetic" / "gan", 4)),
         "--model_path", str(bad_c), "--output_dir", str(out / "c")),
    ]
    for args in attempts:
        one_line_refusal(run_script(capsys, *args), "refusing to load")
        assert not marker.exists(), f"the payload ran through {args[0]}"

    # --resume: the payload placed as the newest epoch checkpoint of a run.
    config = write_yaml(tmp_path / "gan.yaml", tiny_gan_raw(tiny_demo, tmp_path, train={"epochs": 1}))
    assert run_script(capsys, "training/train_dcgan.py", "--config", str(config)).returncode == 0
    run = tmp_path / "results" / "gan" / "tiny_hinge"
    malicious_checkpoint(run / "checkpoints" / "checkpoint_epoch_0009.pth", marker, "x")
    (run / "final_generator.pth").unlink()
    result = run_script(capsys, "training/train_dcgan.py", "--config", str(config), "--resume", "train.epochs=2")
    assert not marker.exists()
    assert "could not be read" in result.stdout and "refusing to load" in result.stdout   # fell back, said why


# --- output.name escapes the results folders ----------------------------------------------------

@pytest.mark.parametrize("schema, path", [
    ("training.gan.config:GANConfig", "experiments/demo_gan.yaml"),
    ("training.classify.config:ClassifierConfig", "experiments/classifier_baseline.yaml"),
    ("training.sgan.config:SGANConfig", "experiments/sgan_digits.yaml"),
    ("training.study.config:PipelineConfig", "experiments/pipeline_demo.yaml"),
    ("training.analysis.synthetic_amount:SweepConfig", "experiments/sweep_synthetic_counts.yaml"),
])
@pytest.mark.parametrize("name", ["../../somewhere", "/abs", "a/b", "..", ".hidden", ""])
def test_traversal_names_are_refused_for_every_run_type(schema, path, name):
    module, cls = schema.split(":")
    config_class = getattr(__import__(module, fromlist=[cls]), cls)
    with pytest.raises(ConfigError, match="must be a plain name"):
        load_config(config_class, REPO_ROOT / path, [f"output.name={json.dumps(name)}"])


def test_traversal_name_writes_nothing_through_the_script(tmp_path, tiny_demo, capsys):
    config = write_yaml(tmp_path / "gan.yaml", tiny_gan_raw(tiny_demo, tmp_path))
    victim = tmp_path / "victim"
    result = run_script(capsys, "training/train_dcgan.py", "--config", str(config), f"output.name=../../{victim.name}")
    one_line_refusal(result, "plain name")
    assert not victim.exists() and not (tmp_path / "results").exists()
    one_line_refusal(run_script(capsys, "training/prepare_data.py", "--source", "demo", "--output_dir", str(tmp_path),
                                "--name", "../escaped"), "plain name")
    one_line_refusal(run_script(capsys, "training/generate_samples.py", "--checkpoint", "g.pth", "--class", "../x",
                                "--preview_only"), "plain name")


# --- the leakage proof trusts the synthetic manifest -------------------------------------------

@pytest.fixture
def synthetic_copy(tmp_path) -> Path:
    return synthetic_folder(tmp_path / "gan", 12)


def edit_manifest(folder: Path, change) -> None:
    records = [json.loads(line) for line in (folder / SYNTHETIC_MANIFEST).read_text().splitlines()]
    change(records)
    (folder / SYNTHETIC_MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in records))


def test_a_manifest_entry_pointing_at_a_test_image_is_refused(tmp_path, tiny_demo, synthetic_copy):
    test_image = next(r for r in read_splits_manifest(tiny_demo) if r["split"] == "test")
    target = os.path.relpath(tiny_demo / test_image["path"], synthetic_copy)

    def point_at_test(records):
        records[0].update(file=target, sha256=test_image["sha256"])

    edit_manifest(synthetic_copy, point_at_test)
    with pytest.raises(DataError, match="not a file inside"):
        build_augmented(tiny_demo, [synthetic_copy], tmp_path / "aug", num_synthetic=5)
    assert not (tmp_path / "aug").exists()


def test_a_test_image_planted_under_a_synthetic_name_is_caught_from_its_pixels(tmp_path, tiny_demo, synthetic_copy):
    test_image = next(r for r in read_splits_manifest(tiny_demo) if r["split"] == "test")
    first = sorted(synthetic_copy.glob("synthetic_*.png"))[0]
    first.unlink()
    os.link(tiny_demo / test_image["path"], first)          # the file is now a real test image

    def claim_its_hash(records):
        records[0]["sha256"] = test_image["sha256"]

    edit_manifest(synthetic_copy, claim_its_hash)
    with pytest.raises(DataError, match="same content as train|synthetic image in a validation/test split"):
        build_augmented(tiny_demo, [synthetic_copy], tmp_path / "aug", num_synthetic=12)
    assert not (tmp_path / "aug").exists()


def test_a_synthetic_file_that_differs_from_its_record_is_refused(tmp_path, tiny_demo, synthetic_copy):
    first = sorted(synthetic_copy.glob("synthetic_*.png"))[0]
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(first)
    with pytest.raises(DataError, match="does not hold the pixels"):
        build_augmented(tiny_demo, [synthetic_copy], tmp_path / "aug", num_synthetic=12)


# --- Also wrong -------------------------------------------------------------------------------------------

def test_two_writers_cannot_both_write_one_folder(tmp_path, generator_file):
    generators = sampling.load_generators([generator_file], torch.device("cpu"))
    out = tmp_path / "out"
    with writer_lock(out):                                   # another generate_samples.py holds the folder
        with pytest.raises(UserError, match="another generate_samples.py is writing"):
            sampling.generate(generators, [1.0], 4, 1, out, workers=1)
        with pytest.raises(UserError, match="another generate_samples.py is writing"):
            sampling.generate(generators, [1.0], 4, 1, out, workers=1, shard=(0, 2))
    assert not list(out.glob("synthetic_*.png"))
    sampling.generate(generators, [1.0], 4, 1, out, workers=1)      # free again: the writer finished
    assert len(list(out.glob("synthetic_*.png"))) == 4


def test_a_truncated_png_is_made_again_not_kept(tmp_path, generator_file):
    generators = sampling.load_generators([generator_file], torch.device("cpu"))
    out = tmp_path / "out"
    sampling.generate(generators, [1.0], 6, 0, out, workers=1)
    victim = out / "synthetic_malignant_000002.png"
    good = victim.read_bytes()
    victim.write_bytes(good[:len(good) // 2])
    summary = sampling.generate(generators, [1.0], 6, 0, out, workers=1)
    assert summary["written"] == 1 and victim.read_bytes() == good


@pytest.mark.parametrize("args, words", [
    (["--num_samples", "1000000000000"], ["--num_samples must be between 1 and"]),
    (["--num_samples", "4", "--weights", "nan"], ["--weights must be finite"]),
    (["--num_samples", "4", "--weights", "inf"], ["--weights must be finite"]),
    (["--num_samples", "4", "--seed", "-1"], ["--seed must be >= 0"]),
    (["--num_samples", "4", "--fix_code", "cat=nan"], ["finite"]),
])
def test_bad_generation_numbers_are_one_line(tmp_path, generator_file, args, words, capsys):
    one_line_refusal(run_script(capsys, "training/generate_samples.py", "--checkpoint", str(generator_file), *args,
                                "--output_dir", str(tmp_path / "o")), *words)


def test_nan_target_ratio_is_one_line(tmp_path, tiny_demo, synthetic_copy, capsys):
    one_line_refusal(run_script(capsys, "training/build_augmented.py", "--baseline", str(tiny_demo), "--synthetic",
                                str(synthetic_copy), "--output_dir", str(tmp_path / "a"), "--target_ratio", "nan"),
                     "--target_ratio")


@pytest.mark.parametrize("content", [
    np.random.default_rng(0).bytes(2048),
    b"a: " + b"[" * 5000 + b"]" * 5000,
    b"a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n",
    b"train:\n  epochs: 2\ntrain:\n  epochs: 3\n",
    b"",
], ids=["random bytes", "nested too deeply", "alias bomb", "duplicate key", "empty"])
def test_hostile_configs_are_one_line(tmp_path, content, capsys):
    (tmp_path / "bad.yaml").write_bytes(content)
    one_line_refusal(run_script(capsys, "training/train_dcgan.py", "--config", str(tmp_path / "bad.yaml")))


def test_bad_npz_files_and_decompression_bombs_are_one_line(tmp_path, capsys):
    images = np.zeros((4, 8, 8), np.uint8)
    objects = {f"{s}_images": images for s in ("train", "val", "test")}
    objects.update({f"{s}_labels": np.array([{"x": 1}] * 4, dtype=object) for s in ("train", "val", "test")})
    np.savez(tmp_path / "objects.npz", **objects)
    one_line_refusal(run_script(capsys, "training/prepare_data.py", "--source", str(tmp_path / "objects.npz"),
                                "--output_dir", str(tmp_path / "p")), "objects.npz")
    nan_labels = {**objects, **{f"{s}_labels": np.array([0, 1, np.nan, 0]) for s in ("train", "val", "test")}}
    np.savez(tmp_path / "nan.npz", **nan_labels)
    one_line_refusal(run_script(capsys, "training/prepare_data.py", "--source", str(tmp_path / "nan.npz"),
                                "--output_dir", str(tmp_path / "p")), "whole numbers")
    bomb = tmp_path / "bomb" / "train" / "a"
    bomb.mkdir(parents=True)
    Image.new("L", (1, 1)).save(bomb / "ok.png")
    (tmp_path / "bomb" / "train" / "b").mkdir()
    # Just past the size Pillow refuses to decode (twice MAX_IMAGE_PIXELS, about 179 Mpixel), a few KB on disk.
    side = math.isqrt(2 * Image.MAX_IMAGE_PIXELS) + 1
    Image.new("1", (side, side)).save(bomb.parent / "b" / "bomb.png", compress_level=1)
    one_line_refusal(run_script(capsys, "training/prepare_data.py", "--source", str(tmp_path / "bomb"),
                                "--output_dir", str(tmp_path / "p")), "decompression-bomb")
    assert not (tmp_path / "p").exists()


def test_damaged_files_of_ours_and_paths_of_the_wrong_kind_are_one_line(tmp_path, tiny_demo, generator_file, capsys):
    (tmp_path / "empty.npz").write_bytes(b"")
    one_line_refusal(run_script(capsys, "training/prepare_data.py", "--source", str(tmp_path / "empty.npz"),
                                "--output_dir", str(tmp_path / "p")), "empty.npz")
    (tmp_path / "afile").write_text("a file where a folder belongs")
    one_line_refusal(run_script(capsys, "training/generate_samples.py", "--checkpoint", str(generator_file),
                                "--num_samples", "2", "--output_dir", str(tmp_path / "afile" / "x"), "--yes",
                                "--device", "cpu"), "cannot write", "a file stands where a folder is needed")
    for bad in (b"a,b\n", b"path,split,class,sha256\n"):          # the manifest proves train and test apart
        shutil.copytree(tiny_demo, tmp_path / "edited", dirs_exist_ok=True)
        (tmp_path / "edited" / "manifest.csv").write_bytes(bad)
        with pytest.raises(DataError, match="rebuild the dataset"):
            read_splits_manifest(tmp_path / "edited")
    (tmp_path / "edited" / "dataset.json").write_text("{bad")
    with pytest.raises(DataError, match="dataset.json is damaged"):
        dataset_info(tmp_path / "edited")
    synthetic = tmp_path / "syn"
    synthetic.mkdir()
    (synthetic / "manifest.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    one_line_refusal(run_script(capsys, "training/generate_samples.py", "--checkpoint", str(generator_file),
                                "--num_samples", "2", "--output_dir", str(synthetic), "--yes", "--device", "cpu"),
                     "is not a text manifest")
    one_line_refusal(run_script(capsys, "training/prepare_data.py", "--source", "", "--output_dir", str(tmp_path / "p")),
                     "--source is empty")
    for flags in (["--demo_num_train", "0"], ["--demo_imbalance", "0"]):
        one_line_refusal(run_script(capsys, "training/prepare_data.py", "--source", "demo", *flags,
                                    "--output_dir", str(tmp_path / "p")), flags[0])
    assert not (tmp_path / "p").exists()


def test_hidden_class_names_are_refused(tmp_path, capsys):
    labels = {f"{s}_labels": np.array([0, 1, 0, 1]) for s in ("train", "val", "test")}
    images = {f"{s}_images": np.random.default_rng(0).integers(0, 255, (4, 8, 8), np.uint8)
              for s in ("train", "val", "test")}
    np.savez(tmp_path / "d.npz", **labels, **images)
    one_line_refusal(run_script(capsys, "training/prepare_data.py", "--source", str(tmp_path / "d.npz"),
                                "--class_names", "0=.hidden,1=b", "--output_dir", str(tmp_path / "p")), "plain name")


def test_a_full_disk_is_one_line_and_keeps_the_last_good_file(tmp_path, monkeypatch, capsys):
    from training.core import atomic
    target = tmp_path / "metrics.json"
    atomic.write_json(target, {"epoch": 1})

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(atomic.os, "replace", full)

    def main(argv):
        atomic.write_json(target, {"epoch": 2})

    assert run_cli(main, []) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "metrics.json" in err[0]
    assert json.loads(target.read_text()) == {"epoch": 1}


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, tiny_demo, capsys):
    raw = tiny_gan_raw(tiny_demo, tmp_path, train={"epochs": 2})
    train_gan(build(GANConfig, raw, "test"))
    ckpt_dir = tmp_path / "results" / "gan" / "tiny_hinge" / "checkpoints"
    newest = ckpt_dir / "checkpoint_epoch_0002.pth"
    newest.write_bytes(newest.read_bytes()[:1000])
    raw["train"]["epochs"] = 3
    summary = train_gan(build(GANConfig, raw, "test"), resume=True)
    out = capsys.readouterr().out
    assert "resuming from checkpoint_epoch_0001.pth instead" in out and summary["epochs"] == 3


def test_qa_compares_non_square_images_at_their_shorter_side(tmp_path, capsys):
    from quality.features.image_sets import load_pair

    real, synthetic = tmp_path / "real", tmp_path / "synthetic"
    real.mkdir()
    synthetic.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32), np.uint8)).save(real / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (100, 80), np.uint8)).save(synthetic / f"{i}.png")
    real_set, synthetic_set = load_pair(real, synthetic, max_images=None, seed=0)
    assert real_set.images.shape[-1] == synthetic_set.images.shape[-1] == 80
