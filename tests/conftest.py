"""Shared fixtures: tiny processed datasets made on the fly (tests never need ../shared)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.data.processed import write_dataset
from training.data.sources.demo import demo_records

REPO_ROOT = Path(__file__).resolve().parents[1]

# Scripts launched as subprocesses import this checkout, whatever checkout the installed package points at.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core (pyproject.toml): one thread each, or the workers' thread pools
    # fight over the cores (OpenBLAS's spinning threads made FID 10x slower). The variables reach
    # subprocesses; threadpoolctl limits the BLAS pools numpy has already started.
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"
    import threadpoolctl
    import torch

    threadpoolctl.threadpool_limits(1)
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def torch_threads_kept():
    """Each test leaves torch's thread count as it found it: one worker left at two threads beside the other
    made every later test of that worker several times slower (threads spinning against each other)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """A 32 px demo dataset: train 30 benign / 15 malignant, val and test a few each."""
    records, total = demo_records(seed=0, image_size=32, num_train=45, imbalance=2)
    out = tmp_path_factory.mktemp("data") / "tiny"
    write_dataset(records, out, total=total)
    return out
