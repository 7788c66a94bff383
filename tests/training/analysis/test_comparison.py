"""Run comparison: bootstrap vs binary_metrics and known differences, pairing by sha256, refusals, end to end."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO_ROOT
from training.analysis.comparison import (
    IMPROVEMENT,
    NO_DIFFERENCE,
    TABLE_METRICS,
    WORSE,
    check_comparable,
    load_run,
    paired_bootstrap,
    resample_counts,
    resampled_metrics,
    verdict,
)
from training.classify.metrics import METRICS, SPEC90_METRICS, binary_metrics, spec90_metrics
from training.compare import main as compare_main
from training.core.errors import DataError, run_cli

ROOT = REPO_ROOT


def write_run(run_dir: Path, labels: np.ndarray, scores: np.ndarray, thresholds=None, name: str | None = None,
              shas=None, prefix: str = "", order=None, seeds=None, spec90_thresholds=None) -> Path:
    """A classifier run folder as the trainer writes it; scores is (S, n), rows written in `order`.

    Without `spec90_thresholds` it is a folder from before the primary metric: no threshold_spec90 and
    no SPEC90_METRICS in metrics.json or summary.json.
    """
    scores = np.atleast_2d(scores)
    seeds = list(seeds if seeds is not None else range(len(scores)))
    thresholds = [0.5] * len(seeds) if thresholds is None else list(thresholds)
    shas = [f"{i:064x}" for i in range(len(labels))] if shas is None else shas
    order = np.arange(len(labels)) if order is None else order
    per_seed = []
    for i, (seed, s, t) in enumerate(zip(seeds, scores, thresholds)):
        seed_dir = run_dir / f"seed_{seed}"
        seed_dir.mkdir(parents=True)
        test = binary_metrics(labels, s, t)
        extra = {}
        if spec90_thresholds is not None:
            test.update(spec90_metrics(labels, s, spec90_thresholds[i]))
            extra["threshold_spec90"] = float(spec90_thresholds[i])
        per_seed.append(test)
        (seed_dir / "metrics.json").write_text(json.dumps({"seed": seed, "threshold": t, "val": test, "test": test,
                                                           "best_epoch": 1, **extra}))
        with (seed_dir / "test_predictions.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["sha256", "path", "label", "score"])
            for i in order:
                w.writerow([shas[i], f"test/{'malignant' if labels[i] else 'benign'}/{prefix}{i}.png", int(labels[i]),
                            repr(float(s[i]))])
    summary_test = {m: {"mean": float(np.mean([r[m] for r in per_seed])), "std": 0.0,
                        "values": [r[m] for r in per_seed]} for m in METRICS + SPEC90_METRICS if m in per_seed[0]}
    (run_dir / "summary.json").write_text(json.dumps({
        "name": name or run_dir.name, "positive_class": "malignant", "class_names": ["benign", "malignant"],
        "seeds": seeds, "test": summary_test, "val": summary_test, "data": {}}))
    return run_dir


def detector(rng: np.random.Generator, labels: np.ndarray, sensitivity: float, specificity: float) -> np.ndarray:
    """Scores whose positives clear 0.5 with probability `sensitivity` and negatives stay below with `specificity`."""
    hit = np.where(labels == 1, rng.random(len(labels)) < sensitivity, rng.random(len(labels)) >= specificity)
    return np.where(hit, 0.5 + 0.5 * rng.random(len(labels)), 0.5 * rng.random(len(labels)))


# --- the bootstrap's metrics are binary_metrics on each resample ------------------------------------------------

def test_resampled_metrics_equal_binary_metrics_on_each_resample():
    rng = np.random.default_rng(1)
    labels = (rng.random(60) < 0.3).astype(int)
    scores = np.round(np.clip(labels * 0.25 + rng.random(60) * 0.75, 0, 1), 1)   # rounded: many ties
    counts = next(resample_counts(60, 25, seed=3))
    fast = resampled_metrics(labels, scores, 0.5, counts)
    for r in range(25):
        idx = np.repeat(np.arange(60), counts[r].astype(int))     # the resample's indices, in any order
        slow = binary_metrics(labels[idx], scores[idx], 0.5)
        for m in METRICS:
            if slow["roc_auc"] is None:
                assert np.isnan(fast[m][r])
            else:
                assert fast[m][r] == pytest.approx(slow[m], abs=1e-12), m


def test_resamples_depend_only_on_seed_and_one_class_resamples_are_dropped():
    a = np.concatenate(list(resample_counts(7, 10, seed=5)))
    assert np.array_equal(a, np.concatenate(list(resample_counts(7, 10, seed=5))))
    assert (a.sum(axis=1) == 7).all() and not np.array_equal(a, next(resample_counts(7, 10, seed=6)))
    counts = np.array([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0]])      # first resample: negatives only
    values = resampled_metrics(np.array([0, 1, 0]), np.array([0.1, 0.9, 0.2]), 0.5, counts)
    assert all(np.isnan(values[m][0]) and not np.isnan(values[m][1]) for m in METRICS)


# --- known differences -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """2,000 test images (1,000 positive): baseline, better and same-quality runs with known true sensitivities."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 1000)
    root = tmp_path_factory.mktemp("runs")
    base = [detector(rng, labels, 0.60, 0.90) for _ in range(3)]
    better = [detector(rng, labels, 0.80, 0.90) for _ in range(3)]
    same = [detector(rng, labels, 0.60, 0.90) for _ in range(3)]
    dirs = {name: write_run(root / name, labels, np.array(s)) for name, s in
            [("base", base), ("better", better), ("same", same)]}
    return {name: load_run(d) for name, d in dirs.items()}


