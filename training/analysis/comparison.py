"""Comparing classifier runs on the same real test set, with a paired bootstrap over test images.

Each run folder is written by the classifier trainer:

    <run>/summary.json                      name, positive_class, class_names, seeds, test/val means
    <run>/seed_<s>/metrics.json             threshold (chosen on validation), val and test metrics
    <run>/seed_<s>/test_predictions.csv     sha256, path, label, score  (score = P(positive class))

Test images are matched across runs by `sha256` of their pixels, never by path: an augmented dataset
renames its real test files (real_<name>.png) and may list them in another order.

The chain is: load runs (rows keyed by sha256) -> check they share the test set -> per-seed metrics
(the ± std in the tables) -> paired bootstrap of the difference (the CI) -> verdict. The bootstrap
resamples test images only, with the same images for both runs, so it answers "would the ranking of
these two classifiers hold on another test set of this size?"; seed-to-seed variation is averaged
inside every resample.
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

from training.analysis.statistics import delong, holm
from training.classify.metrics import METRICS, binary_metrics
from training.core import atomic
from training.core.errors import DataError, UserError
from training.core.plotting import subplots

SUMMARY = "summary.json"
SEED_METRICS = "metrics.json"
TEST_PREDICTIONS = "test_predictions.csv"
PREDICTION_COLUMNS = ("sha256", "path", "label", "score")

# The metrics of the reference guide's results table (plus specificity and PR-AUC, which say what a gain in
# sensitivity cost and how well the minority class is ranked); comparison.json holds all of METRICS.
TABLE_METRICS = ("accuracy", "sensitivity", "specificity", "f1", "roc_auc", "pr_auc")
METRIC_NAMES = {
    "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "sensitivity": "Sensitivity (recall)",
    "specificity": "Specificity", "precision": "Precision (PPV)", "f1": "F1", "roc_auc": "AUC-ROC",
    "pr_auc": "PR-AUC",
}
IMPROVEMENT, WORSE, NO_DIFFERENCE, UNDEFINED = "improvement", "worse", "no significant difference", "undefined"
CI_LEVEL = 0.95
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
        keys: the image keys (sha256, occurrence) in row order, length n.
        labels: 1 = positive class, shape (n,).
        scores: P(positive class), shape (S, n).
    """

    label: str
    run_dir: Path
    summary: dict
    seeds: tuple[int, ...]
    thresholds: np.ndarray
    keys: tuple[tuple[str, int], ...]
    labels: np.ndarray
    scores: np.ndarray


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
    thresholds, per_seed = [], []
    for seed in seeds:
        seed_dir = run_dir / f"seed_{seed}"
        threshold = _read_json(seed_dir / SEED_METRICS).get("threshold")
        if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise DataError(f"{seed_dir / SEED_METRICS}: 'threshold' must be a finite number")
        thresholds.append(float(threshold))
        per_seed.append(read_predictions(seed_dir / TEST_PREDICTIONS))
    keys = sorted(per_seed[0])
    ref_labels = {k: v[0] for k, v in per_seed[0].items()}
    for seed, preds in zip(seeds[1:], per_seed[1:]):
        _check_same_images(set(preds), {k: v[0] for k, v in preds.items()}, set(keys), ref_labels,
                           f"{run_dir.name}/seed_{seed}", f"{run_dir.name}/seed_{seeds[0]}")
    return Run(label=label or str(summary.get("name") or run_dir.name), run_dir=run_dir, summary=summary,
               seeds=tuple(seeds), thresholds=np.array(thresholds), keys=tuple(keys),
               labels=np.array([ref_labels[k] for k in keys], dtype=np.int64),
               scores=np.array([[preds[k][1] for k in keys] for preds in per_seed], dtype=np.float64))


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
    return list(runs)


# ---------------------------------------------------------------------------------------------------------------
# Per-seed metrics on the whole test set.

def seed_metrics(run: Run, metrics: Sequence[str] = METRICS) -> dict[str, list[float | None]]:
    """{metric: [value per seed]} from binary_metrics at each seed's validation threshold."""
    per_seed = [binary_metrics(run.labels, scores, t) for scores, t in zip(run.scores, run.thresholds)]
    return {m: [r[m] for r in per_seed] for m in metrics}


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and standard deviation (ddof=STD_DDOF) over seeds; std None for one seed, both None if undefined."""
    if any(v is None for v in values):
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=STD_DDOF)) if len(arr) > 1 else None)


# ---------------------------------------------------------------------------------------------------------------
# Paired bootstrap.

def resample_counts(n: int, resamples: int, seed: int, chunk: int | None = None) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n test images as multiplicities, (b, n) per chunk, b summing to `resamples`.

    Row r, column i says how often image i was drawn in resample r. Every metric here is a weighted
    sum over images, so counts stand in for `labels[idx], scores[idx]` without copying scores B times.
    The chunk size is fixed by n alone, so the resamples depend only on (n, resamples, seed).
    """
    rng = np.random.default_rng(seed)
    chunk = chunk or max(1, _CHUNK_CELLS // n)
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(b, n))                                       # (b, n) image indices
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


