"""An arm that made exactly the baseline's predictions (EOS whose head was not kept) says so in comparison.md."""

import json

import numpy as np

from tests.training.analysis.test_comparison import write_run
from training.analysis.comparison import compare_runs


def test_an_arm_identical_to_the_baseline_is_named_and_explained(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.random(80) < 0.3).astype(int)
    scores = rng.random((2, 80))
    spec90 = [0.6, 0.7]
    base = write_run(tmp_path / "baseline", labels, scores, spec90_thresholds=spec90)
    eos = write_run(tmp_path / "eos", labels, scores, spec90_thresholds=spec90)
    for seed in (0, 1):                 # the retrained head never beat the original: epoch 0 kept
        (eos / f"seed_{seed}" / "eos.json").write_text(json.dumps({"best_head_epoch": 0}))
    other = write_run(tmp_path / "other", labels, rng.random((2, 80)), spec90_thresholds=spec90)
    report, _ = compare_runs([base, eos, other], tmp_path / "cmp", resamples=50)
    by_run = {c["run"]: c["identical_to_baseline"] for c in report["comparisons"]}
    assert by_run["other"] is None and by_run["eos"].startswith("EOS kept the original head in every seed")
    text = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "Identical to the baseline: eos made exactly the baseline's predictions" in text
    assert "0 by construction" in text and "Identical to the baseline: other" not in text

    (eos / "seed_1" / "eos.json").write_text(json.dumps({"best_head_epoch": 3}))   # not EOS's doing: said generically
    report, _ = compare_runs([base, eos], tmp_path / "cmp2", resamples=50)
    assert report["comparisons"][0]["identical_to_baseline"].startswith("it is the same training")
