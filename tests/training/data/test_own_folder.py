"""A user's own folder: colour modes, channels, sizes, the resize policy and duplicates, reported and handled."""

import csv
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from training.core.errors import run_cli
from training.data.images import make_square
from training.data.processed import find_duplicates, read_splits_manifest
from training.prepare_data import main as prepare_main

SIZES = [(18, 24), (24, 18), (20, 20), (22, 26), (26, 22), (24, 24)]      # (height, width): mixed, mostly not square


def grey_slice(rng, height, width):
    """A dark disc on black, like a brain slice, with noise: grey content."""
    yy, xx = np.mgrid[0:height, 0:width]
    disc = ((yy - height / 2) ** 2 + (xx - width / 2) ** 2) < (min(height, width) / 2.5) ** 2
    return np.clip(disc * rng.integers(60, 200) + rng.normal(0, 12, (height, width)), 0, 255).astype(np.uint8)


def save(pixels, path, mode):
    """Grey pixels saved as 'L', or as 'RGB' with R = G = B (how many scanners and converters store grey)."""
    img = Image.fromarray(pixels)
    (img if mode == "L" else img.convert("RGB")).save(path)


def make_brain_folder(root, rng, healthy=14, tumour=24):
    """A brain-MRI-like ImageFolder: mixed sizes, grey stored as L or RGB, one L JPEG, two duplicate groups
    (one of them mixing modes), minority = healthy. Returns the file modes written."""
    for name, n in (("healthy", healthy), ("tumour", tumour)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            save(grey_slice(rng, *SIZES[i % len(SIZES)]), root / name / f"slice_{i:03d}.png", "L" if i % 2 == 0 else "RGB")
    Image.fromarray(grey_slice(rng, 30, 20)).save(root / "tumour" / "scan.jpg", quality=90)     # a grey JPEG: L
    first = np.asarray(Image.open(root / "healthy" / "slice_000.png"))
    save(first, root / "healthy" / "copy_a.png", "L")          # a group of three: L, L, and the same pixels as RGB
    save(first, root / "healthy" / "copy_b.png", "RGB")
    (root / "tumour" / "again.png").write_bytes((root / "tumour" / "slice_003.png").read_bytes())
    return dict(Counter(Image.open(p).mode for p in root.rglob("*.*")))


def prepare(tmp_path, capsys, *args):
    code = run_cli(prepare_main, ["--output_dir", str(tmp_path / "processed"), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_own_grey_folder_reports_modes_sizes_and_duplicates_and_stays_grey(tmp_path, capsys):
    src = tmp_path / "brain_mri"
    modes = make_brain_folder(src, np.random.default_rng(0))
    code, out, err = prepare(tmp_path, capsys, "--source", str(src))
    assert code == 0, err
    assert modes == {"L": 21, "RGB": 21}
    assert "colour modes: L 21, RGB 21 (grey in content: 42 of 42)" in out
    assert "channels: 1 (grey): every image is grey in content (R = G = B), whatever its file mode" in out
    assert "sizes: 7 distinct, width 18-26 px, height 18-30 px; not square: " in out      # 6 sizes + the 30x20 JPEG
    assert "resize: --resize pad: " in out and "padded with black to a square" in out
    assert "duplicates: 2 group(s) of identical images, 5 files" in out
    root = tmp_path / "processed" / "brain_mri"
    files = sorted(root.rglob("*.png"))
    assert files and all(Image.open(f).mode == "L" for f in files)                # grey stays one channel
    assert all(Image.open(f).size[0] == Image.open(f).size[1] for f in files)      # squares, by padding
    with open(root / "duplicates.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and {r["group"] for r in rows} == {"1", "2"}
    assert {r["origin"].rsplit("/", 1)[1] for r in rows} >= {"copy_a.png", "copy_b.png", "again.png"}
    info = json.loads((root / "dataset.json").read_text())
    assert info["channels"] == 1 and info["colour_modes_found"] == modes and info["resize"] == "pad"
    assert info["sizes_found"]["distinct"] == 7 and info["duplicates"]["groups"] == 2


def test_channels_flag_rgb_and_colour_content(tmp_path, capsys):
    src = tmp_path / "mixed"
    rng = np.random.default_rng(1)
    make_brain_folder(src, rng, healthy=6, tumour=6)
    code, out, _ = prepare(tmp_path, capsys, "--source", str(src), "--channels", "3", "--name", "rgb")
    assert code == 0 and "channels: 3 (RGB), as --channels 3 asks" in out
    assert {Image.open(f).mode for f in (tmp_path / "processed" / "rgb").rglob("*.png")} == {"RGB"}

    colour = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)          # one real colour image among grey ones
    Image.fromarray(colour).save(src / "tumour" / "marked.png")
    code, out, _ = prepare(tmp_path, capsys, "--source", str(src), "--name", "auto")
    assert code == 0 and "channels: 3 (RGB): 1 of" in out and "marked.png" in out and "--channels 1 makes them grey" in out
    code, out, _ = prepare(tmp_path, capsys, "--source", str(src), "--name", "grey", "--channels", "1")
    assert code == 0 and "1 colour image(s) made grey by luma" in out
    assert {Image.open(f).mode for f in (tmp_path / "processed" / "grey").rglob("*.png")} == {"L"}


@pytest.mark.parametrize("policy, side", [("pad", 30), ("center_crop", 20), ("squash", 20)])
def test_resize_policies_make_squares_without_upsampling(policy, side):
    pixels = np.full((20, 30), 200, dtype=np.uint8)                     # height 20, width 30
    out = make_square(pixels, policy)
    assert out.shape == (side, side)
    if policy == "pad":                                                 # black bands above and below, content kept
        assert (out[:5] == 0).all() and (out[-5:] == 0).all() and (out[5:25] == 200).all()
    assert make_square(pixels, policy, 16).shape == (16, 16)
    assert make_square(np.zeros((20, 30, 3), np.uint8), policy).shape == (side, side, 3)


def test_image_size_and_resize_flag_said_once(tmp_path, capsys):
    src = tmp_path / "folder"
    make_brain_folder(src, np.random.default_rng(2), healthy=6, tumour=6)
    code, out, _ = prepare(tmp_path, capsys, "--source", str(src), "--resize", "center_crop", "--image_size", "16")
    assert code == 0 and out.count("resize: --resize center_crop") == 1
    assert "cropped to their central square" in out and "then resized to 16x16 px" in out
    sizes = {Image.open(f).size for f in (tmp_path / "processed" / "folder").rglob("*.png")}
    assert sizes == {(16, 16)}
    assert "upsamples" not in out                                       # a downsizing: nothing to warn about


@pytest.mark.parametrize("image_size, warned", [(28, False), (32, True), (64, True)])
def test_upsampling_the_images_is_warned(tmp_path, capsys, image_size, warned):
    """28 px scans (BreastMNIST's size): a GAN learns them at 28 px; 32 and 64 px add no detail and cost
    more compute, and the warning names 28."""
    src = tmp_path / "small"
    rng = np.random.default_rng(0)
    for name in ("healthy", "tumour"):
        (src / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (28, 20), dtype=np.uint8)).save(src / name / f"{i}.png")
    code, out, err = prepare(tmp_path, capsys, "--source", str(src), "--image_size", str(image_size))
    assert code == 0, err
    lines = [line for line in out.splitlines() if "upsamples" in line]
    assert len(lines) == int(warned)
    if warned:
        assert lines[0].startswith("warning: every image is at most 28 px")
        assert f"about {(image_size / 28) ** 2:.0f}x" in lines[0]
        assert lines[0].endswith("--image_size 28 keeps every pixel, and a GAN learns that size as it is")


def split_folder(root, rng):
    """train/val/test folders with copies: 2 in train, 3 in test (L, L, RGB), one across val and test."""
    for split in ("train", "val", "test"):
        for name in ("healthy", "tumour"):
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                save(grey_slice(rng, 20, 20), root / split / name / f"{split}_{i}.png", "L")
    train = np.asarray(Image.open(root / "train" / "tumour" / "train_0.png"))
    save(train, root / "train" / "tumour" / "train_copy.png", "L")
    test = np.asarray(Image.open(root / "test" / "healthy" / "test_0.png"))
    save(test, root / "test" / "healthy" / "test_copy1.png", "L")
    save(test, root / "test" / "healthy" / "test_copy2.png", "RGB")
    (root / "val" / "tumour" / "from_test.png").write_bytes((root / "test" / "tumour" / "test_1.png").read_bytes())


def test_duplicates_keep_one_copy_in_val_and_test_unless_asked(tmp_path, capsys):
    src = tmp_path / "splits"
    split_folder(src, np.random.default_rng(3))
    code, out, err = prepare(tmp_path, capsys, "--source", str(src))
    assert code == 0, err
    assert "duplicates: 3 group(s) of identical images, 7 files (1 within train, 1 within test, 1 across splits" in out
    assert "val/test keep one copy per group: 3 file(s) left out (--keep_duplicates keeps them)" in out
    root = tmp_path / "processed" / "splits"
    rows = read_splits_manifest(root)
    assert sum(r["split"] == "train" for r in rows) == 7                      # train keeps its copies
    assert sum(r["split"] == "test" and r["class"] == "healthy" for r in rows) == 3     # 5 files, 3 distinct
    assert sum(r["split"] == "test" and r["class"] == "tumour" for r in rows) == 2   # its val copy is kept
    with open(root / "duplicates.csv", newline="") as f:
        kept = [r["kept"] for r in csv.DictReader(f)]
    assert sorted(kept) == ["no"] * 3 + ["yes"] * 4
    assert len(list(src.rglob("*.png"))) == 22                                # the source is untouched

    code, out, _ = prepare(tmp_path, capsys, "--source", str(src), "--name", "all", "--keep_duplicates")
    assert code == 0 and "every copy kept (--keep_duplicates)" in out
    assert len(read_splits_manifest(tmp_path / "processed" / "all")) == 22


def test_a_label_conflict_keeps_one_copy_per_class_and_is_named():
    rows = [{"path": f"test/{c}/{i}.png", "split": "test", "class": c, "sha256": "same"}
            for i, c in enumerate(["a", "a", "b"])]
    duplicates = find_duplicates(rows)
    assert duplicates.dropped == ["test/a/1.png"] and duplicates.counts()["label conflicts"] == 1


def test_bad_channels_flag_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        prepare_main(["--source", "demo", "--channels", "2"])
    assert "invalid choice: '2'" in capsys.readouterr().err


def test_scans_of_more_than_8_bits_share_one_scale_photos_stand_upright_and_transparency_is_black(tmp_path, capsys):
    """A 12-bit scan in a 16-bit PNG keeps its brightness relative to the others (one factor, 255 / 4,095, for
    every such file, not each file's own); a phone photo stored sideways with an EXIF orientation is written
    as it is seen; a transparent border becomes black, as padding is, not the white stored under it."""
    src = tmp_path / "mixed"
    for name in ("healthy", "tumour"):
        (src / name).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, peak in enumerate((4000, 1000, 3000, 2000, 500)):                     # 12-bit values, 16-bit files
        scan = (rng.random((16, 16)) * peak).astype(np.uint16)
        scan[0, 0] = peak
        Image.fromarray(scan).save(src / "healthy" / f"scan_{i}.png")
    photo = np.zeros((16, 24, 3), np.uint8)
    photo[:, :8] = 200                                                          # bright on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 6                                                            # shown rotated 90 degrees clockwise
    Image.fromarray(photo).save(src / "tumour" / "photo.jpg", exif=exif, quality=95)
    rgba = np.full((16, 16, 4), 255, np.uint8)
    rgba[:, :4, 3] = 0                                                          # a transparent white band
    Image.fromarray(rgba, "RGBA").save(src / "tumour" / "cut.png")
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src / "tumour" / f"t_{i}.png")

    code, out, err = prepare(tmp_path, capsys, "--source", str(src), "--val_fraction", "0", "--test_fraction", "0")
    assert code == 0, err
    assert ("5 image(s) of more than 8 bits, largest value 4,000: each scaled by 255 / 4,095 (12 bits), one factor "
            "for all") in out
    written = tmp_path / "processed" / "mixed" / "train"
    peaks = [int(np.asarray(Image.open(written / "healthy" / f"scan_{i}.png")).max()) for i in range(5)]
    assert peaks == [round(p / 4095 * 255) for p in (4000, 1000, 3000, 2000, 500)]
    upright = np.asarray(Image.open(written / "tumour" / "photo.png").convert("L"), dtype=float)
    assert upright.shape == (24, 24)                                            # 24 tall x 16 wide, padded square
    assert upright[:8, 4:20].mean() > 150 and upright[-8:, 4:20].mean() < 50    # the bright band is now on top
    cut = np.asarray(Image.open(written / "tumour" / "cut.png"))
    assert (cut[:, :4] == 0).all() and (cut[:, 4:] == 255).all()


def test_a_valid_folder_is_the_val_split_and_skipped_files_are_counted(tmp_path, capsys):
    src = tmp_path / "splits"
    rng = np.random.default_rng(1)
    for split, n in (("train", 6), ("valid", 2), ("test", 2)):
        for name in ("healthy", "tumour"):
            (src / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(src / split / name / f"{i}.png")
    (src / "train" / "tumour" / "notes.txt").write_text("scanner settings")
    (src / "train" / "tumour" / "IM-0001.dcm").write_bytes(b"DICM")
    (src / "train" / "tumour" / "Thumbs.db").write_bytes(b"")
    code, out, err = prepare(tmp_path, capsys, "--source", str(src))
    assert code == 0, err
    assert "  valid/ is the val split" in out
    assert ("  skipped 2 file(s) that are not images of a known format (.dcm 1, .txt 1); DICOM needs converting "
            "to PNG first") in out
    counts = Counter((r["split"], r["class"]) for r in read_splits_manifest(tmp_path / "processed" / "splits"))
    assert counts[("val", "healthy")] == 2 and counts[("val", "tumour")] == 2
    (src / "validation").mkdir()
    code, _, err = prepare(tmp_path, capsys, "--source", str(src), "--name", "again")
    assert code == 2 and "has valid/ and validation/: keep one val folder" in err


def test_group_by_subfolder_keeps_each_patient_in_one_split_and_names_say_whose(tmp_path, capsys):
    """Slices in one sub-folder per patient: split image by image (the default, with a note) most patients
    land in two splits; --group_by subfolder puts each patient in exactly one, and every file name keeps it."""
    src = tmp_path / "patients"
    rng = np.random.default_rng(3)
    for name, patients in (("healthy", 10), ("tumour", 10)):
        for k in range(patients):
            (src / name / f"p{k:02d}").mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(src / name / f"p{k:02d}" / f"IM-{i}.png")

    def patients_in_two_splits(dataset: str) -> int:
        splits: dict = {}
        for r in read_splits_manifest(tmp_path / "processed" / dataset):
            splits.setdefault((r["class"], r["path"].split("/")[-1].split("_")[0]), set()).add(r["split"])
        assert len(splits) == 20                                    # p07_IM-2.png: whose image it is
        return sum(len(s) > 1 for s in splits.values())

    code, out, err = prepare(tmp_path, capsys, "--source", str(src), "--name", "by_image")
    assert code == 0, err
    assert "note: 80 image(s) lie in sub-folders of their class and are split image by image" in out
    assert patients_in_two_splits("by_image") > 10
    code, out, err = prepare(tmp_path, capsys, "--source", str(src), "--name", "by_patient", "--group_by", "subfolder")
    assert code == 0, err
    assert "sub-folders of their class" not in out and patients_in_two_splits("by_patient") == 0
    info = json.loads((tmp_path / "processed" / "by_patient" / "dataset.json").read_text())
    assert info["group_by"] == "subfolder"


def test_bands_in_one_class_only_and_a_faint_tint_are_warned(tmp_path, capsys):
    """Padding only the tumour scans (they are the non-square ones) hands a classifier the label as a frame;
    grey scans with a one-level tint are RGB by content, and the report says the colour is only a tint."""
    src = tmp_path / "tinted"
    rng = np.random.default_rng(4)
    for name, shape in (("healthy", (16, 16)), ("tumour", (16, 24))):
        (src / name).mkdir(parents=True)
        for i in range(6):
            grey = rng.integers(10, 240, shape, dtype=np.uint8)
            rgb = np.stack([grey, grey, grey + (i % 2)], axis=-1)        # every other scan: blue one level up
            Image.fromarray(rgb).save(src / name / f"{i}.png")
    code, out, err = prepare(tmp_path, capsys, "--source", str(src))
    assert code == 0, err
    assert ("warning: --resize pad gives black bands to tumour 100%, healthy 0% of each class's images: a "
            "classifier can tell the classes by the bands") in out
    assert "channels: 3 (RGB): 6 of 12 image(s) hold colour" in out
    assert "6 of them only faintly (channels within 8 of 255 levels everywhere): a grey modality with a scanner's tint?" in out
    code, out, _ = prepare(tmp_path, capsys, "--source", str(src), "--name", "cropped", "--resize", "center_crop")
    assert code == 0 and "black bands" not in out
