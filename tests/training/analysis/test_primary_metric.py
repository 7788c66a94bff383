"""The declared primary metric: its bootstrap p-value, Holm correction, verdict line, old run folders, and
the validation score the pipeline chooses arms by."""

import json

import numpy as np
import pytest

from tests.training.analysis.test_comparison import detector, write_run
from training.analysis.comparison import (
    IMPROVEMENT,
    NO_DIFFERENCE,
    UNDEFINED,
    bootstrap_differences,
    bootstrap_p_value,
    compare_runs,
    holm_levels,
    load_run,
    pair_table,
    runs_table,
    validation_score,
)
from training.analysis.statistics import holm
from training.classify.metrics import PRIMARY_METRIC
from training.compare import main as compare_main
from training.core.errors import UserError

PRIMARY_LINE = "Primary metric (sensitivity at >= 90 % validation specificity): "


def arms(root, specs, rng_seed=4):
    """Run folders over one test set of 150 images; specs: (name, true sensitivity, with threshold_spec90)."""
    rng = np.random.default_rng(rng_seed)
    labels = np.repeat([0, 1], [100, 50])
    out = []
    for name, sens, new in specs:
        scores = np.array([detector(rng, labels, sens, 0.85) for _ in range(3)])
        out.append(write_run(root / name, labels, scores, rng.uniform(0.45, 0.55, 3), name=name,
                             spec90_thresholds=rng.uniform(0.5, 0.6, 3) if new else None))
    return out


def test_bootstrap_p_value_is_two_sided_and_floored():
    assert bootstrap_p_value(np.zeros(10)) == 1.0
    assert bootstrap_p_value(np.linspace(0.1, 1, 99)) == pytest.approx(1 / 100)   # never 0
    sample = np.r_[-np.ones(10), np.ones(90)]
    assert bootstrap_p_value(sample) == pytest.approx(0.2) == bootstrap_p_value(-sample)
    assert bootstrap_p_value(np.array([])) is None


def test_holm_levels_follow_the_rank_of_each_p_value():
    assert holm_levels([0.04, 0.001, 0.3]) == pytest.approx([1 - 0.05 / 2, 1 - 0.05 / 3, 0.95])


