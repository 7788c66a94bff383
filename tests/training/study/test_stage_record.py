"""A stage is skipped only while its outputs hold what it recorded, and a damaged or
edited stages.json means a clean re-run (saying why), never a traceback or a gate opened by an edit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import synthetic_folder
from training.data.synthetic_folder import read_synthetic_manifest
from training.study.stage_record import Stages, content_hash, folder_hash
from training.study.stages import QAGateClosed, apply_qa_gate, pixels_as_recorded, qa_outputs


def make_stage(tmp_path):
    """A stage writing out.txt, fingerprinted by its content; returns (run it, how many times work ran)."""
    out, calls = tmp_path / "out.txt", []

    def work():
        calls.append(1)
        out.write_text("made by the stage")
        return {"file": str(out)}

    def run(stages):
        return stages.run("s", "key1", lambda o: out.is_file(), work, fingerprint=lambda o: content_hash(out))
    return run, calls, out


@pytest.mark.parametrize("damage", [b'{"s": {"key": "key1", "outp', b"[1, 2, 3]", bytes(range(256)), b'{"s": [1]}',
                                    b'{"s": {"key": "key1", "outputs": [1]}}', b""])
def test_a_damaged_stages_json_means_a_clean_rerun(tmp_path, capsys, damage):
    record = tmp_path / "stages.json"
    record.write_bytes(damage)
    run, calls, _ = make_stage(tmp_path)
    run(Stages(record))
    assert calls == [1] and "Traceback" not in capsys.readouterr().err
    assert json.loads(record.read_text())["s"]["key"] == "key1"       # rewritten whole
    run(Stages(record))
    assert calls == [1]


def test_edited_outputs_or_an_edited_record_rerun_the_stage(tmp_path, capsys):
    record = tmp_path / "stages.json"
    run, calls, out = make_stage(tmp_path)
    run(Stages(record))
    out.write_text("someone else's content")
    run(Stages(record))
    assert calls == [1, 1] and "outputs changed" in capsys.readouterr().out
    done = json.loads(record.read_text())
    done["s"]["outputs"] = {"file": str(tmp_path / "elsewhere.txt")}      # the outputs point elsewhere
    done["s"]["fingerprint"] = 42
    record.write_text(json.dumps(done))
    run(Stages(record))
    assert len(calls) == 3


def test_a_record_of_an_earlier_version_is_adopted_when_its_outputs_are_in_place(tmp_path, capsys):
    record = tmp_path / "stages.json"
    run, calls, out = make_stage(tmp_path)
    out.write_text("made by the stage")
    record.write_text(json.dumps({"s": {"key": "key1", "outputs": {"file": str(out)}, "seconds": 1.0}}))
    run(Stages(record))
    assert calls == [] and "earlier version" in capsys.readouterr().out
    assert json.loads(record.read_text())["s"]["fingerprint"] == content_hash(out)
    out.write_text("changed")
    run(Stages(record))
    assert calls == [1]


def test_synthetic_images_overwritten_by_other_images_are_noticed(tmp_path):
    folder = synthetic_folder(tmp_path / "gan", 3)
    before = folder_hash(folder)
    assert pixels_as_recorded(folder, read_synthetic_manifest(folder))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "synthetic_malignant_000001.png")   # all black
    assert not pixels_as_recorded(folder, read_synthetic_manifest(folder))
    assert folder_hash(folder) != before


def test_the_qa_gate_reads_the_verdict_from_the_report_not_from_stages_json(tmp_path):
    report = {"summary": {"verdict": "fail", "checks": {"fid": {"verdict": "fail"}}, "insufficient": {}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    with pytest.raises(QAGateClosed, match="QA verdict fail"):
        apply_qa_gate(qa_outputs(tmp_path), "fail")
    (tmp_path / "report.json").write_text("[]")
    with pytest.raises(Exception, match="not a QA report"):
        qa_outputs(tmp_path)
