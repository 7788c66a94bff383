import numpy as np
import pytest
from PIL import Image

from tests.helpers import random_images
from training.core.errors import DataError, run_cli
from training.data.prepare import open_prepared_source
from training.data.processed import read_splits_manifest
from training.data.sources.demo import demo_records, render_lesion
from training.prepare_data import main as prepare_main


def prepare(tmp_path, *args):
    return prepare_main(["--output_dir", str(tmp_path / "processed"), *args])


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_same_seed_same_bytes_and_layout(tmp_path):
    for name in ("a", "b"):
        prepare(tmp_path, "--source", "demo", "--name", name, "--image_size", "32", "--demo_num_train", "33")
    a, b = tree_bytes(tmp_path / "processed" / "a"), tree_bytes(tmp_path / "processed" / "b")
    assert a == b
    rows = read_splits_manifest(tmp_path / "processed" / "a")
    counts = {(r["split"], r["class"]) for r in rows}
    assert counts == {(s, c) for s in ("train", "val", "test") for c in ("benign", "malignant")}
    train = [r for r in rows if r["split"] == "train"]
    assert sum(r["class"] == "benign" for r in train) == 10 * sum(r["class"] == "malignant" for r in train)
    img = Image.open(tmp_path / "processed" / "a" / rows[0]["path"])
    assert img.size == (32, 32) and img.mode == "RGB"


def split_class_counts(rows):
    counts = {}
    for r in rows:
        counts.setdefault(r["split"], {}).setdefault(r["class"], 0)
        counts[r["split"]][r["class"]] += 1
    return counts


def test_the_demo_test_split_is_balanced_by_default_and_the_flag_sets_it(tmp_path):
    """Val keeps the 10:1 imbalance (the threshold and the grid's choice are made there); test holds as many
    malignant images as benign ones for the comparison's power. The pipeline reads the same default."""
    assert open_prepared_source("demo").scan.counts == {"train": {"benign": 2000, "malignant": 200},
                                                        "val": {"benign": 500, "malignant": 50},
                                                        "test": {"benign": 500, "malignant": 500}}
    prepare(tmp_path, "--source", "demo", "--image_size", "8", "--demo_num_train", "44")
    assert split_class_counts(read_splits_manifest(tmp_path / "processed" / "demo")) == {
        "train": {"benign": 40, "malignant": 4}, "val": {"benign": 10, "malignant": 1},
        "test": {"benign": 10, "malignant": 10}}
    prepare(tmp_path, "--source", "demo", "--image_size", "8", "--demo_num_train", "44", "--demo_test_malignant", "7",
            "--name", "seven")
    assert split_class_counts(read_splits_manifest(tmp_path / "processed" / "seven"))["test"] == {
        "benign": 10, "malignant": 7}


def test_more_demo_test_images_leave_every_other_image_byte_for_byte():
    """Each image has its own generator, so the larger test split only adds images: train, val, test benign
    and the malignant test images of the old layout (imbalance in every split) are the same bytes."""
    def by_path(records):
        return {(r.split, r.class_name, r.file_stem): r.pixels.tobytes() for r in records}

    old = by_path(demo_records(seed=3, image_size=16, num_train=220, imbalance=10)[0])
    new = by_path(demo_records(seed=3, image_size=16, num_train=220, imbalance=10, test_malignant=60)[0])
    added = {key for key in new if key not in old}
    assert len(added) == 60 - 5 and all(key[:2] == ("test", "malignant") for key in added)
    assert {key: new[key] for key in old} == old