def resampled_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float, counts: np.ndarray,
                      metrics: Sequence[str] = METRICS) -> dict[str, np.ndarray]:
    """binary_metrics of one seed on each resample, as {metric: (b,)}, NaN where a resample holds one class.

    Equal to binary_metrics(labels[idx], scores[idx], threshold)[metric] for the resample's indices idx.
    A one-class resample is dropped for every metric, not only the AUCs: its sensitivity or specificity
    would be binary_metrics' placeholder 0, not a measurement.
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
        values["roc_auc"], values["pr_auc"] = _rank_metrics(labels, scores, counts)
    one_class = ((tp + fn) == 0) | ((tn + fp) == 0)
    return {m: np.where(one_class, np.nan, values[m]) for m in metrics}


def run_resampled(run: Run, counts: np.ndarray, metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """The run's metrics on each resample, averaged over its seeds: {metric: (b,)}."""
    per_seed = [resampled_metrics(run.labels, s, t, counts, metrics) for s, t in zip(run.scores, run.thresholds)]
    return {m: np.mean([r[m] for r in per_seed], axis=0) for m in metrics}


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


def paired_bootstrap(baseline: Run, others: Sequence[Run], metrics: Sequence[str] = METRICS,
                     resamples: int = 2000, seed: int = 0) -> list[dict[str, Difference]]:
    """For each run of `others` (aligned with `baseline`), {metric: Difference} against the baseline.

    Every resample draws test images with replacement, and the same draw is scored for the baseline and
    for every other run (paired), so the variation shared by both runs (easy or hard images drawn)
    cancels in the difference. The CI is the 2.5 / 97.5 percentile of the resampled differences, over the
    resamples where the metric is defined; how many those were is `resamples_used`.
    """
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    diffs: list[dict[str, list[np.ndarray]]] = [{m: [] for m in metrics} for _ in others]
    for counts in resample_counts(len(baseline.labels), resamples, seed):
        base = run_resampled(baseline, counts, metrics)
        for run, run_diffs in zip(others, diffs):
            values = run_resampled(run, counts, metrics)
            for m in metrics:
                run_diffs[m].append(values[m] - base[m])
    base_means = {m: mean_std(v)[0] for m, v in seed_metrics(baseline, metrics).items()}
    results = []
    for run, run_diffs in zip(others, diffs):
        run_means = {m: mean_std(v)[0] for m, v in seed_metrics(run, metrics).items()}
        pair = {}
        for m in metrics:
            sample = np.concatenate(run_diffs[m])
            sample = sample[~np.isnan(sample)]
            point = None if run_means[m] is None or base_means[m] is None else run_means[m] - base_means[m]
            if len(sample) and point is not None:
                low, high = (float(x) for x in np.percentile(sample, [50 * (1 - CI_LEVEL), 50 * (1 + CI_LEVEL)]))
            else:
                low = high = None
            pair[m] = Difference(point, low, high, verdict(low, high), int(len(sample)))
        results.append(pair)
    return results


# ---------------------------------------------------------------------------------------------------------------
# Report.

