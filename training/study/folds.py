"""K-fold cross-validation of a study (`evaluation.folds`): which real image each fold tests, and each fold's dataset.

The real images of every split of the prepared dataset are pooled and dealt into K folds stratified by
class (scikit-learn's StratifiedGroupKFold, shuffled with data.seed), identical pixels (one sha256) forming
a group, so that no image is tested by models trained on a copy of it. Fold k's dataset holds fold k as its
test split and the other folds as train and validation, split again stratified by class and with groups
kept whole, at the prepared dataset's validation share (val / (train + val)): each fold's grid choice,
model selection and thresholds are made on a validation split of its own, never on its test part.

A fold's dataset is written like a prepared one (training.data.processed.write_dataset: leakage refused,
one copy of identical images kept in val/test, manifest.csv and dataset.json), from the prepared images,
which are only read; every stage then reads it as it reads the prepared dataset.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from training.core.errors import ConfigError
from training.core.outputs import refuse_output_inside_dataset
from training.data.images import read_image
from training.data.processed import (
    DATASET_INFO,
    SPLITS,
    Record,
    find_duplicates,
    read_splits_manifest,
    summarize,
    write_dataset,
)
from training.study import preflight
from training.study.config import PipelineConfig
from training.study.preflight import DataFacts, Plan


@dataclass(frozen=True)
class CrossValidation:
    """The fold of every image of a prepared dataset.

    Attributes:
        root: the prepared dataset (only read).
        folds: K.
        seed: data.seed: the fold assignment's and the validation splits' shuffling.
        keep_duplicates: as data.keep_duplicates, for the folds' val/test splits.
        rows: manifest.csv's rows (path, split, class, sha256), in its order.
        test_fold: per row, the fold (0-based) whose test part holds it.
        val_share: the prepared dataset's validation images / (training + validation images).
    """

    root: Path
    folds: int
    seed: int
    keep_duplicates: bool
    rows: tuple[dict, ...]
    test_fold: tuple[int, ...]
    val_share: float

    @classmethod
    def of(cls, root: Path, config: PipelineConfig, pipeline: str = "the pipeline config") -> CrossValidation:
        """The folds of the prepared dataset at `root` as `config` asks for them; a one-line ConfigError when a
        class has too few images for them. Reads manifest.csv only; writes nothing."""
        rows = tuple(read_splits_manifest(root))
        folds, seed = config.evaluation.folds, config.data.seed
        check_enough_images(Counter(r["class"] for r in _distinct(rows)), folds, f"{root} (prepared)", pipeline)
        split = Counter(r["split"] for r in rows)
        cv = cls(root, folds, seed, config.data.keep_duplicates, rows, tuple(assign_test_folds(rows, folds, seed)),
                 split["val"] / max(1, split["train"] + split["val"]))
        cv.check_every_part(pipeline)
        return cv

    def splits(self, k: int) -> list[str]:
        """Every row's split in fold k: test for fold k's rows, train or val for the others."""
        training = [i for i, fold in enumerate(self.test_fold) if fold != k]
        val = validation_rows(self.rows, training, self.val_share, np.random.default_rng([self.seed, k]))
        return ["test" if fold == k else "val" if i in val else "train" for i, fold in enumerate(self.test_fold)]

    def fold_rows(self, k: int) -> list[dict]:
        """Fold k's images: the prepared rows (path: the prepared file) with their split in fold k, the val/test
        copies of identical images that write_dataset leaves out already left out."""
        rows = [{**row, "split": split} for row, split in zip(self.rows, self.splits(k))]
        dropped = set(find_duplicates(rows, self.keep_duplicates).dropped)
        return [row for row in rows if row["path"] not in dropped]

    def counts(self, k: int) -> dict[str, dict[str, int]]:
        """Fold k's images per split and class, as its dataset will hold them."""
        return summarize(self.fold_rows(k))

    def pooled_test(self) -> dict[str, int]:
        """Images per class of the K test parts together: every real image once."""
        total: Counter = Counter()
        for k in range(self.folds):
            total.update(self.counts(k)["test"])
        return dict(sorted(total.items()))

    def key(self, k: int) -> str:
        """What fold k's dataset is made of (each prepared image's split in it), for its stage key."""
        made_of = [(row["path"], row["sha256"], split) for row, split in zip(self.rows, self.splits(k))]
        return hashlib.sha256(json.dumps([made_of, self.keep_duplicates]).encode()).hexdigest()[:16]

    def check_every_part(self, pipeline: str) -> None:
        """A one-line ConfigError unless every fold's train, val and test parts hold images of every class."""
        classes = sorted({row["class"] for row in self.rows})
        for k in range(self.folds):
            counts = self.counts(k)
            for split in SPLITS:
                for class_name in classes:
                    if not counts[split].get(class_name):
                        raise ConfigError(
                            f"{pipeline}: 'evaluation.folds' = {self.folds} leaves fold {k + 1} without '{class_name}' "
                            f"images in its {split} part ({self.root}); lower evaluation.folds")