@pytest.mark.parametrize("value", ["0", "-3", "100001"])
def test_a_bad_demo_test_malignant_is_one_line_and_exit_2(tmp_path, capsys, value):
    code = run_cli(prepare_main, ["--output_dir", str(tmp_path / "processed"), "--source", "demo",
                                  "--demo_test_malignant", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--demo_test_malignant must be between 1 and 100000" in err[0]
    assert not (tmp_path / "processed").exists()


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


def test_demo_hairs_are_thin_dark_strokes_that_hairs_false_leaves_out():
    def fine_detail(hairs):     # mean absolute Laplacian: thin strokes are where it is large
        x = np.stack([render_lesion(np.random.default_rng(i), 64, True, hairs).mean(-1) for i in range(30)])
        return np.abs(4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]).mean()
    assert fine_detail(False) < 0.8 * fine_detail(True)


def test_npz_source_with_class_names_and_n1_labels(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = random_images(rng, n, size=28, channels=1)
        arrays[f"{split}_labels"] = (np.arange(n) % 3 == 0).astype(np.int64).reshape(n, 1)
    np.savez(tmp_path / "mini.npz", **arrays)
    prepare(tmp_path, "--source", str(tmp_path / "mini.npz"), "--class_names", "1=malignant,0=benign")
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


def test_leakage_is_refused_naming_files_and_nothing_is_written(tmp_path, capsys):
    rng = np.random.default_rng(2)
    imgs = random_images(rng, 4, channels=1)
    arrays = {"train_images": imgs, "val_images": imgs[:1].copy(), "test_images": random_images(rng, 2, channels=1),
              "train_labels": np.array([0, 0, 1, 1]), "val_labels": np.array([0]), "test_labels": np.array([0, 1])}
    np.savez(tmp_path / "leaky.npz", **arrays)
    with pytest.raises(DataError, match=r"leakage.*train/class_0/train_000000.png == val/class_0/val_000000.png"):
        prepare(tmp_path, "--source", str(tmp_path / "leaky.npz"))
    assert not (tmp_path / "processed" / "leaky").exists()
    assert not any(p.name.startswith(".leaky") for p in (tmp_path / "processed").iterdir())

    capsys.readouterr()
    prepare(tmp_path, "--source", str(tmp_path / "leaky.npz"), "--drop_leaked")
    said = capsys.readouterr().out
    assert "dropped 1 val/test image(s) that duplicate train images" in said
    assert "duplicates: none among the images written" in said         # the dropped copy is not among them
    out = tmp_path / "processed" / "leaky"
    assert not (out / "val" / "class_0" / "val_000000.png").exists()
    assert "val/class_0/val_000000.png" in (out / "leakage_dropped.csv").read_text()
    assert len(read_splits_manifest(out)) == 6


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
    prepare(tmp_path, "--source", str(src), "--val_fraction", "0.2", "--test_fraction", "0.2", "--image_size", "16")
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
    rows = read_splits_manifest(tmp_path / "processed" / "dups")
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
    assert len(read_splits_manifest(tmp_path / "processed" / "split")) == 18
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
    (src / "a" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n")                    # truncated after the signature
    with pytest.raises(DataError, match=r"cannot read image .*bad\.png.* \(and 1 more unreadable file\(s\)\); "
                                        r"move them out of .*corrupt or replace them"):
        prepare(tmp_path, "--source", str(src))


def test_overwrite_refuses_a_folder_it_did_not_make(tmp_path):
    target = tmp_path / "processed" / "demo"
    target.mkdir(parents=True)
    (target / "my_scan.png").write_bytes(b"precious")
    with pytest.raises(DataError, match="not made by prepare_data"):
        prepare(tmp_path, "--source", "demo", "--demo_num_train", "11", "--image_size", "32", "--overwrite")
    assert (target / "my_scan.png").read_bytes() == b"precious"


def test_digits_source_is_the_real_sklearn_digits_split_per_class_with_a_seed(tmp_path):
    from sklearn.datasets import load_digits

    prepare(tmp_path, "--source", "digits", "--image_size", "16")
    rows = read_splits_manifest(tmp_path / "processed" / "digits")
    assert len(rows) == 1797 and {r["class"] for r in rows} == {str(d) for d in range(10)}
    per_split = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    assert per_split["val"] == pytest.approx(180, abs=10) and per_split["test"] == pytest.approx(360, abs=10)
    first = np.asarray(Image.open(tmp_path / "processed" / "digits" / rows[0]["path"]))
    assert first.shape == (16, 16) and first.max() > 200            # 0..16 scaled to 0..255
    digits = load_digits()
    index = int(rows[0]["path"].rsplit("_", 1)[1].removesuffix(".png"))           # digit_NNNN.png
    assert rows[0]["class"] == str(digits.target[index])
    prepare(tmp_path, "--source", "digits", "--image_size", "16", "--name", "again")
    assert [r["path"] for r in read_splits_manifest(tmp_path / "processed" / "again")] == [r["path"] for r in rows]
    with pytest.raises(DataError, match="does not apply to 'digits'"):
        prepare(tmp_path, "--source", "digits", "--class_names", "0=zero", "--name", "named")


def write_idx(path, array, gz):
    import gzip
    import struct

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", n) for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def mnist_arrays(rng, n_train=40, n_test=10):
    return {"x_train": random_images(rng, n_train, size=28, channels=1), "y_train": np.arange(n_train) % 4,
            "x_test": random_images(rng, n_test, size=28, channels=1), "y_test": np.arange(n_test) % 4}


def test_mnist_idx_folder_gz_or_not_carves_val_from_train_and_names_classes(tmp_path):
    arrays = mnist_arrays(np.random.default_rng(7))
    src = tmp_path / "fashion"
    src.mkdir()
    write_idx(src / "train-images-idx3-ubyte.gz", arrays["x_train"], gz=True)
    write_idx(src / "train-labels-idx1-ubyte.gz", arrays["y_train"], gz=True)
    write_idx(src / "t10k-images-idx3-ubyte", arrays["x_test"], gz=False)
    write_idx(src / "t10k-labels-idx1-ubyte", arrays["y_test"], gz=False)
    prepare(tmp_path, "--source", str(src), "--val_fraction", "0.2", "--class_names", "0=tshirt,1=trouser")
    out = tmp_path / "processed" / "fashion"
    counts = {(s, c): len(list((out / s / c).glob("*.png"))) for s in ("train", "val", "test")
              for c in ("tshirt", "trouser", "2", "3")}
    assert all(counts[("train", c)] == 8 and counts[("val", c)] == 2 for c in ("tshirt", "trouser", "2", "3"))
    assert sum(counts[("test", c)] for c in ("tshirt", "trouser", "2", "3")) == 10      # the official test set
    test_image = np.asarray(Image.open(out / "test" / "tshirt" / "test_000000.png"))
    assert np.array_equal(test_image, arrays["x_test"][0])

    (src / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")     # 5 promised, 3 held
    with pytest.raises(DataError, match="header says"):
        prepare(tmp_path, "--source", str(src), "--name", "broken")
    (src / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="has no t10k-labels"):
        prepare(tmp_path, "--source", str(src), "--name", "broken")
    assert not (tmp_path / "processed" / "broken").exists()


def test_keras_style_mnist_npz_and_the_medmnist_reader_unchanged(tmp_path):
    arrays = mnist_arrays(np.random.default_rng(8))
    np.savez(tmp_path / "mnist.npz", **arrays)
    prepare(tmp_path, "--source", str(tmp_path / "mnist.npz"), "--val_fraction", "0.1")
    rows = read_splits_manifest(tmp_path / "processed" / "mnist")
    assert {r["class"] for r in rows} == {"0", "1", "2", "3"}
    assert sum(r["split"] == "val" for r in rows) == 4 and sum(r["split"] == "test" for r in rows) == 10
    del arrays["y_test"]
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(DataError, match="has no 'y_test' array"):
        prepare(tmp_path, "--source", str(tmp_path / "partial.npz"))
    np.savez(tmp_path / "other.npz", images=arrays["x_train"])                    # neither layout
    with pytest.raises(DataError, match="has no 'train_images' array"):
        prepare(tmp_path, "--source", str(tmp_path / "other.npz"))


def _tiny_npz(path, test_count: int = 4):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 8), ("val", 4), ("test", test_count)):
        arrays[f"{split}_images"] = random_images(rng, n, size=8, channels=1)
        arrays[f"{split}_labels"] = np.arange(n) % 2
    np.savez(path, **arrays)
    return path


def test_a_label_named_twice_is_refused_not_the_last_name_kept(tmp_path):
    with pytest.raises(DataError, match="label 0 is named twice"):
        prepare(tmp_path, "--source", str(_tiny_npz(tmp_path / "d.npz")), "--class_names", "0=x,0=y,1=z")
    assert not (tmp_path / "processed" / "d").exists()


def test_an_empty_test_split_is_written_with_a_warning(tmp_path, capsys):
    assert prepare(tmp_path, "--source", str(_tiny_npz(tmp_path / "d.npz", test_count=0))) == 0
    out = capsys.readouterr().out
    assert "warning: the test split is empty" in out and "warning: the val split" not in out
