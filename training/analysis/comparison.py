"""Comparing classifier runs on the same real test set, with a paired bootstrap over test images.

Each run folder is written by the classifier trainer:

    <run>/summary.json                      name, positive_class, class_names, seeds, test/val means
    <run>/seed_<s>/metrics.json             threshold and threshold_spec90 (chosen on validation), val and
                                            test metrics
    <run>/seed_<s>/test_predictions.csv     sha256, path, label, score  (score = P(positive class))

Test images are matched across runs by `sha256` of their pixels, never by path: an augmented dataset
renames its real test files (real_<name>.png) and may list them in another order.

The chain is: load runs (rows keyed by sha256) -> check they share the test set -> per-seed metrics
(the ± std in the tables) -> paired bootstrap of the difference (the CI) -> verdict. The bootstrap
resamples test images only, with the same images for both runs, so it answers "would the ranking of
these two classifiers hold on another test set of this size?"; seed-to-seed variation is averaged
inside every resample.

One metric is declared primary (default: sensitivity at >= 90 % validation specificity). It alone
decides whether a run beats the baseline, by a recipe-level test (recipe_bootstrap): seeds and test
images are resampled together, so the verdict asks whether the training recipe is better, not only
these trained models; its two-sided p-value is Holm-corrected over the runs compared with the baseline.
The per-model CI of the same difference (test images only) is kept as a secondary line. The other
metrics' CIs describe how a run differs and are not corrected. Runs written before threshold_spec90
existed still load; their spec-90 metrics are unavailable (None), never recomputed from another threshold.

A K-fold cross-validated study compares recipes on every real image: load_folded_run joins a recipe's K
fold runs into one Run whose test set is the K disjoint test parts, each image scored by the one fold's
models that never saw it. The same chain then runs fold-aware: metrics pool the folds as
pooled_seed_metrics says, every bootstrap draws images within their fold, and seed s of a recipe is its K
fold models of seed s.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from training.analysis.statistics import (
    MDE_POWER,
    delong,
    holm,
    minimum_detectable_effect,
    t_interval,
    t_p_value,
    welch_df,
)
from training.classify.metrics import METRICS, PRIMARY_METRIC, PRIMARY_SPECIFICITY, SPEC90_METRICS, binary_metrics
from training.core import atomic
from training.core.errors import DataError, UserError
from training.core.outputs import refuse_output_inside_dataset
from training.core.plotting import subplots

SUMMARY = "summary.json"
SEED_METRICS = "metrics.json"
TEST_PREDICTIONS = "test_predictions.csv"
PREDICTION_COLUMNS = ("sha256", "path", "label", "score")

# The metrics of the reference guide's results table (plus specificity and PR-AUC, which say what a gain in
# sensitivity cost and how well the minority class is ranked); comparison.json holds all of COMPARISON_METRICS.
TABLE_METRICS = ("accuracy", "sensitivity", "specificity", "f1", "roc_auc", "pr_auc")
COMPARISON_METRICS = METRICS + SPEC90_METRICS
METRIC_NAMES = {
    "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "sensitivity": "Sensitivity (recall)",
    "specificity": "Specificity", "precision": "Precision (PPV)", "f1": "F1", "roc_auc": "AUC-ROC",
    "pr_auc": "PR-AUC",
    "sensitivity_at_spec90": f"Sensitivity at >= {100 * PRIMARY_SPECIFICITY:.0f} % validation specificity",
    "specificity_at_spec90": f"Specificity at the {100 * PRIMARY_SPECIFICITY:.0f} %-validation-specificity threshold",
}
# Metrics that are shares of images, so their differences read as percentage points.
PROPORTION_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision") + SPEC90_METRICS
# Which plain metric each SPEC90_METRICS entry is, at the seed's threshold_spec90.
_AT_SPEC90 = {"sensitivity_at_spec90": "sensitivity", "specificity_at_spec90": "specificity"}
IMPROVEMENT, WORSE, NO_DIFFERENCE, UNDEFINED = "improvement", "worse", "no significant difference", "undefined"
# What the primary test resamples: the recipe (seeds and test images), or, where a run has one seed, test images.
RECIPE_UNIT, TEST_ONLY_UNIT = "seeds and test images", "test images only"
DETECTABLE_NOTE_ABOVE = 0.10   # a minimum detectable effect above this (10 pp) gets a one-line warning
CI_LEVEL = 0.95
MAX_BOOTSTRAP = 100_000     # bootstrap resamples at most: 50x the default, already beyond any gain in the intervals
FAMILY_ALPHA = 0.05         # family-wise error rate of the Holm-corrected verdicts (1 - CI_LEVEL)
SMALL_CLASS = 30            # fewer test images than this in a class: the CIs get a caution
STD_DDOF = 0                # population std over seeds, as the trainer's summary.json, so the two files agree
_CHUNK_CELLS = 2_000_000    # resamples x images held at once, so a large test set does not need B x n memory


# ---------------------------------------------------------------------------------------------------------------
# Loading and aligning runs.

@dataclass(frozen=True)
class Run:
    """One classifier run's test predictions, one row per seed, in the common image order.

    Attributes:
        label: the name shown in tables and the legend.
        run_dir: the folder it was read from.
        summary: summary.json as written by the trainer.
        seeds: the training seeds, in summary order.
        thresholds: each seed's decision threshold (chosen on validation), shape (S,).
        spec90_thresholds: each seed's lowest threshold keeping validation specificity >= PRIMARY_SPECIFICITY,
            shape (S,); None for a run written before metrics.json held threshold_spec90.
        keys: the image keys (sha256, occurrence) in row order, length n.
        labels: 1 = positive class, shape (n,).
        scores: P(positive class), shape (S, n).
        folds: a cross-validated run's fold of each row, (n,) (rows ordered by fold, then key); its thresholds
            are then per seed and fold, (S, K). None for a run scored on one test split.
        fold_dirs: a cross-validated run's folders, one per fold (run_dir is the first).
    """

    label: str
    run_dir: Path
    summary: dict
    seeds: tuple[int, ...]
    thresholds: np.ndarray
    keys: tuple[tuple[str, int], ...]
    labels: np.ndarray
    scores: np.ndarray
    spec90_thresholds: np.ndarray | None = None
    folds: np.ndarray | None = None
    fold_dirs: tuple[Path, ...] = ()


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"missing {path}: is this a classifier run folder?" if path.name == SUMMARY
                        else f"missing {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} does not hold a JSON object")
    return data


def read_predictions(path: Path) -> dict[tuple[str, int], tuple[int, float]]:
    """{(sha256, occurrence): (label, score)} from a predictions CSV.

    A test set may hold the same pixels twice; such copies are interchangeable (same pixels, same score),
    so the k-th copy is paired with the k-th copy of the other run after sorting by (label, score).
    """
    if not path.is_file():
        raise DataError(f"missing {path}")
    rows: list[tuple[str, int, float]] = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in PREDICTION_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path} lacks column(s) {', '.join(missing)} (expected {','.join(PREDICTION_COLUMNS)})")
        for line, row in enumerate(reader, start=2):
            try:
                label, score = int(row["label"]), float(row["score"])
            except (TypeError, ValueError):
                raise DataError(f"{path} line {line}: label must be 0 or 1 and score a number") from None
            if label not in (0, 1) or not math.isfinite(score) or not row["sha256"]:
                raise DataError(f"{path} line {line}: label must be 0 or 1, score finite, sha256 non-empty")
            rows.append((row["sha256"], label, score))
    if not rows:
        raise DataError(f"{path} holds no predictions")
    rows.sort()
    keyed: dict[tuple[str, int], tuple[int, float]] = {}
    occurrence = 0
    for i, (sha, label, score) in enumerate(rows):
        occurrence = occurrence + 1 if i and rows[i - 1][0] == sha else 0
        keyed[(sha, occurrence)] = (label, score)
    return keyed


def _check_same_images(keys: set, labels: dict, ref_keys: set, ref_labels: dict, what: str, ref_what: str) -> None:
    """A one-line DataError unless both cover the same images (by sha256) with the same labels."""
    if keys != ref_keys:
        only, ref_only = len(keys - ref_keys), len(ref_keys - keys)
        raise DataError(f"{what} and {ref_what} were not tested on the same images: {only} of {len(keys)} "
                        f"in {what} are not in {ref_what}, {ref_only} of {len(ref_keys)} in {ref_what} are not in "
                        f"{what} (matched by pixel sha256)")
    differ = sum(labels[k] != ref_labels[k] for k in keys)
    if differ:
        raise DataError(f"{differ} of {len(keys)} test images have different labels in {what} and {ref_what}")


def load_run(run_dir: str | Path, label: str | None = None) -> Run:
    """Read a run folder: summary.json, then each seed's threshold and test predictions, aligned by sha256."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run folder not found: {run_dir}")
    summary = _read_json(run_dir / SUMMARY)
    seeds = summary.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise DataError(f"{run_dir / SUMMARY}: 'seeds' must be a non-empty list of integers")
    thresholds, spec90_thresholds, per_seed = [], [], []
    for seed in seeds:
        seed_dir = run_dir / f"seed_{seed}"
        seed_metrics_json = _read_json(seed_dir / SEED_METRICS)
        threshold = seed_metrics_json.get("threshold")
        if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise DataError(f"{seed_dir / SEED_METRICS}: 'threshold' must be a finite number")
        thresholds.append(float(threshold))
        spec90_thresholds.append(_optional_threshold(seed_metrics_json, "threshold_spec90", seed_dir / SEED_METRICS))
        per_seed.append(read_predictions(seed_dir / TEST_PREDICTIONS))
    keys = sorted(per_seed[0])
    ref_labels = {k: v[0] for k, v in per_seed[0].items()}
    for seed, preds in zip(seeds[1:], per_seed[1:]):
        _check_same_images(set(preds), {k: v[0] for k, v in preds.items()}, set(keys), ref_labels,
                           f"{run_dir.name}/seed_{seed}", f"{run_dir.name}/seed_{seeds[0]}")
    return Run(label=label or str(summary.get("name") or run_dir.name), run_dir=run_dir, summary=summary,
               seeds=tuple(seeds), thresholds=np.array(thresholds), keys=tuple(keys),
               labels=np.array([ref_labels[k] for k in keys], dtype=np.int64),
               scores=np.array([[preds[k][1] for k in keys] for preds in per_seed], dtype=np.float64),
               # one seed without it and the run's seed mean is undefined: the metric is unavailable
               spec90_thresholds=None if None in spec90_thresholds else np.array(spec90_thresholds))


