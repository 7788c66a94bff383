"""Selecting the best share of a synthetic pool: ranking, near-copies, the new folder, refusals, the script."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.classify.checkpoint import save_classifier
from training.classify.config import ClassifierConfig
from training.classify.networks import build_classifier
from training.core.config import build
from training.core.errors import UserError, run_cli
from training.data.augmented_set import build_augmented
from training.data.images import encode_png, pixel_sha256, read_image
from training.data.processed import write_dataset
from training.data.sources.demo import demo_records
from training.data.synthetic_folder import SYNTHETIC_MANIFEST, read_synthetic, write_synthetic_manifest
from training.select_samples import main as select_main
from training.synthesis import sampling, selection

CPU = torch.device("cpu")
NUM_LIKE_REAL, NUM_NOISE = 10, 6
COPY_FILE = f"synthetic_malignant_{NUM_LIKE_REAL + NUM_NOISE:06d}.png"     # the last pool image


def malignant_train(seed: int) -> list[np.ndarray]:
    records, _ = demo_records(seed=seed, image_size=16, num_train=60, imbalance=2)
    return [r.pixels for r in records if r.class_name == "malignant" and r.split == "train"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A 16 px processed demo dataset: train 40 benign / 20 malignant."""
    records, total = demo_records(seed=0, image_size=16, num_train=60, imbalance=2)
    out = tmp_path_factory.mktemp("data") / "demo16"
    write_dataset(records, out, total=total)
    return out


@pytest.fixture(scope="module")
def pool(dataset, tmp_path_factory) -> Path:
    """A generated-looking pool: malignant images of another draw, noise, and one copy of a training image."""
    noise = np.random.default_rng(0).integers(0, 256, (NUM_NOISE, 16, 16, 3), dtype=np.uint8)
    copy = read_image(sorted((dataset / "train" / "malignant").glob("*.png"))[0])
    images = [*malignant_train(1)[:NUM_LIKE_REAL], *noise, copy]
    folder = tmp_path_factory.mktemp("synthetic") / "pool"
    folder.mkdir()
    records = {}
    for i, pixels in enumerate(images):
        name = f"synthetic_malignant_{i:06d}.png"
        (folder / name).write_bytes(encode_png(pixels))
        records[i] = {"file": name, "index": i, "class": "malignant", "sha256": pixel_sha256(pixels),
                      "generator": "g.pth", "seed": 1000 + i, "created_utc": "2024-01-01T00:00:00+00:00"}
    write_synthetic_manifest(folder, records)
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")      # one domain encoder for the whole module


def select(pool: Path, dataset: Path, out: Path, keep: int, cache: Path, **kwargs) -> dict:
    return selection.select_synthetic(pool, dataset / "train" / "malignant", out, keep, cache_dir=cache,
                                      encoder_epochs=1, device=CPU, **kwargs)


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / SYNTHETIC_MANIFEST).read_text().splitlines()]


def folder_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def by_pool_file(summary: dict) -> dict[str, dict]:
    return {image["pool_file"]: image for image in summary["images"]}


