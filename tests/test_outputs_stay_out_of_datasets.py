"""No writer puts anything inside a dataset, and no user file is replaced unasked.

Every refusal is one `error:` line with exit code 2, and the dataset's files are exactly as before.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from quality.run_qa import main as qa_main
from tests.helpers import REPO_ROOT, refused, synthetic_folder, tiny_gan_raw, write_yaml
from tests.training.analysis.test_comparison import three_runs
from tests.training.synthesis.test_sampling import make_generator
from training.build_augmented import main as augment_main
from training.compare import main as compare_main
from training.core.errors import UserError, run_cli
from training.core.outputs import refuse_output_inside_dataset
from training.data import synthetic_folder as layout
from training.data.processed import write_dataset
from training.data.sources.demo import demo_records
from training.deploy import graph_export as export_module
from training.export import main as export_main
from training.generate_samples import main as generate_main
from training.prepare_data import main as prepare_main
from training.synthesis import sampling
from training.train_classifier import main as classifier_main
from training.train_dcgan import main as train_main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A processed dataset of this module's own (refusals are tested against it; none may touch it)."""
    records, total = demo_records(seed=1, image_size=32, num_train=30, imbalance=2)
    out = tmp_path_factory.mktemp("data") / "demo"
    write_dataset(records, out, total=total)
    return out


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


# --- the rule ----------------------------------------------------------------------------------------------

def test_the_rule_refuses_splits_datasets_and_links_into_them(dataset, tmp_path):
    for inside, words in [(dataset / "test" / "malignant", "'test' split of"), (dataset / "val", "'val' split of"),
                          (dataset / "test" / "new" / "deeper", "'test' split of"),
                          (dataset / "train" / "malignant", "processed dataset"), (dataset, "processed dataset"),
                          (dataset / "report", "processed dataset")]:
        with pytest.raises(UserError, match=words):
            refuse_output_inside_dataset(inside, "--output_dir")
    os.symlink(dataset / "test", tmp_path / "innocent")
    with pytest.raises(UserError, match="'test' split of"):
        refuse_output_inside_dataset(tmp_path / "innocent" / "malignant", "--output_dir")
    by_hand = tmp_path / "mine"                     # a dataset made by hand: splits, no manifest
    for split in ("train", "test"):
        (by_hand / split / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="'test' split of"):
        refuse_output_inside_dataset(by_hand / "test" / "a", "--output_dir")
    synthetic = tmp_path / "synthetic" / "run"      # our synthetic folders have their own manifest.jsonl
    synthetic.mkdir(parents=True)
    (synthetic / layout.SYNTHETIC_MANIFEST).write_text("")
    for fine in (tmp_path / "results" / "qa", synthetic, tmp_path / "results" / "demo_augmented"):
        refuse_output_inside_dataset(fine, "--output_dir")
    refuse_output_inside_dataset(dataset, "--output_dir", is_dataset=True)    # a dataset rebuilt as a whole
    with pytest.raises(UserError, match="'val' split of"):
        refuse_output_inside_dataset(dataset / "val" / "aug", "--output_dir", is_dataset=True)


# --- every writer ------------------------------------------------------------------------------------------

def test_run_qa_writes_no_report_into_a_test_split(dataset, tmp_path, capsys):
    before = snapshot(dataset)
    common = ["--real", str(dataset / "train" / "malignant"), "--synthetic", str(dataset / "train" / "benign")]
    refused(capsys, run_cli(qa_main, [*common, "--output_dir", str(dataset / "test" / "malignant")]),
            "--output_dir", "'test' split of")
    refused(capsys, run_cli(qa_main, [*common, "--output_dir", str(tmp_path / "qa"),
                                      "--cache_dir", str(dataset / "val" / "cache")]), "--cache_dir", "'val' split of")
    assert snapshot(dataset) == before and not (tmp_path / "qa").exists()


def test_compare_writes_no_roc_curves_into_a_test_split(dataset, tmp_path, capsys):
    runs = three_runs(tmp_path / "runs")
    before = snapshot(dataset)
    code = run_cli(compare_main, [*map(str, runs), "--output_dir", str(dataset / "test" / "malignant"),
                                  "--bootstrap", "50"])
    refused(capsys, code, "'test' split of")
    assert snapshot(dataset) == before


