"""Cross-validated studies (`evaluation.folds`): the folds, each fold's dataset, a tiny 2-fold study end to end
(it resumes, and its comparison tests every real image once), and the refusals before anything trains.
The studies here stub QA (conftest.qa_calls); test_orchestrate's single-split study runs the real one."""

import csv
import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import refused, write_yaml
from tests.training.study.test_orchestrate import tiny_study
from training.analysis.comparison import compare_runs
from training.core.config import build
from training.core.errors import UserError, run_cli
from training.data.images import pixel_sha256, read_image
from training.data.processed import Record, read_splits_manifest, write_dataset
from training.data.sources.demo import demo_records
from training.pipeline import main as pipeline_main
from training.study.config import PipelineConfig
from training.study.folds import CrossValidation, validation_rows, write_fold
from training.study.stage_record import dataset_hash


def config_with(folds: int, seed: int = 0) -> PipelineConfig:
    return build(PipelineConfig, {"evaluation": {"folds": folds}, "data": {"seed": seed}}, "test.yaml")


@pytest.fixture(scope="module")
def with_copies(tmp_path_factory) -> Path:
    """The tiny demo data, prepared, with three training images copied twice more under other names."""
    records, total = demo_records(seed=0, image_size=32, num_train=45, imbalance=2)
    records = list(records)
    train = [r for r in records if r.split == "train"]
    copies = [Record(r.split, r.class_name, f"{r.file_stem}_copy{n}", r.pixels) for r in train[::20] for n in (1, 2)]
    out = tmp_path_factory.mktemp("copies") / "tiny"
    write_dataset([*records, *copies], out, total=total + len(copies))
    return out


def test_folds_are_stratified_disjoint_cover_every_image_once_and_keep_identical_pixels_together(with_copies):
    cv = CrossValidation.of(with_copies, config_with(3))
    rows = cv.rows
    assert len(cv.test_fold) == len(rows) and set(cv.test_fold) == {0, 1, 2}
    folds_of_pixels = defaultdict(set)
    for row, fold in zip(rows, cv.test_fold):
        folds_of_pixels[row["sha256"]].add(fold)
    assert max(len(f) for f in folds_of_pixels.values()) == 1 and max(Counter(r["sha256"] for r in rows).values()) == 3
    distinct = Counter(c for c, _ in {(r["class"], r["sha256"]) for r in rows})
    tested = Counter()
    for k in range(3):
        split = defaultdict(set)
        for row in cv.fold_rows(k):
            split[row["split"]].add(row["sha256"])
        assert not (split["train"] & split["val"]) and not (split["train"] | split["val"]) & split["test"]
        per_class = Counter(r["class"] for r in cv.fold_rows(k) if r["split"] == "test")
        for class_name, n in distinct.items():          # stratified: a third of each class, give or take a group
            assert abs(per_class[class_name] - n / 3) <= 2
        tested.update(per_class)
        counts = cv.counts(k)
        train, val = (sum(counts[s].values()) for s in ("train", "val"))
        assert abs(val / (train + val) - cv.val_share) < 0.05      # the inner validation split at the prepared share
    assert tested == distinct == Counter(cv.pooled_test())      # every image tested exactly once
    again, other_seed = CrossValidation.of(with_copies, config_with(3)), CrossValidation.of(with_copies, config_with(3, 1))
    assert again.test_fold == cv.test_fold and other_seed.test_fold != cv.test_fold



def test_the_inner_validation_split_keeps_copies_together_without_overshooting_its_share():
    # Class a: 5 copies of one image + 5 distinct images; class b: a single group of 4 copies.
    rows = tuple([{"class": "a", "sha256": "copy"}] * 5 + [{"class": "a", "sha256": f"a{i}"} for i in range(5)]
                 + [{"class": "b", "sha256": "b"}] * 4)
    for seed in range(20):      # a: 2 of its 10 (never the 5 copies); b: nothing, its only group is all of it
        val = validation_rows(rows, list(range(len(rows))), 0.2, np.random.default_rng(seed))
        assert len(val) == 2 and val <= set(range(5, 10)), (seed, val)
    # Every group larger than the share (1 of 5 images): the smallest group goes.
    pairs = tuple([{"class": "c", "sha256": "two"}] * 2 + [{"class": "c", "sha256": "three"}] * 3)
    assert validation_rows(pairs, list(range(5)), 0.2, np.random.default_rng(0)) == {0, 1}

def test_a_folds_dataset_is_written_from_the_prepared_images_which_stay_untouched(with_copies, tmp_path):
    before = dataset_hash(with_copies)
    cv = CrossValidation.of(with_copies, config_with(2))
    out = write_fold(cv, 1, tmp_path / "tiny_fold_2")
    rows = read_splits_manifest(out)
    expected = Counter((r["split"], r["class"], r["sha256"]) for r in cv.fold_rows(1))
    assert Counter((r["split"], r["class"], r["sha256"]) for r in rows) == expected
    assert all(pixel_sha256(read_image(out / r["path"])) == r["sha256"] for r in rows)
    assert json.loads((out / "dataset.json").read_text())["cross_validation"]["fold"] == 2
    assert dataset_hash(with_copies) == before
    with pytest.raises(UserError, match="inside the 'test' split"):
        write_fold(cv, 0, with_copies / "test" / "fold")


