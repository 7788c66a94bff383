"""MNIST-family data (MNIST, Fashion-MNIST, KMNIST, ...) as distributed: IDX files or a Keras-style `.npz`.

* a folder with `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
  `t10k-labels-idx1-ubyte` (each optionally `.gz`; `train-images.idx3-ubyte` spellings too);
* an `.npz` with `x_train`, `y_train`, `x_test`, `y_test` (as `keras.datasets.mnist.load_data` keeps it).

Both hold a train and a test set only: validation is carved out of train per class with a fixed seed
(`val_fraction`), and test stays the official test set. Class folders are the labels ('0'..'9')
unless `--class_names` names them (e.g. Fashion-MNIST's 0=tshirt,1=trouser,...).
"""

from __future__ import annotations

import gzip
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from training.core.errors import DataError
from training.data.processed import Record
from training.data.scan import SourceScan, array_scan
from training.data.sources.digits import assign_splits

_IDX_NAME = re.compile(r"(train|t10k)-(images|labels)[-.]idx([13])-ubyte(\.gz)?")
_UBYTE = 0x08                    # IDX type code of unsigned bytes
KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")


def idx_files(folder: Path) -> dict[tuple[str, str], Path]:
    """{('train'|'t10k', 'images'|'labels'): path} of the IDX files in `folder` (empty when it has none)."""
    found: dict[tuple[str, str], Path] = {}
    for path in sorted(folder.iterdir()):
        match = _IDX_NAME.fullmatch(path.name)
        if match and path.is_file():
            found.setdefault((match.group(1), match.group(2)), path)
    return found


def is_idx_folder(path: Path) -> bool:
    return path.is_dir() and bool(idx_files(path))


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX array of unsigned bytes with `ndim` dimensions (3 for images, 1 for labels)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    # Header: two zero bytes, the type code, the number of dimensions, then each size as big-endian int32.
    if len(raw) < 4 + 4 * ndim or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad header)")
    if raw[2] != _UBYTE or raw[3] != ndim:
        raise DataError(f"{path}: expected unsigned bytes in {ndim} dimension(s), found type 0x{raw[2]:02x} "
                        f"in {raw[3]} dimension(s)")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} = {int(np.prod(shape))} bytes, the file holds {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def read_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    """{'x_train', 'y_train', 'x_test', 'y_test'} from the four IDX files of `folder`."""
    files = idx_files(folder)
    arrays = {}
    for prefix, split in (("train", "train"), ("t10k", "test")):
        for kind, key, ndim in (("images", "x", 3), ("labels", "y", 1)):
            if (prefix, kind) not in files:
                raise DataError(f"{folder} has no {prefix}-{kind}-idx{ndim}-ubyte[.gz] file "
                                f"(found: {', '.join(p.name for p in files.values())})")
            arrays[f"{key}_{split}"] = read_idx(files[(prefix, kind)], ndim)
    return arrays


def is_keras_npz(path: Path) -> bool:
    """True when the .npz holds `x_train` (the Keras layout) rather than MedMNIST's `train_images`."""
    try:
        with np.load(path) as data:
            return "x_train" in data.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False            # the MedMNIST reader reports the problem


def read_keras_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            missing = [k for k in KERAS_KEYS if k not in data.files]
            if missing:
                raise DataError(f"{path} has no '{missing[0]}' array (found: {', '.join(data.files)})")
            return {k: data[k] for k in KERAS_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read {path} as .npz: {err}") from None


def mnist_records(arrays: dict[str, np.ndarray], where: str, class_names: dict[int, str], val_fraction: float,
                  seed: int) -> tuple[Iterator[Record], int, SourceScan]:
    """Records of a train/test pair of arrays, with val carved from train per class, their count, and the scan."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], np.asarray(arrays[f"y_{split}"]).reshape(-1)
        if not (x.ndim == 3 or (x.ndim == 4 and x.shape[3] == 3)) or x.dtype != np.uint8:
            raise DataError(f"{where}: x_{split} must be uint8 (N, H, W) or (N, H, W, 3), "
                            f"got {x.dtype} {tuple(x.shape)}")
        if len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: y_{split} must hold one integer label per image ({len(x)}), "
                            f"got {y.dtype} {tuple(np.shape(arrays[f'y_{split}']))}")
        arrays = {**arrays, f"y_{split}": y.astype(np.int64)}
    names = {int(v): str(int(v)) for s in ("train", "test") for v in np.unique(arrays[f"y_{s}"])}
    names.update(class_names)
    train_split = assign_splits(arrays["x_train"], arrays["y_train"], {"val": val_fraction}, seed)
    total = len(arrays["y_train"]) + len(arrays["y_test"])
    parts = [(split, arrays["x_train"][train_split == split], [names[int(v)] for v in arrays["y_train"][train_split == split]])
             for split in ("train", "val")]
    scan = array_scan([*parts, ("test", arrays["x_test"], [names[int(v)] for v in arrays["y_test"]])], where)

    def generate() -> Iterator[Record]:
        for source_split, splits in (("train", train_split), ("test", None)):
            for index, (pixels, label) in enumerate(zip(arrays[f"x_{source_split}"], arrays[f"y_{source_split}"])):
                split = splits[index] if splits is not None else "test"
                yield Record(split, names[int(label)], f"{source_split}_{index:06d}", pixels,
                             origin=f"{where}:{source_split}[{index}]")

    return generate(), total, scan