def test_compare_caps_the_bootstrap(tmp_path, capsys):
    runs = three_runs(tmp_path / "runs")
    code = run_cli(compare_main, [*map(str, runs), "--output_dir", str(tmp_path / "c"), "--bootstrap", str(10 ** 9)])
    refused(capsys, code, "--bootstrap must be between 1 and 100,000")
    assert not (tmp_path / "c").exists()


def test_export_writes_no_model_into_a_test_split(dataset, tmp_path, capsys):
    ckpt = make_generator(tmp_path / "g.pth", 0)
    before = snapshot(dataset)
    code = run_cli(export_main, ["--checkpoint", str(ckpt), "--format", "torchscript",
                                 "--out", str(dataset / "test" / "malignant" / "g.pt")])
    refused(capsys, code, "--out", "'test' split of")
    assert snapshot(dataset) == before


def test_prepare_data_builds_no_dataset_inside_a_split(dataset, capsys):
    before = snapshot(dataset)
    code = run_cli(prepare_main, ["--source", "demo", "--output_dir", str(dataset / "val"), "--image_size", "16",
                                  "--demo_num_train", "20"])
    refused(capsys, code, "--output_dir", "'val' split of")
    code = run_cli(prepare_main, ["--source", "demo", "--output_dir", str(dataset), "--name", "nested",
                                  "--image_size", "16", "--demo_num_train", "20"])
    refused(capsys, code, "processed dataset")
    assert snapshot(dataset) == before


def test_train_dcgan_puts_no_samples_into_a_test_split(dataset, tmp_path, capsys):
    before = snapshot(dataset)
    config = write_yaml(tmp_path / "gan.yaml", tiny_gan_raw(dataset, tmp_path, train={"epochs": 1}))
    code = run_cli(train_main, ["--config", str(config), f"output.synthetic_dir={dataset / 'test'}",
                                "output.name=malignant"])
    refused(capsys, code, "output.synthetic_dir", "'test' split of")
    code = run_cli(train_main, ["--config", str(config), f"output.results_dir={dataset / 'train'}"])
    refused(capsys, code, "output.results_dir", "processed dataset")
    assert snapshot(dataset) == before
    assert not (tmp_path / "results").exists() and not (tmp_path / "synthetic").exists()


def test_train_classifier_keeps_its_runs_out_of_a_dataset(dataset, capsys):
    before = snapshot(dataset)
    code = run_cli(classifier_main, ["--config", str(REPO_ROOT / "experiments" / "classifier_baseline.yaml"), "--dry_run",
                                     *(f"data.{s}_dir={dataset / s}" for s in ("train", "val", "test")),
                                     f"output.results_dir={dataset / 'val'}"])
    refused(capsys, code, "output.results_dir", "'val' split of")
    assert snapshot(dataset) == before


def test_build_augmented_builds_no_dataset_inside_a_split(dataset, tmp_path, capsys):
    synthetic = synthetic_folder(tmp_path / "synthetic", 4)
    other = tmp_path / "other"
    write_dataset(demo_records(seed=2, image_size=32, num_train=20, imbalance=2)[0], other)
    before = snapshot(dataset)
    code = run_cli(augment_main, ["--baseline", str(other), "--synthetic", str(synthetic), "--num_synthetic", "2",
                                  "--output_dir", str(dataset / "test" / "augmented")])
    refused(capsys, code, "'test' split of")
    assert snapshot(dataset) == before


def test_a_code_sweep_goes_into_no_test_split(dataset, tmp_path, capsys):
    ckpt = make_generator(tmp_path / "info.pth", 0, info_categories=3)
    before = snapshot(dataset)
    code = run_cli(generate_main, ["--checkpoint", str(ckpt), "--sweep_code", "cat",
                                   "--output_dir", str(dataset / "test" / "malignant")])
    refused(capsys, code, "'test' split of")
    assert snapshot(dataset) == before


# --- nothing of the user's is replaced -----------------------------------------------------------