def compare(runs: Sequence[Run], resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Everything comparison.json holds: the test set, per-run metrics per seed, and each run vs the first."""
    runs = check_comparable(runs)
    base, labels = runs[0], runs[0].labels
    per_run = []
    for run in runs:
        values = seed_metrics(run)
        per_run.append({
            "label": run.label, "run_dir": str(run.run_dir), "name": run.summary.get("name"),
            "seeds": list(run.seeds), "thresholds": run.thresholds.tolist(),
            "metrics": {m: dict(zip(("mean", "std"), mean_std(v)), values=v) for m, v in values.items()},
            "warnings": _summary_mismatches(run, values),
        })
    pairs = paired_bootstrap(base, runs[1:], METRICS, resamples, seed)
    auc_tests = [delong(labels, base.scores, run.scores, CI_LEVEL) for run in runs[1:]]
    adjusted = holm([t.p_value for t in auc_tests])
    return {
        "test_set": {"images": int(len(labels)), "positives": int(labels.sum()),
                     "negatives": int(len(labels) - labels.sum()),
                     "positive_class": base.summary.get("positive_class"),
                     "class_names": base.summary.get("class_names")},
        "bootstrap": {"resamples": resamples, "seed": seed, "ci_level": CI_LEVEL, "paired_by": "sha256",
                      "statistic": "mean over seeds of the metric at each seed's validation threshold"},
        "std": f"standard deviation over seeds, ddof={STD_DDOF}",
        "baseline": base.label,
        "table_metrics": list(TABLE_METRICS),
        "runs": per_run,
        "comparisons": [{"run": run.label, "baseline": base.label,
                         "metrics": {m: {"baseline_mean": per_run[0]["metrics"][m]["mean"],
                                         "run_mean": per_run[i]["metrics"][m]["mean"],
                                         **vars(d)} for m, d in pair.items()},
                         "delong_auc": {**vars(test), "p_value_holm": p_holm,
                                        "verdict": (IMPROVEMENT if test.difference > 0 else WORSE)
                                        if p_holm < 1 - CI_LEVEL else NO_DIFFERENCE}}
                        for i, (run, pair, test, p_holm) in enumerate(zip(runs[1:], pairs, auc_tests, adjusted), start=1)],
        "delong": {"statistic": "AUC of the seed-mean placement values (DeLong et al. 1988), paired by image",
                   "correction": f"Holm over the {len(runs) - 1} runs compared with the baseline"},
    }


def _summary_mismatches(run: Run, values: dict[str, list[float | None]]) -> list[str]:
    """Where summary.json's test means disagree with those recomputed from the predictions (a stale file)."""
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


def runs_table(report: dict) -> str:
    """All runs side by side: mean ± std over seeds of each table metric."""
    lines = ["| Run | seeds | " + " | ".join(METRIC_NAMES[m] for m in TABLE_METRICS) + " |",
             "|---|---:|" + "---:|" * len(TABLE_METRICS)]
    for run in report["runs"]:
        cells = [_mean_std_cell(run["metrics"][m]) for m in TABLE_METRICS]
        lines.append(f"| {run['label']} | {len(run['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pair_table(report: dict, comparison: dict) -> str:
    """One run against the baseline: values, improvement, CI of the difference and verdict per metric."""
    runs = {r["label"]: r for r in report["runs"]}
    base, run = runs[comparison["baseline"]], runs[comparison["run"]]
    lines = [f"| Metric | Baseline | {run['label']} | Improvement | {round(100 * CI_LEVEL)} % CI of the difference "
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
        f"Improvement is the run's mean minus the baseline's. Its {round(100 * CI_LEVEL)} % CI comes from a paired "
        f"bootstrap over test images ({b['resamples']:,} resamples, seed {b['seed']}): each resample draws test images "
        f"with replacement, scores the same draw for both runs and averages each run over its seeds.{used_note} "
        "\"improvement\" / \"worse\" means the CI lies entirely above / below 0. The CIs are per metric and per "
        "pair, not corrected for the number of comparisons, and reflect test-set sampling only (seed-to-seed "
        "spread is the ± column).\n",
        "AUC-ROC differences are also tested with DeLong's paired test on the seed-mean placement values, and "
        "its p-values are Holm-corrected over the runs compared with the baseline (family-wise error 5 %).\n",
        *_small_sample_note(t),
        "## All runs\n", runs_table(report), "",
    ]
    for c in report["comparisons"]:
        lines += [f"## {c['run']} vs {c['baseline']} (baseline)\n", pair_table(report, c), ""]
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
    AUCs, as in comparison.md.
    """
    fig, ax = subplots(figsize=(6, 6))
    grid = np.linspace(0, 1, 201)
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        if run.labels.min() == run.labels.max():   # one class: no ROC to draw
            continue
        tprs, aucs = [], []
        for scores in run.scores:
            fpr, tpr, _ = roc_curve(run.labels, scores)
            ax.plot(fpr, tpr, color=color, lw=0.6, alpha=0.3)
            tprs.append(np.interp(grid, fpr, tpr))
            aucs.append(roc_auc_score(run.labels, scores))
        auc_text = f"{np.mean(aucs):.3f}" + (f" ± {np.std(aucs, ddof=STD_DDOF):.3f}" if len(aucs) > 1 else "")
        mean_tpr = np.mean(tprs, axis=0)
        mean_tpr[0] = 0.0
        ax.plot(grid, mean_tpr, color=color, lw=2.2, label=f"{run.label} (AUC {auc_text}, {len(aucs)} seeds)")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate (1 - specificity)", ylabel="true positive rate (sensitivity)",
           title="ROC on the test set", xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    atomic.save_figure(fig, path, dpi=120, bbox_inches="tight")


def write_comparison(runs: Sequence[Run], out_dir: str | Path, resamples: int = 2000, seed: int = 0) -> dict:
    """Compare `runs` (the first is the baseline) and write comparison.md/.json and roc_curves.png atomically."""
    out_dir = Path(out_dir)
    report = compare(runs, resamples, seed)     # checks the runs before anything is written
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


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, *, baseline: str | Path | None = None,
                 labels: list[str] | None = None, resamples: int = 2000, seed: int = 0) -> tuple[dict, list[Run]]:
    """Load the runs (baseline first: `baseline`, else the first given), label them and write the comparison
    into `out_dir`; returns the report and the runs as compared."""
    if resamples < 1:
        raise UserError("--bootstrap must be >= 1")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UserError(f"--output_dir is a file, not a folder: {out_dir}")
    dirs = ordered_run_dirs([str(d) for d in run_dirs], None if baseline is None else str(baseline))
    runs = [load_run(d) for d in dirs]
    names = run_labels([r.label for r in runs], dirs, labels)
    runs = [dataclasses.replace(r, label=label) for r, label in zip(runs, names)]
    return write_comparison(runs, out_dir, resamples=resamples, seed=seed), runs
