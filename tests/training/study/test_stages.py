"""The stages on their own: the QA gate's rule, the size of the synthetic pool, and arms trained in worker
processes (the whole pipeline through its script: test_orchestrate)."""

import json
from pathlib import Path


def test_the_default_gate_stops_on_too_little_evidence_and_says_what_is_missing():
    import pytest

    from training.study.stages import QAGateClosed, apply_qa_gate

    lacking = {"report": "results/qa/x/report.html", "verdict": "insufficient",
               "verdicts": {"fidelity": "pass", "detectability": "insufficient"},
               "insufficient": {"detectability": "33 images per set, needs 109"}}
    for gate in ("fail", "warn"):
        with pytest.raises(QAGateClosed) as closed:
            apply_qa_gate(lacking, gate)
        message = str(closed.value)
        assert "QA verdict insufficient (detectability)" in message and "needs 109" in message
        assert "qa_gate=off" in message and "\n" not in message
    apply_qa_gate(lacking, "off")          # prints a note, raises nothing
    apply_qa_gate({**lacking, "verdict": "warn", "verdicts": {"detectability": "warn"}, "insufficient": {}}, "fail")



def test_a_new_comparison_removes_the_parts_only_an_earlier_study_wrote(tmp_path):
    # A study re-run without a cheap fix or without the grid must not leave the old vs_best_fix/ and
    # search.json beside its new comparison.md.
    from training.study.stages import clear_comparison_extras

    (tmp_path / "vs_best_fix").mkdir()
    for name in ("vs_best_fix/comparison.md", "search.json", "comparison.md"):
        (tmp_path / name).write_text("old")
    clear_comparison_extras(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comparison.md"]
    clear_comparison_extras(tmp_path)                  # nothing to remove: no error

def test_the_synthetic_pool_has_a_partner_for_every_real_image_of_its_class(tmp_path):
    """QA compares equal numbers of real and synthetic images: a ratio that adds 3 images still makes 72."""
    from collections import Counter
    from types import SimpleNamespace

    from training.study.config import PipelineSearchConfig, PipelineSynthesisConfig
    from training.study.stages import pool_size

    config = SimpleNamespace(synthesis=PipelineSynthesisConfig(target_ratio=1.4), search=PipelineSearchConfig())
    study = SimpleNamespace(config=config, real_train=Counter(healthy=72, tumour=105))
    assert pool_size(study, "healthy", "healthy") == 72


def test_arms_trained_at_once_in_worker_processes_match_one_thread_here_and_resume(tiny_demo, tmp_path, capsys):
    """`classifiers.workers: 2`: each arm trains in a process of its own on one thread, which gives the numbers
    training on one thread in this process gives; every arm is recorded, and a re-run skips them."""
    import dataclasses
    from types import SimpleNamespace

    import torch

    from training.classify.config import ClassifierConfig
    from training.classify.loop import train_classifier
    from training.core.config import build
    from training.study.stage_record import Stages
    from training.study.stages import ArmJob, run_arms

    def job(name: str, results: Path, **train) -> ArmJob:
        raw = {"data": {"train_dir": str(tiny_demo / "train"), "val_dir": str(tiny_demo / "val"),
                        "test_dir": str(tiny_demo / "test"), "image_size": 32, "channels": 3,
                        "positive_class": "malignant"},
               "model": {"arch": "cnn", "width": 4}, "train": {"epochs": 1, "batch_size": 16, "seeds": [0], **train},
               "output": {"name": name, "results_dir": str(results)}}
        return ArmJob(f"classifier {name}", name, build(ClassifierConfig, raw, name), True)

    study = SimpleNamespace(stages=Stages(tmp_path / "stages.json"), results=tmp_path / "results",
                            config=SimpleNamespace(classifiers=SimpleNamespace(workers=2)))
    jobs = [job("plain", study.results), job("weighted", study.results, class_weights="balanced")]
    runs = run_arms(study, jobs)
    out = capsys.readouterr().out
    assert out.count("] running") == 2 and out.count("] done in") == 2
    assert (study.results / "logs" / "plain.log").read_text().strip()      # the arm's own output went to its log
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        here = train_classifier(job("plain", tmp_path / "here").config)
    finally:
        torch.set_num_threads(threads)
    scores = [json.loads((Path(run) / "seed_0" / "metrics.json").read_text())["test"] for run in (runs[0], here)]
    assert scores[0] == scores[1]
    assert run_arms(study, jobs) == runs and capsys.readouterr().out.count("up to date, skipped") == 2
    (Path(runs[0]) / "seed_0" / "best_model.pth").unlink()        # a grid's chosen arm would read it: trained again
    study.config.classifiers.workers = 1                           # (here, in this process: one spawn fewer)
    again = run_arms(study, jobs)
    assert again[1] == runs[1] and again[0] != runs[0] and "its outputs are missing" in capsys.readouterr().out
    study.config.classifiers.workers = 2

    # An arm that fails in its worker stops the study with its own one-line error, nothing recorded for it.
    import pytest

    from training.core.errors import UserError

    broken = dataclasses.replace(job("broken", study.results), key="broken-key")
    broken = dataclasses.replace(broken, config=dataclasses.replace(
        broken.config, data=dataclasses.replace(broken.config.data, train_dir=str(tmp_path / "missing" / "train"))))
    with pytest.raises(UserError, match="missing"):
        run_arms(study, [broken, jobs[0]])
    assert "classifier broken" not in study.stages.done