def _distinct(rows) -> list[dict]:
    """One row per (class, pixels): identical images are one image wherever they are."""
    return list({(r["class"], r["sha256"]): r for r in rows}.values())


# Each fold's test part, and its training and validation parts, need images of every class: at least 2 per fold.
MIN_IMAGES_PER_FOLD = 2


def check_enough_images(per_class: dict[str, int], folds: int, where: str, pipeline: str) -> None:
    """A one-line ConfigError when a class has fewer than MIN_IMAGES_PER_FOLD x `folds` distinct images in all."""
    need = MIN_IMAGES_PER_FOLD * folds
    short = {c: n for c, n in sorted(per_class.items()) if n < need}
    if short:
        said = ", ".join(f"'{c}' has {n}" for c, n in short.items())
        raise ConfigError(f"{pipeline}: 'evaluation.folds' = {folds} needs at least {need} distinct images of every "
                          f"class in all splits together (each fold tests some and trains and validates on others); "
                          f"{said} ({where}): lower evaluation.folds, or set it off")


def assign_test_folds(rows: tuple[dict, ...], folds: int, seed: int) -> list[int]:
    """Per row, the fold whose test part holds it: K folds stratified by class, identical pixels in one fold."""
    fold = np.empty(len(rows), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    classes, groups = [r["class"] for r in rows], [r["sha256"] for r in rows]
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(rows)), classes, groups)):
        fold[test] = k
    return fold.tolist()


def validation_rows(rows: tuple[dict, ...], training: list[int], share: float, rng: np.random.Generator) -> set[int]:
    """Of the rows `training` (a fold's training part), those for its validation split: per class, groups of
    identical pixels drawn at random while they fit in round(share x the class's images), at least one image
    and never all of them. A class whose every group is larger gets its smallest group, unless that is all of
    it (the fold is then refused for a class missing from validation)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i in training:
        groups[rows[i]["sha256"]].append(i)
    by_class: dict[str, list[list[int]]] = defaultdict(list)
    for sha in sorted(groups):
        by_class[rows[groups[sha][0]]["class"]].append(groups[sha])
    val: set[int] = set()
    for class_name in sorted(by_class):
        members = by_class[class_name]
        images = sum(len(g) for g in members)
        wanted, taken = min(images - 1, max(1, round(share * images))), 0
        for g in rng.permutation(len(members)):         # a large group of copies must not overshoot the share
            if taken + len(members[g]) <= wanted:
                val.update(members[g])
                taken += len(members[g])
        smallest = min(members, key=len)
        if taken == 0 and len(smallest) < images:
            val.update(smallest)
    return val


def write_fold(cv: CrossValidation, k: int, out: Path) -> Path:
    """Write fold k's dataset at `out` (replacing one this pipeline made there) from the prepared images."""
    refuse_output_inside_dataset(out, "a fold's dataset", "a folder beside the prepared dataset", is_dataset=True)
    rows = cv.fold_rows(k)
    records = (Record(row["split"], row["class"], Path(row["path"]).stem, read_image(cv.root / row["path"]),
                      origin=row["path"]) for row in rows)
    write_dataset(records, out, overwrite=out.exists(), total=len(rows), keep_duplicates=cv.keep_duplicates,
                  info={"cross_validation": {"prepared": str(cv.root), "fold": k + 1, "folds": cv.folds,
                                             "seed": cv.seed, "val_share": cv.val_share}})
    return out


# ---------------------------------------------------------------------------------------------------------------
# The pre-flight check of a cross-validated study.

