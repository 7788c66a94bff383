import numpy as np
import pytest
from PIL import Image

from training.errors import DataError
from training.prepare_data import main as prepare_main
from training.processed import read_manifest
from training.sources.demo import render_lesion
from tests.helpers import random_images


def prepare(tmp_path, *args):
    return prepare_main(["--out", str(tmp_path / "processed"), *args])


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_same_seed_same_bytes_and_layout(tmp_path):
    for name in ("a", "b"):
        prepare(tmp_path, "--source", "demo", "--name", name, "--image-size", "32", "--demo-num-train", "33")
    a, b = tree_bytes(tmp_path / "processed" / "a"), tree_bytes(tmp_path / "processed" / "b")
    assert a == b
    rows = read_manifest(tmp_path / "processed" / "a")
    counts = {(r["split"], r["class"]) for r in rows}
    assert counts == {(s, c) for s in ("train", "val", "test") for c in ("benign", "malignant")}
    train = [r for r in rows if r["split"] == "train"]
    assert sum(r["class"] == "benign" for r in train) == 10 * sum(r["class"] == "malignant" for r in train)
    img = Image.open(tmp_path / "processed" / "a" / rows[0]["path"])
    assert img.size == (32, 32) and img.mode == "RGB"


def test_demo_malignant_lesions_hold_more_colours():
    """ABCD rule: malignant lesions mix 2-3 pigments, benign ones have one tone (on average)."""
    def chroma_spread(malignant):
        spreads = []
        for i in range(60):
            x = render_lesion(np.random.default_rng(i), 64, malignant).astype(float)
            lum = x.mean(axis=-1)
            lesion = lum < 0.8 * np.median(lum)            # lesion pixels are darker than the skin
            chroma = x[lesion] / lum[lesion][:, None]       # colour independent of brightness
            spreads.append(chroma.std(axis=0).mean())
        return np.mean(spreads)
    assert chroma_spread(True) > 1.3 * chroma_spread(False)