def test_keeps_the_best_in_rank_order_reproducibly_and_leaves_the_pool_alone(pool, dataset, cache, tmp_path):
    before = folder_hashes(pool)
    summary = select(pool, dataset, tmp_path / "a", 5, cache)
    select(pool, dataset, tmp_path / "b", 5, cache)
    assert folder_hashes(pool) == before                                   # nothing written, linked or added
    records = manifest(tmp_path / "a")
    assert records == manifest(tmp_path / "b")                             # no timestamps of the run in it
    assert [r["rank"] for r in records] == [r["index"] for r in records] == list(range(5))
    scores = [r["score"] for r in records]
    assert scores == sorted(scores, reverse=True) and {r["score_name"] for r in records} == {"realism"}
    # The kept are the 5 best of those not dropped, and the threshold is the last kept one's score.
    candidates = [image for image in summary["images"] if image["fate"] != selection.NEAR_COPY]
    best = sorted(candidates, key=lambda image: (-image["score"], image["pool_index"]))[:5]
    assert [r["pool_file"] for r in records] == [image["pool_file"] for image in best]
    assert summary["score_threshold"] == scores[-1] and summary["kept"] == 5
    assert sum(image["fate"] == selection.KEPT for image in summary["images"]) == 5
    for r in records:                        # the pool's pixels and record, renamed by rank
        assert r["file"] == f"synthetic_malignant_{r['rank']:06d}.png" and r["seed"] == 1000 + r["pool_index"]
        assert pixel_sha256(read_image(tmp_path / "a" / r["file"])) == r["sha256"]
        assert r["pool_file"] == f"synthetic_malignant_{r['pool_index']:06d}.png"
    # A consumer taking the folder's images in order takes the best first.
    assert [image.path.name for image in read_synthetic([tmp_path / "a"])[0]] == [r["file"] for r in records]
    saved = json.loads((tmp_path / "a" / selection.SELECTION).read_text())
    assert saved["pool_size"] == len(before) - 1 and len(saved["images"]) == saved["pool_size"]
    assert (tmp_path / "a" / selection.SELECTION_HISTOGRAM).is_file() and Path(saved["domain_encoder"]).parent == cache


def test_a_copy_of_a_training_image_is_dropped_and_realism_ranks_real_above_noise(pool, dataset, cache, tmp_path):
    summary = select(pool, dataset, tmp_path / "out", 3, cache)
    images = by_pool_file(summary)
    assert images[COPY_FILE]["fate"] == selection.NEAR_COPY and images[COPY_FILE]["near_copy"] == "exact"
    assert COPY_FILE not in {r["pool_file"] for r in manifest(tmp_path / "out")}
    noise = [images[f"synthetic_malignant_{i:06d}.png"]["score"] for i in range(NUM_LIKE_REAL, NUM_LIKE_REAL + NUM_NOISE)]
    like_real = [images[f"synthetic_malignant_{i:06d}.png"]["score"] for i in range(NUM_LIKE_REAL)]
    assert np.median(like_real) > max(noise)
    assert all(r["pool_index"] < NUM_LIKE_REAL for r in manifest(tmp_path / "out"))
    kept = select(pool, dataset, tmp_path / "with_copies", len(images), cache, drop_near_copies=False)
    assert kept["near_copies_dropped"] == 0 and by_pool_file(kept)[COPY_FILE]["fate"] == selection.KEPT


def test_refusals(pool, dataset, cache, tmp_path):
    usable = len(manifest(pool))
    with pytest.raises(UserError, match=rf"--keep {usable} is more than the {usable - 1} images left .* 1 near-copies"):
        select(pool, dataset, tmp_path / "out", usable, cache)
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="overlaps"):
        select(pool, dataset, pool / "best", 2, cache)
    with pytest.raises(UserError, match="overlaps"):
        select(pool, dataset, dataset / "train" / "malignant" / "best", 2, cache)
    with pytest.raises(UserError, match="unknown selection score 'sharpness'"):
        select(pool, dataset, tmp_path / "out", 2, cache, score="sharpness")
    with pytest.raises(UserError, match="--filter_classifier"):
        select(pool, dataset, tmp_path / "out", 2, cache, score="classifier")
    with pytest.raises(UserError, match="'benign' class"):
        selection.select_synthetic(pool, dataset / "train" / "benign", tmp_path / "out", 2, cache_dir=cache,
                                   encoder_epochs=1)
    select(pool, dataset, tmp_path / "out", 2, cache)
    with pytest.raises(UserError, match="already exists"):
        select(pool, dataset, tmp_path / "out", 3, cache)
    select(pool, dataset, tmp_path / "out", 3, cache, overwrite=True)
    assert len(manifest(tmp_path / "out")) == 3 and len(list((tmp_path / "out").glob("synthetic_*.png"))) == 3
    (tmp_path / "mine").mkdir()
    with pytest.raises(UserError, match="not made by select_samples.py"):
        select(pool, dataset, tmp_path / "mine", 2, cache, overwrite=True)