def test_bootstrap_ci_contains_the_true_difference_and_verdicts(population):
    base, better, same = check_comparable([population["base"], population["better"], population["same"]])
    vs_better, vs_same = paired_bootstrap(base, [better, same], resamples=500, seed=0)
    sens = vs_better["sensitivity"]
    assert sens.ci_low < 0.20 < sens.ci_high and sens.ci_low > 0             # true difference 0.80 - 0.60
    assert sens.verdict == IMPROVEMENT and sens.resamples_used == 500
    assert vs_better["specificity"].ci_low < 0 < vs_better["specificity"].ci_high   # both 0.90
    assert vs_same["sensitivity"].verdict == NO_DIFFERENCE
    assert vs_same["sensitivity"].ci_low < 0 < vs_same["sensitivity"].ci_high
    worse = paired_bootstrap(better, [base], resamples=500, seed=0)[0]["sensitivity"]
    assert worse.verdict == WORSE and worse.ci_high < 0 < -0.20 - worse.ci_low


def test_bootstrap_ci_width_matches_the_normal_approximation(population):
    base, better = check_comparable([population["base"], population["better"]])
    d = paired_bootstrap(base, [better], ["sensitivity"], resamples=2000, seed=1)[0]["sensitivity"]
    pos = base.labels == 1
    # per positive image, the difference in the fraction of seeds that detect it; its mean is the sensitivity gain
    per_image = (better.scores[:, pos] >= 0.5).mean(0) - (base.scores[:, pos] >= 0.5).mean(0)
    assert d.difference == pytest.approx(per_image.mean())
    half_width = 1.96 * per_image.std() / np.sqrt(pos.sum())
    assert (d.ci_high - d.ci_low) / 2 == pytest.approx(half_width, rel=0.15)


def test_identical_runs_have_a_zero_ci(population):
    run = population["base"]
    d = paired_bootstrap(run, [run], resamples=200, seed=0)[0]
    assert all(d[m].difference == 0 and d[m].ci_low == 0 == d[m].ci_high for m in METRICS)
    assert {d[m].verdict for m in METRICS} == {NO_DIFFERENCE}


def test_verdict_words():
    assert verdict(0.01, 0.2) == IMPROVEMENT and verdict(-0.2, -0.01) == WORSE
    assert verdict(-0.1, 0.1) == NO_DIFFERENCE and verdict(0.0, 0.0) == NO_DIFFERENCE


