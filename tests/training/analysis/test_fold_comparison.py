"""Comparing cross-validated runs: each fold's runs pooled into one run over every test image, resampled within
folds; and the comparison of runs on one split unchanged."""

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from tests.training.analysis.test_comparison import detector, write_run
from training.analysis.comparison import (
    check_comparable,
    compare,
    compare_runs,
    comparison_markdown,
    fold_of,
    load_folded_run,
    load_run,
    resample_counts,
    seed_metrics,
)
from training.analysis.statistics import delong
from training.core.errors import DataError

FOLD_SIZES = (30, 34, 32)


def fold_runs(root, name, sens, rng, seeds=(0, 1, 2), shift=(0.0, 0.0, 0.0)):
    """One recipe's run in each of three folds: disjoint test images (fold k's sha256 start with k), each fold's
    scores shifted by `shift[k]` and its thresholds with them, as fold models on different scales would be."""
    dirs = []
    for k, (n, offset) in enumerate(zip(FOLD_SIZES, shift)):
        labels = np.random.default_rng(k).random(n) < 0.35
        labels[:2], labels[2:4] = True, False                   # both classes in every fold
        scores = np.stack([detector(rng, labels.astype(int), sens, 0.85) for _ in seeds]) + offset
        thresholds = 0.5 + offset + 0.02 * np.arange(len(seeds))
        dirs.append(write_run(root / f"{name}_fold_{k + 1}", labels.astype(int), scores, thresholds=thresholds,
                              spec90_thresholds=thresholds + 0.03, shas=[f"{k}{i:063x}" for i in range(n)],
                              seeds=seeds, name=f"{name}_fold_{k + 1}"))
    return dirs


def test_resampling_within_folds_keeps_every_fold_size_and_one_split_draws_as_before():
    folds = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], FOLD_SIZES))
    for counts in resample_counts(len(folds), 500, seed=3, chunk=120, strata=folds):
        for k, size in enumerate(FOLD_SIZES):
            assert (counts[:, folds == k].sum(axis=1) == size).all()
    # Without folds the draws are those of the single-split comparison: 0 .. n-1 at random, one stream.
    n, b = 40, 7
    idx = np.random.default_rng(5).integers(0, n, size=(b, n))
    before = np.stack([np.bincount(row, minlength=n) for row in idx]).astype(np.float64)
    assert np.array_equal(next(resample_counts(n, b, seed=5)), before)


def test_threshold_metrics_judge_each_image_at_its_own_folds_threshold_and_rank_metrics_stay_within_folds(tmp_path):
    rng = np.random.default_rng(1)
    shift = (0.0, 0.3, -0.2)                          # fold models whose scores live on different scales
    run = load_folded_run(fold_runs(tmp_path, "arm", 0.7, rng, shift=shift), "arm")
    assert run.thresholds.shape == (3, 3) and len(run.labels) == sum(FOLD_SIZES)
    pooled = seed_metrics(run, ["sensitivity", "specificity", "sensitivity_at_spec90", "roc_auc", "pr_auc"])
    parts = [fold_of(run, k) for k in range(3)]
    for s in range(3):
        found = sum(((p.scores[s] >= p.thresholds[s]) & (p.labels == 1)).sum() for p in parts)
        assert pooled["sensitivity"][s] == pytest.approx(found / run.labels.sum())
        found90 = sum(((p.scores[s] >= p.spec90_thresholds[s]) & (p.labels == 1)).sum() for p in parts)
        assert pooled["sensitivity_at_spec90"][s] == pytest.approx(found90 / run.labels.sum())
        pairs = [p.labels.sum() * (1 - p.labels).sum() for p in parts]
        aucs = [roc_auc_score(p.labels, p.scores[s]) for p in parts]
        assert pooled["roc_auc"][s] == pytest.approx(np.dot(pairs, aucs) / sum(pairs))
        aps = [average_precision_score(p.labels, p.scores[s]) for p in parts]
        assert pooled["pr_auc"][s] == pytest.approx(np.dot([p.labels.sum() for p in parts], aps) / run.labels.sum())
        # One ranking of the three models' scores would judge their scales too: it gives another number.
        assert abs(roc_auc_score(run.labels, run.scores[s]) - pooled["roc_auc"][s]) > 0.01


def test_folded_runs_must_test_disjoint_images_with_the_same_seeds(tmp_path):
    rng = np.random.default_rng(2)
    dirs = fold_runs(tmp_path / "a", "a", 0.7, rng)
    with pytest.raises(DataError, match="test parts of two folds"):
        load_folded_run([dirs[0], dirs[0], dirs[1]], "a")
    other_seeds = fold_runs(tmp_path / "b", "b", 0.7, rng, seeds=(0, 1))
    with pytest.raises(DataError, match="differ in seeds"):
        load_folded_run([dirs[0], other_seeds[1], dirs[2]], "a")
    folded, first = load_folded_run(dirs, "a"), load_run(dirs[0])
    with pytest.raises(DataError, match="same fold"):
        check_comparable([folded, load_folded_run([dirs[1], dirs[0], dirs[2]], "swapped")])
    with pytest.raises(DataError):
        check_comparable([first, folded])


