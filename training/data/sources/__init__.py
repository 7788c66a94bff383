"""Data sources, each ending as the processed layout of `training.data.processed`.

Each kind of source is registered in `SOURCES` with a test that recognises a `--source` argument
and a reader; `open_source` asks them in registration order (the words `demo` and `digits`, a
Keras-style MNIST .npz, a MedMNIST .npz, a folder of MNIST IDX files, an image folder).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from training.core.errors import DataError
from training.core.registry import Registry
from training.data.images import resize
from training.data.processed import Record
from training.data.sources.demo import demo_records
from training.data.sources.digits import digits_records
from training.data.sources.idx import is_idx_folder, is_keras_npz, mnist_records, read_idx_folder, read_keras_npz
from training.data.sources.imagefolder import imagefolder_records
from training.data.sources.npz import npz_records, parse_class_names


@dataclass(frozen=True)
class SourceRequest:
    """A `--source` argument and the options that apply to it."""

    source: str
    seed: int = 0
    image_size: int | None = None
    class_names: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    demo_num_train: int = 2200
    demo_imbalance: int = 10

    @property
    def path(self) -> Path:
        return Path(self.source)


@dataclass(frozen=True)
class SourceKind:
    """`matches(request)` recognises the source; `read(request)` returns (records, total count, default name);
    `takes_class_names`: whether --class_names applies."""

    matches: Callable[[SourceRequest], bool]
    read: Callable[[SourceRequest], tuple[Iterator[Record], int, str]]
    takes_class_names: bool = False


SOURCES = Registry("data source", "--source")


def _npz(r: SourceRequest) -> bool:
    return r.source.endswith(".npz")


SOURCES.register("demo")(SourceKind(
    lambda r: r.source == "demo",
    lambda r: (*demo_records(seed=r.seed, image_size=r.image_size or 64, num_train=r.demo_num_train,
                             imbalance=r.demo_imbalance), "demo")))
SOURCES.register("digits")(SourceKind(
    lambda r: r.source == "digits",
    lambda r: (*digits_records(seed=r.seed, image_size=r.image_size or 32, val_fraction=r.val_fraction,
                               test_fraction=r.test_fraction), "digits")))
# MNIST-style x_train/y_train/x_test/y_test (val carved from train), before MedMNIST's own .npz layout.
SOURCES.register("keras-npz")(SourceKind(
    lambda r: _npz(r) and r.path.is_file() and is_keras_npz(r.path),
    lambda r: (*mnist_records(read_keras_npz(r.path), r.source, parse_class_names(r.class_names), r.val_fraction,
                              r.seed), r.path.stem), takes_class_names=True))
SOURCES.register("medmnist-npz")(SourceKind(
    lambda r: _npz(r) and r.path.is_file(),
    lambda r: (*npz_records(r.path, parse_class_names(r.class_names)), r.path.stem), takes_class_names=True))
SOURCES.register("mnist-idx")(SourceKind(
    lambda r: is_idx_folder(r.path),
    lambda r: (*mnist_records(read_idx_folder(r.path), r.source, parse_class_names(r.class_names), r.val_fraction,
                              r.seed), r.path.resolve().name), takes_class_names=True))
SOURCES.register("imagefolder")(SourceKind(
    lambda r: not _npz(r) and r.path.is_dir(),
    lambda r: (*imagefolder_records(r.path, r.val_fraction, r.test_fraction, r.seed), r.path.resolve().name)))


def open_source(source: str, **options) -> tuple[Iterator[Record], int, str]:
    """Return (records, total count, default dataset name) for a `--source` argument; `options` are
    the fields of `SourceRequest` (seed, image_size, class_names, fractions, demo settings)."""
    request = SourceRequest(source, **options)
    kind = next((k for k in SOURCES.values() if k.matches(request)), None)
    if kind is None:
        if _npz(request):
            raise DataError(f"source file not found: {source}")
        raise DataError(f"source not found: '{source}' (use 'demo', 'digits', a .npz file, a folder of MNIST IDX "
                        "files or an image folder)")
    if request.class_names and not kind.takes_class_names:
        if source == "digits":
            raise DataError("--class_names does not apply to 'digits' (its classes are the digits 0-9)")
        raise DataError("--class_names applies to .npz sources and MNIST IDX folders only (folder names are the "
                        "class names)")
    records, total, name = kind.read(request)
    if request.image_size and source not in ("demo", "digits"):     # those two render at the size asked for
        records = _resized(records, request.image_size)
    return records, total, name


def _resized(records: Iterator[Record], size: int) -> Iterator[Record]:
    for rec in records:
        yield dataclasses.replace(rec, pixels=resize(rec.pixels, size))