# --- pairing by sha256 -----------------------------------------------------------------------------------------

def test_runs_are_paired_by_sha256_not_by_path_or_row_order(tmp_path):
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], [40, 20])
    shas = [f"{rng.integers(2**62):064x}" for _ in labels]
    shas[5] = shas[6]                                                  # the same pixels twice in the test set
    scores = np.array([detector(rng, labels, 0.7, 0.8) for _ in range(2)])
    scores[:, 6] = scores[:, 5]
    a = write_run(tmp_path / "a", labels, scores, shas=shas)
    b = write_run(tmp_path / "b", labels, scores, shas=shas, prefix="real_", order=rng.permutation(len(labels)))
    run_a, run_b = check_comparable([load_run(a), load_run(b)])
    assert np.array_equal(run_a.scores, run_b.scores)
    d = paired_bootstrap(run_a, [run_b], resamples=100, seed=0)[0]
    assert all(d[m].difference == 0 and d[m].ci_low == d[m].ci_high == 0 for m in METRICS)


def test_different_test_sets_or_labels_are_refused(tmp_path):
    labels = np.repeat([0, 1], [30, 20])
    scores = np.linspace(0, 1, 50)
    a = load_run(write_run(tmp_path / "a", labels, scores))
    shas = [f"{i:064x}" for i in range(50)]
    shas[:3] = ["f" * 64, "e" * 64, "d" * 64]
    b = load_run(write_run(tmp_path / "b", labels, scores, shas=shas))
    with pytest.raises(DataError, match="3 of 50 in b are not in a, 3 of 50 in a are not in b"):
        check_comparable([a, b])
    flipped = labels.copy()
    flipped[[0, 49]] = 1 - flipped[[0, 49]]
    c = load_run(write_run(tmp_path / "c", flipped, scores))
    with pytest.raises(DataError, match="2 of 50 test images have different labels in c and a"):
        check_comparable([a, c])


def test_seeds_of_one_run_must_share_the_test_set(tmp_path):
    labels = np.repeat([0, 1], [30, 20])
    run = write_run(tmp_path / "r", labels, np.tile(np.linspace(0, 1, 50), (2, 1)))
    path = run / "seed_1" / "test_predictions.csv"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")        # one image short
    with pytest.raises(DataError, match="r/seed_1 and r/seed_0 were not tested on the same images: 0 of 49"):
        load_run(run)


# --- the script ------------------------------------------------------------------------------------------------

def three_runs(root: Path) -> list[Path]:
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1], [100, 50])
    out = []
    for name, sens in [("baseline", 0.5), ("weighted", 0.6), ("gan_aug", 0.8)]:
        scores = np.array([detector(rng, labels, sens, 0.85) for _ in range(3)])
        thresholds = rng.uniform(0.45, 0.55, 3)
        out.append(write_run(root / name, labels, scores, thresholds, name=f"classifier_{name}",
                             prefix="real_" if name == "gan_aug" else "",
                             order=rng.permutation(len(labels)) if name == "gan_aug" else None))
    return out


