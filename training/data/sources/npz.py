"""MedMNIST-style `.npz` files: `{train,val,test}_images` and `{train,val,test}_labels`.

Images are uint8 (N, H, W) grey or (N, H, W, 3) RGB; labels are (N,) or (N, 1) integers.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from training.core.errors import DataError, UserError
from training.core.names import check_plain_name
from training.data.processed import SPLITS, Record
from training.data.scan import SourceScan, array_scan


def parse_class_names(text: str | None) -> dict[int, str]:
    """'0=malignant,1=benign' -> {0: 'malignant', 1: 'benign'}."""
    if not text:
        return {}
    names = {}
    for part in text.split(","):
        label, sep, name = part.partition("=")
        if not sep or not label.strip().lstrip("-").isdigit() or not name.strip():
            raise DataError(f"--class_names: '{part}' must look like 0=malignant")
        if int(label) in names:        # 0=x,0=y: the last would win silently
            raise DataError(f"--class_names: label {int(label)} is named twice in '{text}'")
        try:
            names[int(label)] = check_plain_name(name.strip(), "--class_names: a class name")
        except UserError as err:
            raise DataError(str(err)) from None
    if len(set(names.values())) != len(names):
        raise DataError(f"--class_names: two labels share a name in '{text}'")
    return names


def npz_records(path: str | Path, class_names: dict[int, str]) -> tuple[Iterator[Record], int, SourceScan]:
    """Records of every split in the file, their total count, and the file's scan."""
    path = Path(path)
    try:
        data = np.load(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read {path} as .npz: {err}") from None
    arrays = {}
    for split in SPLITS:
        for kind in ("images", "labels"):
            key = f"{split}_{kind}"
            if key not in data.files:
                raise DataError(f"{path} has no '{key}' array (found: {', '.join(data.files)})")
            try:
                arrays[key] = data[key]
            except (ValueError, OSError, zipfile.BadZipFile) as err:     # e.g. an object array (pickle): refused
                raise DataError(f"{path}: cannot read '{key}': {str(err).splitlines()[0]}") from None
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if labels.dtype.kind not in "iuf" or (labels.dtype.kind == "f" and not (np.isfinite(labels).all()
                                                                           and (labels == np.round(labels)).all())):
            raise DataError(f"{path}: '{split}_labels' must hold whole numbers, got {labels.dtype} "
                            "with non-integer or missing (NaN) values")
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = arrays[f"{split}_labels"] = labels[:, 0]
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{path}: '{split}_labels' must have shape (N,) or (N, 1) with "
                            f"N = {len(images)} images, got {tuple(arrays[f'{split}_labels'].shape)}")
        if not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)):
            raise DataError(f"{path}: '{split}_images' must be (N, H, W) or (N, H, W, 3), "
                            f"got {tuple(images.shape)}")
        if images.dtype != np.uint8:
            raise DataError(f"{path}: '{split}_images' must be uint8, got {images.dtype}")
    unknown = sorted({int(v) for s in SPLITS for v in np.unique(arrays[f"{s}_labels"])} - set(class_names))
    names = {**{label: f"class_{label}" for label in unknown}, **class_names}
    total = sum(len(arrays[f"{s}_labels"]) for s in SPLITS)
    scan = array_scan(((s, arrays[f"{s}_images"], [names[int(v)] for v in arrays[f"{s}_labels"]]) for s in SPLITS),
                      path.name)

    def generate() -> Iterator[Record]:
        for split in SPLITS:
            for index, (pixels, label) in enumerate(zip(arrays[f"{split}_images"], arrays[f"{split}_labels"])):
                yield Record(split, names[int(label)], f"{split}_{index:06d}", pixels,
                             origin=f"{path.name}:{split}[{index}]")

    return generate(), total, scan
