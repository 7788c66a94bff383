"""Assembling an augmented dataset: every real image, plus chosen synthetic images in train only.

    <out>/train/<class>/real_<name>.png        every real training image (hard link, else copy)
    <out>/train/<class>/synthetic_<...>.png    the chosen synthetic images of that class
    <out>/val/<class>/real_<name>.png          real only
    <out>/test/<class>/real_<name>.png         real only
    <out>/manifest.csv                         path, split, class, sha256, source (real|synthetic), origin
    <out>/composition.json, composition.md     counts and imbalance ratio before and after

The folder is built beside its target and moved into place only after `verify` has proved that no
synthetic image (by pixel SHA-256, over every given synthetic manifest) is in val/test, that no
content is shared between train and val/test, and that the counts are what was asked for.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from training.core import atomic
from training.core.errors import DataError, UserError
from training.core.outputs import refuse_output_inside_dataset
from training.core.progress import progress
from training.data.folders import link_or_copy
from training.data.images import pixel_sha256, read_image
from training.data.processed import MANIFEST_FIELDS, SPLITS, SPLITS_MANIFEST, read_splits_manifest, write_manifest
from training.data.synthetic_folder import SyntheticImage, read_synthetic

# Beyond 10x the real minority the generator's biases dominate: the reference guide's rule of thumb, unmeasured
# (docs/user_guide.md#thresholds-synthetic-to-real-ceiling).
MAX_SYNTHETIC_PER_REAL = 10
COMPOSITION = "composition.json"
# Fewer synthetic images than this share of the class's real ones (and than FEW_SYNTHETIC_IMAGES) cannot change
# what a classifier learns by more than reshuffling its data does: a rule of thumb, unmeasured, like the cap above.
FEW_SYNTHETIC_SHARE = 0.10
FEW_SYNTHETIC_IMAGES = 10


def few_synthetic_note(class_name: str, added: int, real: int) -> str | None:
    """A warning when `added` synthetic images of `class_name` are too few beside its `real` ones to matter
    (fewer than FEW_SYNTHETIC_SHARE of them and than FEW_SYNTHETIC_IMAGES); None otherwise."""
    floor = max(FEW_SYNTHETIC_IMAGES, math.ceil(FEW_SYNTHETIC_SHARE * real))
    if added >= floor:
        return None
    return (f"only {added} synthetic '{class_name}' image(s) beside {real} real ones ({100 * added / max(1, real):.0f} %): "
            f"too few to change what a classifier learns (the floor is {floor}: {FEW_SYNTHETIC_IMAGES} images or "
            f"{100 * FEW_SYNTHETIC_SHARE:.0f} % of the real ones, whichever is more), so a comparison would measure "
            "noise; ask for more (a lower target ratio, or a number of synthetic images)")


def synthetic_counts(real_train: dict[str, int], available: dict[str, int], *, num_synthetic: int | None,
                     target_ratio: float | None, per_real: float | None = None) -> dict[str, int]:
    """How many synthetic images each class with synthetic images gets.

    `num_synthetic` per class; or `per_real` synthetic images per real image of the class (the same
    share of synthetic images in every class, so origin says nothing about the label); or
    `target_ratio` R = majority : (class after augmentation), so the class gets ceil(majority / R) - real;
    or, with none of them, all that are available.
    """
    majority = max(real_train.values())
    counts = {}
    for class_name, have in available.items():
        if num_synthetic is not None:
            want = num_synthetic
        elif per_real is not None:
            exact = per_real * real_train[class_name]       # inf for a huge per_real: compared before rounding
            if not exact <= have:
                raise UserError(f"{per_real:g} synthetic images per real one is {exact:.3g} synthetic '{class_name}' "
                                f"images, but the synthetic folders hold {have}; lower --synthetic_per_real (at most "
                                f"{have / max(1, real_train[class_name]):.3g} here) or generate more")
            want = max(1, round(exact))
        elif target_ratio is not None:
            want = max(0, math.ceil(majority / target_ratio) - real_train[class_name])
        else:
            want = have
        if want > have:
            raise UserError(f"{want} synthetic '{class_name}' images are needed but the synthetic folders hold {have}; "
                            "generate more with generate_samples.py --num_samples")
        counts[class_name] = want
    return counts


def check_cap(counts: dict[str, int], real_train: dict[str, int], force: bool) -> None:
    for class_name, n in counts.items():
        limit = MAX_SYNTHETIC_PER_REAL * real_train[class_name]
        if n > limit and not force:
            raise UserError(f"{n} synthetic '{class_name}' images is more than {MAX_SYNTHETIC_PER_REAL}x its "
                            f"{real_train[class_name]} real ones: the classifier would mostly learn the generator's "
                            "artefacts; use fewer, or --force if you mean it")


def choose(folders: list[list[SyntheticImage]], counts: dict[str, int]) -> list[tuple[int, SyntheticImage]]:
    """The first images of each class, taken from the folders in turn (a blend of every folder);
    each with the position of its folder."""
    chosen = []
    for class_name, n in counts.items():
        queues = [[img for img in folder if img.class_name == class_name] for folder in folders]
        taken, position = 0, 0
        while taken < n:
            for k, queue in enumerate(queues):
                if position < len(queue) and taken < n:
                    chosen.append((k, queue[position]))
                    taken += 1
            position += 1
    return chosen


def _synthetic_name(image: SyntheticImage, folder_position: int, several_folders: bool) -> str:
    name = image.path.name
    if not name.startswith("synthetic_"):
        name = f"synthetic_{name}"
    # Two folders both hold synthetic_<class>_000000.png: prefix the folder's position and name.
    return f"synthetic_{folder_position}_{image.path.parent.name}_{name[len('synthetic_'):]}" if several_folders else name


def check_out_dir(out_dir: Path, baseline: Path, synthetic_dirs: list[Path], overwrite: bool) -> None:
    out = out_dir.resolve()
    for protected in (baseline, *synthetic_dirs):
        protected = protected.resolve()
        if out == protected or protected in out.parents or out in protected.parents:
            raise UserError(f"--out {out_dir} overlaps {protected}; inputs are never modified")
    # The augmented dataset is a dataset of its own, beside the others: not inside one (training.core.outputs).
    refuse_output_inside_dataset(out_dir, "--output_dir", "a folder beside the baseline, e.g. "
                                 "data/processed/<name>_augmented", is_dataset=True)
    if out_dir.exists():
        if not overwrite:
            raise UserError(f"{out_dir} already exists: pass --overwrite to rebuild it")
        if not (out_dir / COMPOSITION).is_file():
            raise UserError(f"{out_dir} exists and was not made by build_augmented.py (no {COMPOSITION}); refusing to replace it")


def _check_format(chosen: list[SyntheticImage], baseline: Path, train_rows: list[dict]) -> list[str]:
    """Synthetic images must match the real ones in channel mode; a size difference is noted.

    A GAN often runs below the data's resolution (64 px data, 32 px GAN), and sometimes above it (28 px
    scans, 32 px GAN). Mixing sizes is fine as long as both kinds of image reach the classifier by one
    path, which `train_classifier` enforces (`classifier_size_problem`). The real sizes are those of
    every training image (headers only), so a folder of many sizes is reported as a range.
    """
    real_sizes, mode = set(), None
    for row in train_rows:
        with Image.open(baseline / row["path"]) as img:
            real_sizes.add(img.size)
            mode = mode or img.mode
    sizes = set()
    for image in chosen:
        with Image.open(image.path) as img:
            got = (img.size, img.mode)
        if got[1] != mode:
            raise DataError(f"{image.path} is {got[1]} but the real images are {mode} "
                            "(generate with the dataset's channel count)")
        sizes.add(got[0])
    smallest = min(min(size) for size in real_sizes)
    if len(real_sizes) == 1:
        (rw, rh), = real_sizes
        real = f"{rw}x{rh}"
    else:
        widths, heights = [w for w, _ in real_sizes], [h for _, h in real_sizes]
        real = (f"{len(real_sizes)} sizes, width {min(widths)}-{max(widths)} px, height {min(heights)}-{max(heights)} "
                f"px, smallest side {smallest} px")
    return [f"synthetic images are {w}x{h} px, real ones {real}: train classifiers at "
            + (f"data.image_size = {min(w, h)}, the GAN's size (it learned upsampled real images)" if min(w, h) > smallest
               else f"data.image_size <= {min(w, h)}")
            for w, h in sorted(sizes) if {(w, h)} != real_sizes]


def build_augmented(baseline: str | Path, synthetic_dirs: list[str | Path], out_dir: str | Path, *,
                    num_synthetic: int | None = None, target_ratio: float | None = None,
                    synthetic_per_real: float | None = None, force: bool = False,
                    overwrite: bool = False, real_fraction: float = 1.0, seed: int = 0) -> dict:
    """Assemble, verify and move the augmented dataset into place; returns its composition.

    `real_fraction` < 1 keeps only that share (a seeded subset) of the real training images of each
    class that receives synthetic images: the mixing experiments, where synthetic images replace real
    ones at a fixed total. The default keeps every real image.
    """
    baseline, out_dir, synthetic_dirs = Path(baseline), Path(out_dir), [Path(d) for d in synthetic_dirs]
    check_out_dir(out_dir, baseline, synthetic_dirs, overwrite)
    if len({d.resolve() for d in synthetic_dirs}) < len(synthetic_dirs):
        raise UserError("the same synthetic folder is given twice")
    if (baseline / COMPOSITION).is_file():
        raise UserError(f"{baseline} is itself an augmented dataset (it has {COMPOSITION}); use the real-only "
                        "dataset it was built from as --baseline")
    rows = read_splits_manifest(baseline)
    real_train = Counter(r["class"] for r in rows if r["split"] == "train")
    folders = read_synthetic(synthetic_dirs)
    available = Counter(img.class_name for folder in folders for img in folder)
    unknown = sorted(set(available) - set(real_train))
    if unknown:
        raise DataError(f"synthetic class '{unknown[0]}' is not a class of {baseline} (classes: {', '.join(sorted(real_train))})")
    counts = synthetic_counts(dict(real_train), dict(available), num_synthetic=num_synthetic, target_ratio=target_ratio,
                              per_real=synthetic_per_real)
    check_cap(counts, dict(real_train), force)
    chosen = choose(folders, counts)
    notes = _check_format([image for _, image in chosen], baseline, [r for r in rows if r["split"] == "train"])
    notes += [note for c, n in counts.items() if (note := few_synthetic_note(c, n, real_train[c]))]
    if not 0 < real_fraction <= 1:
        raise UserError(f"real_fraction must be in (0, 1], got {real_fraction}")
    rows = _keep_real(rows, set(counts), real_fraction, seed)

    out_rows = []
    with atomic.staged_directory(out_dir) as staging:
        for r in rows:
            rel = Path(r["split"]) / r["class"] / f"real_{Path(r['path']).name}"
            (staging / rel.parent).mkdir(parents=True, exist_ok=True)
            link_or_copy(baseline / r["path"], staging / rel)
            out_rows.append({"path": rel.as_posix(), "split": r["split"], "class": r["class"], "sha256": r["sha256"],
                             "source": "real", "origin": str(baseline / r["path"])})
        for position, image in chosen:
            rel = Path("train") / image.class_name / _synthetic_name(image, position, len(folders) > 1)
            link_or_copy(image.path, staging / rel)
            out_rows.append({"path": rel.as_posix(), "split": "train", "class": image.class_name, "sha256": image.sha256,
                             "source": "synthetic", "origin": str(image.path)})
        all_synthetic = {img.sha256 for folder in folders for img in folder}
        verify(staging, out_rows, all_synthetic, expected_rows=len(rows) + len(chosen))
        composition = {**describe(out_rows, baseline, synthetic_dirs), "notes": notes}
        write_manifest(out_rows, staging / SPLITS_MANIFEST, (*MANIFEST_FIELDS, "source", "origin"))
        (staging / COMPOSITION).write_text(json.dumps(composition, indent=2) + "\n")
        (staging / "composition.md").write_text(composition_markdown(composition))
    return composition


def _keep_real(rows: list[dict], classes: set[str], fraction: float, seed: int) -> list[dict]:
    """All val/test rows; of train, a seeded `fraction` of each class in `classes` and all others."""
    if fraction == 1:
        return rows
    rng = np.random.default_rng(seed)
    kept = [r for r in rows if r["split"] != "train" or r["class"] not in classes]
    for class_name in sorted(classes):
        mine = [r for r in rows if r["split"] == "train" and r["class"] == class_name]
        keep = max(1, round(fraction * len(mine)))
        kept += [mine[i] for i in sorted(rng.choice(len(mine), keep, replace=False))]
    return kept


def verify(root: Path, rows: list[dict], synthetic_hashes: set[str], expected_rows: int) -> None:
    """Prove the assembled folder is sound before it is moved into place (raises DataError if not).

    The proof is made from the pixels actually placed, not from what manifests claim: every file is
    decoded and hashed, a synthetic file must hold the pixels its manifest recorded, and no train file
    may have the content of a validation or test file.
    """
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    if files != sorted(r["path"] for r in rows) or len(rows) != expected_rows:
        raise DataError(f"assembled dataset holds {len(files)} files, expected {expected_rows}")
    for r in progress(rows, desc="verifying pixels", unit="img"):
        placed = pixel_sha256(read_image(root / r["path"]))
        if placed != r["sha256"]:
            what = "its synthetic manifest records" if r["source"] == "synthetic" else "manifest.csv records"
            raise DataError(f"{r['origin']} does not hold the pixels {what} (edited or damaged); nothing was written")
    held_out = [r for r in rows if r["split"] != "train"]
    bad = [r["path"] for r in held_out if r["source"] != "real" or r["sha256"] in synthetic_hashes]
    if bad:
        raise DataError(f"synthetic image in a validation/test split: {bad[0]}")
    train_hashes = {r["sha256"] for r in rows if r["split"] == "train"}
    shared = [r["path"] for r in held_out if r["sha256"] in train_hashes]
    if shared:
        raise DataError(f"{len(shared)} val/test images have the same content as train images (e.g. {shared[0]})")


def describe(rows: list[dict], baseline: Path, synthetic_dirs: list[Path]) -> dict:
    """Counts per split, class and source, and the train imbalance ratio before and after."""
    counts: dict = defaultdict(lambda: defaultdict(lambda: {"real": 0, "synthetic": 0}))
    for r in rows:
        counts[r["split"]][r["class"]][r["source"]] += 1
    train = counts["train"]
    real = {c: v["real"] for c, v in train.items()}
    total = {c: v["real"] + v["synthetic"] for c, v in train.items()}
    return {
        "baseline": str(baseline), "synthetic_dirs": [str(d) for d in synthetic_dirs],
        "counts": {s: {c: dict(v) for c, v in sorted(counts[s].items())} for s in SPLITS},
        "train_ratio_before": max(real.values()) / min(real.values()),
        "train_ratio_after": max(total.values()) / min(total.values()),
    }


def composition_markdown(composition: dict) -> str:
    lines = ["# Augmented dataset composition\n", f"Baseline: `{composition['baseline']}`  ",
             f"Synthetic: {', '.join(f'`{d}`' for d in composition['synthetic_dirs'])}\n",
             "| split | class | real | synthetic | total |", "|---|---|---:|---:|---:|"]
    for split in SPLITS:
        for class_name, v in composition["counts"][split].items():
            lines.append(f"| {split} | {class_name} | {v['real']:,} | {v['synthetic']:,} | {v['real'] + v['synthetic']:,} |")
    lines.append(f"\nTrain imbalance (largest : smallest class): {composition['train_ratio_before']:.1f}:1 before, "
                 f"{composition['train_ratio_after']:.1f}:1 after. Validation and test are real only.")
    lines += [f"\nNote: {note}." for note in composition.get("notes", [])]
    return "\n".join(lines) + "\n"


