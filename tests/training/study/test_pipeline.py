"""The one-command pipeline on tiny data: every stage runs once, and a re-run skips them all."""

import json
import shutil

from tests.helpers import write_yaml
from training.core.errors import run_cli
from training.pipeline import main as pipeline_main


def tiny_study(path, source, tmp_path, **synthesis):
    """A pipeline config for a 1-epoch GAN and 1-epoch classifiers on tiny data."""
    return write_yaml(path, {
        "data": {"source": str(source), "name": "tiny", "processed_dir": str(tmp_path / "processed")},
        "gan": {"config": "experiments/demo_gan.yaml",
                "overrides": ["train.epochs=1", "train.batch_size=8", "model.g_channels=8", "model.d_channels=8",
                              "metrics.num_samples=16", "metrics.domain_encoder_epochs=1",
                              "metrics.feature_extractor=domain", f"output.synthetic_dir={tmp_path / 'synthetic'}"]},
        "synthesis": {"target_ratio": 1.0, **synthesis},
        "classifiers": {"arms": ["experiments/classifier_baseline.yaml:baseline",
                                 "experiments/classifier_gan_augmented.yaml:augmented"],
                        "overrides": ["train.epochs=1", "train.seeds=[0]", "model.width=4"]},
        "output": {"results_dir": str(tmp_path / "results")},
    })


def test_pipeline_runs_every_stage_then_resumes(tiny_demo, tmp_path, capsys):
    source = tmp_path / "folder"
    shutil.copytree(tiny_demo, source, ignore=shutil.ignore_patterns("manifest.csv"))   # a plain ImageFolder
    # A 1-epoch GAN fails QA: the gate is off to study it anyway.
    config = tiny_study(tmp_path / "pipeline_tiny.yaml", source, tmp_path, qa_gate="off")
    assert pipeline_main(["--config", str(config)]) == 0
    first = capsys.readouterr().out
    assert first.count("running") == 8 and "skipped" not in first
    results = tmp_path / "results"
    assert (results / "comparison" / "pipeline_tiny" / "comparison.md").is_file()
    assert (results / "qa" / "pipeline_tiny" / "report.json").is_file()
    composition = json.loads((tmp_path / "processed" / "tiny_pipeline_tiny_augmented" / "composition.json").read_text())
    assert composition["counts"]["train"]["malignant"]["synthetic"] == 15        # 30 benign : 15 + 15 malignant
    assert (tmp_path / "synthetic" / "pipeline_tiny_gan" / "preview_grid.png").is_file()

    assert pipeline_main(["--config", str(config)]) == 0
    second = capsys.readouterr().out
    assert second.count("up to date, skipped") == 8 and "running" not in second

    # A new synthesis seed re-runs what depends on the synthetic images, and nothing else.
    assert pipeline_main(["--config", str(config), "synthesis.seed=1"]) == 0
    third = capsys.readouterr().out
    for stage in ("prepare", "gan", "classifier pipeline_tiny_classifier_baseline"):
        assert f"[{stage}] up to date, skipped" in third
    for stage in ("synthesis", "qa", "assemble", "classifier pipeline_tiny_classifier_gan_augmented", "compare"):
        assert f"[{stage}] running" in third


def test_a_generator_that_fails_qa_stops_the_pipeline_before_anything_trains_on_it(tiny_demo, tmp_path, capsys):
    config = tiny_study(tmp_path / "gated.yaml", tiny_demo, tmp_path)          # the default gate: fail
    assert run_cli(pipeline_main, ["--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "QA verdict fail" in err[0] and "report.html" in err[0] and "qa_gate=off" in err[0]
    assert not (tmp_path / "processed" / "tiny_gated_augmented").exists()     # nothing assembled
    assert not (tmp_path / "results" / "classifiers").exists()                # nothing trained
    assert (tmp_path / "results" / "qa" / "gated" / "report.html").is_file()
