"""Augmented dataset assembly: counts, real-only val/test, the proofs, and the refusals."""

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import refused, synthetic_folder
from training.build_augmented import main as build_main
from training.core.errors import DataError, UserError, run_cli
from training.data.augmented_set import build_augmented, verify
from training.data.images import pixel_sha256
from training.data.processed import read_splits_manifest, write_dataset
from training.data.sources.demo import demo_records


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synthetic_folder(tmp_path_factory.mktemp("synthetic") / "gan", 40)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_target_ratio_adds_synthetic_to_train_only_and_keeps_inputs(tiny_demo, synthetic, tmp_path):
    before = snapshot(tiny_demo), snapshot(synthetic)
    out = tmp_path / "augmented"
    composition = build_augmented(tiny_demo, [synthetic], out, target_ratio=1.0)   # 30 benign : 15 malignant
    counts = composition["counts"]
    assert counts["train"]["malignant"] == {"real": 15, "synthetic": 15}
    assert counts["train"]["benign"] == {"real": 30, "synthetic": 0}
    assert composition["train_ratio_before"] == 2.0 and composition["train_ratio_after"] == 1.0
    for split in ("val", "test"):
        names = [p.name for p in (out / split).rglob("*.png")]
        assert names and all(n.startswith("real_") for n in names)
    assert len(list((out / "train" / "malignant").glob("synthetic_*.png"))) == 15
    rows = read_splits_manifest(out)
    assert {r["source"] for r in rows if r["split"] != "train"} == {"real"}
    real_row = next(r for r in rows if r["source"] == "real")
    assert os.path.samefile(out / real_row["path"], real_row["origin"])        # hard link, not a copy
    assert (snapshot(tiny_demo), snapshot(synthetic)) == before
    assert "| train | malignant | 15 | 15 | 30 |" in (out / "composition.md").read_text()
    assert json.loads((out / "composition.json").read_text()) == composition


def test_num_synthetic_and_the_ten_times_cap(tiny_demo, tmp_path):
    many = synthetic_folder(tmp_path / "many", 151)
    with pytest.raises(UserError, match="more than 10x"):
        build_augmented(tiny_demo, [many], tmp_path / "a", num_synthetic=151)
    assert not (tmp_path / "a").exists()
    composition = build_augmented(tiny_demo, [many], tmp_path / "a", num_synthetic=151, force=True)
    assert composition["counts"]["train"]["malignant"]["synthetic"] == 151
    with pytest.raises(UserError, match="synthetic folders hold 151"):
        build_augmented(tiny_demo, [many], tmp_path / "b", num_synthetic=152, force=True)


def test_several_folders_are_blended_without_name_clashes(tiny_demo, synthetic, tmp_path):
    other = synthetic_folder(tmp_path / "other", 10, seed=1)
    build_augmented(tiny_demo, [synthetic, other], tmp_path / "a", num_synthetic=10)
    names = sorted(p.name for p in (tmp_path / "a" / "train" / "malignant").glob("synthetic_*"))
    assert len(names) == 10 and sum(n.startswith("synthetic_1_other_") for n in names) == 5
    twin = synthetic_folder(tmp_path / "b" / "gan", 10, seed=1)          # same folder name as `synthetic`
    before = {p.name: p.read_bytes() for p in synthetic.glob("*.png")}
    build_augmented(tiny_demo, [synthetic, twin], tmp_path / "c", num_synthetic=10)
    assert {p.name: p.read_bytes() for p in synthetic.glob("*.png")} == before      # inputs untouched
    with pytest.raises(UserError, match="given twice"):
        build_augmented(tiny_demo, [synthetic, synthetic], tmp_path / "d", num_synthetic=2)
    with pytest.raises(UserError, match="itself an augmented dataset"):
        build_augmented(tmp_path / "a", [synthetic], tmp_path / "e", num_synthetic=2)


def test_rejected_images_are_left_out(tiny_demo, tmp_path):
    folder = synthetic_folder(tmp_path / "gan", 5)
    (folder / "rejected").mkdir()
    (folder / "synthetic_malignant_000000.png").rename(folder / "rejected" / "synthetic_malignant_000000.png")
    composition = build_augmented(tiny_demo, [folder], tmp_path / "a")
    assert composition["counts"]["train"]["malignant"]["synthetic"] == 4