def test_export_never_replaces_an_existing_file_unasked_nor_its_own_checkpoint(tmp_path, capsys, monkeypatch):
    ckpt = make_generator(tmp_path / "g.pth", 0)
    original = ckpt.read_bytes()
    args = ["--checkpoint", str(ckpt), "--format", "torchscript"]
    for flags in ([], ["--overwrite"]):
        refused(capsys, run_cli(export_main, [*args, "--out", str(ckpt), *flags]), "would replace the checkpoint")
    assert ckpt.read_bytes() == original

    mine = tmp_path / "model.pt"
    mine.write_bytes(b"the user's own model")
    refused(capsys, run_cli(export_main, [*args, "--out", str(mine)]), "already exists", "--overwrite")
    assert mine.read_bytes() == b"the user's own model" and not (tmp_path / "model.pt.json").exists()

    # A check that fails keeps the existing file as it was, even with --overwrite.
    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)
    refused(capsys, run_cli(export_main, [*args, "--out", str(mine), "--overwrite"]), "not kept", "unchanged")
    assert mine.read_bytes() == b"the user's own model"
    monkeypatch.undo()
    assert run_cli(export_main, [*args, "--out", str(mine), "--overwrite"]) == 0
    assert mine.read_bytes() != b"the user's own model" and (tmp_path / "model.pt.json").is_file()
    assert ckpt.read_bytes() == original

    # A checkpoint named like the default output (<stem>.pt) is not replaced by its own export either.
    named_pt = tmp_path / "other.pt"
    named_pt.write_bytes(original)
    refused(capsys, run_cli(export_main, ["--checkpoint", str(named_pt), "--format", "torchscript", "--overwrite"]),
            "would replace the checkpoint")
    assert named_pt.read_bytes() == original


def test_overwrite_replaces_no_png_that_only_looks_like_ours(tmp_path, capsys):
    ckpt = make_generator(tmp_path / "g.pth", 0)
    folder = tmp_path / "photos"
    folder.mkdir()
    users = folder / "synthetic_malignant_000000.png"
    users.write_bytes(b"\x89PNG a user's image that happens to have our name")
    args = ["--checkpoint", str(ckpt), "--num_samples", "2", "--output_dir", str(folder), "--yes", "--workers", "1"]
    refused(capsys, run_cli(generate_main, [*args, "--overwrite"]), "no manifest.jsonl", "did not write them")
    generators = sampling.load_generators([ckpt], torch.device("cpu"))
    with pytest.raises(UserError, match="no manifest.jsonl"):
        sampling.generate(generators, [1.0], 2, 0, folder, overwrite=True, workers=1)
    with pytest.raises(UserError, match="no manifest.jsonl"):
        layout.clear_folder(folder)                      # the torchrun path clears the folder itself
    assert users.read_bytes() == b"\x89PNG a user's image that happens to have our name"
    assert sorted(p.name for p in folder.iterdir()) == [users.name]

    ours = tmp_path / "ours"                             # a folder we made is still ours to replace
    assert run_cli(generate_main, [*args[:-5], "--output_dir", str(ours), "--yes", "--workers", "1"]) == 0
    assert run_cli(generate_main, [*args[:-5], "--output_dir", str(ours), "--yes", "--workers", "1", "--seed", "3",
                                   "--overwrite"]) == 0


# --- unbounded numbers: capped, with the limit in the message -------------------------------------------------

def test_worker_and_image_counts_are_capped(tmp_path, capsys):
    ckpt = make_generator(tmp_path / "g.pth", 0)
    out = tmp_path / "out"
    code = run_cli(generate_main, ["--checkpoint", str(ckpt), "--num_samples", "4", "--workers", "100000",
                                   "--output_dir", str(out)])
    refused(capsys, code, "--workers must be between 1 and 256")
    generators = sampling.load_generators([ckpt], torch.device("cpu"))
    with pytest.raises(UserError, match="from 0 to 1,000,000"):      # e.g. the pipeline's synthesis.num_synthetic
        sampling.generate(generators, [1.0], 10 ** 8, 0, out, workers=1)
    assert not out.exists()
