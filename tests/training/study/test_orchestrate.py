"""The one-command pipeline on tiny data, through its script: every stage runs once and a re-run skips them all,
the QA gate stops a study before anything trains on a failing generator, and the grid is chosen on
validation without reading test."""

import json
import shutil
from pathlib import Path

from tests.helpers import write_yaml
from training.analysis.comparison import compare_runs
from training.core.errors import run_cli
from training.pipeline import main as pipeline_main


def tiny_study(path, source, tmp_path, search=None, arms=("baseline:baseline", "gan_augmented:augmented"), gan=None,
               gan_overrides=(), **synthesis):
    """A pipeline config for a 1-epoch GAN and 1-epoch classifiers on tiny data (no grid unless `search`)."""
    return write_yaml(path, {
        "data": {"source": str(source), "name": "tiny", "processed_dir": str(tmp_path / "processed")},
        "gan": {"config": "experiments/demo_gan.yaml",
                "overrides": ["train.epochs=1", "train.batch_size=8", "model.g_channels=8", "model.d_channels=8",
                              "metrics.num_samples=16", "metrics.domain_encoder_epochs=1",
                              "metrics.feature_extractor=domain", f"output.synthetic_dir={tmp_path / 'synthetic'}",
                              *gan_overrides],
                **(gan or {})},
        "synthesis": {"target_ratio": 1.0, **synthesis},
        "classifiers": {"arms": [f"experiments/classifier_{arm}".replace(":", ".yaml:") for arm in arms],
                        "overrides": ["train.epochs=1", "train.seeds=[0]", "model.width=4"]},
        "search": search or {"enabled": False},
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
    # One split (evaluation.folds off): no fold stages, and the comparison is compare.py's of the same run folders.
    assert "[fold " not in first and "cross-validation" not in first
    done = json.loads((results / "pipeline" / "pipeline_tiny" / "stages.json").read_text())
    assert not any("fold" in stage for stage in done) and not (results / "pipeline" / "pipeline_tiny" / "fold_1").exists()
    report = json.loads((results / "comparison" / "pipeline_tiny" / "comparison.json").read_text())
    again, _ = compare_runs([run["run_dir"] for run in report["runs"]], tmp_path / "again")
    assert json.loads(json.dumps(again)) == report and "cross_validation" not in report

    assert pipeline_main(["--config", str(config)]) == 0
    second = capsys.readouterr().out
    assert second.count("up to date, skipped") == 8 and "running" not in second

    # A new ratio for the fixed GAN arm (5 synthetic images instead of 15) re-runs what is made of that many
    # images, and nothing else: the pool and its QA are sized by the real class, not by the arm.
    assert pipeline_main(["--config", str(config), "synthesis.target_ratio=1.5"]) == 0
    third = capsys.readouterr().out
    for stage in ("prepare", "gan", "synthesis", "qa", "classifier pipeline_tiny_classifier_baseline"):
        assert f"[{stage}] up to date, skipped" in third
    for stage in ("assemble pipeline_tiny_augmented", "classifier pipeline_tiny_classifier_gan_augmented", "compare"):
        assert f"[{stage}] running" in third
    composition = json.loads((tmp_path / "processed" / "tiny_pipeline_tiny_augmented" / "composition.json").read_text())
    assert composition["counts"]["train"]["malignant"]["synthetic"] == 5         # 30 benign : 15 + 5 malignant


def test_a_generator_that_fails_qa_stops_the_pipeline_before_anything_trains_on_it(tiny_demo, tmp_path, capsys):
    # Transfer on: the minority's GAN starts from a GAN pretrained on the largest class (benign), with FreezeD,
    # which applies to the fine-tuning only (the pretraining run has nothing pretrained to keep).
    config = tiny_study(tmp_path / "gated.yaml", tiny_demo, tmp_path,              # the default gate: fail
                        gan={"pretrain_class": "largest", "pretrain_epochs": 1}, gan_overrides=["model.freeze_d_blocks=1"])
    assert run_cli(pipeline_main, ["--config", str(config)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "QA verdict fail" in err[0] and "report.html" in err[0] and "qa_gate=off" in err[0]
    assert not (tmp_path / "processed" / "tiny_gated_augmented").exists()     # nothing assembled
    assert not (tmp_path / "results" / "classifiers").exists()                # nothing trained
    assert (tmp_path / "results" / "qa" / "gated" / "report.html").is_file()
    runs = tmp_path / "results" / "gan"
    assert "[gan pretrain] running" in captured.out and "30 images of benign" in captured.out
    fine_tuned, pretrained = ((runs / name / "config.yaml").read_text() for name in ("gated_gan", "gated_gan_pretrain"))
    assert f"init_from: {runs / 'gated_gan_pretrain' / 'checkpoints' / 'checkpoint_epoch_0001.pth'}" in fine_tuned
    assert "freeze_d_blocks: 1" in fine_tuned and "freeze_d_blocks: 0" in pretrained and "init_from: null" in pretrained


EVERY_EPOCH = ["train.checkpoint_every=1", "metrics.every=1"]
TINY_GRID = {"enabled": True, "classes": ["minority", "all"], "selection": ["off", "realism"], "synthetic_per_real": [0.5],
             "synthetic_weight": [1.0], "finetune_real_epochs": [0]}


def test_the_grid_is_chosen_on_validation_and_never_reads_test(tiny_demo, tmp_path, qa_calls):
    """Every grid arm is trained and scored with the test split unread (no test predictions, and the run's
    splits never load it), and the arm chosen is the best on the primary metric on validation. QA is stubbed
    here; the two tests above run the real one."""
    import training.classify.loop as classify_loop

    test_reads = []
    real_load = classify_loop.load_classifier_splits

    def watched(config, *args, with_test=True, **kwargs):
        test_reads.append((config.output.name, with_test))
        return real_load(config, *args, with_test=with_test, **kwargs)

    classify_loop.load_classifier_splits = watched
    try:
        # Transfer from benign, whose own GAN (for the `all` arms) is then the pretraining run made longer.
        config = tiny_study(tmp_path / "grid.yaml", tiny_demo, tmp_path, search=TINY_GRID, qa_gate="off",
                            arms=("baseline:baseline", "oversampled:baseline", "gan_augmented:augmented"),
                            gan={"pretrain_class": "benign", "pretrain_epochs": 1, "other_class_overrides": ["train.epochs=2"]},
                            gan_overrides=EVERY_EPOCH)
        assert pipeline_main(["--config", str(config)]) == 0
    finally:
        classify_loop.load_classifier_splits = real_load
    comparison = tmp_path / "results" / "comparison" / "grid"
    search = json.loads((comparison / "search.json").read_text())
    assert len(search["arms"]) == 4 and search["primary_metric"] == "sensitivity_at_spec90"
    grid_names = {Path(row["run"]).parent.name for row in search["arms"]}
    assert {name for name, with_test in test_reads if with_test} & grid_names == set()     # test never loaded
    for row in search["arms"]:                          # grid arms never scored test
        assert not list(Path(row["run"]).rglob("test_predictions.csv"))
    best = max(search["arms"], key=lambda row: (row["val"], row["val_roc_auc"]))
    assert search["chosen"] == best["arm"]
    text = (comparison / "comparison.md").read_text()
    assert "The GAN arm chosen on validation" in text and "against the best cheap fix" in text
    assert "is `grid_classifier_oversampled`" in text          # the only cheap fix here
    assert (comparison / "vs_best_fix" / "comparison.json").is_file()
    report = json.loads((comparison / "comparison.json").read_text())
    assert report["runs"][-1]["name"].endswith("_gan_chosen")
    chosen = next(tmp_path.glob("results/classifiers/grid_gan_chosen/run_*"))
    assert json.loads((chosen / "run_info.json").read_text())["models_from"] == best["run"]   # read, not retrained
    val = lambda run: json.loads((Path(run) / "summary.json").read_text())["val"]
    assert val(chosen) == val(best["run"])
    # "all": a GAN, QA and synthetic images for the benign class too, in the same share as malignant
    composition = json.loads((tmp_path / "processed" / "tiny_grid_grid_all_realism_x0.5" / "composition.json").read_text())
    assert composition["counts"]["train"]["benign"]["synthetic"] == 15
    assert composition["counts"]["train"]["malignant"]["synthetic"] == 8
    assert qa_calls == [tmp_path / "processed" / "tiny" / "train" / c for c in ("malignant", "benign")]   # QA stubbed
    selected = tmp_path / "synthetic" / "grid_gan_selected" / "manifest.jsonl"
    assert all("score" in json.loads(line) for line in selected.read_text().splitlines())
    check_benign_gan_continued_the_pretraining(tmp_path, config)



def check_benign_gan_continued_the_pretraining(tmp_path, config):
    """Benign's own GAN (the same config as the pretraining, more epochs) is the pretraining run continued, not
    trained again from epoch 0, and its training ends where a run from scratch ends: continuing changes no
    training step. A pretraining that is not benign's GAN made longer keeps a run of its own."""
    import torch

    from training.core.config import load_config
    from training.gan.checkpoint import load_training_state
    from training.gan.config import GANConfig
    from training.gan.loop import train_gan
    from training.study.config import PipelineConfig
    from training.study.stages import Study, continued_pretraining

    runs = tmp_path / "results" / "gan"
    assert not (runs / "grid_gan_pretrain").exists()
    assert json.loads((runs / "grid_gan_benign" / "run_info.json").read_text())["resumed_from_epoch"] == 1
    fine_tuned = (runs / "grid_gan" / "config.yaml").read_text()
    assert f"init_from: {runs / 'grid_gan_benign' / 'checkpoints' / 'checkpoint_epoch_0001.pth'}" in fine_tuned
    train_gan(load_config(GANConfig, runs / "grid_gan_benign" / "config.yaml", ["output.name=scratch"]))
    # The training state at the last epoch (the networks, EMA included, bit for bit), as test_resume_equals_uninterrupted.
    last = lambda run: load_training_state(runs / run / "checkpoints" / "checkpoint_epoch_0002.pth")
    continued, fresh = last("grid_gan_benign"), last("scratch")
    for net in ("G", "G_ema", "D"):
        assert all(torch.equal(continued[net][k], fresh[net][k]) for k in fresh[net]), net

    study = lambda *overrides: Study.of(load_config(PipelineConfig, config, list(overrides)))
    assert continued_pretraining(study()) == "benign"
    assert continued_pretraining(study("gan.other_class_overrides=[train.epochs=2, train.checkpoint_every=2]")) is None
    assert continued_pretraining(study("gan.pretrain_epochs=3")) is None        # longer than benign's own GAN
    assert continued_pretraining(study("search.classes=[minority]")) is None    # no benign GAN to continue into
