"""The layout of a folder of synthetic images, shared by everything that writes or reads one.

    synthetic_<class>_000000.png ...   one PNG per index
    manifest.jsonl                     one JSON record per file (file, index, class, sha256 of the pixels,
                                       generator, seed, ...); split jobs first write manifest.shard<k>of<n>.jsonl
    generation.json                    what ran
    preview_grid.png                   the 8x8 preview
    selection.json, selection_scores.png   in a folder select_samples.py chose from a larger pool
    rejected/                          images a person rejected in quality/review.py (left out downstream)

Kept apart from the code that makes the images (training/synthesis) so that the augmented-set
builder, the classifier and the QA tools read these folders without depending on generation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from training.core import atomic
from training.core.errors import DataError, UserError, short_repr
from training.core.outputs import dataset_holding, refuse_output_inside_dataset
from training.data.images import is_image_file

SYNTHETIC_MANIFEST = "manifest.jsonl"
SHARD_MANIFESTS = "manifest.shard*of*.jsonl"       # one per shard of a split job until merged into SYNTHETIC_MANIFEST
GENERATION_INFO = "generation.json"
PREVIEW = "preview_grid.png"
PREVIEW_SIDE = 8                                   # the preview is PREVIEW_SIDE x PREVIEW_SIDE images
SELECTION_HISTOGRAM = "selection_scores.png"      # the pool's scores with the cut, in a folder select_samples.py made
OWN_FILES = {PREVIEW, SELECTION_HISTOGRAM}       # images this toolkit writes beside the samples
REJECTED = "rejected"                              # where quality/review.py moves images a person rejected


@contextmanager
def writer_lock(out_dir: Path, shard: tuple[int, int] = (0, 1)) -> Iterator[None]:
    """Hold the folder for one writer, or refuse at once (UserError) when another holds it.

    A whole job takes the folder exclusively; shard k of n shares the folder with the other shards
    and takes its own shard exclusively. Two runs into one folder would otherwise both report success
    while the files and the manifest disagree. The locks are the kernel's (flock): a killed writer
    releases them, so no stale lock file blocks a re-run.
    """
    if os.name != "posix":          # no flock: one writer per folder is the user's to keep
        yield
        return
    import fcntl  # POSIX only, hence here

    out_dir.mkdir(parents=True, exist_ok=True)
    k, n = shard
    held = []
    try:
        for name, mode in ([(".writer.lock", fcntl.LOCK_EX)] if n == 1 else
                           [(".writer.lock", fcntl.LOCK_SH), (f".writer.shard{k}of{n}.lock", fcntl.LOCK_EX)]):
            fd = os.open(out_dir / name, os.O_RDWR | os.O_CREAT, 0o644)
            held.append(fd)
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"another generate_samples.py is writing into {out_dir}"
                                + (f" (shard {k}/{n})" if n > 1 else "") + "; wait for it to finish or use "
                                "another --output_dir") from None
        yield
    finally:
        for fd in held:
            os.close(fd)


def shard_manifest(out_dir: Path, shard: tuple[int, int]) -> Path:
    """Where shard k of n records its images: manifest.jsonl itself for an unsplit job."""
    k, n = shard
    return out_dir / (SYNTHETIC_MANIFEST if n == 1 else f"manifest.shard{k}of{n}.jsonl")


def check_output_dir(out_dir: Path, overwrite: bool = False) -> None:
    """Refuse folders where synthetic images must never go, before anything is written.

    Validation and test splits stay real-only, and a processed dataset's other folders are left to the
    augmented-dataset step (`training.core.outputs`, the rule every writer follows); a folder holding
    images this tool did not write is someone's data. With `overwrite`, images named like ours
    (synthetic_*.png) are ours only in a folder with our manifest: without one they are someone's too.
    """
    refuse_output_inside_dataset(out_dir, "the synthetic image folder", "a folder of its own (e.g. data/synthetic/<run>)")
    if out_dir.is_dir():
        foreign = [p.name for p in sorted(out_dir.iterdir())
                   if is_image_file(p) and not p.name.startswith("synthetic_") and p.name not in OWN_FILES]
        if foreign:
            raise UserError(f"{out_dir} holds {len(foreign)} images this tool did not write (e.g. {foreign[0]}); "
                            "generate into an empty folder")
        if overwrite:
            check_replaceable(out_dir)


def check_replaceable(out_dir: Path) -> None:
    """Refuse to remove synthetic_*.png files from a folder without our manifest: they are not ours to replace.

    Every run of ours records its images in manifest.jsonl (or a shard's manifest) within seconds of
    writing them, and writes it when interrupted; PNGs named like ours beside no manifest at all are
    someone else's (copied, renamed, or a folder of their own).
    """
    ours = [p.name for p in sorted(out_dir.glob("synthetic_*.png"))]
    if ours and not (out_dir / SYNTHETIC_MANIFEST).is_file() and not any(out_dir.glob(SHARD_MANIFESTS)):
        raise UserError(f"{out_dir} holds {len(ours)} PNG(s) named like ours (e.g. {ours[0]}) but no {SYNTHETIC_MANIFEST}, "
                        "so this tool did not write them; --overwrite replaces only its own images: move them "
                        "aside or use another --output_dir")


def read_synthetic_manifest(out_dir: Path) -> dict[int, dict]:
    """The manifest's records by index, merged with those of unmerged shard manifests ({} when none).

    A shard manifest is newer than manifest.jsonl (a merge removes it), so its records win.
    """
    records = {}
    for path in (out_dir / SYNTHETIC_MANIFEST, *sorted(out_dir.glob(SHARD_MANIFESTS))):
        if not path.is_file():
            continue
        try:
            lines = path.read_text().splitlines()
        except UnicodeDecodeError:
            raise DataError(f"{path} is not a text manifest; move the folder aside or use --overwrite") from None
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                records[int(record["index"])] = record
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{path} line {number} is not a manifest record; move the folder aside or use "
                                "--overwrite") from None
    return records


def write_synthetic_manifest(out_dir: Path, records: dict[int, dict], shard: tuple[int, int] = (0, 1)) -> None:
    """Write `records` to the shard's manifest; manifest.jsonl then replaces every shard manifest.

    Only a run of the whole job writes manifest.jsonl, so separately launched shards never write
    the same file.
    """
    path = shard_manifest(out_dir, shard)
    atomic.write_text(path, "".join(json.dumps(records[i]) + "\n" for i in sorted(records)))
    if path.name == SYNTHETIC_MANIFEST:          # everything the shard manifests held is in it now
        for merged in out_dir.glob(SHARD_MANIFESTS):
            merged.unlink(missing_ok=True)


def merge_manifests(out_dir: Path) -> dict[int, dict]:
    """Merge the shard manifests into manifest.jsonl (after every shard finished); returns the records."""
    records = read_synthetic_manifest(out_dir)
    write_synthetic_manifest(out_dir, records)
    return records


def clear_folder(out_dir: Path) -> None:
    """Remove the images and manifests of earlier runs (--overwrite): none may survive beside a new manifest.

    Refuses (UserError, nothing removed) when the folder's synthetic_*.png have no manifest of ours.
    """
    if out_dir.is_dir():
        check_replaceable(out_dir)
    for old in (*out_dir.glob("synthetic_*.png"), out_dir / SYNTHETIC_MANIFEST, *out_dir.glob(SHARD_MANIFESTS)):
        old.unlink(missing_ok=True)


@dataclass(frozen=True)
class SyntheticImage:
    path: Path
    class_name: str
    sha256: str
    index: int


def confined_file(folder: Path, name: object) -> Path:
    """`folder / name` for a manifest's `file` entry, which must stay inside the folder: a relative path
    without `..` that does not resolve (through links) to anywhere else. A manifest is a file anyone can
    edit; its entries must never pull another folder's images (say a test split's) into training."""
    path = Path(name) if isinstance(name, str) and name else None
    if path is None or path.is_absolute() or ".." in path.parts or not (folder / path).resolve().is_relative_to(
            folder.resolve()):
        raise DataError(f"{folder / SYNTHETIC_MANIFEST} lists {short_repr(name)}, which is not a file inside {folder}; "
                        "refusing the folder (an edited or foreign manifest)")
    return folder / path


def check_synthetic_source(folder: str | Path, what: str = "the synthetic folder") -> None:
    """DataError (one line) unless `folder` can be what it claims: a synthetic folder this toolkit wrote.

    It must carry our manifest.jsonl, and it must not lie inside a processed dataset: every writer of
    synthetic images refuses those places (`training.core.outputs`), so images there are real ones,
    whatever a manifest beside them says. Taking a test split's images as "synthetic" would train a
    classifier on the very images it is then scored on.
    """
    folder = Path(folder)
    found = dataset_holding(folder)
    if found is not None:
        dataset, split = found
        raise DataError(f"{what} {folder} is inside {'the ' + repr(split) + ' split of ' if split else ''}the dataset "
                        f"{dataset}: those are real images, not synthetic ones; give a folder generate_samples.py "
                        "or pseudo_label.py wrote")
    if not (folder / SYNTHETIC_MANIFEST).is_file():
        raise DataError(f"{what} {folder} has no {SYNTHETIC_MANIFEST}, so nothing says its images are synthetic: "
                        "make it with training/generate_samples.py")


def read_synthetic(dirs: list[str | Path]) -> list[list[SyntheticImage]]:
    """Each folder's synthetic images (from its manifest.jsonl, less those moved to rejected/), in index order.

    Each folder must pass `check_synthetic_source` (our manifest, outside any dataset).
    """
    folders = []
    for folder in map(Path, dirs):
        check_synthetic_source(folder)
        records = read_synthetic_manifest(folder)
        for r in records.values():
            confined_file(folder, r.get("file"))
        kept = {i: r for i, r in records.items()                 # less filtered-out and reviewed-out images
                if not r.get("filtered_out") and not (folder / REJECTED / r["file"]).is_file()}
        images = [SyntheticImage(folder / r["file"], r["class"], r["sha256"], i) for i, r in sorted(kept.items())]
        missing = [img.path.name for img in images if not img.path.is_file()]
        if missing:
            raise DataError(f"{len(missing)} files listed in {folder / SYNTHETIC_MANIFEST} are missing (e.g. {missing[0]}); "
                            "re-run generate_samples.py to finish the folder")
        folders.append(images)
    return folders
