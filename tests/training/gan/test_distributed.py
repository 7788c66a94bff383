"""Data-parallel GAN training under torchrun (gloo on CPU) against the single-process run."""

import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO_ROOT, tiny_gan_raw, write_yaml
from training.core.config import build
from training.core.distributed import World
from training.core.errors import ConfigError
from training.gan.checkpoint import load_training_state
from training.gan.config import GANConfig
from training.gan.loop import train_gan

REPO = REPO_ROOT


def torchrun(nproc: int, script: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(nproc), script, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_local_slices_partition_the_global_batch():
    slices = [World(r, 4).local_slice(8) for r in range(4)]
    assert [list(range(8))[s] for s in slices] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    with pytest.raises(ConfigError, match="does not split evenly over 3"):
        World(0, 3).local_slice(8)


def test_two_process_gan_equals_one_process_with_the_same_global_batch(tiny_demo, tmp_path):
    """Without DiffAugment (per-rank randomness by design) the runs must agree to float precision:
    same data order and latents on every rank, averaged gradients, batch norm over the global batch."""
    raw = tiny_gan_raw(tiny_demo, tmp_path / "one", train={"epochs": 2, "diffaugment": None, "checkpoint_every": 2},
                       metrics={"every": 0})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)              # as the torchrun processes run: the same float summation order
    try:
        train_gan(build(GANConfig, raw, "one"))
    finally:
        torch.set_num_threads(threads)
    raw["output"].update(results_dir=str(tmp_path / "two" / "results"), synthetic_dir=str(tmp_path / "two" / "synthetic"))
    result = torchrun(2, "training/train_dcgan.py", "--config", str(write_yaml(tmp_path / "two.yaml", raw)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done: 2 epochs") == 1          # rank 0 alone reports

    one, two = (tmp_path / run / "results" / "gan" / "tiny_hinge" for run in ("one", "two"))
    assert sorted(p.relative_to(two) for p in two.rglob("*")) == sorted(p.relative_to(one) for p in one.rglob("*"))
    a, b = (load_training_state(d / "checkpoints" / "checkpoint_epoch_0002.pth") for d in (one, two))
    for net in ("G", "D", "G_ema"):
        for key in a[net]:
            assert torch.allclose(a[net][key].float(), b[net][key].float(), atol=1e-5, rtol=1e-4), (net, key)
    import json
    info = json.loads((two / "run_info.json").read_text())
    assert info["processes"] == 2 and info["global_batch_size"] == 8


def test_global_batch_that_does_not_split_is_a_one_line_error(tiny_demo, tmp_path, monkeypatch, capsys):
    """Rank 0 of 2 processes (the world stubbed: the refusal comes before any collective but the barrier)."""
    import training.gan.loop as loop
    from tests.helpers import one_line_error, run_script

    monkeypatch.setattr(loop, "init_world", lambda device: (World(0, 2), torch.device("cpu")))
    monkeypatch.setattr(loop, "barrier", lambda world: None)
    raw = tiny_gan_raw(tiny_demo, tmp_path, train={"epochs": 1, "batch_size": 7})
    one_line_error(run_script(capsys, "training/train_dcgan.py", "--config", str(write_yaml(tmp_path / "odd.yaml", raw))),
                   "does not split evenly over 2 processes")
