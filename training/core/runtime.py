"""Device choice and seeding."""

from __future__ import annotations

import ctypes
import os
import random
import signal
import sys

import numpy as np
import torch

from training.core.errors import UserError


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; an explicit cuda without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but no CUDA GPU is available (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device '{name}' (use auto, cpu or cuda)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


PR_SET_PDEATHSIG = 1        # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Worker-process initializer: when the process that started the worker dies (a `kill`, a scheduler's
    SIGTERM), the worker gets SIGTERM too (Linux), instead of training on as an orphan into the folders a
    restarted run writes. `parent` is the starter's pid, for the case it died before this ran."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)
