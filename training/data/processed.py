"""The processed-dataset layout every data source ends in.

    <out>/<name>/train/<class>/*.png
    <out>/<name>/val/<class>/*.png
    <out>/<name>/test/<class>/*.png
    <out>/<name>/manifest.csv        path, split, class, sha256 (of the decoded pixels)
    <out>/<name>/duplicates.csv      every file whose pixels another file repeats: group, split, class, kept
    <out>/<name>/dataset.json        channels, the sizes written, duplicate counts and how it was made

`write_dataset` builds it in a temporary folder beside the target, refuses when the same pixel
content sits in train and in val/test (leakage), keeps one copy of each group of identical images
in val/test (copies there would be counted as independent test cases), and only then moves it into
place, so a refused or interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from training.core import atomic
from training.core.errors import DataError, UserError, short_repr
from training.core.names import check_plain_name
from training.core.progress import progress
from training.data.images import encode_png, pixel_sha256

SPLITS = ("train", "val", "test")
SPLITS_MANIFEST = "manifest.csv"
DUPLICATES = "duplicates.csv"
DATASET_INFO = "dataset.json"
HELD_OUT = ("val", "test")


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


def infer_data_root(real_dir: str | Path) -> Path | None:
    """data/processed/<dataset> for a real folder data/processed/<dataset>/<split>/<class>, else None: where QA
    and selection find the training split their domain encoder learns, so both learn the same one."""
    candidate = Path(real_dir).resolve().parent.parent
    return candidate if (candidate / SPLITS_MANIFEST).is_file() and (candidate / "train").is_dir() else None


def read_splits_manifest(root: str | Path) -> list[dict]:
    """The rows of a processed (or augmented) dataset's manifest.csv, each checked against the folder (DataError).

    A manifest is a file anyone can edit, so nothing downstream takes its word for where a file is: every
    row's path must be `<split>/<class>/<file>` inside `root` (no `..`, no absolute path, no link out of
    its split), its class a plain name, and its `split` and `class` columns those of the folders the file
    is in. A row claiming a test/ file for train, or pointing outside, would otherwise put a held-out or
    foreign image into training and be "proved" leak-free by the very manifest that lies.
    """
    root = Path(root)
    path = root / SPLITS_MANIFEST
    if not path.is_file():
        raise DataError(f"{root} has no {SPLITS_MANIFEST}: make it with training/prepare_data.py")
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path} is not a readable CSV ({err}); rebuild the dataset with prepare_data.py") from None
    missing = [name for name in MANIFEST_FIELDS if name not in (reader.fieldnames or [])]
    if missing or not rows:       # the manifest is what proves train and val/test apart: never taken on trust
        what = f"has no column {', '.join(missing)}" if missing else "lists no image"
        raise DataError(f"{path} {what}; rebuild the dataset with prepare_data.py")
    seen: set[str] = set()
    for number, row in enumerate(rows, start=2):       # line numbers as an editor shows them (1 = the header)
        _check_manifest_row(root, path, number, row, seen)
    return rows


def _check_manifest_row(root: Path, manifest: Path, number: int, row: dict, seen: set[str]) -> None:
    """DataError (one line) unless `row` names a file of `root/<split>/<class>/` that its columns agree with."""
    where = f"{manifest} line {number}"
    values = {k: row.get(k) for k in ("path", "split", "class", "sha256")}
    missing = [k for k, v in values.items() if not isinstance(v, str) or not v]
    if missing:
        raise DataError(f"{where} has no '{missing[0]}'; rebuild the dataset with prepare_data.py")
    rel = PurePosixPath(values["path"])
    if rel.is_absolute() or ".." in rel.parts or "\\" in values["path"] or len(rel.parts) != 3 or rel.parts[0] not in SPLITS:
        raise DataError(f"{where} lists {short_repr(values['path'], 80)}, which is not <split>/<class>/<file> inside "
                        f"{root}; refusing the dataset (an edited or foreign manifest)")
    split, class_name = rel.parts[0], rel.parts[1]
    try:
        check_plain_name(values["class"], "a class name")
    except UserError as err:
        raise DataError(f"{where}: {err}; refusing the dataset (an edited manifest)") from None
    if values["split"] != split or values["class"] != class_name:
        raise DataError(f"{where} says split={short_repr(values['split'], 20)}, class={short_repr(values['class'], 40)} "
                        f"for {values['path']}, which is in {split}/{class_name}/: a file's split and class are the "
                        "folders it is in; refusing the dataset (an edited manifest)")
    if not (root / rel).resolve().is_relative_to((root / split).resolve()):
        raise DataError(f"{where}: {values['path']} leads out of {root / split} (a link); refusing the dataset")
    if values["path"] in seen:
        raise DataError(f"{where} lists {values['path']} a second time; refusing the dataset (an edited manifest)")
    seen.add(values["path"])


@dataclass(frozen=True)
class Duplicates:
    """Groups of files with identical pixels, as `find_duplicates` sees them.

    Attributes:
        groups: one list of manifest rows per group (two or more files), in manifest order.
        dropped: paths of the val/test copies left out (all but the first of each class in val/test).
    """

    groups: list[list[dict]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def files(self) -> int:
        return sum(len(g) for g in self.groups)

    def counts(self) -> dict[str, int]:
        """Groups within one split (per split), across splits, and with more than one class."""
        out: Counter = Counter()
        for group in self.groups:
            splits = {r["split"] for r in group}
            out[f"within {splits.pop()}" if len(splits) == 1 else "across splits"] += 1
            out["label conflicts"] += len({r["class"] for r in group}) > 1
        order = [*(f"within {s}" for s in SPLITS), "across splits", "label conflicts"]
        return {k: out[k] for k in order if out[k]}


@dataclass(frozen=True)
class Written:
    """What `write_dataset` wrote: counts per split and class, the duplicate groups, the channel count
    and the distinct image sizes (height, width) written."""

    counts: dict
    duplicates: Duplicates
    channels: int
    sizes: dict[tuple[int, int], int]


def find_duplicates(rows: list[dict], keep_duplicates: bool = False) -> Duplicates:
    """Groups of rows with the same pixel content; unless `keep_duplicates`, every val/test copy after the
    first of its class (val before test, then path order) is marked to drop.

    Train copies stay: they only weigh that image more in training. Copies in val/test would count one
    image as several independent test cases and narrow every confidence interval for nothing. A group
    whose copies carry different classes (a label conflict) keeps one copy per class: which label is
    right is the user's call, and the CSV lists it.
    """
    by_hash: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_hash[row["sha256"]].append(row)
    groups = [g for g in by_hash.values() if len(g) > 1]
    dropped = []
    if not keep_duplicates:
        for group in groups:
            seen = set()
            for row in sorted((r for r in group if r["split"] in HELD_OUT),
                              key=lambda r: (HELD_OUT.index(r["split"]), r["path"])):
                if row["class"] in seen:
                    dropped.append(row["path"])
                seen.add(row["class"])
    return Duplicates(groups, dropped)


def format_duplicates(duplicates: Duplicates, keep_duplicates: bool, where: str) -> list[str]:
    """The report lines on duplicates: how many groups, where, what was left out, where the list is."""
    if not duplicates.groups:
        return ["duplicates: none among the images written (no two hold the same pixels)"]
    counts = duplicates.counts()
    where_parts = ", ".join(f"{n} {k}" for k, n in counts.items() if k != "label conflicts")
    largest = max(duplicates.groups, key=len)
    lines = [f"duplicates: {len(duplicates.groups)} group(s) of identical images, {duplicates.files} files "
             f"({where_parts}; the largest: {len(largest)} copies in {', '.join(sorted({r['split'] for r in largest}))})"]
    if counts.get("label conflicts"):
        lines.append(f"warning: {counts['label conflicts']} group(s) hold the same image under different classes: "
                     f"check those labels ({where})")
    if keep_duplicates:
        lines.append(f"  every copy kept (--keep_duplicates): val/test count copies as independent images; list: {where}")
    elif duplicates.dropped:
        lines.append(f"  val/test keep one copy per group: {len(duplicates.dropped)} file(s) left out "
                     f"(--keep_duplicates keeps them); train keeps its copies; list: {where}")
    else:
        lines.append(f"  no copies in val/test; train keeps its copies; list: {where}")
    return lines


def write_dataset(records: Iterable[Record], out_dir: str | Path, *, overwrite: bool = False,
                  total: int | None = None, drop_leaked: bool = False, keep_duplicates: bool = False,
                  info: dict | None = None) -> Written:
    """Write `records` as a processed dataset at `out_dir`; return what was written.

    Refuses an existing `out_dir` unless `overwrite`, and even then only one this tool made
    (it has a manifest.csv), so a folder of the user's own images is never removed.
    Val/test images whose content is also in train are refused, or with `drop_leaked` left out of
    the processed copy and listed in `leakage_dropped.csv` (the source is never touched). Then each
    group of identical images keeps one copy in val/test (`find_duplicates`; all with `keep_duplicates`),
    and every group is listed in duplicates.csv. `info` (how the dataset was made) goes into dataset.json.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not overwrite:
            raise DataError(f"{out_dir} already exists: pass --overwrite to rebuild it")
        if not (out_dir / SPLITS_MANIFEST).is_file():
            raise DataError(f"{out_dir} exists and was not made by prepare_data.py (no {SPLITS_MANIFEST}); "
                            "refusing to replace it")
    print(f"writing {'' if total is None else f'{total} '}images to {out_dir}")
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
        duplicates = find_duplicates(rows, keep_duplicates)
        for path in duplicates.dropped:
            (staging / path).unlink()
        _write_duplicates(duplicates, rows, staging / DUPLICATES)
        dropped = set(duplicates.dropped)
        rows = [r for r in rows if r["path"] not in dropped]
        channels = _channels_of(rows, staging)
        sizes = Counter(tuple(r["size"]) for r in rows)
        written = Written(summarize(rows), duplicates, channels, dict(sizes))
        (staging / DATASET_INFO).write_text(json.dumps({
            **(info or {}), "channels": channels,
            "sizes_written": sorted({f"{h}x{w}" for h, w in sizes}, key=lambda t: tuple(map(int, t.split("x")))),
            "train_sides": sorted({min(r["size"]) for r in rows if r["split"] == "train"}),
            "counts": written.counts,
            "duplicates": {"groups": len(duplicates.groups), "files": duplicates.files,
                           "left_out_of_val_test": len(duplicates.dropped), **duplicates.counts()},
        }, indent=2) + "\n")
        write_manifest(rows, staging / SPLITS_MANIFEST)
    return written


def _channels_of(rows: list[dict], staging: Path) -> int:
    """1 or 3: every record was written in one mode (checked while writing), so the first file tells."""
    with Image.open(staging / rows[0]["path"]) as img:
        return 1 if img.mode == "L" else 3


def _write_duplicates(duplicates: Duplicates, rows: list[dict], path: Path) -> None:
    dropped = set(duplicates.dropped)
    origins = {r["path"]: r.get("origin", "") for r in rows}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["group", "sha256", "split", "class", "path", "origin", "kept"])
    for number, group in enumerate(duplicates.groups, start=1):
        for r in group:
            writer.writerow([number, r["sha256"], r["split"], r["class"], r["path"], origins[r["path"]],
                             "no" if r["path"] in dropped else "yes"])
    path.write_text(buf.getvalue())


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
                     "sha256": pixel_sha256(rec.pixels), "origin": rec.origin, "size": rec.pixels.shape[:2]})
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


MANIFEST_FIELDS = ("path", "split", "class", "sha256")


def write_manifest(rows: list[dict], path: Path, fields: tuple[str, ...] = MANIFEST_FIELDS) -> None:
    """A dataset's manifest.csv: one row per image with `fields` (other keys of a row are left out)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n", extrasaction="ignore")
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
