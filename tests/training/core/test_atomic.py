import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO_ROOT
from training.core import atomic

# A writer that replaces the file through atomic_path, writes half of the new content, says so, then hangs.
WRITER = """
import sys, time
from training.core import atomic
with atomic.atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"new" * 100_000)
        f.flush()
    open(sys.argv[2], "w").close()
    time.sleep(60)
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_a_killed_writer_leaves_the_previous_file_intact(tmp_path):
    target, ready = tmp_path / "metrics.json", tmp_path / "ready"
    atomic.write_text(target, '{"epoch": 1}')
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(ready)], cwd=REPO_ROOT)
    try:
        deadline = time.time() + 60
        while not ready.exists() and writer.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the writer never got half-way"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert target.read_text() == '{"epoch": 1}'             # the last good file, not the half-written one
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".metrics.json.")]
    assert len(leftovers) == 1                               # the temporary file, hidden beside the target
    atomic.write_text(target, '{"epoch": 2}')               # the next write succeeds as usual
    assert target.read_text() == '{"epoch": 2}'


def test_a_failing_writer_leaves_no_temporary_file_and_the_old_content(tmp_path):
    target = tmp_path / "report.json"
    atomic.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_full_disk_names_the_file_being_written_not_its_temporary(tmp_path, monkeypatch):
    import errno

    import torch

    target = tmp_path / "best_generator.pth"
    atomic.torch_save({"epoch": 1}, target)
    save = torch.save

    def full(obj, f, *args, **kwargs):         # a write that finds the disk full: ENOSPC, no file name
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError) as err:
        atomic.torch_save({"epoch": 2}, target)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    monkeypatch.setattr(torch, "save", save)
    assert torch.load(target, weights_only=True) == {"epoch": 1} and [p.name for p in tmp_path.iterdir()] == [target.name]

    # In a staged folder, the file of the final folder is named, not its staged twin.
    with pytest.raises(OSError) as err:
        with atomic.staged_directory(tmp_path / "dataset") as staging:
            (staging / "train").mkdir()
            raise OSError(errno.ENOSPC, "No space left on device", str(staging / "train" / "a.png"))
    assert err.value.filename == str(tmp_path / "dataset" / "train" / "a.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
