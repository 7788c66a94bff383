"""An ImageFolder: `<root>/<class>/*.png|jpg`, or `<root>/{train,val,test}/<class>/*`.

Without split folders, each class is split with a fixed seed into train/val/test fractions.
Images with identical pixel content are kept in the same split, so duplicates in the source
cannot leak from train into val or test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from training.core.errors import DataError
from training.data.images import is_image_file, pixel_sha256, read_image
from training.data.processed import SPLITS, Record


def _class_files(folder: Path) -> dict[str, list[Path]]:
    classes = {}
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in class_dir.rglob("*") if is_image_file(p))
        if not files:
            raise DataError(f"class folder {class_dir} holds no images (png/jpg/bmp/tif)")
        classes[class_dir.name] = files
    if not classes:
        raise DataError(f"{folder} has no class sub-folders")
    return classes


def _split_stratified(classes: dict[str, list[Path]], val_fraction: float, test_fraction: float,
                      seed: int) -> dict[str, dict[str, list[Path]]]:
    """Per class, shuffle groups of identical images with `seed` and cut them into splits."""
    splits: dict[str, dict[str, list[Path]]] = {s: {} for s in SPLITS}
    for class_id, (class_name, files) in enumerate(classes.items()):
        groups: dict[str, list[Path]] = defaultdict(list)
        for path in files:
            groups[pixel_sha256(read_image(path))].append(path)
        keys = sorted(groups)
        np.random.default_rng([seed, class_id]).shuffle(keys)
        n_val, n_test = round(len(keys) * val_fraction), round(len(keys) * test_fraction)
        if len(keys) - n_val - n_test < 1:
            raise DataError(f"class '{class_name}' has {len(keys)} distinct images: too few to split")
        parts = {"val": keys[:n_val], "test": keys[n_val:n_val + n_test], "train": keys[n_val + n_test:]}
        for split, split_keys in parts.items():
            splits[split][class_name] = sorted(p for k in split_keys for p in groups[k])
    return splits


def imagefolder_records(root: str | Path, val_fraction: float = 0.1, test_fraction: float = 0.2,
                        seed: int = 0) -> tuple[Iterator[Record], int]:
    """Records of the folder's images (grey if every image is grey, RGB otherwise), and their count."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"source folder not found: {root}")
    present = [s for s in SPLITS if (root / s).is_dir()]
    if present:
        if "train" not in present:
            raise DataError(f"{root} has {', '.join(present)} folders but no train/")
        splits = {s: _class_files(root / s) if s in present else {} for s in SPLITS}
    else:
        splits = _split_stratified(_class_files(root), val_fraction, test_fraction, seed)
    total = sum(len(f) for per_class in splits.values() for f in per_class.values())

    # One pass to find the mode: a single RGB image makes the whole dataset RGB.
    all_grey = all(read_image(p).ndim == 2 for per_class in splits.values()
                   for files in per_class.values() for p in files)

    def generate() -> Iterator[Record]:
        for split, per_class in splits.items():
            for class_name, files in per_class.items():
                for path in files:
                    pixels = read_image(path)
                    if not all_grey and pixels.ndim == 2:
                        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
                    yield Record(split, class_name, path.stem, pixels, origin=str(path))

    return generate(), total