def _optional_threshold(metrics_json: dict, key: str, path: Path) -> float | None:
    """metrics_json[key] as a float; None when absent (a run from before the key existed)."""
    if key not in metrics_json:
        return None
    value = metrics_json[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{path}: {key!r} must be a finite number")
    return float(value)


def load_folded_run(run_dirs: Sequence[str | Path], label: str) -> Run:
    """One recipe of a K-fold cross-validated study as one Run over the pooled test images: `run_dirs` are its
    K fold runs (fold k's models trained on the other folds, scored once on fold k's test part), the same seeds
    in each; seed s of the pooled run is the K fold models of seed s.

    The folds' test parts must be disjoint (an image tested twice would be counted twice), which the fold
    assignment guarantees by keeping identical pixels in one fold. Each fold keeps its own thresholds,
    chosen on its own validation split: thresholds and spec90_thresholds are (S, K). How the metrics pool
    the folds is `pooled_seed_metrics`'s docstring.
    """
    folds = [load_run(d) for d in run_dirs]
    first = folds[0]
    for k, run in enumerate(folds[1:], start=2):
        for what, value, ref in (("seeds", run.seeds, first.seeds),
                                 ("positive_class", run.summary.get("positive_class"), first.summary.get("positive_class")),
                                 ("class_names", run.summary.get("class_names"), first.summary.get("class_names"))):
            if value != ref:
                raise DataError(f"the folds of {label} differ in {what}: fold 1 ({first.run_dir}) {ref!r}, fold {k} "
                                f"({run.run_dir}) {value!r}")
    keys = [key for run in folds for key in run.keys]
    if len(set(keys)) != len(keys):
        twice = len(keys) - len(set(keys))
        raise DataError(f"{twice} test image(s) of {label} are in the test parts of two folds (matched by pixel "
                        "sha256): the folds' test parts must be disjoint")
    spec90 = [run.spec90_thresholds for run in folds]
    stale = [f"fold {k}: {warning}" for k, run in enumerate(folds, start=1)
             for warning in _summary_mismatches(run, seed_metrics(run, COMPARISON_METRICS))]
    return Run(label=label, run_dir=first.run_dir,
               summary={"name": label, "positive_class": first.summary.get("positive_class"),
                        "class_names": first.summary.get("class_names"), "seeds": list(first.seeds),
                        "folds": [str(run.run_dir) for run in folds], "fold_warnings": stale},
               seeds=first.seeds, thresholds=np.stack([run.thresholds for run in folds], axis=1),
               keys=tuple(keys), labels=np.concatenate([run.labels for run in folds]),
               scores=np.concatenate([run.scores for run in folds], axis=1),
               spec90_thresholds=None if any(t is None for t in spec90) else np.stack(spec90, axis=1),
               folds=np.repeat(np.arange(len(folds)), [len(run.labels) for run in folds]),
               fold_dirs=tuple(run.run_dir for run in folds))


def fold_of(run: Run, k: int) -> Run:
    """Fold k (0-based) of a cross-validated run, as the single-split run its fold models make on its test part."""
    rows = run.folds == k
    return dataclasses.replace(
        run, run_dir=run.fold_dirs[k], thresholds=run.thresholds[:, k],
        keys=tuple(key for key, kept in zip(run.keys, rows) if kept),
        labels=run.labels[rows], scores=run.scores[:, rows], folds=None, fold_dirs=(),
        spec90_thresholds=None if run.spec90_thresholds is None else run.spec90_thresholds[:, k])


def check_comparable(runs: Sequence[Run]) -> list[Run]:
    """The runs, checked to cover the first run's test images; a DataError when their test sets differ.

    load_run orders rows by (sha256, occurrence), so runs over the same images are already row-aligned,
    whatever their paths or file order. Runs must also agree on the positive class, or nothing compares.
    """
    base = runs[0]
    base_labels = dict(zip(base.keys, base.labels.tolist()))
    for run in runs[1:]:
        for field in ("positive_class", "class_names"):
            if run.summary.get(field) != base.summary.get(field):
                raise DataError(f"{run.label} and {base.label} differ in {field}: {run.summary.get(field)!r} vs "
                                f"{base.summary.get(field)!r}")
        _check_same_images(set(run.keys), dict(zip(run.keys, run.labels.tolist())), set(base.keys), base_labels,
                           run.label, base.label)
        if (run.folds is not None or base.folds is not None) and (
                run.folds is None or base.folds is None or run.keys != base.keys or not np.array_equal(run.folds, base.folds)):
            raise DataError(f"{run.label} and {base.label} do not test each image in the same fold (or one of them "
                            "is not cross-validated)")
    return list(runs)


# ---------------------------------------------------------------------------------------------------------------
# Per-seed metrics on the whole test set.

def seed_metrics(run: Run, metrics: Sequence[str] = METRICS) -> dict[str, list[float | None]]:
    """{metric: [value per seed]} from binary_metrics at each seed's validation threshold.

    SPEC90_METRICS are binary_metrics at each seed's threshold_spec90 instead; None per seed for a run
    without those thresholds. A cross-validated run's are pooled over its folds (pooled_seed_metrics).
    """
    if run.folds is not None:
        return pooled_seed_metrics(run, metrics)
    per_seed = [binary_metrics(run.labels, scores, t) for scores, t in zip(run.scores, run.thresholds)]
    at_spec90: list[dict] | None = None
    if run.spec90_thresholds is not None:
        at_spec90 = [binary_metrics(run.labels, scores, t) for scores, t in zip(run.scores, run.spec90_thresholds)]
    out = {}
    for m in metrics:
        if m in _AT_SPEC90:
            out[m] = [None] * len(run.seeds) if at_spec90 is None else [r[_AT_SPEC90[m]] for r in at_spec90]
        else:
            out[m] = [r[m] for r in per_seed]
    return out


def pooled_seed_metrics(run: Run, metrics: Sequence[str] = METRICS) -> dict[str, list[float | None]]:
    """A cross-validated run's metrics per seed over the pooled test images, every real image counted once.

    Threshold metrics (sensitivity, specificity, ..., and the primary sensitivity at >= 90 % validation
    specificity) judge each image against the threshold its own fold's model chose on that fold's
    validation split (never on test), then count over the pooled images: one confusion matrix of every real
    image, each judged by the one model that never saw it in training or validation. It is the share a
    clinician reads (how many of all the malignant images were found), it weighs the folds by their images
    (nearly equal when stratified), and pooled counts are the least biased of the ways of pooling
    cross-validated F-measures that Forman & Scholz (2010) compared; per-fold means are biased when folds
    hold few positives.

    Rank metrics pool within folds. AUC-ROC is the share of (positive, negative) pairs of one fold that
    fold's model ranks right: the folds' AUCs weighted by their pairs, the AUC's own U-statistic restricted
    to pairs one model scored. PR-AUC is the mean over positives of their fold's average precision. One
    ranking of the K models' pooled scores would also judge whether the fold models' scores share a
    scale, which no deployed model needs, and it biases the AUC down when they do not (Forman & Scholz
    2010; Airola et al. 2011). Computed as the bootstrap's metrics on the unresampled images, so the point
    estimates and the resamples are the same statistic.
    """
    values = run_resampled_per_seed(run, np.ones((1, len(run.labels))), metrics)
    return {m: [None if np.isnan(v[0]) else float(v[0]) for v in values[m]] for m in metrics}


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and standard deviation (ddof=STD_DDOF) over seeds; std None for one seed, both None if undefined."""
    if any(v is None for v in values):
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=STD_DDOF)) if len(arr) > 1 else None)


# ---------------------------------------------------------------------------------------------------------------
# Paired bootstrap.

def resample_counts(n: int, resamples: int, seed: int, chunk: int | None = None,
                    strata: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n test images as multiplicities, (b, n) per chunk, b summing to `resamples`.

    Row r, column i says how often image i was drawn in resample r. Every metric here is a weighted
    sum over images, so counts stand in for `labels[idx], scores[idx]` without copying scores B times.
    With `strata` (each image's fold, (n,)), images are drawn within their stratum, so every resample keeps
    each fold's size: a fold's test part is a sample of its own, scored by its own models. The chunk size
    is fixed by n alone, so the resamples depend only on (n, strata, resamples, seed).
    """
    rng = np.random.default_rng(seed)
    chunk = chunk or max(1, _CHUNK_CELLS // n)
    members = [np.arange(n)] if strata is None else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        idx = np.concatenate([m[rng.integers(0, len(m), size=(b, len(m)))] for m in members], axis=1)  # (b, n) indices
        flat = (idx + n * np.arange(b)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)   # (b, n) multiplicities


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, 0 where b == 0: binary_metrics' convention (e.g. precision with no positive predictions)."""
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def _rank_metrics(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ROC AUC and average precision per resample, shape (b,) each, ties handled like scikit-learn.

    Images are grouped by distinct score; per resample, P[g] / N[g] are the positives / negatives drawn
    with score group g. AUC = sum_g P[g] (negatives below g + N[g] / 2) / (n_pos n_neg); AP sums, from
    the highest score down, recall step P[g] / n_pos times precision at that threshold.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])      # first image of each group
    pos = labels[order].astype(bool)
    w = counts[:, order]                                                                 # (b, n)
    p = np.add.reduceat(w * pos, starts, axis=1)                                         # (b, G)
    q = np.add.reduceat(w * ~pos, starts, axis=1)                                        # (b, G)
    n_pos, n_neg = p.sum(axis=1), q.sum(axis=1)
    neg_below = np.cumsum(q, axis=1) - q
    auc = _ratio((p * (neg_below + q / 2)).sum(axis=1), n_pos * n_neg)      # one class: dropped by the caller
    tp_down, fp_down = np.cumsum(p[:, ::-1], axis=1), np.cumsum(q[:, ::-1], axis=1)    # at each threshold, high to low
    ap = _ratio((p[:, ::-1] * _ratio(tp_down, tp_down + fp_down)).sum(axis=1), n_pos)
    return auc, ap


def _within_fold_rank_metrics(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray,
                              folds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUC over the (positive, negative) pairs within one fold, and AP averaged over positives each at its own
    fold's average precision, per resample, (b,) each (pooled_seed_metrics says why); NaN where no fold
    holds a pair (AUC) or no positive was drawn (AP)."""
    y = labels.astype(bool)
    auc_sum, pairs, ap_sum, positives = (np.zeros(len(counts)) for _ in range(4))
    for k in np.unique(folds):
        rows = folds == k
        auc, ap = _rank_metrics(labels[rows], scores[rows], counts[:, rows])
        pos, neg = counts[:, rows] @ y[rows], counts[:, rows] @ ~y[rows]
        auc_sum, pairs = auc_sum + auc * pos * neg, pairs + pos * neg
        ap_sum, positives = ap_sum + ap * pos, positives + pos
    return (np.where(pairs > 0, _ratio(auc_sum, pairs), np.nan), np.where(positives > 0, _ratio(ap_sum, positives), np.nan))


def resampled_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float | np.ndarray, counts: np.ndarray,
                      metrics: Sequence[str] = METRICS, folds: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """binary_metrics of one seed on each resample, as {metric: (b,)}, NaN where a resample holds one class.

    Equal to binary_metrics(labels[idx], scores[idx], threshold)[metric] for the resample's indices idx.
    A one-class resample is dropped for every metric, not only the AUCs: its sensitivity or specificity
    would be binary_metrics' placeholder 0, not a measurement. A cross-validated run gives `threshold` per
    image (its fold model's) and `folds`, and its rank metrics are computed within folds (pooled_seed_metrics).
    """
    y = labels.astype(bool)
    predicted = scores >= threshold
    tp, fn = counts @ (y & predicted), counts @ (y & ~predicted)                          # (b,) each
    fp, tn = counts @ (~y & predicted), counts @ (~y & ~predicted)
    sens, spec, prec = _ratio(tp, tp + fn), _ratio(tn, tn + fp), _ratio(tp, tp + fp)
    values = {"accuracy": (tp + tn) / counts.sum(axis=1), "balanced_accuracy": (sens + spec) / 2,
              "sensitivity": sens, "specificity": spec, "precision": prec,
              "f1": _ratio(2 * prec * sens, prec + sens)}
    if {"roc_auc", "pr_auc"} & set(metrics):
        values["roc_auc"], values["pr_auc"] = (_rank_metrics(labels, scores, counts) if folds is None
                                               else _within_fold_rank_metrics(labels, scores, counts, folds))
    one_class = ((tp + fn) == 0) | ((tn + fp) == 0)
    return {m: np.where(one_class, np.nan, values[m]) for m in metrics}


def run_resampled_per_seed(run: Run, counts: np.ndarray, metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """The run's metrics on each resample, per seed: {metric: (S, b)}.

    SPEC90_METRICS use each seed's threshold_spec90, and are NaN throughout for a run without them. A
    cross-validated run judges each image at its own fold's thresholds.
    """
    out: dict[str, np.ndarray] = {}
    at = (lambda t: t) if run.folds is None else (lambda t: t[run.folds])      # a seed's threshold(s), per image
    plain = [m for m in metrics if m not in _AT_SPEC90]
    if plain:
        per_seed = [resampled_metrics(run.labels, s, at(t), counts, plain, run.folds)
                    for s, t in zip(run.scores, run.thresholds)]
        out.update({m: np.array([r[m] for r in per_seed]) for m in plain})
    at_spec90 = [m for m in metrics if m in _AT_SPEC90]
    if at_spec90 and run.spec90_thresholds is None:
        out.update({m: np.full((len(run.seeds), len(counts)), np.nan) for m in at_spec90})
    elif at_spec90:
        sources = sorted({_AT_SPEC90[m] for m in at_spec90})
        per_seed = [resampled_metrics(run.labels, s, at(t), counts, sources, run.folds)
                    for s, t in zip(run.scores, run.spec90_thresholds)]
        out.update({m: np.array([r[_AT_SPEC90[m]] for r in per_seed]) for m in at_spec90})
    return {m: out[m] for m in metrics}


def run_resampled(run: Run, counts: np.ndarray, metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """The run's metrics on each resample, averaged over its seeds: {metric: (b,)}."""
    return {m: v.mean(axis=0) for m, v in run_resampled_per_seed(run, counts, metrics).items()}


def verdict(ci_low: float | None, ci_high: float | None) -> str:
    """Plain words for a CI of (run - baseline): it excludes 0 on one side, or it does not."""
    if ci_low is None or ci_high is None:
        return UNDEFINED
    if ci_low > 0:
        return IMPROVEMENT
    if ci_high < 0:
        return WORSE
    return NO_DIFFERENCE


@dataclass(frozen=True)
class Difference:
    """run - baseline for one metric: the difference of seed means on the whole test set, and its bootstrap CI."""

    difference: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: str
    resamples_used: int


def bootstrap_differences(baseline: Run, others: Sequence[Run], metrics: Sequence[str] = METRICS,
                          resamples: int = 2000, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """For each run of `others`, {metric: (run - baseline) on each resample where the metric is defined}.

    Every resample draws test images with replacement, and the same draw is scored for the baseline and
    for every other run (paired), so the variation shared by both runs (easy or hard images drawn)
    cancels in the difference. Resamples where either run's metric is undefined (NaN) are dropped.
    Cross-validated runs are resampled within folds (resample_counts' strata).
    """
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    diffs: list[dict[str, list[np.ndarray]]] = [{m: [] for m in metrics} for _ in others]
    for counts in resample_counts(len(baseline.labels), resamples, seed, strata=baseline.folds):
        base = run_resampled(baseline, counts, metrics)
        for run, run_diffs in zip(others, diffs):
            values = run_resampled(run, counts, metrics)
            for m in metrics:
                run_diffs[m].append(values[m] - base[m])
    samples = []
    for run_diffs in diffs:
        joined = {m: np.concatenate(run_diffs[m]) for m in metrics}
        samples.append({m: d[~np.isnan(d)] for m, d in joined.items()})
    return samples


def percentile_ci(sample: np.ndarray, level: float) -> tuple[float, float]:
    """The (1 - level) / 2 and (1 + level) / 2 percentiles of a non-empty bootstrap sample."""
    low, high = np.percentile(sample, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def mean_differences(baseline: Run, others: Sequence[Run], samples: Sequence[dict[str, np.ndarray]],
                     metrics: Sequence[str] = METRICS) -> list[dict[str, Difference]]:
    """For each run, {metric: Difference}: the seed means' difference and the CI_LEVEL percentile CI of
    its bootstrap `samples` (from bootstrap_differences); how many resamples those were is `resamples_used`."""
    base_means = {m: mean_std(v)[0] for m, v in seed_metrics(baseline, metrics).items()}
    results = []
    for run, run_samples in zip(others, samples):
        run_means = {m: mean_std(v)[0] for m, v in seed_metrics(run, metrics).items()}
        pair = {}
        for m in metrics:
            sample = run_samples[m]
            point = None if run_means[m] is None or base_means[m] is None else run_means[m] - base_means[m]
            low, high = percentile_ci(sample, CI_LEVEL) if len(sample) and point is not None else (None, None)
            pair[m] = Difference(point, low, high, verdict(low, high), int(len(sample)))
        results.append(pair)
    return results


def paired_bootstrap(baseline: Run, others: Sequence[Run], metrics: Sequence[str] = METRICS,
                     resamples: int = 2000, seed: int = 0) -> list[dict[str, Difference]]:
    """For each run of `others` (aligned with `baseline`), {metric: Difference} against the baseline.

    The CI is the 2.5 / 97.5 percentile of the paired resampled differences (bootstrap_differences),
    over the resamples where the metric is defined.
    """
    samples = bootstrap_differences(baseline, others, metrics, resamples, seed)
    return mean_differences(baseline, others, samples, metrics)


# ---------------------------------------------------------------------------------------------------------------
# Recipe-level bootstrap: seeds and test images resampled together.

_RECIPE_STREAM = 1      # the seed resampling's random stream, apart from the image draws (stream 0)


@dataclass(frozen=True)
class RecipeDifference:
    """run - baseline for one metric as a difference between training recipes: its standard error counts the
    seed-to-seed (training) variance as well as the test-image sampling.

    Attributes:
        difference: difference of the seed means on the whole test set.
        standard_error: sqrt(seed_variance + image_variance).
        df: Welch-Satterthwaite degrees of freedom of the variance (its seed part has seeds - 1 per run).
        seed_variance: sum over the two runs of (per-seed variance, ddof 1) / seeds, on the whole test set.
        image_variance: what resampling test images adds beyond that (the effect varying between images).
        resamples_used: replicates where both runs' metric is defined on the drawn images.
        seeds: the two runs' seed counts (baseline, run).
        replicates: the two-stage bootstrap's differences, (resamples_used,).
    """

    difference: float
    standard_error: float
    df: float
    seed_variance: float
    image_variance: float
    resamples_used: int
    seeds: tuple[int, int]
    replicates: np.ndarray

    def p_value(self) -> float:
        """Two-sided p of "the recipes do not differ": difference / standard_error against Student t(df)."""
        return t_p_value(self.difference, self.standard_error, self.df)

    def interval(self, level: float) -> tuple[float, float]:
        return t_interval(self.difference, self.standard_error, self.df, level)

    def as_json(self) -> dict[str, Any]:
        return {"standard_error": self.standard_error, "degrees_of_freedom": self.df,
                "seed_variance": self.seed_variance, "image_variance": self.image_variance,
                "seeds": list(self.seeds)}


def resample_seeds(per_seed: np.ndarray, rng: np.random.Generator, correct_small_sample: bool = True) -> np.ndarray:
    """The seed stage: per replicate, the run's S seeds drawn with replacement and averaged, (b,).

    per_seed is (S, b): each seed's metric on replicate b's test images. With correct_small_sample, the
    drawn mean's deviation from the S-seed mean is scaled by sqrt(S / (S - 1)), so its variance is the
    unbiased s^2 / S rather than (S - 1) / S of it (2/3 at 3 seeds).
    """
    seeds, b = per_seed.shape
    drawn = per_seed[rng.integers(0, seeds, size=(b, seeds)), np.arange(b)[:, None]].mean(axis=1)   # (b,)
    mean = per_seed.mean(axis=0)
    scale = np.sqrt(seeds / (seeds - 1)) if correct_small_sample and seeds > 1 else 1.0
    return mean + scale * (drawn - mean)


def _interaction(per_seed: np.ndarray) -> float:
    """Seed-by-image variance of one seed's metric: half the image-resampling variance of the difference of two
    seeds of the same run (the images' shared difficulty cancels in it); 0 for one seed."""
    pairs = [(i, j) for i in range(len(per_seed)) for j in range(i + 1, len(per_seed))]
    return float(np.mean([np.var(per_seed[i] - per_seed[j]) for i, j in pairs]) / 2) if pairs else 0.0


def recipe_bootstrap(baseline: Run, others: Sequence[Run], metric: str, resamples: int = 2000, seed: int = 0,
                     correct_small_sample: bool = True) -> list[RecipeDifference | None]:
    """For each run of `others`, the recipe-level difference of `metric` from the baseline; None where the
    metric is unavailable or a run has a single seed (its training variance cannot be measured).

    Two-stage bootstrap: each replicate draws test images with replacement (the same draws as
    bootstrap_differences, paired across runs), then each run's seeds with replacement (resample_seeds),
    and takes the difference of the two seed means. Both stages see the seed-by-image variation (a seed's
    luck on particular images), so the replicates' variance counts it twice (as Owen's 2007 pigeonhole
    bootstrap of a crossed design does); that excess, estimated from pairs of seeds of the same run, is
    taken off, never below the seed variance measured on the whole test set. The test is then
    difference / standard error against Student t with Welch-Satterthwaite degrees of freedom: with 3
    seeds a seed variance rests on 2 degrees of freedom, and normal tails (what percentiles of 3 resampled
    seeds give) find differences between identical recipes too often (see the user guide).

    Cross-validated runs: images are drawn within their fold (every replicate keeps the fold sizes), and
    seeds jointly across folds: seed s of a recipe is one run of the whole cross-validation (its K fold
    models), so its S seeds are S replicates of the recipe with S - 1 degrees of freedom, as on one split.
    """
    n = len(baseline.labels)
    per_run: list[list[np.ndarray]] = [[] for _ in range(len(others) + 1)]
    for counts in resample_counts(n, resamples, seed, strata=baseline.folds):
        for i, run in enumerate([baseline, *others]):
            per_run[i].append(run_resampled_per_seed(run, counts, [metric])[metric])
    base_values = np.concatenate(per_run[0], axis=1)                                    # (S0, B)
    base_seed = np.array(seed_metrics(baseline, [metric])[metric], dtype=np.float64)
    out: list[RecipeDifference | None] = []
    for i, run in enumerate(others, start=1):
        values = np.concatenate(per_run[i], axis=1)                                     # (S, B)
        run_seed = seed_metrics(run, [metric])[metric]
        if None in run_seed or np.isnan(base_seed).any() or len(run.seeds) < 2 or len(baseline.seeds) < 2:
            out.append(None)
            continue
        run_seed = np.array(run_seed, dtype=np.float64)
        kept = ~(np.isnan(base_values).any(axis=0) | np.isnan(values).any(axis=0))
        a, b = base_values[:, kept], values[:, kept]
        if not kept.any():
            out.append(None)
            continue
        rng = np.random.default_rng([seed, _RECIPE_STREAM, i])
        replicates = resample_seeds(b, rng, correct_small_sample) - resample_seeds(a, rng, correct_small_sample)
        parts = [base_seed.var(ddof=1) / len(base_seed), run_seed.var(ddof=1) / len(run_seed)]
        seed_variance = float(sum(parts))
        twice_counted = _interaction(a) / len(a) + _interaction(b) / len(b)
        variance = max(float(np.var(replicates)) - twice_counted, seed_variance)
        out.append(RecipeDifference(
            difference=float(run_seed.mean() - base_seed.mean()), standard_error=float(np.sqrt(variance)),
            df=welch_df(variance, parts, [len(base_seed), len(run_seed)]), seed_variance=seed_variance,
            image_variance=variance - seed_variance, resamples_used=int(kept.sum()),
            seeds=(len(base_seed), len(run_seed)), replicates=replicates))
    return out


# ---------------------------------------------------------------------------------------------------------------
# The primary metric: bootstrap p-values, Holm-corrected over the runs compared with the baseline.

def bootstrap_p_value(sample: np.ndarray) -> float | None:
    """Two-sided p-value of "no difference" from bootstrap differences: 2 min(P(d <= 0), P(d >= 0)).

    Floored at 1 / (B + 1): B resamples cannot show a smaller p than that. None for an empty sample.
    """
    if not len(sample):
        return None
    tail = min(float(np.mean(sample <= 0)), float(np.mean(sample >= 0)))
    return min(1.0, max(2 * tail, 1 / (len(sample) + 1)))


def holm_levels(p_values: Sequence[float]) -> list[float]:
    """Per p-value, in the order given, the confidence level matching its Holm threshold:
    1 - FAMILY_ALPHA / (m - k + 1) for the k-th smallest of m (ties ranked as statistics.holm ranks them)."""
    levels = [0.0] * len(p_values)
    for rank, i in enumerate(np.argsort(p_values)):
        levels[i] = 1 - FAMILY_ALPHA / (len(p_values) - rank)
    return levels


def primary_verdict(p_holm: float | None, run_ahead: bool) -> str:
    """improvement / worse (the side `run_ahead` says) when the Holm-adjusted p is below FAMILY_ALPHA."""
    if p_holm is None:
        return UNDEFINED
    if p_holm >= FAMILY_ALPHA:
        return NO_DIFFERENCE
    return IMPROVEMENT if run_ahead else WORSE


def primary_tests(recipes: Sequence[RecipeDifference | None], samples: Sequence[np.ndarray],
                  differences: Sequence[Difference]) -> list[dict[str, Any]]:
    """For each run, the primary metric's p-value, Holm-adjusted p, the CI at the Holm-adjusted level and the
    verdict; the Holm family is the runs where it is defined.

    The test is the recipe-level one (recipe_bootstrap) where both runs have several seeds; otherwise the
    test-images-only bootstrap `samples` (bootstrap p-value and percentile CI), and "unit" says which.
    Holm is step-down: a run is significant when its Holm-adjusted p < FAMILY_ALPHA, i.e. when its CI at
    its Holm level excludes 0 and so do those of all runs with smaller p.
    """
    p_values: list[float | None] = []
    for recipe, sample, d in zip(recipes, samples, differences):
        p_values.append(None if d.difference is None else recipe.p_value() if recipe is not None
                        else bootstrap_p_value(sample))
    family = [i for i, p in enumerate(p_values) if p is not None]
    adjusted = dict(zip(family, holm([p_values[i] for i in family])))
    levels = dict(zip(family, holm_levels([p_values[i] for i in family])))
    tests = []
    for i, (recipe, sample, d, p) in enumerate(zip(recipes, samples, differences, p_values)):
        entry: dict[str, Any] = {"unit": RECIPE_UNIT if recipe is not None else TEST_ONLY_UNIT}
        if p is None:
            low, high, ci, ahead = None, None, (None, None), False
        elif recipe is not None:
            (low, high), ci = recipe.interval(levels[i]), recipe.interval(CI_LEVEL)
            ahead = recipe.difference > 0
            entry.update(recipe.as_json(), resamples_used=recipe.resamples_used)
        else:
            (low, high), ci = percentile_ci(sample, levels[i]), (d.ci_low, d.ci_high)
            ahead = bool(np.mean(sample <= 0) < np.mean(sample >= 0))
        entry.update({"ci_low": ci[0], "ci_high": ci[1], "p_value": p, "p_value_holm": adjusted.get(i),
                      "holm_ci_level": levels.get(i), "holm_ci_low": low, "holm_ci_high": high,
                      "verdict": primary_verdict(adjusted.get(i), ahead)})
        tests.append(entry)
    return tests


def pooled_seed_spread(runs: Sequence[Run], metric: str) -> float | None:
    """The standard deviation over seeds of `metric` on the test set, pooled over the runs (ddof 1 each);
    None when no run has two seeds or the metric is unavailable in one."""
    values = [seed_metrics(run, [metric])[metric] for run in runs]
    if any(None in v for v in values):
        return None
    dof = sum(len(v) - 1 for v in values)
    if dof == 0:
        return None
    return float(np.sqrt(sum(np.var(v, ddof=1) * (len(v) - 1) for v in values if len(v) > 1) / dof))


def detectable_effect(runs: Sequence[Run], metric: str) -> dict[str, Any]:
    """comparison.json's "minimum_detectable_effect": from the measured seed spread (pooled over the runs), the
    fewest seeds of any run, and the runs compared with the baseline (Holm's family). Cross-validated runs'
    spread is that of the metric on the pooled test images, so it counts every fold's positives."""
    spread, seeds, comparisons = pooled_seed_spread(runs, metric), min(len(r.seeds) for r in runs), len(runs) - 1
    value = None if spread is None or seeds < 2 else minimum_detectable_effect(spread, seeds, comparisons,
                                                                                FAMILY_ALPHA, MDE_POWER)
    entry = {"metric": metric, "value": value, "seed_spread": spread, "seed_spread_source": "measured: standard "
             "deviation over seeds on the test set, pooled over the runs", "seeds": seeds, "comparisons": comparisons,
             "alpha": FAMILY_ALPHA, "power": MDE_POWER}
    if runs[0].folds is not None:
        entry.update(folds=int(runs[0].folds.max()) + 1, test_positives=int(runs[0].labels.sum()))
    return entry


# ---------------------------------------------------------------------------------------------------------------
# Report.

def check_primary_metric(primary_metric: str) -> str:
    """`primary_metric`, or a UserError naming the metrics a comparison can declare primary."""
    if primary_metric not in COMPARISON_METRICS:
        raise UserError(f"primary metric {primary_metric!r} is not one of {', '.join(COMPARISON_METRICS)}")
    return primary_metric


def _primary_entry(metric: str, per_run: list[dict], i: int, d: Difference, sample: np.ndarray,
                   test: dict[str, Any]) -> dict[str, Any]:
    """comparison.json's "primary" of run i against the baseline (run 0): the recipe-level test, and under
    "test_only" the per-model CI and p (test images resampled, these trained models held fixed)."""
    missing = [r["label"] for r in (per_run[0], per_run[i]) if r["metrics"][metric]["mean"] is None]
    test_only = {"ci_low": d.ci_low, "ci_high": d.ci_high,
                 "p_value": bootstrap_p_value(sample) if d.difference is not None else None,
                 "resamples_used": d.resamples_used}
    return {"metric": metric, "description": _describe(metric), "available": not missing,
            "unavailable_in": missing, "baseline_mean": per_run[0]["metrics"][metric]["mean"],
            "run_mean": per_run[i]["metrics"][metric]["mean"], "difference": d.difference, "ci_level": CI_LEVEL,
            "resamples_used": d.resamples_used, **test, "test_only": test_only}


def compare(runs: Sequence[Run], resamples: int = 2000, seed: int = 0,
            primary_metric: str = PRIMARY_METRIC) -> dict[str, Any]:
    """Everything comparison.json holds: the test set, per-run metrics per seed, and each run vs the first,
    the declared primary metric first."""
    check_primary_metric(primary_metric)
    runs = check_comparable(runs)
    base, labels = runs[0], runs[0].labels
    per_run = []
    for run in runs:
        values = seed_metrics(run, COMPARISON_METRICS)
        per_run.append({
            "label": run.label, "run_dir": str(run.run_dir), "name": run.summary.get("name"),
            "seeds": list(run.seeds), "thresholds": run.thresholds.tolist(),
            "thresholds_spec90": None if run.spec90_thresholds is None else run.spec90_thresholds.tolist(),
            "metrics": {m: dict(zip(("mean", "std"), mean_std(v)), values=v) for m, v in values.items()},
            "warnings": [*run.summary.get("fold_warnings", []), *_summary_mismatches(run, values)],
        })
    samples = bootstrap_differences(base, runs[1:], COMPARISON_METRICS, resamples, seed)
    pairs = mean_differences(base, runs[1:], samples, COMPARISON_METRICS)
    recipes = recipe_bootstrap(base, runs[1:], primary_metric, resamples, seed)
    primary = primary_tests(recipes, [s[primary_metric] for s in samples], [pair[primary_metric] for pair in pairs])
    auc_tests = [delong(labels, base.scores, run.scores, CI_LEVEL, strata=base.folds) for run in runs[1:]]
    adjusted = holm([t.p_value for t in auc_tests])
    report = {
        "test_set": {"images": int(len(labels)), "positives": int(labels.sum()),
                     "negatives": int(len(labels) - labels.sum()),
                     "positive_class": base.summary.get("positive_class"),
                     "class_names": base.summary.get("class_names")},
        "bootstrap": {"resamples": resamples, "seed": seed, "ci_level": CI_LEVEL, "paired_by": "sha256",
                      "statistic": "mean over seeds of the metric at each seed's validation threshold"},
        "std": f"standard deviation over seeds, ddof={STD_DDOF}",
        "baseline": base.label,
        "primary_metric": {
            "metric": primary_metric, "description": _describe(primary_metric),
            "unit": "the training recipe: seeds and test images resampled together (two-stage bootstrap)",
            "p_value": "two-sided: difference / standard error against Student t with Welch-Satterthwaite degrees "
                       "of freedom; the standard error from the two-stage bootstrap (seed-by-image variance counted "
                       "once, at least the seed variance on the whole test set). A run with one seed: the paired "
                       "test-image bootstrap, 2 min(P(d <= 0), P(d >= 0)), at least 1 / (resamples + 1)",
            "test_only": "per model: test images resampled, the trained models held fixed (the paired bootstrap of "
                         "the tables)",
            "correction": f"Holm over the {sum(t['p_value'] is not None for t in primary)} runs compared with the "
                          "baseline where the metric is available",
            "alpha": FAMILY_ALPHA,
            "rule": f"improvement / worse only when the Holm-adjusted p < {FAMILY_ALPHA:g}",
        },
        "minimum_detectable_effect": detectable_effect(runs, primary_metric),
        "table_metrics": list(TABLE_METRICS),
        "runs": per_run,
        "comparisons": [{"run": run.label, "baseline": base.label, "identical_to_baseline": identical_to(run, base),
                         "primary": _primary_entry(primary_metric, per_run, i, pair[primary_metric],
                                                   sample[primary_metric], p_test),
                         "metrics": {m: {"baseline_mean": per_run[0]["metrics"][m]["mean"],
                                         "run_mean": per_run[i]["metrics"][m]["mean"],
                                         **vars(d)} for m, d in pair.items()},
                         "delong_auc": {**vars(test), "p_value_holm": p_holm,
                                        "verdict": (IMPROVEMENT if test.difference > 0 else WORSE)
                                        if p_holm < 1 - CI_LEVEL else NO_DIFFERENCE}}
                        for i, (run, pair, sample, p_test, test, p_holm)
                        in enumerate(zip(runs[1:], pairs, samples, primary, auc_tests, adjusted), start=1)],
        "delong": {"statistic": "AUC of the seed-mean placement values (DeLong et al. 1988), paired by image",
                   "correction": f"Holm over the {len(runs) - 1} runs compared with the baseline"},
    }
    if base.folds is not None:
        report["cross_validation"] = cross_validation_entry(runs, primary_metric)
        report["delong"]["stratified"] = "by fold: pairs within a fold, the folds' variances weighted by their pairs"
    return report


def cross_validation_entry(runs: Sequence[Run], metric: str) -> dict[str, Any]:
    """comparison.json's "cross_validation" of cross-validated runs: the folds' test parts, how the metrics and
    the bootstrap pool them, and (secondary) each run's `metric` on each fold's test part alone."""
    base = runs[0]
    folds = range(int(base.folds.max()) + 1)
    parts = [fold_of(base, k) for k in folds]
    return {
        "folds": len(parts), "images": [len(p.labels) for p in parts], "positives": [int(p.labels.sum()) for p in parts],
        "threshold_metrics": "each image at its own fold model's validation threshold, counted over the pooled images",
        "rank_metrics": "AUC-ROC over the (positive, negative) pairs within a fold; PR-AUC: each fold's average "
                        "precision, averaged over the positives",
        "resampling": "test images within their fold (fold sizes kept); seeds jointly across folds (seed s of a run "
                      "is its fold models of seed s)",
        "per_fold": {"metric": metric, "runs": [
            {"label": run.label, "fold_dirs": [str(d) for d in run.fold_dirs],
             "folds": [dict(zip(("mean", "std"), mean_std(seed_metrics(fold_of(run, k), [metric])[metric]))) for k in folds]}
            for run in runs]},
    }


def identical_to(run: Run, base: Run) -> str | None:
    """Why `run` made exactly `base`'s predictions (every seed, every test image, the same thresholds), or
    None when it did not.

    Such a run's differences are 0 by construction: "± 0.000" and a CI of [+0.000, +0.000] say nothing
    was measured, not that nothing changed. The usual cause is an EOS arm whose retrained head never beat
    the original on validation AUC, so the original (the baseline's own network) was kept in every seed.
    """
    same = (run.seeds == base.seeds and np.array_equal(run.scores, base.scores)
            and np.array_equal(run.thresholds, base.thresholds)
            and (run.spec90_thresholds is None) == (base.spec90_thresholds is None)
            and (run.spec90_thresholds is None or np.array_equal(run.spec90_thresholds, base.spec90_thresholds)))
    if not same:
        return None
    eos = [folder / f"seed_{seed}" / "eos.json" for folder in run.fold_dirs or (run.run_dir,) for seed in run.seeds]
    if all(path.is_file() for path in eos):
        try:
            kept = [json.loads(path.read_text()).get("best_head_epoch") == 0 for path in eos]
        except (json.JSONDecodeError, UnicodeDecodeError):
            kept = []
        if kept and all(kept):
            return ("EOS kept the original head in every seed: no retrained head beat it on validation AUC, so this "
                    "run is the baseline's network")
    return "it is the same training (same data, config and seeds) as the baseline"


def _summary_mismatches(run: Run, values: dict[str, list[float | None]]) -> list[str]:
    """Where summary.json's test means disagree with those recomputed from the predictions (a stale file); a
    pooled cross-validated run has no test means of its own (load_folded_run checks each fold's)."""
    out = []
    for m, recomputed in values.items():
        stated = (run.summary.get("test") or {}).get(m, {})
        mean = mean_std(recomputed)[0]
        if isinstance(stated, dict) and isinstance(stated.get("mean"), (int, float)) and mean is not None \
                and abs(stated["mean"] - mean) > 1e-6:
            out.append(f"{run.label}: summary.json says test {m} {stated['mean']:.4f}, the predictions give {mean:.4f}")
    return out


def _fmt(value: float | None, signed: bool = False) -> str:
    return "n/a" if value is None else f"{value:+.3f}" if signed else f"{value:.3f}"


def _mean_std_cell(stats: dict) -> str:
    if stats["mean"] is None:
        return "n/a"
    return _fmt(stats["mean"]) + ("" if stats["std"] is None else f" ± {stats['std']:.3f}")


def _improvement_cell(metric: str, d: dict) -> str:
    cell = _fmt(d["difference"], signed=True)
    if metric == "sensitivity" and d["difference"] is not None:   # the reference guide states sensitivity gains in points
        cell += f" ({100 * d['difference']:+.1f} pp)"
    return cell


def _ci_cell(d: dict) -> str:
    return "n/a" if d["ci_low"] is None else f"[{_fmt(d['ci_low'], True)}, {_fmt(d['ci_high'], True)}]"


def _describe(metric: str) -> str:
    """The metric's name inside a sentence: "sensitivity at ...", but "AUC-ROC" and "F1" kept as written."""
    name = METRIC_NAMES[metric]
    return name[0].lower() + name[1:] if name[1:2].islower() else name


def _difference_text(metric: str, value: float) -> str:
    return f"{100 * value:+.1f}" if metric in PROPORTION_METRICS else f"{value:+.3f}"


def primary_line(comparison: dict) -> str:
    """The pair's one-line verdict on the primary metric, with the Holm-adjusted p and the CI at its level."""
    p = comparison["primary"]
    head = f"Primary metric ({p['description']}): "
    if p["unavailable_in"]:
        return head + (f"unavailable: {' and '.join(p['unavailable_in'])} "
                       f"{'has' if len(p['unavailable_in']) == 1 else 'have'} no value for it "
                       "(a run folder from before the metric was recorded; re-evaluate it to compare)")
    if p["p_value"] is None:
        return head + f"{UNDEFINED} (no resample of the test set holds both classes)"
    m, unit = p["metric"], " pp" if p["metric"] in PROPORTION_METRICS else ""
    ci = f"[{_difference_text(m, p['ci_low'])}, {_difference_text(m, p['ci_high'])}]"
    holm_ci = (f"{100 * p['holm_ci_level']:.4g} % CI [{_difference_text(m, p['holm_ci_low'])}, "
               f"{_difference_text(m, p['holm_ci_high'])}]")
    return head + (f"{_difference_text(m, p['difference'])}{unit} {ci}, p = {p['p_value']:.3g}, "
                   f"Holm-adjusted p = {p['p_value_holm']:.3g} ({holm_ci}): {p['verdict']}")


def test_only_line(comparison: dict) -> str | None:
    """The pair's secondary line on the primary metric: the per-model CI and p (test images resampled, these
    trained models held fixed); None when it is undefined or is already the primary line's test."""
    p = comparison["primary"]
    t = p.get("test_only")
    if not t or t["ci_low"] is None or p.get("unit") == TEST_ONLY_UNIT:
        return None
    m, unit = p["metric"], " pp" if p["metric"] in PROPORTION_METRICS else ""
    return (f"Per model (test images only, these trained models held fixed; not the verdict): "
            f"{_difference_text(m, p['difference'])}{unit} [{_difference_text(m, t['ci_low'])}, "
            f"{_difference_text(m, t['ci_high'])}], p = {t['p_value']:.3g}")


def detectable_line(report: dict) -> str | None:
    """comparison.md's sentence on the smallest difference this study could find, from its measured seed spread."""
    e = report.get("minimum_detectable_effect")
    if not e or e["value"] is None:
        return None
    m = e["metric"]
    scale, unit = (100, " pp") if m in PROPORTION_METRICS else (1, "")
    pooled = (f" on the {e['test_positives']} positive test images pooled over {e['folds']} folds"
              if "folds" in e else "")
    text = (f"Minimum detectable effect: {scale * e['value']:.3g}{unit} on the primary metric ({100 * e['power']:.0f} % "
            f"power, alpha {e['alpha']:g} / {e['comparisons']} for Holm's first step), from {e['seeds']} seeds per run "
            f"and the measured seed-to-seed spread of {scale * e['seed_spread']:.3g}{unit}{pooled} (standard deviation "
            "over seeds, pooled over the runs). A smaller true difference is likely to be reported as no significant "
            "difference.")
    if m in PROPORTION_METRICS and e["value"] > DETECTABLE_NOTE_ABOVE:
        text += (f" This study cannot detect differences below {100 * DETECTABLE_NOTE_ABOVE:.0f} pp: more seeds or "
                 "more positive test images would.")
    return text + "\n"


def _runs_table_metrics(report: dict) -> tuple[str, ...]:
    """TABLE_METRICS, with the primary metric first when it is not one of them."""
    primary = (report.get("primary_metric") or {}).get("metric")
    return TABLE_METRICS if primary is None or primary in TABLE_METRICS else (primary, *TABLE_METRICS)


def runs_table(report: dict) -> str:
    """All runs side by side: mean ± std over seeds of the primary metric and each table metric."""
    metrics = _runs_table_metrics(report)
    primary = (report.get("primary_metric") or {}).get("metric")
    names = [METRIC_NAMES[m] + (" (primary)" if m == primary else "") for m in metrics]
    lines = ["| Run | seeds | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for run in report["runs"]:
        cells = [_mean_std_cell(run["metrics"][m]) if m in run["metrics"] else "n/a" for m in metrics]
        lines.append(f"| {run['label']} | {len(run['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pair_table(report: dict, comparison: dict) -> str:
    """One run against the baseline: the primary metric's verdict line, then values, improvement, CI of the
    difference and verdict per table metric."""
    runs = {r["label"]: r for r in report["runs"]}
    base, run = runs[comparison["baseline"]], runs[comparison["run"]]
    lines = []
    if "primary" in comparison:
        secondary = test_only_line(comparison)
        lines = [primary_line(comparison), *([secondary] if secondary else []), ""]
    lines += [f"| Metric | Baseline | {run['label']} | Improvement | {round(100 * CI_LEVEL)} % CI of the difference "
              "| Verdict |", "|---|---:|---:|---:|---:|---|"]
    for m in TABLE_METRICS:
        d = comparison["metrics"][m]
        lines.append(f"| {METRIC_NAMES[m]} | {_mean_std_cell(base['metrics'][m])} | {_mean_std_cell(run['metrics'][m])} "
                     f"| {_improvement_cell(m, d)} | {_ci_cell(d)} | {d['verdict']} |")
    if "delong_auc" in comparison:
        t = comparison["delong_auc"]
        lines.append(f"\nAUC-ROC by DeLong's paired test: {t['difference']:+.3f} "
                     f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}], p = {t['p_value']:.3g}, "
                     f"Holm-adjusted p = {t['p_value_holm']:.3g}: {t['verdict']}")
    return "\n".join(lines)


def _small_sample_note(test_set: dict) -> list[str]:
    """A caution when one class has few test images: percentile-bootstrap CIs are then too narrow."""
    fewest = min(test_set["positives"], test_set["negatives"])
    if fewest >= SMALL_CLASS:
        return []
    return [f"Caution: only {fewest} test images of one class; with so few, bootstrap CIs are approximate and tend "
            "to be too narrow.\n"]


def _primary_note(report: dict) -> list[str]:
    """comparison.md's paragraph on the declared primary metric and how its verdict is reached."""
    primary = report.get("primary_metric")
    if not primary:
        return []
    m, alpha = primary["metric"], primary["alpha"]
    threshold = (f" Each seed's threshold for it is the lowest that keeps specificity >= "
                 f"{100 * PRIMARY_SPECIFICITY:.0f} % on validation, applied unchanged to test (where specificity may "
                 "differ)." if m in SPEC90_METRICS else "")
    return [f"Primary metric, declared before the comparison: {primary['description']}.{threshold} It alone "
            "decides whether a run beats the baseline; the other metrics describe how the runs differ. Its test asks "
            "whether the training *recipe* is better, not only these trained models: a two-stage bootstrap draws the "
            "test images with replacement (the same draws for both runs) and then each run's seeds with replacement "
            "(their spread around the seed mean scaled by sqrt(S / (S - 1))), so its standard error counts "
            "training variance as well as test-set sampling (the seed-by-image part, which both stages see, "
            "counted once). The difference over that standard error is read against Student t with "
            "Welch-Satterthwaite degrees of freedom, because a few seeds measure their own spread poorly. The "
            f"two-sided p-value is Holm-corrected over the runs compared with the baseline (family-wise error "
            f"{100 * alpha:g} %). A verdict of improvement / worse on the primary metric requires a Holm-adjusted "
            f"p < {alpha:g}: the CI at the Holm-adjusted level (1 - {alpha:g} / (m - k + 1) for the k-th smallest of "
            "m p-values, shown after the Holm-adjusted p) excludes 0, for this run and for every run with a smaller "
            "p. The first line of each comparison below gives that verdict; the second, the per-model CI of the "
            "same difference (test images only, the paired bootstrap of the tables), which is narrower and is not "
            "the verdict. A run with a single seed has no measurable training variance: its primary test is the "
            "test-images-only bootstrap.\n"]


def _cross_validation_note(report: dict) -> list[str]:
    """comparison.md's paragraph on how a cross-validated study's folds are pooled (none for one test split)."""
    cv = report.get("cross_validation")
    if not cv:
        return []
    sizes = ", ".join(f"{n} ({p})" for n, p in zip(cv["images"], cv["positives"]))
    return [f"Cross-validation: {cv['folds']} folds. The real images of every split were pooled and split into "
            f"{cv['folds']} folds stratified by class, identical pixels in one fold. For each fold every arm (with the "
            "GAN, QA and grid behind it) was trained on the other folds, its model, thresholds and grid choice chosen "
            "on a validation split of them, and the fold's test part was scored once. The test set above is the "
            f"{cv['folds']} test parts together, every real image tested exactly once (images (positives) per fold: "
            f"{sizes}). Threshold metrics judge each image at its own fold model's validation threshold and count "
            "over the pooled images; AUC-ROC counts the (positive, negative) pairs within a fold, each ranked by the "
            "model that scored both, and PR-AUC averages each fold's average precision over the positives; DeLong's "
            "test is stratified by fold. Every bootstrap draws images within their fold, so each resample keeps the "
            "fold sizes, and the recipe-level test draws seeds jointly across folds: seed s of a run is its "
            f"{cv['folds']} fold models of seed s.\n"]


def _per_fold_section(report: dict) -> list[str]:
    """comparison.md's secondary table of a cross-validated study: the primary metric on each fold's test part."""
    cv = report.get("cross_validation")
    if not cv:
        return []
    metric = cv["per_fold"]["metric"]
    pooled = {r["label"]: r["metrics"][metric] for r in report["runs"]}
    heads = [f"fold {k} ({p} pos.)" for k, p in enumerate(cv["positives"], start=1)]
    lines = ["## The primary metric per fold\n",
             f"Secondary, not a verdict: {_describe(metric)} on each fold's test part alone (mean ± std over seeds). "
             "Each rests on its own fold's positives only; the pooled column and the tests above use every fold.\n",
             "| Run | " + " | ".join(heads) + " | pooled |", "|---|" + "---:|" * (len(heads) + 1)]
    for run in cv["per_fold"]["runs"]:
        cells = [_mean_std_cell(fold) for fold in run["folds"]] + [_mean_std_cell(pooled[run["label"]])]
        lines.append(f"| {run['label']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def comparison_markdown(report: dict) -> str:
    """comparison.md: the method in a few sentences, all runs side by side, then each run vs the baseline."""
    t, b = report["test_set"], report["bootstrap"]
    seeds = ", ".join(f"{r['label']} {len(r['seeds'])}" for r in report["runs"])
    positive, names = t["positive_class"] or "positive", t["class_names"] or []
    negative = next((n for n in names if n != positive), "negative") if len(names) == 2 else "negative"
    used = {d["resamples_used"] for c in report["comparisons"] for m, d in c["metrics"].items() if m in TABLE_METRICS}
    used_note = "" if used <= {b["resamples"]} else \
        f" Resamples holding one class only were dropped ({min(used)} to {max(used)} of {b['resamples']} used)."
    lines = [
        "# Classifier comparison\n",
        f"Test set: {t['images']:,} real images ({t['positives']:,} {positive}, {t['negatives']:,} {negative}), "
        "the same images for every run (matched by pixel SHA-256). "
        f"Seeds per run: {seeds}. Values are mean ± standard deviation over seeds; each seed's decision "
        "threshold was chosen on validation and applied unchanged to test.\n",
        *_cross_validation_note(report),
        f"Improvement is the run's mean minus the baseline's. Its {round(100 * CI_LEVEL)} % CI comes from a paired "
        f"bootstrap over test images ({b['resamples']:,} resamples, seed {b['seed']}): each resample draws test images "
        f"with replacement, scores the same draw for both runs and averages each run over its seeds.{used_note} "
        "\"improvement\" / \"worse\" means the CI lies entirely above / below 0. The CIs are per metric and per "
        "pair, not corrected for the number of comparisons, and reflect test-set sampling only (seed-to-seed "
        "spread is the ± column).\n",
        *_primary_note(report),
        *([detectable_line(report)] if detectable_line(report) else []),
        "AUC-ROC differences are also tested with DeLong's paired test on the seed-mean placement values, and "
        "its p-values are Holm-corrected over the runs compared with the baseline (family-wise error 5 %).\n",
        *_small_sample_note(t),
        "## All runs\n", runs_table(report), "",
        *_per_fold_section(report),
    ]
    identical = [c for c in report["comparisons"] if c.get("identical_to_baseline")]
    if identical:
        lines += [f"Identical to the baseline: {', '.join(c['run'] for c in identical)} made exactly the baseline's "
                  "predictions on every test image, seed for seed, so its differences are 0 by construction (not a "
                  "measurement of no effect).\n"]
    for c in report["comparisons"]:
        lines += [f"## {c['run']} vs {c['baseline']} (baseline)\n"]
        if c.get("identical_to_baseline"):
            lines += [f"Identical to the baseline: {c['identical_to_baseline']}. Every difference below is 0 by "
                      "construction.\n"]
        lines += [pair_table(report, c), ""]
    warnings = [w for r in report["runs"] for w in r["warnings"]]
    if warnings:
        lines += ["## Warnings\n", *(f"- {w}" for w in warnings), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# ROC curves.

def plot_roc_curves(runs: Sequence[Run], path: str | Path) -> None:
    """All runs' ROC curves in one plot: thin lines per seed, a bold vertical average per run.

    Not the ROC of the seed-averaged score: that would be an ensemble, whose AUC is in no table. The
    bold line averages the seeds' TPR at each FPR, and the legend's AUC is the mean ± std of the seeds'
    AUCs, as in comparison.md. A cross-validated run draws one curve per seed and fold (each fold model
    ranks its own test part only), the bold line their average, and its legend gives the pooled AUC.
    """
    fig, ax = subplots(figsize=(6, 6))
    grid = np.linspace(0, 1, 201)
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        if run.labels.min() == run.labels.max():   # one class: no ROC to draw
            continue
        parts = [run] if run.folds is None else [fold_of(run, k) for k in np.unique(run.folds)]
        tprs, aucs = [], []
        for part in parts:
            for scores in part.scores:
                fpr, tpr, _ = roc_curve(part.labels, scores)
                ax.plot(fpr, tpr, color=color, lw=0.6, alpha=0.3)
                tprs.append(np.interp(grid, fpr, tpr))
                aucs.append(roc_auc_score(part.labels, scores))
        if run.folds is not None:
            aucs = seed_metrics(run, ["roc_auc"])["roc_auc"]
        auc_text = f"{np.mean(aucs):.3f}" + (f" ± {np.std(aucs, ddof=STD_DDOF):.3f}" if len(aucs) > 1 else "")
        mean_tpr = np.mean(tprs, axis=0)
        mean_tpr[0] = 0.0
        folds = "" if run.folds is None else f" x {len(parts)} folds"
        ax.plot(grid, mean_tpr, color=color, lw=2.2, label=f"{run.label} (AUC {auc_text}, {len(aucs)} seeds{folds})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    title = "ROC on the test set" if runs[0].folds is None else "ROC on each fold's test part"
    ax.set(xlabel="false positive rate (1 - specificity)", ylabel="true positive rate (sensitivity)",
           title=title, xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    atomic.save_figure(fig, path, dpi=120, bbox_inches="tight")


def write_comparison(runs: Sequence[Run], out_dir: str | Path, resamples: int = 2000, seed: int = 0,
                     primary_metric: str = PRIMARY_METRIC) -> dict:
    """Compare `runs` (the first is the baseline) and write comparison.md/.json and roc_curves.png atomically."""
    out_dir = Path(out_dir)
    refuse_output_inside_dataset(out_dir, "--output_dir", "a folder of its own, e.g. results/comparison/<name>")
    check_resamples(resamples)
    report = compare(runs, resamples, seed, primary_metric)     # checks the runs before anything is written
    atomic.write_json(out_dir / "comparison.json", report)
    atomic.write_text(out_dir / "comparison.md", comparison_markdown(report))
    plot_roc_curves(runs, out_dir / "roc_curves.png")
    return report


def ordered_run_dirs(run_dirs: list[str], baseline: str | None) -> list[Path]:
    """Baseline first, then the other runs in the order given; the baseline is not compared with itself."""
    dirs = [Path(d) for d in run_dirs]
    if baseline is not None:
        base = Path(baseline)
        dirs = [base] + [d for d in dirs if d.resolve() != base.resolve()]
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise UserError("the same run folder is given twice")
    if len(dirs) < 2:
        raise UserError("give at least two runs to compare (a baseline and one other)")
    return dirs


def run_labels(names: list[str], dirs: list[Path], given: list[str] | None) -> list[str]:
    """--labels, else summary names, else folder names where summary names collide; unique either way."""
    if given is not None:
        if len(given) != len(dirs):
            raise UserError(f"--labels gives {len(given)} names for {len(dirs)} runs (baseline first)")
        labels = given
    else:
        labels = names if len(set(names)) == len(names) else [d.name for d in dirs]
    if len(set(labels)) != len(labels):
        raise UserError(f"two runs would share the label {labels!r}: name them with --labels")
    return labels


def check_resamples(resamples: int) -> None:
    """Bootstrap resamples within [1, MAX_BOOTSTRAP]: more gives no better interval and runs for hours."""
    if isinstance(resamples, bool) or not isinstance(resamples, int) or not 1 <= resamples <= MAX_BOOTSTRAP:
        raise UserError(f"--bootstrap must be between 1 and {MAX_BOOTSTRAP:,}, got {resamples!r}")


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, *, baseline: str | Path | None = None,
                 labels: list[str] | None = None, resamples: int = 2000, seed: int = 0,
                 primary_metric: str = PRIMARY_METRIC) -> tuple[dict, list[Run]]:
    """Load the runs (baseline first: `baseline`, else the first given), label them and write the comparison
    into `out_dir`, `primary_metric` deciding the verdicts; returns the report and the runs as compared."""
    check_primary_metric(primary_metric)
    check_resamples(resamples)
    refuse_output_inside_dataset(out_dir, "--output_dir", "a folder of its own, e.g. results/comparison/<name>")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UserError(f"--output_dir is a file, not a folder: {out_dir}")
    dirs = ordered_run_dirs([str(d) for d in run_dirs], None if baseline is None else str(baseline))
    out = Path(out_dir).resolve()
    for d in dirs:             # a run folder is an input: its files are never added to or replaced
        if out == Path(d).resolve() or Path(d).resolve() in out.parents:
            raise UserError(f"--output_dir {out_dir} is inside the run folder {d}: give a folder of its own, "
                            "e.g. results/comparison/<name>")
    runs = [load_run(d) for d in dirs]
    names = run_labels([r.label for r in runs], dirs, labels)
    runs = [dataclasses.replace(r, label=label) for r, label in zip(runs, names)]
    return write_comparison(runs, out_dir, resamples=resamples, seed=seed, primary_metric=primary_metric), runs


def validation_score(run_dir: str | Path, metric: str) -> float:
    """The run's validation mean (over seeds) of `metric`, from its summary.json: for choosing among runs
    without looking at test."""
    path = Path(run_dir) / SUMMARY
    val = _read_json(path).get("val")
    stats = val.get(metric) if isinstance(val, dict) else None
    mean = stats.get("mean") if isinstance(stats, dict) else None
    if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not math.isfinite(mean):
        raise UserError(f"{path} holds no validation mean of {metric!r} (a run from before it was recorded, "
                        "or one it is undefined for)")
    return float(mean)
