"""Data sources, each ending as the processed layout of `training.data.processed`.

Each kind of source is registered in `SOURCES` with a test that recognises a `--source` argument
and a reader; `open_source` asks them in registration order (the words `demo` and `digits`, a
Keras-style MNIST .npz, a MedMNIST .npz, a folder of MNIST IDX files, an image folder).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from training.core.errors import DataError
from training.core.registry import Registry
from training.data.images import DEFAULT_RESIZE, make_square, to_mode
from training.data.processed import Record
from training.data.scan import SourceScan, array_scan, resolve_channels
from training.data.sources.demo import TEST_FRACTION as DEMO_TEST_FRACTION
from training.data.sources.demo import VAL_FRACTION as DEMO_VAL_FRACTION
from training.data.sources.demo import balanced_test_counts, demo_records
from training.data.sources.digits import digits_records, digits_splits
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
    demo_test_malignant: int | None = None    # demo: malignant test images; None: as many as benign ones
    channels: int | None = None         # 1, 3, or None: auto (grey when every image is grey in content)
    resize: str = DEFAULT_RESIZE        # how a non-square image becomes square (training.data.images.make_square)
    group_by: str = "image"             # an image folder without splits: image, or subfolder (a patient's images)

    @property
    def path(self) -> Path:
        return Path(self.source)


@dataclass(frozen=True)
class Source:
    """An opened source: its records (lazy: nothing is decoded twice until they are read), their count,
    the default dataset name, the scan, and the channel count with the line that says why."""

    records: Iterator[Record]
    total: int
    name: str
    scan: SourceScan
    channels: int
    channels_note: str


@dataclass(frozen=True)
class SourceKind:
    """`matches(request)` recognises the source; `read(request)` returns (records, total count, scan);
    `name(request)` is the default dataset name; `takes_class_names`: whether --class_names applies."""

    matches: Callable[[SourceRequest], bool]
    read: Callable[[SourceRequest], tuple[Iterator[Record], int, SourceScan]]
    name: Callable[[SourceRequest], str]
    takes_class_names: bool = False


SOURCES = Registry("data source", "--source")


def _npz(r: SourceRequest) -> bool:
    return r.source.endswith(".npz")


def _demo(r: SourceRequest) -> tuple[Iterator[Record], int, SourceScan]:
    counts = balanced_test_counts(r.demo_num_train, r.demo_imbalance, DEMO_VAL_FRACTION, DEMO_TEST_FRACTION,
                                  r.demo_test_malignant)
    records, total = demo_records(seed=r.seed, image_size=r.image_size or 64, num_train=r.demo_num_train,
                                  imbalance=r.demo_imbalance, test_malignant=counts["test"]["malignant"])
    size = r.image_size or 64
    sizes: Counter = Counter()
    for per_class in counts.values():
        for name, n in per_class.items():
            sizes[(name, size, size)] += n
    # Rendered skin lesions: colour by construction (brown, blue-grey and red-brown pigments on skin).
    scan = SourceScan({s: dict(sorted(c.items())) for s, c in counts.items()}, {"RGB": total}, total, dict(sizes),
                      "demo (rendered in colour)")
    return records, total, scan


def _digits(r: SourceRequest) -> tuple[Iterator[Record], int, SourceScan]:
    size = r.image_size or 32
    records, total = digits_records(seed=r.seed, image_size=size, val_fraction=r.val_fraction,
                                    test_fraction=r.test_fraction)
    pixels, labels, splits = digits_splits(r.seed, r.val_fraction, r.test_fraction)
    scan = array_scan([(split, pixels[splits == split], [str(v) for v in labels[splits == split]])
                       for split in ("train", "val", "test")], "digits")
    sizes: Counter = Counter()
    for (name, _, _), n in scan.sizes.items():         # 8 x 8 in scikit-learn, rendered at `size`
        sizes[(name, size, size)] += n
    return records, total, dataclasses.replace(scan, sizes=dict(sizes))


SOURCES.register("demo")(SourceKind(lambda r: r.source == "demo", _demo, lambda r: "demo"))
SOURCES.register("digits")(SourceKind(lambda r: r.source == "digits", _digits, lambda r: "digits"))
# MNIST-style x_train/y_train/x_test/y_test (val carved from train), before MedMNIST's own .npz layout.
SOURCES.register("keras-npz")(SourceKind(
    lambda r: _npz(r) and r.path.is_file() and is_keras_npz(r.path),
    lambda r: mnist_records(read_keras_npz(r.path), r.source, parse_class_names(r.class_names), r.val_fraction, r.seed),
    lambda r: r.path.stem, takes_class_names=True))
SOURCES.register("medmnist-npz")(SourceKind(
    lambda r: _npz(r) and r.path.is_file(),
    lambda r: npz_records(r.path, parse_class_names(r.class_names)), lambda r: r.path.stem, takes_class_names=True))
SOURCES.register("mnist-idx")(SourceKind(
    lambda r: is_idx_folder(r.path),
    lambda r: mnist_records(read_idx_folder(r.path), r.source, parse_class_names(r.class_names), r.val_fraction, r.seed),
    lambda r: r.path.resolve().name, takes_class_names=True))
SOURCES.register("imagefolder")(SourceKind(
    lambda r: not _npz(r) and r.path.is_dir(),
    lambda r: imagefolder_records(r.path, r.val_fraction, r.test_fraction, r.seed, r.group_by),
    lambda r: r.path.resolve().name))


def _kind(request: SourceRequest) -> SourceKind:
    kind = next((k for k in SOURCES.values() if k.matches(request)), None)
    if kind is None:
        if _npz(request):
            raise DataError(f"source file not found: {request.source}")
        raise DataError(f"source not found: '{request.source}' (use 'demo', 'digits', a .npz file, a folder of MNIST "
                        "IDX files or an image folder)")
    if request.class_names and not kind.takes_class_names:
        if request.source == "digits":
            raise DataError("--class_names does not apply to 'digits' (its classes are the digits 0-9)")
        raise DataError("--class_names applies to .npz sources and MNIST IDX folders only (folder names are the "
                        "class names)")
    return kind


def default_name(source: str) -> str:
    """The dataset name a source gets without --name, known without reading it ('' when it is not found)."""
    request = SourceRequest(source)
    kind = next((k for k in SOURCES.values() if k.matches(request)), None)
    return kind.name(request) if kind else ""


def read_source(source: str, **options) -> Source:
    """Open a `--source` argument: its scan (an image folder's files are each decoded once for it, with a
    progress bar), the channel count `options['channels']` resolves to, and its records converted to that
    count and made square by `options['resize']` (then resized to `image_size` when given). `options` are
    the fields of `SourceRequest`. The records are lazy: only reading them decodes the images again."""
    request = SourceRequest(source, **options)
    kind = _kind(request)
    records, total, scan = kind.read(request)
    channels, note = resolve_channels(request.channels, scan)
    # demo and digits render at the size asked for; every other source is resized here.
    size = request.image_size if source not in ("demo", "digits") else None
    return Source(_conformed(records, channels, request.resize, size), total, kind.name(request), scan, channels, note)


def open_source(source: str, **options) -> tuple[Iterator[Record], int, str]:
    """(records, total count, default dataset name) of `read_source`, for callers that need no scan."""
    opened = read_source(source, **options)
    return opened.records, opened.total, opened.name


def _conformed(records: Iterator[Record], channels: int, policy: str, size: int | None) -> Iterator[Record]:
    for rec in records:
        pixels = to_mode(rec.pixels, channels)
        if size is not None or pixels.shape[0] != pixels.shape[1]:
            pixels = make_square(pixels, policy, size)
        yield dataclasses.replace(rec, pixels=pixels)