def test_spec90_bootstrap_uses_the_spec90_thresholds(tmp_path):
    """With threshold_spec90 equal to the decision threshold, the two sensitivities resample identically."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [60, 30])
    runs = []
    for name in ("a", "b"):
        scores, t = np.array([detector(rng, labels, 0.7, 0.8) for _ in range(2)]), rng.uniform(0.4, 0.6, 2)
        runs.append(load_run(write_run(tmp_path / name, labels, scores, t, spec90_thresholds=t)))
    d = bootstrap_differences(runs[0], runs[1:], ["sensitivity", PRIMARY_METRIC], resamples=100, seed=0)[0]
    assert len(d[PRIMARY_METRIC]) == 100 and np.array_equal(d["sensitivity"], d[PRIMARY_METRIC])


def test_primary_metric_in_comparison_json_and_md(tmp_path, capsys):
    runs = arms(tmp_path / "runs", [("baseline", 0.5, True), ("same", 0.5, True), ("gan_aug", 0.85, True),
                                    ("weighted", 0.6, True)])
    out = tmp_path / "out"
    assert compare_main([*map(str, runs), "--output_dir", str(out), "--bootstrap", "400"]) == 0
    report = json.loads((out / "comparison.json").read_text())
    assert report["primary_metric"]["metric"] == PRIMARY_METRIC
    primary = [c["primary"] for c in report["comparisons"]]
    raw, adjusted = [p["p_value"] for p in primary], [p["p_value_holm"] for p in primary]
    assert adjusted == pytest.approx(holm(raw))
    assert all(r <= a <= 1 for r, a in zip(raw, adjusted))
    order = np.argsort(raw)
    assert all(np.diff(np.array(adjusted)[order]) >= 0)                # Holm keeps the order of the raw p
    for p in primary:
        assert p["ci_low"] <= p["difference"] <= p["ci_high"] and p["resamples_used"] == 400
        assert p["holm_ci_level"] >= p["ci_level"] and p["holm_ci_low"] <= p["ci_low"] and p["holm_ci_high"] >= p["ci_high"]
        assert p["difference"] == pytest.approx(p["run_mean"] - p["baseline_mean"])
    by_run = {c["run"]: c["primary"] for c in report["comparisons"]}
    assert by_run["gan_aug"]["verdict"] == IMPROVEMENT and by_run["gan_aug"]["p_value"] < 0.01
    assert by_run["gan_aug"]["unit"] == "seeds and test images"
    assert by_run["gan_aug"]["test_only"]["p_value"] == pytest.approx(1 / 401)     # the per-model bootstrap's floor
    assert by_run["gan_aug"]["holm_ci_low"] > 0
    assert by_run["same"]["verdict"] == NO_DIFFERENCE and by_run["same"]["p_value_holm"] >= 0.05
    assert report["runs"][0]["metrics"][PRIMARY_METRIC]["mean"] is not None

    md = (out / "comparison.md").read_text()
    assert "requires a Holm-adjusted p < 0.05" in md
    assert "| Sensitivity at >= 90 % validation specificity (primary) |" in md.splitlines()[
        md.splitlines().index("## All runs") + 2]
    for label in ("same", "gan_aug", "weighted"):                # the verdict line first in each pair's section
        lines = md.split(f"## {label} vs baseline (baseline)\n\n", 1)[1].splitlines()
        assert lines[0].startswith(PRIMARY_LINE) and "Holm-adjusted p = " in lines[0]
    gan_line = next(line for line in md.splitlines() if line.startswith(PRIMARY_LINE) and "+" in line
                    and line.endswith(": improvement"))
    assert " pp [" in gan_line
    gan_section = md.split("## gan_aug vs baseline (baseline)\n\n", 1)[1].splitlines()
    assert gan_section[1].startswith("Per model (test images only") and gan_section[1].endswith("p = 0.00249")
    stdout = capsys.readouterr().out
    assert stdout.count(PRIMARY_LINE) == 3 and "primary metric sensitivity_at_spec90" in stdout


def test_old_run_folders_leave_the_primary_metric_unavailable(tmp_path):
    runs = arms(tmp_path / "runs", [("baseline", 0.5, True), ("old", 0.6, False), ("new", 0.8, True)])
    report, _ = compare_runs(runs, tmp_path / "out", resamples=100)
    old, new = (c["primary"] for c in report["comparisons"])
    assert not old["available"] and old["unavailable_in"] == ["old"] and old["verdict"] == UNDEFINED
    assert old["p_value"] is None and old["p_value_holm"] is None and old["difference"] is None
    assert new["available"] and new["p_value_holm"] == new["p_value"]       # a family of one run
    assert report["runs"][1]["thresholds_spec90"] is None
    line = pair_table(report, report["comparisons"][0]).splitlines()[0]
    assert line.startswith(PRIMARY_LINE + "unavailable: old has no value for it")
    assert "| old | 3 | n/a |" in runs_table(report)
    # an old baseline: nothing to compare the primary metric with
    report, _ = compare_runs(runs[1:], tmp_path / "out2", resamples=50)
    assert report["comparisons"][0]["primary"]["unavailable_in"] == ["old"]


def test_another_primary_metric_and_refusals(tmp_path, capsys):
    runs = arms(tmp_path / "runs", [("baseline", 0.5, False), ("other", 0.8, False)])
    report, _ = compare_runs(runs, tmp_path / "out", resamples=50, primary_metric="roc_auc")
    p = report["comparisons"][0]["primary"]
    assert p["metric"] == "roc_auc" and p["available"] and p["p_value"] <= p["p_value_holm"]
    assert pair_table(report, report["comparisons"][0]).startswith("Primary metric (AUC-ROC): +0.")
    with pytest.raises(UserError, match="primary metric 'auc' is not one of accuracy"):
        compare_runs(runs, tmp_path / "out", primary_metric="auc")
    for inside in (runs[0], runs[1] / "seed_0"):                       # an input's folder gains no file
        with pytest.raises(UserError, match="is inside the run folder"):
            compare_runs(runs, inside, resamples=50)
    with pytest.raises(SystemExit) as exit_info:                       # argparse's choices
        compare_main([*map(str, runs), "--output_dir", str(tmp_path / "x"), "--primary_metric", "auc"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'auc'" in capsys.readouterr().err


def test_validation_score_reads_the_val_mean(tmp_path):
    new, old = arms(tmp_path / "runs", [("new", 0.7, True), ("old", 0.7, False)])
    summary = json.loads((new / "summary.json").read_text())
    assert validation_score(new, PRIMARY_METRIC) == summary["val"][PRIMARY_METRIC]["mean"]
    old_summary = json.loads((old / "summary.json").read_text())
    assert validation_score(old, "sensitivity") == old_summary["val"]["sensitivity"]["mean"]
    with pytest.raises(UserError, match="holds no validation mean of 'sensitivity_at_spec90'"):
        validation_score(old, PRIMARY_METRIC)
    with pytest.raises(UserError, match="missing"):
        validation_score(tmp_path / "nowhere", PRIMARY_METRIC)


def test_recipe_level_verdict_counts_seed_spread_and_comparison_md_says_what_it_can_detect(tmp_path):
    runs = arms(tmp_path / "runs", [("baseline", 0.5, True), ("other", 0.6, True)])
    report, _ = compare_runs(runs, tmp_path / "out", resamples=300)
    p = report["comparisons"][0]["primary"]
    assert p["unit"] == "seeds and test images" and p["degrees_of_freedom"] >= 1
    assert p["standard_error"] ** 2 == pytest.approx(p["seed_variance"] + p["image_variance"])
    assert p["seed_variance"] > 0 and p["image_variance"] >= 0
    mde = report["minimum_detectable_effect"]
    assert mde["seeds"] == 3 and mde["comparisons"] == 1 and mde["value"] > 0 and mde["seed_spread"] > 0
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "Minimum detectable effect: " in md and "measured seed-to-seed spread" in md

    # one seed per run: no training variance to measure, so the primary test is the per-model one
    labels = np.repeat([0, 1], [100, 50])
    rng = np.random.default_rng(1)
    single = [write_run(tmp_path / "single" / name, labels, detector(rng, labels, sens, 0.85), [0.5], name=name,
                        spec90_thresholds=[0.55]) for name, sens in (("a", 0.5), ("b", 0.6))]
    report, _ = compare_runs(single, tmp_path / "out1", resamples=100)
    p = report["comparisons"][0]["primary"]
    assert p["unit"] == "test images only" and p["p_value"] == p["test_only"]["p_value"]
    assert report["minimum_detectable_effect"]["value"] is None
