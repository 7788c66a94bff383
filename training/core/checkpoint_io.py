"""Reading `.pth` files safely, and the self-describing record format every checkpoint of ours uses.

Checkpoints travel between teams, so a `.pth` is untrusted input: `torch.load` with the default
pickle would run whatever code a crafted file carries. Every load here uses `weights_only=True`,
which admits only tensors, numbers, strings, None and lists/tuples/dicts of them (all our files
hold), and turns anything else into a one-line refusal before any of it runs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from training.core.errors import DataError


def load_checkpoint(path: str | Path, data: bytes | None = None) -> Any:
    """The content of a `.pth` file on the CPU, read with `weights_only=True`; DataError if refused or unreadable.

    With `data`, those bytes (already read from `path`, e.g. after checking their digest) are parsed instead.
    """
    path = Path(path)
    try:
        return torch.load(path if data is None else io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise DataError(f"refusing to load {path}: it holds Python objects other than tensors, numbers and "
                            "strings, which could run code when loaded (only checkpoints written by this toolkit "
                            "are read)") from None
        raise DataError(f"cannot read checkpoint {path}: {_first_line(err)}") from None
    except Exception as err:  # a truncated or foreign file: say which
        raise DataError(f"cannot read checkpoint {path}: {_first_line(err)}") from None


def read_record(path: str | Path, fmt: str, what: str, expected: str) -> dict:
    """A self-describing checkpoint of format `fmt` (e.g. 'medgan-generator/1'), with one-line errors
    when it is missing, unsafe or something else; `what` names it and `expected` says which file to give."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    record = load_checkpoint(path)
    if not isinstance(record, dict) or record.get("format") != fmt:
        raise DataError(f"{path} is not a {what.split()[0]} file (expected {expected})")
    return record


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]
