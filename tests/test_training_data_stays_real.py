"""Real (test) images never enter training as synthetic ones or through an edited
manifest.csv, and a classifier's train/val/test are distinct splits of one dataset with disjoint pixels.

Every refusal is one `error:` line with exit code 2 (or a DataError in-process), and nothing is written.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import refused, synthetic_folder, write_yaml
from training.build_augmented import main as augment_main
from training.classify.data import load_splits
from training.core.errors import DataError, run_cli
from training.data.images import pixel_sha256, read_image
from training.data.processed import read_splits_manifest
from training.pseudo_label import main as pseudo_main
from training.select_samples import main as select_main
from training.train_classifier import main as classifier_main


@pytest.fixture()
def dataset(tiny_demo, tmp_path) -> Path:
    """A private copy of the tiny demo dataset (tests edit its manifest)."""
    return Path(shutil.copytree(tiny_demo, tmp_path / "data" / "tiny"))


def rewrite_manifest(root: Path, edit) -> None:
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows = edit(rows)
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def forged_synthetic_folder(images: list[Path], out: Path) -> Path:
    """Real images copied into a folder with a manifest.jsonl that calls them synthetic (correct hashes)."""
    out.mkdir(parents=True)
    lines = []
    for i, path in enumerate(images):
        shutil.copy(path, out / f"synthetic_malignant_{i:06d}.png")
        lines.append({"file": f"synthetic_malignant_{i:06d}.png", "index": i, "class": "malignant",
                      "sha256": pixel_sha256(read_image(path))})
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return out


# --- 3. inputs that claim to be synthetic ---------------------------------------------------------------------

def test_pseudo_label_refuses_a_test_split_and_a_folder_without_our_manifest(dataset, tmp_path, capsys):
    before = sorted(p.name for p in (dataset / "test" / "malignant").iterdir())
    code = run_cli(pseudo_main, ["--synth_dir", str(dataset / "test" / "malignant"), "--model_path", "m.pth",
                                 "--output_dir", str(tmp_path / "labelled")])
    refused(capsys, code, "'test' split of", "not synthetic")
    plain = Path(shutil.copytree(dataset / "train" / "malignant", tmp_path / "plain"))
    code = run_cli(pseudo_main, ["--synth_dir", str(plain), "--model_path", "m.pth",
                                 "--output_dir", str(tmp_path / "labelled")])
    refused(capsys, code, "no manifest.jsonl")
    assert not (tmp_path / "labelled").exists()
    assert sorted(p.name for p in (dataset / "test" / "malignant").iterdir()) == before


def test_a_manifest_planted_in_a_test_split_does_not_make_its_images_synthetic(dataset, tmp_path, capsys):
    test_images = sorted((dataset / "test" / "malignant").glob("*.png"))
    planted = tmp_path / "planted"
    forged_synthetic_folder(test_images, planted)
    shutil.copy(planted / "manifest.jsonl", dataset / "test" / "malignant" / "manifest.jsonl")
    for i, path in enumerate(test_images):
        path.rename(path.with_name(f"synthetic_malignant_{i:06d}.png"))
    code = run_cli(augment_main, ["--baseline", str(dataset), "--synthetic", str(dataset / "test" / "malignant"),
                                  "--output_dir", str(tmp_path / "augmented"), "--num_synthetic", "2"])
    refused(capsys, code, "'test' split of", "not synthetic")
    code = run_cli(select_main, ["--pool_dir", str(dataset / "test" / "malignant"), "--real_dir",
                                 str(dataset / "train" / "malignant"), "--output_dir", str(tmp_path / "best"),
                                 "--keep", "2"])
    refused(capsys, code, "'test' split of")
    assert not (tmp_path / "augmented").exists() and not (tmp_path / "best").exists()


def test_select_samples_refuses_a_validation_split_as_the_real_images(dataset, tmp_path, capsys):
    pool = synthetic_folder(tmp_path / "pool", 4)
    code = run_cli(select_main, ["--pool_dir", str(pool), "--real_dir", str(dataset / "val" / "malignant"),
                                 "--output_dir", str(tmp_path / "best"), "--keep", "2"])
    refused(capsys, code, "'val' split")


def test_test_images_copied_out_as_synthetic_are_caught_by_their_pixels(tiny_demo, tmp_path):
    forged = forged_synthetic_folder(sorted((tiny_demo / "test" / "malignant").glob("*.png")), tmp_path / "forged")
    with pytest.raises(DataError, match="test split .* have the pixels of training images"):
        load_splits({s: tiny_demo / s for s in ("train", "val", "test")}, 32, 3, "malignant",
                    synthetic_dir=str(forged), show_progress=False)


def test_a_synthetic_file_replaced_by_another_image_is_refused(tiny_demo, tmp_path):
    synthetic = synthetic_folder(tmp_path / "gan", 3)
    shutil.copy(next((tiny_demo / "train" / "malignant").glob("*.png")), synthetic / "synthetic_malignant_000001.png")
    with pytest.raises(DataError, match="does not hold the pixels"):
        load_splits({s: tiny_demo / s for s in ("train", "val", "test")}, 32, 3, "malignant",
                    synthetic_dir=str(synthetic), show_progress=False)


@pytest.mark.parametrize("dirs, words", [
    ({"train_dir": "test"}, "same folder"),
    ({"val_dir": "test"}, "same folder"),
    ({"train_dir": "test/malignant"}, "one holds the other"),
    ({"val_dir": "train_copy"}, "not the 'val' split"),
])
def test_the_classifier_refuses_splits_that_are_not_distinct(dataset, tmp_path, capsys, dirs, words):
    shutil.copytree(dataset / "val", dataset / "train_copy")
    raw = {"data": {"train_dir": str(dataset / "train"), "val_dir": str(dataset / "val"),
                    "test_dir": str(dataset / "test"), "image_size": 32},
           "model": {"arch": "mlp", "width": 4}, "train": {"epochs": 1, "seeds": [0], "device": "cpu"},
           "output": {"name": "x", "results_dir": str(tmp_path / "results")}}
    raw["data"].update({k: str(dataset / v) for k, v in dirs.items()})
    code = run_cli(classifier_main, ["--config", str(write_yaml(tmp_path / "c.yaml", raw))])
    refused(capsys, code, words)
    assert not list((tmp_path / "results").rglob("summary.json"))


def test_the_classifier_refuses_splits_of_two_datasets_or_without_a_manifest(dataset, tiny_demo, tmp_path):
    dirs = {s: dataset / s for s in ("train", "val", "test")}
    with pytest.raises(DataError, match="different datasets"):
        load_splits({**dirs, "test": tiny_demo / "test"}, 32, 3, "malignant", show_progress=False)
    (dataset / "manifest.csv").unlink()
    with pytest.raises(DataError, match="nothing proves"):
        load_splits(dirs, 32, 3, "malignant", show_progress=False)


# --- 4. an edited manifest.csv --------------------------------------------------------------------------------

def test_a_class_name_that_climbs_out_is_refused_and_nothing_is_linked_outside(dataset, tmp_path, capsys):
    def climb(rows):
        rows[0]["class"] = "../../../../x"
        return rows
    rewrite_manifest(dataset, climb)
    synthetic = synthetic_folder(tmp_path / "gan", 3)
    outside = set(tmp_path.parent.rglob("*"))
    code = run_cli(augment_main, ["--baseline", str(dataset), "--synthetic", str(synthetic),
                                  "--output_dir", str(tmp_path / "augmented"), "--num_synthetic", "2"])
    line = refused(capsys, code, "manifest.csv line 2", "plain name")
    assert "nothing was written" not in line
    assert set(tmp_path.parent.rglob("*")) == outside


def test_test_files_listed_as_train_are_refused(dataset, tmp_path, capsys):
    def relabel(rows):
        for r in rows:
            if r["split"] == "test":
                r["split"] = "train"
        return rows
    rewrite_manifest(dataset, relabel)
    synthetic = synthetic_folder(tmp_path / "gan", 3)
    code = run_cli(augment_main, ["--baseline", str(dataset), "--synthetic", str(synthetic),
                                  "--output_dir", str(tmp_path / "augmented"), "--num_synthetic", "2"])
    refused(capsys, code, "says split='train'", "in test/")
    assert not (tmp_path / "augmented").exists()


@pytest.mark.parametrize("path", ["train/malignant/../../../outside.png", "/tmp/outside.png", "outside.png",
                                  "train/malignant/deeper/outside.png"])
def test_a_row_pointing_outside_the_dataset_is_refused(dataset, tmp_path, path):
    source = next((dataset / "train" / "malignant").glob("*.png"))
    shutil.copy(source, tmp_path / "outside.png")

    def point_out(rows):
        rows.append({**rows[0], "path": path, "split": "train", "class": "malignant",
                     "sha256": pixel_sha256(read_image(source))})
        return rows
    rewrite_manifest(dataset, point_out)
    with pytest.raises(DataError, match="not <split>/<class>/<file>"):
        read_splits_manifest(dataset)


def test_a_link_out_of_the_split_and_a_repeated_row_are_refused(dataset, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(next((dataset / "test" / "malignant").glob("*.png")), tmp_path / "elsewhere" / "x.png")
    (dataset / "train" / "linked").symlink_to(tmp_path / "elsewhere")
    rewrite_manifest(dataset, lambda rows: [*rows, {**rows[0], "path": "train/linked/x.png", "class": "linked"}])
    with pytest.raises(DataError, match="leads out of"):
        read_splits_manifest(dataset)
    rewrite_manifest(dataset, lambda rows: [*rows[:-1], rows[0]])
    with pytest.raises(DataError, match="a second time"):
        read_splits_manifest(dataset)