def test_verify_catches_synthetic_in_val_and_leakage_from_the_pixels_placed(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a").mkdir(parents=True)
    x, y = np.zeros((4, 4), np.uint8), np.full((4, 4), 9, np.uint8)
    Image.fromarray(x).save(tmp_path / "train" / "a" / "x.png")
    Image.fromarray(y).save(tmp_path / "val" / "a" / "y.png")
    train = {"path": "train/a/x.png", "split": "train", "class": "a", "sha256": pixel_sha256(x), "source": "real",
             "origin": "x"}
    val = {"path": "val/a/y.png", "split": "val", "class": "a", "sha256": pixel_sha256(y), "source": "real",
           "origin": "y"}
    verify(tmp_path, [train, val], set(), 2)
    with pytest.raises(DataError, match="synthetic image in a validation/test split"):
        verify(tmp_path, [train, val], {pixel_sha256(y)}, 2)
    with pytest.raises(DataError, match="expected 3"):
        verify(tmp_path, [train, val], set(), 3)
    with pytest.raises(DataError, match="does not hold the pixels"):            # a record that lies
        verify(tmp_path, [train, {**val, "sha256": pixel_sha256(x)}], set(), 2)
    Image.fromarray(x).save(tmp_path / "val" / "a" / "y.png")                   # val now holds train's pixels
    with pytest.raises(DataError, match="same content as train"):
        verify(tmp_path, [train, {**val, "sha256": pixel_sha256(x)}], set(), 2)


def test_refusals_write_nothing(tiny_demo, synthetic, tmp_path):
    with pytest.raises(UserError, match="overlaps"):
        build_augmented(tiny_demo, [synthetic], tiny_demo / "augmented")
    grey = synthetic_folder(tmp_path / "grey", 3, channels=1)
    with pytest.raises(DataError, match="is L but the real images are RGB"):
        build_augmented(tiny_demo, [grey], tmp_path / "a")
    other_class = synthetic_folder(tmp_path / "cls", 3, class_name="nevus")
    with pytest.raises(DataError, match="synthetic class 'nevus' is not a class"):
        build_augmented(tiny_demo, [other_class], tmp_path / "a")
    assert not (tmp_path / "a").exists()
    build_augmented(tiny_demo, [synthetic], tmp_path / "a", num_synthetic=2)
    with pytest.raises(UserError, match="already exists"):
        build_augmented(tiny_demo, [synthetic], tmp_path / "a", num_synthetic=3)
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(UserError, match="not made by build_augmented"):
        build_augmented(tiny_demo, [synthetic], mine, overwrite=True)


def test_script_prints_the_composition(tiny_demo, synthetic, tmp_path, capsys):
    assert build_main(["--baseline", str(tiny_demo), "--synthetic", str(synthetic), "--output_dir", str(tmp_path / "a"),
                       "--target_ratio", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "| train | malignant | 15 | 5 | 20 |" in out and "2.0:1 before, 1.5:1 after" in out


def test_a_size_difference_is_noted_not_refused(tiny_demo, tmp_path):
    big = synthetic_folder(tmp_path / "big", 3, image_size=64)
    composition = build_augmented(tiny_demo, [big], tmp_path / "a")
    assert composition["notes"][0] == ("synthetic images are 64x64 px, real ones 32x32: train classifiers at "
                                       "data.image_size = 64, the GAN's size (it learned upsampled real images)")
    records, total = demo_records(seed=0, image_size=64, num_train=45, imbalance=2)   # real images above the GAN's
    write_dataset(records, tmp_path / "real_64", total=total)                           # size: both downsampled
    small = synthetic_folder(tmp_path / "small", 3, image_size=32)
    assert build_augmented(tmp_path / "real_64", [small], tmp_path / "b")["notes"][0].endswith("data.image_size <= 32")
    assert composition["notes"][1].startswith("only 3 synthetic 'malignant' image(s) beside 15 real ones (20 %)")
    assert "Note: synthetic images are 64x64" in (tmp_path / "a" / "composition.md").read_text()


def test_real_fraction_replaces_real_minority_images_with_synthetic(tiny_demo, synthetic, tmp_path):
    composition = build_augmented(tiny_demo, [synthetic], tmp_path / "a", num_synthetic=10, real_fraction=1 / 3)
    assert composition["counts"]["train"]["malignant"] == {"real": 5, "synthetic": 10}
    assert composition["counts"]["train"]["benign"]["real"] == 30
    other = build_augmented(tiny_demo, [synthetic], tmp_path / "b", num_synthetic=1)
    assert composition["counts"]["val"] == other["counts"]["val"]


def test_synthetic_per_real_gives_every_class_the_same_share(tiny_demo, tmp_path):
    benign = synthetic_folder(tmp_path / "benign_gan", 20, class_name="benign")
    malignant = synthetic_folder(tmp_path / "malignant_gan", 10, seed=1)
    composition = build_augmented(tiny_demo, [malignant, benign], tmp_path / "a", synthetic_per_real=0.5)
    train = composition["counts"]["train"]
    assert train["benign"] == {"real": 30, "synthetic": 15} and train["malignant"] == {"real": 15, "synthetic": 8}
    assert composition["train_ratio_after"] == pytest.approx(composition["train_ratio_before"], rel=0.05)


def test_real_images_of_many_sizes_are_reported_as_a_range_not_as_the_first_one(tmp_path):
    """A folder of 184 sizes was reported as '630x630' (its first image): the note now gives the range."""
    from training.data.processed import Record, write_dataset

    rng = np.random.default_rng(0)
    records = [Record(split, c, f"{c}_{i}", rng.integers(0, 256, (side, side), dtype=np.uint8))
               for split in ("train", "val", "test") for c in ("a", "b") for i, side in enumerate((40, 48, 56))]
    write_dataset(records, tmp_path / "mixed")
    pool = synthetic_folder(tmp_path / "pool", 20, image_size=32, class_name="a", channels=1)
    composition = build_augmented(tmp_path / "mixed", [pool], tmp_path / "out", num_synthetic=20, force=True)
    assert composition["notes"] == ["synthetic images are 32x32 px, real ones 3 sizes, width 40-56 px, height 40-56 px, "
                                    "smallest side 40 px: train classifiers at data.image_size <= 32"]


def test_few_synthetic_images_are_named_as_too_few_to_matter():
    from training.data.augmented_set import few_synthetic_note

    assert "only 3 synthetic 'healthy' image(s) beside 72 real ones (4 %)" in few_synthetic_note("healthy", 3, 72)
    assert few_synthetic_note("healthy", 33, 72) is None         # target ratio 1.0 on 105 : 72
    assert few_synthetic_note("rare", 9, 20) is not None         # under the 10-image floor


def test_a_huge_synthetic_per_real_is_one_line(tiny_demo, synthetic, tmp_path, capsys):
    code = run_cli(build_main, ["--baseline", str(tiny_demo), "--synthetic", str(synthetic), "--output_dir",
                                str(tmp_path / "a"), "--synthetic_per_real", "1e308"])
    refused(capsys, code, "--synthetic_per_real", "hold 40")
    assert not (tmp_path / "a").exists()


def test_a_full_disk_names_the_destination_not_the_source(tiny_demo, synthetic, tmp_path, monkeypatch, capsys):
    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link", str(src), str(dst))

    def full(src, dst):             # as shutil's sendfile copy reports a full disk: source first, destination second
        raise OSError(errno.ENOSPC, "No space left on device", str(src), str(dst))

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(shutil, "copy2", full)
    out = tmp_path / "augmented"
    line = refused(capsys, run_cli(build_main, ["--baseline", str(tiny_demo), "--synthetic", str(synthetic),
                                                "--output_dir", str(out)]), "No space left on device")
    assert f"cannot write {out}{os.sep}" in line and str(tiny_demo) not in line and "staging" not in line
    assert list(tmp_path.iterdir()) == []            # nothing half-built left beside it
