"""Turn a data source into the processed layout (training.data.processed), the first stage of every study."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.core.errors import DataError
from training.core.names import check_plain_name
from training.core.outputs import refuse_output_inside_dataset
from training.data.images import DEFAULT_RESIZE, RESIZE_POLICIES
from training.data.processed import DUPLICATES, SPLITS_MANIFEST, Written, format_duplicates, write_dataset
from training.data.scan import band_warnings, format_modes, format_resize, format_sizes, size_summary, upsampling_warnings
from training.data.sources import Source, default_name, read_source
from training.data.sources.demo import MAX_DEMO_IMAGES, MAX_TEST_MALIGNANT
from training.data.sources.imagefolder import GROUPINGS


@dataclass(frozen=True)
class SourceOptions:
    """How to read a source: the names and numbers `prepare_data.py` takes as flags."""

    class_names: str | None = None      # .npz and IDX only, e.g. "0=malignant,1=benign"
    image_size: int | None = None       # resize to a square of this size
    val_fraction: float = 0.1           # folder without splits, digits, MNIST: val share per class
    test_fraction: float = 0.2          # folder without splits, digits: test share per class
    seed: int = 0                       # demo images and stratified splits
    demo_num_train: int = 2200
    demo_imbalance: int = 10
    demo_test_malignant: int | None = None    # None: a balanced test split (the pipeline's demo gets it too)
    channels: int | None = None         # 1, 3, or None: auto (grey when every image is grey in content)
    resize: str = DEFAULT_RESIZE        # pad | center_crop | squash: how a non-square image becomes square
    group_by: str = "image"             # image | subfolder: what a folder without splits keeps in one split

    def check(self) -> None:
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise DataError("--val_fraction and --test_fraction must be in [0, 1) and sum to less than 1")
        if self.image_size is not None and not 8 <= self.image_size <= 1024:
            raise DataError("--image_size must be between 8 and 1024")
        if not 1 <= self.demo_num_train <= MAX_DEMO_IMAGES:
            raise DataError(f"--demo_num_train must be between 1 and {MAX_DEMO_IMAGES:,}, got {self.demo_num_train}")
        if not 1 <= self.demo_imbalance <= self.demo_num_train:
            raise DataError(f"--demo_imbalance (benign per malignant image) must be between 1 and --demo_num_train, "
                            f"got {self.demo_imbalance}")
        if self.demo_test_malignant is not None and not 1 <= self.demo_test_malignant <= MAX_TEST_MALIGNANT:
            raise DataError(f"--demo_test_malignant must be between 1 and {MAX_TEST_MALIGNANT}, "
                            f"got {self.demo_test_malignant}")
        if self.channels not in (None, 1, 3):
            raise DataError(f"--channels must be 1, 3 or auto, got {self.channels!r}")
        if self.resize not in RESIZE_POLICIES:
            raise DataError(f"--resize must be one of {', '.join(RESIZE_POLICIES)}, got {self.resize!r}")
        if self.group_by not in GROUPINGS:
            raise DataError(f"--group_by must be one of {', '.join(GROUPINGS)}, got {self.group_by!r}")


@dataclass(frozen=True)
class Prepared:
    """Where the dataset is, and its per-split class counts (None when an existing one was kept); `written`
    holds the rest of what was written (duplicates, channels, sizes), also None when it was kept."""

    root: Path
    summary: dict | None
    written: Written | None = None


def open_prepared_source(source: str, options: SourceOptions = SourceOptions()) -> Source:
    """The source opened with `options` (an image folder's files are each decoded once, with a progress bar);
    nothing is written. The pipeline's dry run checks its configs against this."""
    options.check()
    return read_source(source, seed=options.seed, image_size=options.image_size, class_names=options.class_names,
                       val_fraction=options.val_fraction, test_fraction=options.test_fraction,
                       demo_num_train=options.demo_num_train, demo_imbalance=options.demo_imbalance,
                       demo_test_malignant=options.demo_test_malignant,
                       channels=options.channels, resize=options.resize, group_by=options.group_by)


def source_report(opened: Source, options: SourceOptions) -> list[str]:
    """What prepare_data.py says about a source before writing it: classes, colour modes and the channel
    count chosen, sizes and the resize policy (said once per run)."""
    scan = opened.scan
    classes = ", ".join(f"{c} {sum(per.get(c, 0) for per in scan.counts.values())}" for c in scan.classes)
    return [f"source: {opened.total} images, {len(scan.classes)} classes ({classes})", format_modes(scan),
            opened.channels_note, format_sizes(scan), format_resize(scan, options.resize, options.image_size),
            *band_warnings(scan, options.resize), *upsampling_warnings(scan, options.image_size)]


def prepare_dataset(source: str, out_root: str | Path, name: str | None = None,
                    options: SourceOptions = SourceOptions(), *, drop_leaked: bool = False,
                    keep_duplicates: bool = False, overwrite: bool = False) -> Prepared:
    """Write `<out_root>/<name>/{train,val,test}/<class>/` from `source` ('demo', 'digits', an .npz, an
    IDX folder or an image folder), printing what it found (colour modes, channels, sizes, resize policy,
    duplicates). An existing prepared dataset is kept unless `overwrite`, without reading the source."""
    options.check()
    if not source.strip():
        raise DataError("--source is empty: give 'demo', 'digits', an .npz file, or a folder of images")
    if name is not None:
        check_plain_name(name, "--name")
    # The dataset folder itself may be one of ours being rebuilt; the folder it goes into may not be a dataset's.
    refuse_output_inside_dataset(out_root, "--output_dir", "the parent of your datasets, e.g. data/processed")
    dataset = name or default_name(source)
    if not dataset:
        open_prepared_source(source, options)       # raises the source's own one-line error
    out_dir = Path(out_root) / dataset
    resolved, source_path = out_dir.resolve(), Path(source).resolve()
    if source not in ("demo", "digits") and (resolved == source_path or source_path in resolved.parents
                                              or resolved in source_path.parents):
        raise DataError(f"--output_dir {out_dir} overlaps the source {source}; the source is never modified")
    if (out_dir / SPLITS_MANIFEST).is_file() and not overwrite:
        return Prepared(out_dir, None)
    opened = open_prepared_source(source, options)
    for line in source_report(opened, options):
        print(line)
    info = {"source": source, "channels_requested": "auto" if options.channels is None else options.channels,
            "resize": options.resize, "image_size": options.image_size, "seed": options.seed, "group_by": options.group_by,
            "val_fraction": options.val_fraction, "test_fraction": options.test_fraction,
            "keep_duplicates": keep_duplicates, "colour_modes_found": opened.scan.modes,
            "colour_images_found": opened.scan.colour, "sizes_found": size_summary(opened.scan)}
    written = write_dataset(opened.records, out_dir, overwrite=overwrite, total=opened.total, drop_leaked=drop_leaked,
                            keep_duplicates=keep_duplicates, info=info)
    for line in [*format_duplicates(written.duplicates, keep_duplicates, str(out_dir / DUPLICATES)),
                 *split_warnings(written.counts)]:
        print(line)
    return Prepared(out_dir, written.counts, written)


def split_warnings(counts: dict[str, dict[str, int]]) -> list[str]:
    """Warnings for a val or test split that is empty or lacks a class: the dataset is written (a GAN needs
    only train), but no classifier can be selected or scored on it (train_classifier.py refuses it)."""
    classes = sorted({c for per_class in counts.values() for c in per_class})
    lines = []
    for split, role in (("val", "select a classifier's epoch and threshold"), ("test", "score a classifier")):
        have = {c for c, n in counts.get(split, {}).items() if n}
        if not have:
            lines.append(f"warning: the {split} split is empty: nothing to {role} on, so train_classifier.py (and "
                         f"the pipeline's classifiers) will refuse this dataset; give the source a {split} split (or "
                         f"--{split}_fraction > 0 for a folder without splits)")
        elif have != set(classes):
            lines.append(f"warning: the {split} split has no images of {', '.join(sorted(set(classes) - have))}: "
                         f"AUC and sensitivity are undefined there, so train_classifier.py will refuse this dataset")
    return lines
