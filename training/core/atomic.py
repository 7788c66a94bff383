"""Atomic file writes: write to a temporary file beside the target, then `os.replace` it.

A run killed half-way through a write leaves the previous good file in place, never a truncated one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from training.core.errors import ENVIRONMENT_ERRORS


def _naming(err: OSError, staging: str | Path, target: Path) -> OSError:
    """A full disk (or read-only folder) met while writing into `staging`, reported against `target`.

    An OSError raised by a write call carries no file name, and one raised on the temporary file names
    a hidden name nobody asked for: the user must learn which of their files could not be written.
    """
    if err.errno not in ENVIRONMENT_ERRORS:
        return err
    staging, named = str(staging), err.filename2 or err.filename      # filename2: a copy's or a link's destination
    if named is None or str(named) == staging:
        named = target
    elif str(named).startswith(staging + os.sep):                    # a file inside a staged folder
        named = target / os.path.relpath(named, staging)
    return OSError(err.errno, err.strerror, str(named))


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces `path` in one step.

    An environment OSError (full disk, read-only folder) names `path`, not the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise _naming(err, tmp, path) from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def staged_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty folder beside `path` to build in; on success it replaces `path` as a whole.

    Whoever calls this has already decided that an existing `path` may be replaced. An environment
    OSError (full disk) names the file of `path` being written, not its staged twin.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.staging-"))
    try:
        yield staging
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    except OSError as err:
        raise _naming(err, staging, path) from err
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def torch_save(obj: Any, path: str | Path) -> None:
    # Through a Python file: on a full disk torch's own writer raises RuntimeError('... unexpected pos ...'),
    # a file object raises the OSError (ENOSPC) that `atomic_path` and `run_cli` report in one line.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically (a `matplotlib.figure.Figure`: no pyplot state to close)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