def test_end_to_end_three_runs(tmp_path, capsys):
    runs = three_runs(tmp_path / "runs")
    out = tmp_path / "comparison" / "demo"
    assert compare_main([*map(str, runs), "--output_dir", str(out), "--bootstrap", "300"]) == 0
    stdout = capsys.readouterr().out
    assert "| Metric | Baseline | classifier_gan_aug | Improvement | 95 % CI of the difference | Verdict |" in stdout
    assert f"wrote {out}" in stdout

    md = (out / "comparison.md").read_text()
    assert "150 real images (50 malignant, 100 benign)" in md and "300 resamples" in md
    assert md.count("AUC-ROC by DeLong's paired test") == 2 and "Holm-adjusted p" in md
    report = json.loads((out / "comparison.json").read_text())
    tests = [c["delong_auc"] for c in report["comparisons"]]
    assert all(t["p_value"] <= t["p_value_holm"] <= 1 for t in tests)
    for label in ("classifier_weighted", "classifier_gan_aug"):
        assert f"| Metric | Baseline | {label} | Improvement | 95 % CI of the difference | Verdict |" in md
    for name in ("Accuracy", "Sensitivity (recall)", "Specificity", "F1", "AUC-ROC", "PR-AUC"):
        rows = [line for line in md.splitlines() if line.startswith(f"| {name} |")]
        assert len(rows) == 2 and all("±" in r and "[" in r and "]" in r for r in rows), name
    sens_row = next(line for line in md.splitlines() if line.startswith("| Sensitivity") and "pp)" in line)
    assert sens_row.split("|")[6].strip() in (IMPROVEMENT, NO_DIFFERENCE, WORSE)
    assert "## Warnings" not in md and "Caution" not in md

    report = json.loads((out / "comparison.json").read_text())
    assert report["baseline"] == "classifier_baseline"
    assert [c["run"] for c in report["comparisons"]] == ["classifier_weighted", "classifier_gan_aug"]
    for c in report["comparisons"]:
        for m in TABLE_METRICS:
            d = c["metrics"][m]
            assert d["ci_low"] <= d["difference"] <= d["ci_high"] and d["resamples_used"] == 300
            assert d["difference"] == pytest.approx(d["run_mean"] - d["baseline_mean"])
    assert len(report["runs"][0]["metrics"]["f1"]["values"]) == 3
    assert report["bootstrap"] == {**report["bootstrap"], "resamples": 300, "seed": 0}
    assert (out / "roc_curves.png").stat().st_size > 10_000


def test_baseline_option_and_labels_order_the_runs(tmp_path, capsys):
    base, weighted, gan = three_runs(tmp_path / "runs")
    out = tmp_path / "cmp"
    argv = [str(gan), str(weighted), "--baseline", str(base), "--labels", "B", "G", "W", "--output_dir", str(out),
            "--bootstrap", "50", "--seed", "3"]
    assert compare_main(argv) == 0
    report = json.loads((out / "comparison.json").read_text())
    assert [r["label"] for r in report["runs"]] == ["B", "G", "W"]
    assert [r["run_dir"] for r in report["runs"]] == [str(base), str(gan), str(weighted)]
    assert report["bootstrap"]["seed"] == 3
    capsys.readouterr()
    assert run_cli(compare_main, [str(gan), "--baseline", str(base), "--labels", "only_one", "--output_dir", str(out)]) == 2
    assert "--labels gives 1 names for 2 runs" in capsys.readouterr().err


def test_stale_summary_and_small_test_sets_are_flagged(tmp_path, capsys):
    labels = np.repeat([0, 1], [30, 10])
    a = write_run(tmp_path / "a", labels, np.linspace(0, 1, 40))
    b = write_run(tmp_path / "b", labels, np.linspace(0, 1, 40) ** 2)
    summary = json.loads((b / "summary.json").read_text())
    summary["test"]["sensitivity"]["mean"] = 0.123
    (b / "summary.json").write_text(json.dumps(summary))
    assert compare_main([str(a), str(b), "--output_dir", str(tmp_path / "out"), "--bootstrap", "20"]) == 0
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "b: summary.json says test sensitivity 0.1230, the predictions give 1.0000" in md
    assert "only 10 test images of one class" in md and "summary.json says" in capsys.readouterr().err


@pytest.mark.parametrize("remove, message", [
    ("weighted/summary.json", "missing {root}/weighted/summary.json"),
    ("gan_aug/seed_1/test_predictions.csv", "missing {root}/gan_aug/seed_1/test_predictions.csv"),
])
def test_missing_files_are_one_line_errors(tmp_path, capsys, remove, message):
    root = tmp_path / "runs"
    runs = three_runs(root)
    (root / remove).unlink()
    assert run_cli(compare_main, [*map(str, runs), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message.format(root=root) in err[0]
    assert not (tmp_path / "out").exists()


def test_script_reports_a_missing_run_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "training/compare.py", str(tmp_path / "nope"), str(tmp_path / "x"),
                             "--output_dir", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: run folder not found: {tmp_path / 'nope'}"]