def test_a_cross_validated_comparison_pools_every_fold_and_reports_each(tmp_path):
    rng = np.random.default_rng(3)
    base = load_folded_run(fold_runs(tmp_path, "base", 0.55, rng), "base")
    better = load_folded_run(fold_runs(tmp_path, "better", 0.8, rng), "better")
    report = compare([base, better], resamples=300, seed=0)
    assert report["test_set"]["images"] == sum(FOLD_SIZES)
    cv = report["cross_validation"]
    assert cv["folds"] == 3 and cv["images"] == list(FOLD_SIZES)
    # Per fold: what a comparison of that fold's runs alone reports.
    for k in range(3):
        alone = compare([fold_of(base, k), fold_of(better, k)], resamples=10)
        for i, run in enumerate(alone["runs"]):
            assert cv["per_fold"]["runs"][i]["folds"][k]["mean"] == run["metrics"]["sensitivity_at_spec90"]["mean"]
    primary = report["comparisons"][0]["primary"]
    assert primary["unit"] == "seeds and test images" and 0 < primary["p_value"] <= 1
    assert report["minimum_detectable_effect"]["test_positives"] == int(base.labels.sum())
    # DeLong by fold: the folds' differences weighted by their pairs.
    parts = [(fold_of(base, k), fold_of(better, k)) for k in range(3)]
    pairs = np.array([a.labels.sum() * (1 - a.labels).sum() for a, _ in parts])
    per_fold = [delong(a.labels, a.scores, b.scores) for a, b in parts]
    assert report["comparisons"][0]["delong_auc"]["difference"] == pytest.approx(
        np.dot(pairs, [d.difference for d in per_fold]) / pairs.sum())
    assert report["comparisons"][0]["delong_auc"]["standard_error"] == pytest.approx(
        np.sqrt(np.dot(pairs ** 2, [d.standard_error ** 2 for d in per_fold])) / pairs.sum())
    text = comparison_markdown(json.loads(json.dumps(report)))
    assert "Cross-validation: 3 folds" in text and "## The primary metric per fold" in text
    assert f"| fold 1 ({parts[0][0].labels.sum()} pos.) |" in text



def test_a_folds_stale_summary_is_reported_in_the_pooled_comparison(tmp_path):
    rng = np.random.default_rng(4)
    dirs = fold_runs(tmp_path, "arm", 0.7, rng)
    summary = json.loads((dirs[1] / "summary.json").read_text())
    summary["test"]["sensitivity"]["mean"] = 0.123                     # edited, or left by another run
    (dirs[1] / "summary.json").write_text(json.dumps(summary))
    base = load_folded_run(fold_runs(tmp_path, "base", 0.6, rng), "base")
    report = compare([base, load_folded_run(dirs, "arm")], resamples=10)
    assert report["runs"][0]["warnings"] == []
    [warning] = report["runs"][1]["warnings"]
    assert warning.startswith("fold 2: arm_fold_2: summary.json says test sensitivity 0.1230")

# What the comparison of runs on one split gave before cross-validation existed (same runs, same resamples): per
# run against the baseline, the primary metric's difference, standard error, degrees of freedom, p, Holm p, CI,
# the per-model CI, the AUC and F1 CI ends, DeLong's p and difference; last, the minimum detectable effect.
BEFORE = [[0.11827956989247312, 0.08039828672844872, 16.894573877669664, 0.15962610800215643, 0.31925221600431286,
           -0.05142665651033154, 0.28798579629527776, -0.013347222222222064, 0.23958333333333337, 0.028966563786008388,
           0.22441774175926352, 0.009471639017959096, 0.12793876435210483],
          [0.021505376344086113, 0.10444261379361668, 22.197207894336838, 0.838741017894648, 0.838741017894648,
           -0.19498382896042254, 0.23799458164859477, -0.12904719235364392, 0.1720629231381918, -0.05238624559225896,
           0.1367731598629142, 0.2923912431367387, 0.05303444505194088], 0.2554073902111262]


def test_a_comparison_on_one_split_gives_the_numbers_it_gave_before(tmp_path):
    rng = np.random.default_rng(7)
    labels = (rng.random(90) < 0.35).astype(int)
    dirs = []
    for name, sens in (("base", 0.6), ("better", 0.75), ("same", 0.6)):
        scores = np.stack([detector(rng, labels, sens, 0.85) for _ in range(3)])
        dirs.append(write_run(tmp_path / name, labels, scores, thresholds=[0.5, 0.45, 0.55],
                              spec90_thresholds=[0.5, 0.52, 0.48]))
    report, _ = compare_runs(dirs, tmp_path / "comparison")
    now = []
    for c in report["comparisons"]:
        p = c["primary"]
        now.append([p["difference"], p["standard_error"], p["degrees_of_freedom"], p["p_value"], p["p_value_holm"],
                    p["ci_low"], p["ci_high"], p["test_only"]["ci_low"], p["test_only"]["ci_high"],
                    c["metrics"]["roc_auc"]["ci_low"], c["metrics"]["f1"]["ci_high"], c["delong_auc"]["p_value"],
                    c["delong_auc"]["difference"]])
    now.append(report["minimum_detectable_effect"]["value"])
    assert now[:2] == [pytest.approx(row, rel=1e-12) for row in BEFORE[:2]]
    assert now[2] == pytest.approx(BEFORE[2], rel=1e-12)
    assert "cross_validation" not in report and "Cross-validation" not in (tmp_path / "comparison" / "comparison.md").read_text()
