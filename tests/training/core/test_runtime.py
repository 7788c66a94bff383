"""Worker processes die with the process that started them, so a killed study leaves no orphan training on."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

STARTER = """
import multiprocessing, os, signal, time
from concurrent.futures import ProcessPoolExecutor
from training.core.runtime import die_with_parent

pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent,
                           initargs=(os.getpid(),))
print(pool.submit(os.getpid).result(), flush=True)
pool.submit(time.sleep, 120)
time.sleep(0.5)
os.kill(os.getpid(), signal.SIGKILL)        # as a scheduler's kill: no chance to shut the pool down
"""


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        state = next(line for line in status.read_text().splitlines() if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return " Z " not in state + " "                 # a zombie has exited; only its exit status is left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_killed_starter_takes_its_workers_with_it():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    starter = subprocess.run([sys.executable, "-c", STARTER], capture_output=True, text=True, env=env, timeout=120)
    assert starter.returncode == -9
    worker = int(starter.stdout.split()[0])
    deadline = time.monotonic() + 10
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(worker)