def test_npz_source_with_class_names_and_n1_labels(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = random_images(rng, n, size=28, channels=1)
        arrays[f"{split}_labels"] = (np.arange(n) % 3 == 0).astype(np.int64).reshape(n, 1)
    np.savez(tmp_path / "mini.npz", **arrays)
    prepare(tmp_path, "--source", str(tmp_path / "mini.npz"), "--class-names", "1=malignant,0=benign")
    out = tmp_path / "processed" / "mini"
    assert len(list((out / "train" / "malignant").glob("*.png"))) == 4
    assert len(list((out / "train" / "benign").glob("*.png"))) == 8
    first = np.asarray(Image.open(out / "train" / "malignant" / "train_000000.png"))
    assert first.shape == (28, 28) and np.array_equal(first, arrays["train_images"][0])


def test_npz_default_class_names_and_missing_key(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {f"{s}_images": random_images(rng, 3) for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": np.array([0, 1, 1]) for s in ("train", "val", "test")})
    np.savez(tmp_path / "rgb.npz", **arrays)
    prepare(tmp_path, "--source", str(tmp_path / "rgb.npz"))
    assert {p.name for p in (tmp_path / "processed" / "rgb" / "train").iterdir()} == {"class_0", "class_1"}
    del arrays["val_labels"]
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(DataError, match="no 'val_labels' array"):
        prepare(tmp_path, "--source", str(tmp_path / "broken.npz"))


def test_leakage_is_refused_naming_files_and_nothing_is_written(tmp_path):
    rng = np.random.default_rng(2)
    imgs = random_images(rng, 4, channels=1)
    arrays = {"train_images": imgs, "val_images": imgs[:1].copy(), "test_images": random_images(rng, 2, channels=1),
              "train_labels": np.array([0, 0, 1, 1]), "val_labels": np.array([0]), "test_labels": np.array([0, 1])}
    np.savez(tmp_path / "leaky.npz", **arrays)
    with pytest.raises(DataError, match=r"leakage.*train/class_0/train_000000.png == val/class_0/val_000000.png"):
        prepare(tmp_path, "--source", str(tmp_path / "leaky.npz"))
    assert not (tmp_path / "processed" / "leaky").exists()
    assert not any(p.name.startswith(".leaky") for p in (tmp_path / "processed").iterdir())

    prepare(tmp_path, "--source", str(tmp_path / "leaky.npz"), "--drop-leaked")
    out = tmp_path / "processed" / "leaky"
    assert not (out / "val" / "class_0" / "val_000000.png").exists()
    assert "val/class_0/val_000000.png" in (out / "leakage_dropped.csv").read_text()
    assert len(read_manifest(out)) == 6


def make_folder(root, classes, rng, n=10, grey=False, size=20):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = random_images(rng, 1, size=size + i % 3, channels=1 if grey else 3)[0]
            Image.fromarray(arr).save(root / c / f"img_{i}.{'jpg' if i % 2 else 'png'}", quality=95)


def test_imagefolder_without_splits_is_stratified_and_source_untouched(tmp_path):
    src = tmp_path / "src"
    make_folder(src, ["benign", "malignant"], np.random.default_rng(3), n=10, grey=True)
    before = tree_bytes(src)
    prepare(tmp_path, "--source", str(src), "--val-fraction", "0.2", "--test-fraction", "0.2", "--image-size", "16")
    out = tmp_path / "processed" / "src"
    for c in ("benign", "malignant"):
        assert [len(list((out / s / c).glob("*.png"))) for s in ("train", "val", "test")] == [6, 2, 2]
    assert Image.open(next((out / "train" / "benign").glob("*.png"))).size == (16, 16)
    assert tree_bytes(src) == before


def test_imagefolder_duplicates_stay_in_one_split(tmp_path):
    src = tmp_path / "dups"
    make_folder(src, ["a", "b"], np.random.default_rng(4), n=8)
    for i in range(8):  # every image of class a duplicated under another name
        (src / "a" / f"copy_{i}.png").write_bytes((src / "a" / f"img_{i}.png").read_bytes() if i % 2 == 0
                                                  else (src / "a" / f"img_{i}.jpg").read_bytes())
    prepare(tmp_path, "--source", str(src))  # would raise on leakage
    rows = read_manifest(tmp_path / "processed" / "dups")
    splits_by_hash = {}
    for r in rows:
        splits_by_hash.setdefault(r["sha256"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_by_hash.values())


def test_imagefolder_with_split_folders_and_errors(tmp_path):
    src = tmp_path / "split"
    rng = np.random.default_rng(5)
    for s in ("train", "val", "test"):
        make_folder(src / s, ["x", "y"], rng, n=3)
    prepare(tmp_path, "--source", str(src))
    assert len(read_manifest(tmp_path / "processed" / "split")) == 18
    manifest = (tmp_path / "processed" / "split" / "manifest.csv").stat().st_mtime_ns
    assert prepare(tmp_path, "--source", str(src)) == 0           # already prepared: kept
    assert (tmp_path / "processed" / "split" / "manifest.csv").stat().st_mtime_ns == manifest
    (src / "train" / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        prepare(tmp_path, "--source", str(src), "--name", "other")
    with pytest.raises(DataError, match="source not found"):
        prepare(tmp_path, "--source", str(tmp_path / "nowhere"))


def test_corrupt_image_in_source_is_named(tmp_path):
    src = tmp_path / "corrupt"
    make_folder(src, ["a"], np.random.default_rng(6), n=3)
    (src / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*bad\.png"):
        prepare(tmp_path, "--source", str(src))


def test_overwrite_refuses_a_folder_it_did_not_make(tmp_path):
    target = tmp_path / "processed" / "demo"
    target.mkdir(parents=True)
    (target / "my_scan.png").write_bytes(b"precious")
    with pytest.raises(DataError, match="not made by prepare_data"):
        prepare(tmp_path, "--source", "demo", "--demo-num-train", "11", "--image-size", "32", "--overwrite")
    assert (target / "my_scan.png").read_bytes() == b"precious"
