"""An ImageFolder: `<root>/<class>/*.png|jpg`, or `<root>/{train,val,test}/<class>/*`.

Without split folders, each class is split with a fixed seed into train/val/test fractions.
Images with identical pixel content (a grey scan saved once as L and once as RGB counts as
identical) are kept in the same split, so duplicates in the source cannot leak from train into val
or test. Each image is yielded as stored; `training.data.sources` converts every source to one
channel count (`--channels`) and makes it square (`--resize`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.core.errors import DataError
from training.core.progress import progress
from training.data.images import (
    HIGH_BIT_MODES,
    IMAGE_SUFFIXES,
    high_bit_top,
    is_grey_content,
    is_image_file,
    pixel_sha256,
    read_image,
    read_stored,
)
from training.data.processed import SPLITS, Record
from training.data.scan import FAINT_COLOUR, SourceScan

GROUPINGS = ("image", "subfolder")                # what a folder without splits keeps together in one split
_NOT_DATA = {"thumbs.db", "desktop.ini"}          # what file managers leave in folders
_SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def _class_files(folder: Path, skipped: Counter) -> dict[str, list[Path]]:
    """Class name -> its image files (sub-folders included); what is not an image is counted in `skipped`."""
    classes = {}
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = [p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
        files = sorted(p for p in found if is_image_file(p))
        skipped.update(p.suffix.lower() or p.name for p in found
                       if not is_image_file(p) and p.name.lower() not in _NOT_DATA)
        if not files:
            raise DataError(f"class folder {class_dir} holds no images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)})")
        classes[class_dir.name] = files
    if not classes:
        raise DataError(f"{folder} has no class sub-folders")
    return classes


def _split_folders(root: Path) -> dict[str, Path]:
    """The split folders present: split -> its folder (`valid/` or `validation/` serve as val/)."""
    found = {}
    for split, names in _SPLIT_FOLDERS.items():
        folders = [root / name for name in names if (root / name).is_dir()]
        if len(folders) > 1:
            raise DataError(f"{root} has {' and '.join(f.name + '/' for f in folders)}: keep one {split} folder")
        if folders:
            found[split] = folders[0]
    return found


@dataclass(frozen=True)
class FileFacts:
    """What one decoding of a file tells: its stored mode and size, whether it holds colour, the hash of its
    content with grey saved as RGB counted as grey (so the two copies of one scan match), and the largest
    value of an image of more than 8 bits (0 otherwise)."""

    mode: str
    width: int
    height: int
    colour: bool
    sha256: str
    peak: int = 0
    spread: int = 0         # the largest difference between two channels of one pixel


def file_facts(path: Path) -> FileFacts:
    pixels, mode = read_stored(path)
    if mode in HIGH_BIT_MODES:          # grey; hashed at full depth, scaled to 8 bits once the set's depth is known
        return FileFacts(mode, int(pixels.shape[1]), int(pixels.shape[0]), False, pixel_sha256(pixels),
                         int(pixels.max(initial=0)))
    grey = is_grey_content(pixels)
    canonical = pixels[..., 0] if grey and pixels.ndim == 3 else pixels
    spread = 0 if grey else int((pixels.max(axis=2).astype(np.int16) - pixels.min(axis=2)).max())
    return FileFacts(mode, int(pixels.shape[1]), int(pixels.shape[0]), not grey, pixel_sha256(canonical), spread=spread)


def _groups(files: list[Path], facts: dict[Path, FileFacts], class_dir: Path, by_subfolder: bool) -> list[list[Path]]:
    """The files that must share a split: identical images always; with `by_subfolder`, every image under one
    sub-folder of the class (one patient's, say). Each group is ordered by its smallest content hash."""
    parent = {path: path for path in files}

    def root_of(path: Path) -> Path:
        while parent[path] != path:
            path = parent[path]
        return path

    first: dict[tuple[str, str], Path] = {}
    for path in files:
        relative = path.relative_to(class_dir).parts
        keys = [("content", facts[path].sha256)] + ([("folder", relative[0])] if by_subfolder and len(relative) > 1 else [])
        for key in keys:
            if key in first:
                parent[root_of(path)] = root_of(first[key])
            else:
                first[key] = path
    members: dict[Path, list[Path]] = defaultdict(list)
    for path in files:
        members[root_of(path)].append(path)
    return sorted((sorted(group) for group in members.values()), key=lambda g: min(facts[p].sha256 for p in g))


def _split_stratified(classes: dict[str, list[Path]], facts: dict[Path, FileFacts], root: Path, val_fraction: float,
                      test_fraction: float, seed: int, by_subfolder: bool) -> dict[str, dict[str, list[Path]]]:
    """Per class, shuffle the groups of files that must stay together (`_groups`) with `seed` and cut them
    into splits."""
    splits: dict[str, dict[str, list[Path]]] = {s: {} for s in SPLITS}
    for class_id, (class_name, files) in enumerate(classes.items()):
        groups = _groups(files, facts, root / class_name, by_subfolder)
        order = np.arange(len(groups))
        np.random.default_rng([seed, class_id]).shuffle(order)
        n_val, n_test = round(len(groups) * val_fraction), round(len(groups) * test_fraction)
        if len(groups) - n_val - n_test < 1:
            what = "sub-folders (--group_by subfolder)" if by_subfolder else "distinct images"
            raise DataError(f"class '{class_name}' has {len(groups)} {what}: too few to split")
        parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
        for split, chosen in parts.items():
            splits[split][class_name] = sorted(p for i in chosen for p in groups[i])
    return splits


def imagefolder_records(root: str | Path, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0,
                        group_by: str = "image") -> tuple[Iterator[Record], int, SourceScan]:
    """Records of the folder's images as stored (grey or RGB each), their count, and the folder's scan.

    Every file is decoded once here, with a progress bar, to learn its mode, size, colour and content
    hash (the split keeps identical images together, and with `group_by` 'subfolder' every image under one
    sub-folder of a class); the records decode each file again as they are written, so no more than one
    image is held in memory.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"source folder not found: {root}")
    present = _split_folders(root)
    skipped: Counter = Counter()
    if present:
        if "train" not in present:
            raise DataError(f"{root} has {', '.join(f.name + '/' for f in present.values())} but no train/")
        listed = {s: _class_files(present[s], skipped) if s in present else {} for s in SPLITS}
    else:
        listed = {"train": _class_files(root, skipped)}
    files = [p for per_class in listed.values() for paths in per_class.values() for p in paths]
    print(f"reading {len(files)} images in {root} (each decoded once for its mode, size and content)")
    if "val" in present and present["val"].name != "val":
        print(f"  {present['val'].name}/ is the val split")
    if skipped:
        dicom = "; DICOM needs converting to PNG first" if ".dcm" in skipped else ""
        print(f"  skipped {sum(skipped.values())} file(s) that are not images of a known format "
              f"({', '.join(f'{k} {n}' for k, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))}){dicom}")
    facts, unreadable = {}, []
    for path in progress(files, desc="reading images", unit="img"):
        try:
            facts[path] = file_facts(path)
        except DataError as err:        # a damaged or truncated file: read the rest, then name them all
            unreadable.append(str(err))
    if unreadable:
        more = f" (and {len(unreadable) - 1} more unreadable file(s))" if len(unreadable) > 1 else ""
        raise DataError(f"{unreadable[0]}{more}; move them out of {root} or replace them, then run again")
    nested = 0 if present else sum(len(path.relative_to(root).parts) > 2 for paths in listed["train"].values()
                                   for path in paths)
    if nested and group_by == "image":
        print(f"  note: {nested} image(s) lie in sub-folders of their class and are split image by image; if a "
              "sub-folder holds one patient's images, --group_by subfolder keeps each patient in one split (one "
              "patient's images in train and test inflate every score)")
    splits = listed if present else _split_stratified(listed["train"], facts, root, val_fraction, test_fraction, seed,
                                                      group_by == "subfolder")
    total = sum(len(f) for per_class in splits.values() for f in per_class.values())

    sizes: Counter = Counter()
    for per_class in splits.values():
        for class_name, paths in per_class.items():
            sizes.update((class_name, facts[p].width, facts[p].height) for p in paths)
    colour = [p for p in files if facts[p].colour]
    peaks = [f.peak for f in facts.values() if f.mode in HIGH_BIT_MODES]
    top = high_bit_top(max(peaks)) if peaks else None       # one scale for every file: brightness stays comparable
    scan = SourceScan(counts={s: {c: len(paths) for c, paths in sorted(per_class.items())}
                              for s, per_class in splits.items()},
                      modes=dict(Counter(f.mode for f in facts.values())), colour=len(colour), sizes=dict(sizes),
                      first_colour=str(colour[0]) if colour else "", high_bit=len(peaks),
                      high_bit_peak=max(peaks, default=0),
                      faint_colour=sum(0 < f.spread <= FAINT_COLOUR for f in facts.values()))

    def generate() -> Iterator[Record]:
        for split, per_class in splits.items():
            for class_name, paths in per_class.items():
                class_dir = (present[split] if present else root) / class_name
                for path in paths:      # patient_07/IM-0001.png -> patient_07_IM-0001: whose image it is stays visible
                    stem = "_".join(path.relative_to(class_dir).with_suffix("").parts)
                    yield Record(split, class_name, stem, read_image(path, top), origin=str(path))

    return generate(), total, scan
