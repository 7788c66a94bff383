"""The labelled splits a classifier learns and is scored on, in memory, for `train_classifier` and the K+1 GAN."""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.core.errors import DataError
from training.core.progress import progress
from training.data.folders import list_classes, list_images
from training.data.images import classifier_size_problem, pixel_sha256, read_image, resize, to_channels
from training.data.processed import SPLITS_MANIFEST, read_splits_manifest
from training.data.synthetic_folder import read_synthetic

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class LabelledSet:
    """One split in memory: uint8 images (N, C, S, S), labels (N,), which are synthetic (N,) bool, and each
    file's path and pixel hash."""

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[str]
    sha256: list[str]
    real_sides: set[int]         # the shorter sides of the real images (before resizing)
    synthetic_sides: set[int]    # and of the synthetic ones
    synthetic: torch.Tensor

    def subset(self, keep: torch.Tensor) -> LabelledSet:
        """The images where the bool mask `keep` is true, in the same order."""
        rows = keep.nonzero().flatten().tolist()
        return LabelledSet(self.images[keep], self.labels[keep], [self.paths[i] for i in rows],
                           [self.sha256[i] for i in rows], self.real_sides, self.synthetic_sides, self.synthetic[keep])


@dataclass(frozen=True)
class Splits:
    """Train/val/test with one class list, and which class is the positive one of the binary metrics."""

    sets: dict[str, LabelledSet]
    names: list[str]
    positive: int


def synthetic_files(split_dir: str | Path) -> set[Path]:
    """The files of `split_dir` that an augmented dataset's manifest.csv (build_augmented.py, one level up)
    lists as synthetic; none for a folder without one."""
    root = Path(split_dir).resolve().parent
    if not (root / SPLITS_MANIFEST).is_file():
        return set()
    with open(root / SPLITS_MANIFEST, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("source") == "synthetic"]
    if any(not r.get("path") for r in rows):
        raise DataError(f"{root / SPLITS_MANIFEST} lists synthetic rows without a path; rebuild it with build_augmented.py")
    return {(root / r["path"]).resolve() for r in rows}


def load_labelled(split_dir: str | Path, classes: list[str], image_size: int, channels: int) -> LabelledSet:
    """Every image of `classes` under `split_dir`, resized to `image_size` with `channels` channels; the
    images an augmented dataset's manifest lists as synthetic are marked so."""
    images, labels, paths, hashes, real_sides, synthetic_sides = [], [], [], [], set(), set()
    synthetic = synthetic_files(split_dir)
    for label, name in enumerate(classes):
        folder = Path(split_dir) / name
        if not folder.is_dir():
            raise DataError(f"class folder missing: {folder}")
        for path in list_images(folder):
            pixels = read_image(path)
            hashes.append(pixel_sha256(pixels))     # of the file's pixels, as in manifest.csv
            (synthetic_sides if path.resolve() in synthetic else real_sides).add(min(pixels.shape[:2]))
            images.append(resize(to_channels(pixels, channels, path), image_size))
            labels.append(label)
            paths.append(str(path))
    tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return LabelledSet(tensor, torch.tensor(labels), paths, hashes, real_sides, synthetic_sides,
                       torch.tensor([Path(p).resolve() in synthetic for p in paths], dtype=torch.bool))


def with_synthetic(train: LabelledSet, synthetic_dir: str, names: list[str], image_size: int, channels: int) -> LabelledSet:
    """`train` plus the images of a synthetic folder's manifest, labelled by their recorded class."""
    images = read_synthetic([synthetic_dir])[0]
    unknown = sorted({img.class_name for img in images} - set(names))
    if unknown:
        raise DataError(f"{synthetic_dir} holds class '{unknown[0]}', which is not a class of the training set")
    if not images:
        raise DataError(f"{synthetic_dir} lists no images")
    pixels = [read_image(img.path) for img in images]
    # Trained on as synthetic: each file must hold the pixels its manifest recorded (not a swapped-in real image).
    changed = [img.path for img, x in zip(images, pixels) if pixel_sha256(x) != img.sha256]
    if changed:
        raise DataError(f"{changed[0]} does not hold the pixels {Path(synthetic_dir) / 'manifest.jsonl'} records "
                        f"(replaced or edited; {len(changed)} file(s)); refusing data.synthetic_dir")
    stacked = torch.from_numpy(np.stack([resize(to_channels(x, channels, img.path), image_size)
                                         for x, img in zip(pixels, images)])).permute(0, 3, 1, 2)
    return LabelledSet(torch.cat([train.images, stacked]),
                       torch.cat([train.labels, torch.tensor([names.index(img.class_name) for img in images])]),
                       train.paths + [str(img.path) for img in images], train.sha256 + [img.sha256 for img in images],
                       train.real_sides, train.synthetic_sides | {min(x.shape[:2]) for x in pixels},
                       torch.cat([train.synthetic, torch.ones(len(images), dtype=torch.bool)]))


def class_counts(sets: dict[str, LabelledSet], names: list[str]) -> dict[str, dict[str, int]]:
    """Images per class in each split, e.g. {'train': {'benign': 2000, 'malignant': 200}, ...}."""
    return {s: {n: int((d.labels == i).sum()) for i, n in enumerate(names)} for s, d in sets.items()}


