"""The synthetic-count and mixing sweeps on tiny data."""

import json

import pytest

from tests.helpers import write_yaml
from tests.training.data.test_augmented_set import synthetic_folder
from training.analysis.synthetic_amount import scaled_counts
from training.core.errors import ConfigError, UserError
from training.sweep import main as sweep_main


def test_counts_scale_down_together_and_say_why():
    assert scaled_counts((0, 2000, 4000, 6000), available=10_000, real=200) == (
        [0, 667, 1333, 2000], "counts [0, 2000, 4000, 6000] scaled by 0.333 to [0, 667, 1333, 2000]: the largest "
        "is limited to 2000 (10000 synthetic images available, 10x 200 real)")
    assert scaled_counts((0, 10), available=50, real=15) == ([0, 10], None)


@pytest.mark.parametrize("mode, values, xs", [("counts", {"counts": [0, 100]}, [0, 40]),
                                              ("mixing", {"synthetic_fractions": [0.0, 0.4]}, [0.0, 0.4])])
def test_sweep_trains_each_point_and_plots(tiny_demo, tmp_path, capsys, mode, values, xs):
    synthetic = synthetic_folder(tmp_path / "gan", 40)
    config = write_yaml(tmp_path / "sweep.yaml", {
        "data": {"baseline": str(tiny_demo), "synthetic": [str(synthetic)], "work_dir": str(tmp_path / "work")},
        "points": {"mode": mode, **values, "bootstrap": 50},
        "classifier": {"config": "experiments/classifier_baseline.yaml",
                       "overrides": ["train.epochs=1", "train.seeds=[0]", "model.width=4"]},
        "output": {"results_dir": str(tmp_path / "results")}})
    assert sweep_main(["--config", str(config)]) == 0
    out = tmp_path / "results" / "sweeps" / "sweep"
    result = json.loads((out / "sweep.json").read_text())
    assert [p["x"] for p in result["points"]] == xs
    assert (out / "sweep.png").is_file() and (out / "comparison.md").is_file()
    printed = capsys.readouterr().out
    assert "| point | sensitivity |" in printed and ("scaled by 0.400" in printed) == (mode == "counts")
    assert sweep_main(["--config", str(config)]) == 0                       # resumes: nothing retrained
    assert capsys.readouterr().out.count("done, kept") == 2
    if mode == "counts":                                                    # its own record, damaged: run again
        (out / "points.json").write_text("{oops")
        assert sweep_main(["--config", str(config)]) == 0
        assert "points.json is damaged; every point runs again" in capsys.readouterr().out


def test_mixing_needs_enough_synthetic_images(tiny_demo, tmp_path):
    synthetic = synthetic_folder(tmp_path / "gan", 3)
    config = write_yaml(tmp_path / "sweep.yaml", {
        "data": {"baseline": str(tiny_demo), "synthetic": [str(synthetic)]},
        "points": {"mode": "mixing", "synthetic_fractions": [0.0, 0.5]}})
    with pytest.raises(ConfigError, match="needs 8 synthetic images; the folders hold 3"):
        sweep_main(["--config", str(config)])


@pytest.mark.parametrize("data, words", [({"synthetic": []}, "a sweep needs two points or more, and 1 remain"),
                                         ({"minority_class": "benign_typo"}, "has no training images")])
def test_a_sweep_that_cannot_compare_anything_stops_before_training(tiny_demo, tmp_path, data, words):
    synthetic = synthetic_folder(tmp_path / "gan", 4)
    config = write_yaml(tmp_path / "sweep.yaml", {
        "data": {"baseline": str(tiny_demo), "synthetic": [str(synthetic)], **data},
        "points": {"mode": "counts", "counts": [0, 4]}, "output": {"results_dir": str(tmp_path / "results")}})
    with pytest.raises(UserError, match=words):
        sweep_main(["--config", str(config)])
    assert not (tmp_path / "results").exists()