def test_classifier_score_is_the_filters_confidence(pool, dataset, cache, tmp_path):
    raw = {"data": {"train_dir": str(dataset / "train"), "val_dir": str(dataset / "val"),
                    "test_dir": str(dataset / "test"), "image_size": 16},
           "model": {"arch": "mlp", "width": 4}, "output": {"name": "c", "results_dir": str(tmp_path)}}
    config = build(ClassifierConfig, raw, "test")
    torch.manual_seed(0)         # untrained: the wiring, not the classifier, is under test
    model = build_classifier(config.model, 3, 16, 2, load_pretrained=False)
    path = tmp_path / "best_model.pth"
    save_classifier(path, model, config, ["benign", "malignant"], 1, threshold=0.5, seed=0, best_epoch=0)
    summary = select(pool, dataset, tmp_path / "out", 4, cache, score="classifier", classifier=path)
    files = [image["pool_file"] for image in summary["images"]]
    pixels = np.stack([read_image(pool / name) for name in files])
    expected = sampling.classifier_confidence(path, "malignant", CPU)(pixels)
    np.testing.assert_allclose([image["score"] for image in summary["images"]], expected, rtol=1e-6)
    assert {r["score_name"] for r in manifest(tmp_path / "out")} == {"classifier"}
    # Without the near-copy rule the classifier score needs no feature encoder (nor a processed dataset).
    loose = select(pool, dataset, tmp_path / "loose", 4, cache, score="classifier", classifier=path, drop_near_copies=False)
    assert loose["domain_encoder"] is None


def test_the_best_are_what_build_augmented_takes(pool, dataset, cache, tmp_path):
    select(pool, dataset, tmp_path / "best", 4, cache)
    build_augmented(dataset, [tmp_path / "best"], tmp_path / "augmented", num_synthetic=2)
    taken = sorted(p.name for p in (tmp_path / "augmented" / "train" / "malignant").glob("synthetic_*.png"))
    assert taken == [f"synthetic_malignant_{rank:06d}.png" for rank in range(2)]


def reference_realism(real: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """The paper's definition, written out with loops."""
    radii = np.array([np.sort(np.linalg.norm(real - x, axis=1))[k] for x in real])
    central = [i for i in range(len(real)) if radii[i] <= np.median(radii)]
    return np.array([max(radii[i] / (np.linalg.norm(q - real[i]) + selection.REALISM_EPS) for i in central)
                     for q in query])


def test_realism_score_matches_the_definition():
    rng = np.random.default_rng(0)
    real, query = rng.normal(size=(40, 8)), rng.normal(size=(25, 8)) * 1.5
    scores = selection.realism_score(real, query, chunk_rows=7)
    np.testing.assert_allclose(scores, reference_realism(real, query, 3), rtol=1e-9)
    radii = selection.knn_radii(real)
    central = real[radii <= np.median(radii)]
    assert selection.realism_score(real, central).min() > 1e3          # on top of its own sphere's centre
    assert selection.realism_score(real, real[:1] + 100).max() < 0.1   # far away: outside every sphere


def test_ties_go_to_the_lower_pool_index():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1])
    order = selection.rank_order(scores, np.array([True, True, True, False, True]))
    assert order.tolist() == [1, 0, 2, 4]


def test_script_writes_the_folder_and_reports_one_line_errors(pool, dataset, cache, tmp_path, capsys):
    args = ["--pool_dir", str(pool), "--real_dir", str(dataset / "train" / "malignant"), "--cache_dir", str(cache),
            "--encoder_epochs", "1", "--device", "cpu"]
    assert run_cli(select_main, [*args, "--output_dir", str(tmp_path / "out"), "--keep", "3"]) == 0
    assert "kept 3 of 17 pool images by realism score" in capsys.readouterr().out
    assert len(manifest(tmp_path / "out")) == 3
    assert run_cli(select_main, [*args, "--output_dir", str(tmp_path / "more"), "--keep", "99"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --keep 99 is more than the 17 images of the pool")
