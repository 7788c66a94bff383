"""quality/review.py driven by scripted answers instead of a terminal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quality.assessment.human_review import REVIEW_FILE, review_images
from quality.review import main
from training.core.errors import DataError, run_cli


def make_folder(folder: Path, count: int = 5) -> list[Path]:
    """count small PNGs named like generated images, a manifest, and an earlier rejected/ file."""
    folder.mkdir()
    paths = []
    for i in range(count):
        path = folder / f"synthetic_malignant_{i:06d}.png"
        Image.fromarray(np.full((8, 8), 20 * i, dtype=np.uint8)).save(path)
        paths.append(path)
    (folder / "manifest.jsonl").write_text("{}\n")
    return paths


def scripted(*answers: str):
    """A `read` that gives these answers in turn, then behaves like a closed terminal (EOF)."""
    queue = list(answers)

    def read(prompt: str) -> str:
        if not queue:
            raise EOFError
        return queue.pop(0)
    return read


def test_decisions_are_recorded_rejected_files_moved_and_q_stops(tmp_path):
    paths = make_folder(tmp_path / "syn")
    lines = []
    counts = review_images(tmp_path / "syn", scripted("y", "n", "s", "q", "y"), say=lines.append)
    assert counts == {"accepted": 1, "rejected": 1, "remaining": 3}
    decisions = json.loads((tmp_path / "syn" / REVIEW_FILE).read_text())["decisions"]
    assert decisions[paths[0].name]["decision"] == "accepted"
    assert decisions[paths[1].name] == {**decisions[paths[1].name], "decision": "rejected",
                                        "moved_to": f"rejected/{paths[1].name}"}
    assert not paths[1].exists() and (tmp_path / "syn" / "rejected" / paths[1].name).is_file()   # moved, not deleted
    assert paths[2].exists() and paths[2].name not in decisions                                  # skipped
    assert paths[3].exists() and paths[3].name not in decisions                                  # q stopped before it
    assert any("[1/5]" in line and paths[0].name in line for line in lines)
    assert "remaining 3" in lines[-1]


def test_review_resumes_where_it_stopped(tmp_path):
    paths = make_folder(tmp_path / "syn")
    review_images(tmp_path / "syn", scripted("y", "n", "q"), say=lambda line: None)
    lines = []
    counts = review_images(tmp_path / "syn", scripted("y", "y", "n"), say=lines.append)
    shown = [line for line in lines if line.startswith("[")]
    assert len(shown) == 3 and paths[2].name in shown[0]     # decided files are not shown again
    assert counts == {"accepted": 3, "rejected": 2, "remaining": 0}
    assert lines[0].startswith("resuming: 2 image(s) decided earlier, 3 to go")


def test_an_existing_rejected_file_is_never_overwritten(tmp_path):
    paths = make_folder(tmp_path / "syn", count=1)
    earlier = tmp_path / "syn" / "rejected" / paths[0].name
    earlier.parent.mkdir()
    earlier.write_bytes(b"an earlier rejection")
    review_images(tmp_path / "syn", scripted("n"), say=lambda line: None)
    assert earlier.read_bytes() == b"an earlier rejection"
    moved = tmp_path / "syn" / "rejected" / f"{paths[0].stem}_2.png"
    assert moved.is_file()
    decisions = json.loads((tmp_path / "syn" / REVIEW_FILE).read_text())["decisions"]
    assert decisions[paths[0].name]["moved_to"] == f"rejected/{moved.name}"


def test_a_changed_file_is_reviewed_again(tmp_path):
    paths = make_folder(tmp_path / "syn", count=2)
    review_images(tmp_path / "syn", scripted("y", "y"), say=lambda line: None)
    Image.fromarray(np.full((8, 8), 255, dtype=np.uint8)).save(paths[0])   # regenerated with new content
    lines = []
    review_images(tmp_path / "syn", scripted("q"), say=lines.append)
    assert any(paths[0].name in line for line in lines if line.startswith("[1/1]"))


def test_unknown_answers_are_asked_again_and_images_are_shown(tmp_path):
    paths = make_folder(tmp_path / "syn", count=1)
    shown, lines = [], []
    review_images(tmp_path / "syn", scripted("maybe", "", "Yes"), show=shown.append, say=lines.append)
    assert shown == [paths[0]]
    assert lines.count("please answer y, n, s or q") == 2
    assert json.loads((tmp_path / "syn" / REVIEW_FILE).read_text())["decisions"][paths[0].name]["decision"] == "accepted"


def test_shuffle_is_seeded(tmp_path):
    make_folder(tmp_path / "syn", count=12)

    def order(seed: int) -> list[str]:
        lines = []
        review_images(tmp_path / "syn", scripted(*["s"] * 12), say=lines.append, shuffle=True, seed=seed)
        return [line.split()[1] for line in lines if line.startswith("[")]
    assert order(1) == order(1) and order(1) != order(2) and order(1) != sorted(order(1))


def test_command_line_errors_are_one_line(tmp_path, capsys):
    assert run_cli(main, [str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: folder not found: {tmp_path / 'missing'}"]
    make_folder(tmp_path / "syn", count=1)
    (tmp_path / "syn" / REVIEW_FILE).write_text("{not json")
    assert run_cli(main, [str(tmp_path / "syn"), "--no_show"]) == 2
    assert "is not a review file" in capsys.readouterr().err


def test_command_line_review_reads_stdin(tmp_path, monkeypatch, capsys):
    paths = make_folder(tmp_path / "syn", count=2)
    monkeypatch.setattr("builtins.input", scripted("n", "y"))
    assert run_cli(main, [str(tmp_path / "syn"), "--no_show"]) == 0
    assert "accepted 1, rejected 1" in capsys.readouterr().out
    assert (tmp_path / "syn" / "rejected" / paths[0].name).is_file()


def test_a_rejected_file_that_comes_back_is_asked_about_again(tmp_path):
    paths = make_folder(tmp_path / "syn", count=2)
    review_images(tmp_path / "syn", scripted("n", "y"), say=lambda line: None)
    (tmp_path / "syn" / "rejected" / paths[0].name).replace(paths[0])    # e.g. re-generated with the same seed
    lines = []
    counts = review_images(tmp_path / "syn", scripted("n"), say=lines.append)
    assert [line for line in lines if line.startswith("[")] == [f"[1/1] {paths[0]}"]
    assert counts == {"accepted": 1, "rejected": 1, "remaining": 0}
    assert (tmp_path / "syn" / "rejected" / paths[0].name).is_file() and not paths[0].exists()


def test_the_preview_grid_beside_the_samples_is_not_reviewed(tmp_path):
    from PIL import Image

    from quality.assessment.human_review import pending_images
    for name in ("synthetic_malignant_000000.png", "preview_grid.png", "selection_scores.png"):
        Image.new("L", (4, 4)).save(tmp_path / name)
    assert [p.name for p in pending_images(tmp_path, {}, False, 0)] == ["synthetic_malignant_000000.png"]



def test_a_prepared_datasets_images_are_never_reviewed(tmp_path):
    # A rejection moves the file: in a prepared dataset (any split) the images would no longer match manifest.csv.
    dataset = tmp_path / "processed" / "tiny"
    for split in ("test", "train"):
        (dataset / split).mkdir(parents=True)
        (dataset / "manifest.csv").write_text("path,split,class,sha256\n")
        images = make_folder(dataset / split / "malignant", count=2)
        with pytest.raises(DataError, match="a dataset's images are never moved"):
            review_images(images[0].parent, scripted("n", "n"), None, lambda line: None)
        assert all(path.is_file() for path in images) and not (images[0].parent / "rejected").exists()
