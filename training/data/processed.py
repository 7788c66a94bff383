"""The processed-dataset layout every data source ends in.

    <out>/<name>/train/<class>/*.png
    <out>/<name>/val/<class>/*.png
    <out>/<name>/test/<class>/*.png
    <out>/<name>/manifest.csv        path, split, class, sha256 (of the decoded pixels)

`write_dataset` builds it in a temporary folder beside the target, refuses when the same pixel
content sits in train and in val/test (leakage), and only then moves it into place, so a refused
or interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.core import atomic
from training.core.errors import DataError, UserError
from training.core.names import check_plain_name
from training.core.progress import progress
from training.data.images import encode_png, pixel_sha256

SPLITS = ("train", "val", "test")
SPLITS_MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class Record:
    """One image on its way into the processed layout."""

    split: str
    class_name: str
    file_stem: str        # name without suffix inside <split>/<class>/
    pixels: np.ndarray    # uint8 (H, W) or (H, W, 3)
    origin: str = ""      # where it came from, for error messages


def find_leakage(rows: list[dict]) -> list[tuple[str, str]]:
    """Pairs (train path, val/test path) that hold the same pixel content."""
    train_by_hash = defaultdict(list)
    for row in rows:
        if row["split"] == "train":
            train_by_hash[row["sha256"]].append(row["path"])
    return [(train_by_hash[row["sha256"]][0], row["path"]) for row in rows
            if row["split"] != "train" and row["sha256"] in train_by_hash]


def read_splits_manifest(root: str | Path) -> list[dict]:
    path = Path(root) / SPLITS_MANIFEST
    if not path.is_file():
        raise DataError(f"{root} has no {SPLITS_MANIFEST}: make it with training/prepare_data.py")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_dataset(records: Iterable[Record], out_dir: str | Path, *, overwrite: bool = False,
                  total: int | None = None, drop_leaked: bool = False) -> dict:
    """Write `records` as a processed dataset at `out_dir`; return a summary of counts.

    Refuses an existing `out_dir` unless `overwrite`, and even then only one this tool made
    (it has a manifest.csv), so a folder of the user's own images is never removed.
    Val/test images whose content is also in train are refused, or with `drop_leaked` left out of
    the processed copy and listed in `leakage_dropped.csv` (the source is never touched).
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not overwrite:
            raise DataError(f"{out_dir} already exists: pass --overwrite to rebuild it")
        if not (out_dir / SPLITS_MANIFEST).is_file():
            raise DataError(f"{out_dir} exists and was not made by prepare_data.py (no {SPLITS_MANIFEST}); "
                            "refusing to replace it")
    with atomic.staged_directory(out_dir) as staging:
        rows = _write_records(records, staging, total)
        leaks = find_leakage(rows)
        if leaks and drop_leaked:
            rows = _drop(rows, leaks, staging)
            leaks = []
        if leaks:
            shown = "; ".join(f"{a} == {b}" for a, b in leaks[:3])
            more = f" and {len(leaks) - 3} more" if len(leaks) > 3 else ""
            raise DataError(f"{len(leaks)} image(s) of val/test have the same content as train images "
                            f"(leakage): {shown}{more}; pass --drop_leaked to leave them out of val/test")
        _write_manifest(rows, staging / SPLITS_MANIFEST)
    return summarize(rows)


def _write_records(records: Iterable[Record], staging: Path, total: int | None) -> list[dict]:
    rows, used_names, shape_seen, checked_classes = [], set(), None, set()
    for rec in progress(records, total=total, desc="writing images", unit="img"):
        if rec.split not in SPLITS:
            raise DataError(f"unknown split '{rec.split}' for {rec.origin or rec.file_stem}")
        if rec.class_name not in checked_classes:          # loaders skip hidden folders: never write one
            try:
                checked_classes.add(check_plain_name(rec.class_name, "a class name"))
            except UserError as err:
                raise DataError(f"{err} ({rec.origin or rec.file_stem})") from None
        kind = "grey" if rec.pixels.ndim == 2 else "RGB"
        if shape_seen is None:
            shape_seen = kind
        elif kind != shape_seen:
            raise DataError(f"mixed grey and RGB images ({rec.origin or rec.file_stem} is {kind}); "
                            "sources are converted to one mode before writing")
        stem, n = rec.file_stem, 1
        while (rec.split, rec.class_name, stem) in used_names:  # e.g. a.jpg and a.png in one class
            n += 1
            stem = f"{rec.file_stem}_{n}"
        used_names.add((rec.split, rec.class_name, stem))
        rel = Path(rec.split) / rec.class_name / f"{stem}.png"
        (staging / rel.parent).mkdir(parents=True, exist_ok=True)
        (staging / rel).write_bytes(encode_png(rec.pixels))
        rows.append({"path": rel.as_posix(), "split": rec.split, "class": rec.class_name,
                     "sha256": pixel_sha256(rec.pixels)})
    if not rows:
        raise DataError("the source holds no images")
    return rows


def _drop(rows: list[dict], leaks: list[tuple[str, str]], staging: Path) -> list[dict]:
    dropped = {held_out for _, held_out in leaks}
    for path in dropped:
        (staging / path).unlink()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["dropped_path", "same_content_as_train_path"])
    writer.writerows(sorted((b, a) for a, b in leaks))
    (staging / "leakage_dropped.csv").write_text(buf.getvalue())
    print(f"dropped {len(dropped)} val/test image(s) that duplicate train images: {', '.join(sorted(dropped))}")
    return [r for r in rows if r["path"] not in dropped]


def _write_manifest(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["path", "split", "class", "sha256"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue())


def summarize(rows: list[dict]) -> dict:
    """Counts per split and class, e.g. {'train': {'benign': 2000, 'malignant': 200}, ...}."""
    counts = Counter((r["split"], r["class"]) for r in rows)
    return {split: {c: n for (s, c), n in sorted(counts.items()) if s == split} for split in SPLITS}


def format_summary(summary: dict) -> str:
    lines = []
    for split, classes in summary.items():
        parts = ", ".join(f"{c} {n}" for c, n in classes.items()) or "empty"
        lines.append(f"  {split:5s}: {parts}")
    return "\n".join(lines)
