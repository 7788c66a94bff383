"""A QA stand-in for the study tests whose subject is not QA."""

import json
from pathlib import Path

import pytest

from training.study import stages


@pytest.fixture
def qa_calls(monkeypatch) -> list[Path]:
    """QA stubbed (it is tested on its own, and its detectability bootstrap would be most of a tiny study's time
    here): a report QA's gate reads, and the list of the real-image folders each QA was asked to judge against."""
    calls = []

    def fake_qa(real_dir, synthetic, out, options):
        calls.append(Path(real_dir))
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps({"summary": {"verdict": "fail", "checks": {}, "insufficient": {}}}))
        (out / "report.html").write_text("<html></html>")

    monkeypatch.setattr(stages, "run_qa", fake_qa)
    return calls
