"""Turn a data source into the processed layout (training.data.processed), the first stage of every study."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.core.errors import DataError
from training.core.names import check_plain_name
from training.data.processed import SPLITS_MANIFEST, write_dataset
from training.data.sources import open_source


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

    def check(self) -> None:
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise DataError("--val_fraction and --test_fraction must be in [0, 1) and sum to less than 1")
        if self.image_size is not None and not 8 <= self.image_size <= 1024:
            raise DataError("--image_size must be between 8 and 1024")


@dataclass(frozen=True)
class Prepared:
    """Where the dataset is, and its per-split class counts (None when an existing one was kept)."""

    root: Path
    summary: dict | None


def prepare_dataset(source: str, out_root: str | Path, name: str | None = None,
                    options: SourceOptions = SourceOptions(), *, drop_leaked: bool = False,
                    overwrite: bool = False) -> Prepared:
    """Write `<out_root>/<name>/{train,val,test}/<class>/` from `source` ('demo', 'digits', an .npz, an
    IDX folder or an image folder). An existing prepared dataset is kept unless `overwrite`."""
    options.check()
    if name is not None:
        check_plain_name(name, "--name")
    records, total, default_name = open_source(
        source, seed=options.seed, image_size=options.image_size, class_names=options.class_names,
        val_fraction=options.val_fraction, test_fraction=options.test_fraction,
        demo_num_train=options.demo_num_train, demo_imbalance=options.demo_imbalance)
    out_dir = Path(out_root) / (name or default_name)
    resolved, source_path = out_dir.resolve(), Path(source).resolve()
    if source not in ("demo", "digits") and (resolved == source_path or source_path in resolved.parents
                                              or resolved in source_path.parents):
        raise DataError(f"--output_dir {out_dir} overlaps the source {source}; the source is never modified")
    if (out_dir / SPLITS_MANIFEST).is_file() and not overwrite:
        return Prepared(out_dir, None)
    summary = write_dataset(records, out_dir, overwrite=overwrite, total=total, drop_leaked=drop_leaked)
    return Prepared(out_dir, summary)
