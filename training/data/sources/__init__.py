"""Data sources, each ending as the processed layout of `training.data.processed`.

`open_source` picks one from the `--source` argument: the word `demo` or `digits`, a `.npz` file
(MedMNIST or Keras-style MNIST arrays), a folder of MNIST IDX files, or an image folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from training.core.errors import DataError
from training.data.processed import Record


def open_source(source: str, *, seed: int = 0, image_size: int | None = None, class_names: str | None = None,
                val_fraction: float = 0.1, test_fraction: float = 0.2,
                demo_num_train: int = 2200, demo_imbalance: int = 10) -> tuple[Iterator[Record], int, str]:
    """Return (records, total count, default dataset name) for a `--source` argument."""
    from training.data.sources.demo import demo_records
    from training.data.sources.digits import digits_records
    from training.data.sources.idx import is_idx_folder, is_keras_npz, mnist_records, read_idx_folder, read_keras_npz
    from training.data.sources.imagefolder import imagefolder_records
    from training.data.sources.npz import npz_records, parse_class_names

    if source == "demo":
        records, total = demo_records(seed=seed, image_size=image_size or 64, num_train=demo_num_train,
                                      imbalance=demo_imbalance)
        return records, total, "demo"
    if source == "digits":
        if class_names:
            raise DataError("--class-names does not apply to 'digits' (its classes are the digits 0-9)")
        records, total = digits_records(seed=seed, image_size=image_size or 32, val_fraction=val_fraction,
                                        test_fraction=test_fraction)
        return records, total, "digits"
    path = Path(source)
    if class_names and not (source.endswith(".npz") or is_idx_folder(path)):
        raise DataError("--class-names applies to .npz sources and MNIST IDX folders only "
                        "(folder names are the class names)")
    named = parse_class_names(class_names)
    if source.endswith(".npz"):
        if not path.is_file():
            raise DataError(f"source file not found: {path}")
        if is_keras_npz(path):      # MNIST-style x_train/y_train/x_test/y_test: val carved from train
            records, total = mnist_records(read_keras_npz(path), str(path), named, val_fraction, seed)
        else:
            records, total = npz_records(path, named)
    elif is_idx_folder(path):       # MNIST / Fashion-MNIST IDX files: val carved from train
        records, total = mnist_records(read_idx_folder(path), str(path), named, val_fraction, seed)
    elif path.is_dir():
        records, total = imagefolder_records(path, val_fraction, test_fraction, seed)
    else:
        raise DataError(f"source not found: '{source}' (use 'demo', 'digits', a .npz file, a folder of MNIST IDX "
                        "files or an image folder)")
    if image_size:
        records = _resized(records, image_size)
    return records, total, path.stem if path.is_file() else path.resolve().name


def _resized(records: Iterator[Record], size: int) -> Iterator[Record]:
    import dataclasses

    from training.data.images import resize

    for rec in records:
        yield dataclasses.replace(rec, pixels=resize(rec.pixels, size))