def image_sides(root: Path, facts: DataFacts) -> tuple[int, ...]:
    """The shorter sides of every image of a prepared dataset, whatever its split (any may train in a fold):
    from dataset.json's sizes, else (a dataset from before it recorded them) the training images'."""
    info = root / DATASET_INFO
    sizes = json.loads(info.read_text()).get("sizes_written") if info.is_file() else None
    if not sizes:
        return facts.train_sides
    return tuple(sorted({min(int(v) for v in size.split("x")) for size in sizes}))


def fold_facts(cv: CrossValidation, prepared: DataFacts) -> list[DataFacts]:
    """Each fold's facts, as its dataset will hold them, from the fold assignment (nothing is written)."""
    sides = image_sides(cv.root, prepared)
    return [DataFacts(f"fold {k + 1} of {cv.folds} of {cv.root}", True, cv.counts(k), prepared.channels, sides)
            for k in range(cv.folds)]


def estimated_fold_facts(config: PipelineConfig, source: DataFacts, pipeline: str) -> tuple[DataFacts, dict[str, int]]:
    """Before the data are prepared: the facts of the smallest fold as the source's counts promise it, and the
    pooled test images per class (duplicates and leaks that prepare leaves out are still counted)."""
    folds, pooled = config.evaluation.folds, Counter()
    for per_class in source.counts.values():
        pooled.update(per_class)
    check_enough_images(pooled, folds, source.where, pipeline)
    train, val = (sum(source.counts.get(s, {}).values()) for s in ("train", "val"))
    share = val / max(1, train + val)
    counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    for class_name, n in sorted(pooled.items()):
        rest = n - math.ceil(n / folds)
        counts["test"][class_name] = n // folds
        counts["val"][class_name] = min(rest - 1, max(1, round(share * rest)))
        counts["train"][class_name] = rest - counts["val"][class_name]
    where = f"the smallest of {folds} folds of {config.data.source} (not prepared yet: estimated from its counts)"
    return DataFacts(where, False, counts, source.channels, source.train_sides), dict(sorted(pooled.items()))


def check_folds(config: PipelineConfig, folds: list[DataFacts], pooled_test: dict[str, int],
                pipeline: str = "the pipeline config") -> tuple[list[Plan], list[str]]:
    """Every fold's plan (preflight.check against its facts, the minimum detectable effect counting the pooled
    test images), and the lines that say the study: the folds, then the first fold's check, then the warnings
    of another kind that other folds add (the folds differ by a few images, so most warnings repeat)."""
    plans = [preflight.check(config, facts, pipeline, pooled_test) for facts in folds]
    k = config.evaluation.folds
    lines = [f"cross-validation: {k} folds (evaluation.folds), stratified by class, identical images in one fold "
             f"(data.seed {config.data.seed}); each fold's study trains on the other folds and tests it once",
             f"  pooled test: {preflight.format_counts(pooled_test)}: every real image tested once",
             *(f"  fold {i}: " + "; ".join(f"{split} {preflight.format_counts(facts.counts[split])}" for split in SPLITS)
               for i, facts in enumerate(folds, start=1) if len(folds) > 1)]
    lines += plans[0].lines
    kind = lambda line: re.split(r"\d", line, maxsplit=1)[0]           # a warning without its numbers
    said = {kind(line) for line in plans[0].lines}
    for i, plan in enumerate(plans[1:], start=2):
        added = [line for line in plan.lines if line.startswith("warning") and kind(line) not in said]
        lines += [f"fold {i}: {line}" for line in added]
        said |= {kind(line) for line in added}
    return plans, lines


def dry_run_plan(config: PipelineConfig, prepared: Path | None, facts: DataFacts, pipeline: str) -> Plan:
    """The pre-flight check of a cross-validated study alone (`--dry_run`): exact folds of the prepared dataset
    when `prepared` is given, else the smallest fold the source promises; writes nothing."""
    if prepared is not None:
        cv = CrossValidation.of(prepared, config, pipeline)
        plans, lines = check_folds(config, fold_facts(cv, facts), cv.pooled_test(), pipeline)
    else:
        fold, pooled = estimated_fold_facts(config, facts, pipeline)
        plans, lines = check_folds(config, [fold], pooled, pipeline)
    return Plan(plans[0].facts, plans[0].minority, plans[0].positive, plans[0].gan, plans[0].classifiers, tuple(lines))