def cross_validated(path: Path, source: Path, work: Path, folds: int = 2) -> Path:
    """tiny_study's 1-epoch pipeline (QA gate off), cross-validated over `folds` folds."""
    raw = yaml.safe_load(tiny_study(path, source, work, qa_gate="off").read_text())
    return write_yaml(path, {**raw, "evaluation": {"folds": folds}})


def test_a_two_fold_study_runs_resumes_and_tests_every_real_image_once(tiny_demo, tmp_path, capsys, qa_calls):
    config = cross_validated(tmp_path / "cv.yaml", tiny_demo, tmp_path)
    assert pipeline_main(["--config", str(config), "--dry_run"]) == 0
    planned = capsys.readouterr().out
    assert "cross-validation: 2 folds" in planned and "pooled test: benign 44, malignant 23" in planned
    assert "minimum detectable effect: none (23 'malignant' test images pooled over 2 folds, 1 seeds" in planned
    assert not (tmp_path / "processed").exists()                                 # the dry run wrote nothing

    assert pipeline_main(["--config", str(config)]) == 0
    first = capsys.readouterr().out
    per_fold = ("data", "gan", "synthesis", "qa", "assemble", "classifier cv_fold_{k}_classifier_baseline",
                "classifier cv_fold_{k}_classifier_gan_augmented")
    for k in (1, 2):
        for stage in per_fold:
            assert f"[fold {k}/2 {stage.format(k=k)}" in first
        assert (tmp_path / "results" / "pipeline" / "cv" / f"fold_{k}" / "stages.json").is_file()
    assert first.count("] running") == 2 + 2 * len(per_fold) and "skipped" not in first       # prepare, compare
    # Each fold's synthetic images are judged against that fold's own training images.
    assert qa_calls == [tmp_path / "processed" / f"tiny_cv_fold_{k}" / "train" / "malignant" for k in (1, 2)]

    # Every real image of the prepared data is tested exactly once, by the fold whose models never saw it.
    prepared = {r["sha256"] for r in read_splits_manifest(tmp_path / "processed" / "tiny")}
    report = json.loads((tmp_path / "results" / "comparison" / "cv" / "comparison.json").read_text())
    assert report["test_set"]["images"] == len(prepared) and report["cross_validation"]["folds"] == 2
    for arm in report["cross_validation"]["per_fold"]["runs"]:
        tested = Counter()
        for fold_dir in arm["fold_dirs"]:
            with open(Path(fold_dir) / "seed_0" / "test_predictions.csv", newline="") as f:
                tested.update(row["sha256"] for row in csv.DictReader(f))
        assert set(tested) == prepared and set(tested.values()) == {1}
    # Each fold's number is what a comparison of that fold's runs alone gives.
    for k in range(2):
        dirs = [arm["fold_dirs"][k] for arm in report["cross_validation"]["per_fold"]["runs"]]
        alone, _ = compare_runs(dirs, tmp_path / f"fold_{k + 1}_alone")
        assert [arm["folds"][k]["mean"] for arm in report["cross_validation"]["per_fold"]["runs"]] == \
            [run["metrics"]["sensitivity_at_spec90"]["mean"] for run in alone["runs"]]
    text = (tmp_path / "results" / "comparison" / "cv" / "comparison.md").read_text()
    assert "Cross-validation: 2 folds" in text and "## The primary metric per fold" in text

    assert pipeline_main(["--config", str(config)]) == 0
    second = capsys.readouterr().out
    assert "running" not in second and second.count("up to date, skipped") == 2 + 2 * len(per_fold)


def test_bad_fold_counts_are_one_line_errors_before_anything_trains(tiny_demo, tmp_path, capsys):
    config = cross_validated(tmp_path / "cv.yaml", tiny_demo, tmp_path)
    for folds in (1, 11):
        refused(capsys, run_cli(pipeline_main, ["--config", str(config), f"evaluation.folds={folds}"]),
                "'evaluation.folds'", "out of range [2, 10]")
    few = tmp_path / "few"                           # 4 malignant images in all: 2 folds need 4, 3 folds 6
    shutil.copytree(tiny_demo, few, ignore=shutil.ignore_patterns("manifest.csv"))
    for split, kept in (("train", 2), ("val", 1), ("test", 1)):
        for path in sorted((few / split / "malignant").glob("*.png"))[kept:]:
            path.unlink()
    config = cross_validated(tmp_path / "few.yaml", few, tmp_path, folds=3)
    for dry in (["--dry_run"], []):                  # before prepare (estimated from the source), and after it
        line = refused(capsys, run_cli(pipeline_main, ["--config", str(config), *dry]), "'evaluation.folds' = 3",
                       "needs at least 6 distinct images of every class", "'malignant' has 4", "lower evaluation.folds")
        assert str(config) in line
    assert (tmp_path / "processed" / "tiny").is_dir()                            # prepared, and no further
    assert not (tmp_path / "results" / "checkpoints").exists() and not (tmp_path / "results" / "classifiers").exists()
    assert not list((tmp_path / "processed").glob("*fold*"))
    assert pipeline_main(["--config", str(config), "evaluation.folds=2", "--dry_run"]) == 0