def check_split_dirs(split_dirs: dict[str, str | Path]) -> Path:
    """The processed dataset whose splits `split_dirs` are; DataError (one line) unless they are distinct splits
    of one dataset: `<root>/train`, `<root>/val`, `<root>/test` beside a manifest.csv (read and checked).

    A classifier trained on its test split, or selected on it (val = test), reports numbers that mean
    nothing, and a comparison would call them an improvement. Disjoint pixels are then checked on the
    images themselves (`check_disjoint`), not taken from the manifest's word.
    """
    resolved = {split: Path(d).resolve() for split, d in split_dirs.items()}
    for (a, da), (b, db) in itertools.combinations(resolved.items(), 2):
        if da == db or da in db.parents or db in da.parents:
            raise DataError(f"data.{a}_dir and data.{b}_dir are the same folder or one holds the other ({split_dirs[a]}, "
                            f"{split_dirs[b]}): train, val and test must be distinct splits of one processed dataset")
    roots = {d.parent for d in resolved.values()}
    for split, d in resolved.items():
        if d.name != split:
            raise DataError(f"data.{split}_dir {split_dirs[split]} is not the '{split}' split of a processed dataset "
                            f"(it is a folder named '{d.name}'): give <dataset>/{split}")
    if len(roots) > 1:
        raise DataError("data.train_dir, data.val_dir and data.test_dir are splits of different datasets ("
                        + ", ".join(str(split_dirs[s]) for s in resolved) + "): use the three splits of one "
                        "processed dataset, whose manifest.csv proves them disjoint")
    root = roots.pop()
    if not (root / SPLITS_MANIFEST).is_file():
        raise DataError(f"{root} has no {SPLITS_MANIFEST}, so nothing proves its train, val and test splits disjoint: "
                        "make the dataset with training/prepare_data.py (or build_augmented.py)")
    read_splits_manifest(root)           # its rows must agree with the folders (a DataError otherwise)
    return root


def check_disjoint(sets: dict[str, LabelledSet], split_dirs: dict[str, str | Path]) -> None:
    """DataError (one line) when a val/test image has the pixels of a train image (real or synthetic).

    prepare_data.py and build_augmented.py refuse such datasets; this checks the images actually read,
    so a file copied in by hand, or a synthetic folder holding a test image, is caught too.
    """
    train = dict(zip(sets["train"].sha256, sets["train"].paths))
    for split in ("val", "test"):
        if split not in sets:
            continue
        shared = [(train[h], p) for h, p in zip(sets[split].sha256, sets[split].paths) if h in train]
        if shared:
            raise DataError(f"{len(shared)} image(s) of the {split} split {split_dirs[split]} have the pixels of training "
                            f"images (e.g. {shared[0][1]} == {shared[0][0]}): a classifier must never train on what "
                            "it is scored on")


def load_splits(split_dirs: dict[str, str | Path], image_size: int, channels: int, positive_class: str | None, *,
                synthetic_dir: str | None = None, show_progress: bool = True, with_test: bool = True) -> Splits:
    """Train/val/test (`split_dirs[split]`) with one class list checked across the three.

    `positive_class` None picks the smallest training class (ties: the first in order). Val and test
    must hold the positive class and another one, or AUC and the threshold are undefined.
    `with_test` False leaves the test split unread: for choices that must be made on validation alone.
    """
    split_names = SPLIT_NAMES if with_test else ("train", "val")
    check_split_dirs({split: split_dirs[split] for split in split_names})     # an unread test split is not checked
    classes = {split: list_classes(split_dirs[split]) for split in split_names}
    if len({tuple(c) for c in classes.values()}) > 1:
        raise DataError("train, val and test have different class folders: "
                        + "; ".join(f"{s}: {', '.join(c)}" for s, c in classes.items()))
    names = classes["train"]
    if len(names) < 2:
        raise DataError(f"{split_dirs['train']} has one class ({names[0]}); a classifier needs at least two")
    if positive_class is not None and positive_class not in names:
        raise DataError(f"'data.positive_class' = {positive_class} is not a class of {split_dirs['train']} "
                        f"(classes: {', '.join(names)})")
    sets = {split: load_labelled(split_dirs[split], names, image_size, channels)
            for split in progress(split_names, desc="loading images", unit="split",
                                  disable=None if show_progress else True)}
    for split in split_names[1:]:
        if sets[split].synthetic.any():      # build_augmented.py refuses this; a hand-edited manifest could not
            raise DataError(f"{split_dirs[split]} holds synthetic images (its manifest.csv says so): validation "
                            "and test must be real only")
    if synthetic_dir:
        sets["train"] = with_synthetic(sets["train"], synthetic_dir, names, image_size, channels)
    check_disjoint(sets, split_dirs)
    if positive_class is None:
        real = sets["train"].subset(~sets["train"].synthetic)          # the real imbalance, not the augmented one
        counts = class_counts({"train": real}, names)["train"]
        positive_class = min(names, key=lambda n: counts[n])
    positive = names.index(positive_class)
    for split in split_names[1:]:
        is_positive = sets[split].labels == positive
        if not is_positive.any() or is_positive.all():
            raise DataError(f"the {split} set {split_dirs[split]} needs images of '{positive_class}' and of other "
                            "classes: AUC and the decision threshold are undefined otherwise")
    problem = classifier_size_problem(sets["train"].real_sides, sets["train"].synthetic_sides, image_size)
    if problem:
        raise DataError(f"{problem[0]}; set {problem[1]}")
    return Splits(sets, names, positive)
