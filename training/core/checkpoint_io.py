"""Reading `.pth` files safely, and the self-describing record format every checkpoint of ours uses.

Checkpoints travel between teams, so a `.pth` is untrusted input: `torch.load` with the default
pickle would run whatever code a crafted file carries. Every load here uses `weights_only=True`,
which admits only tensors, numbers, strings, None and lists/tuples/dicts of them (all our files
hold), and turns anything else into a one-line refusal before any of it runs.

A record that loads is still checked before it is used: its weights are a dict of tensors, all finite
(a generator with NaN weights writes black images, a classifier with them labels nothing), the names
that become folder or file names are plain, and `load_weights` fits the weights to the network the
record describes, key by key and shape by shape, so an edited or damaged file is one line too.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from training.core.errors import DataError, UserError, short_repr
from training.core.names import check_plain_name

# Record keys that become folder or file names (synthetic_<class>_NNNNNN.png, <out>/<class>/): plain names only.
_NAME_KEYS = ("class_name", "positive_class", "run_name")


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
    state = record.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise DataError(f"{path} has no weights ('state_dict' of tensors): a damaged or edited {what}")
    check_finite(state, path)
    try:
        for key in _NAME_KEYS:
            if record.get(key) is not None:
                check_plain_name(record[key], f"{path}: its '{key}'")
        names = record.get("class_names")
        if names is not None:
            if not isinstance(names, list | tuple) or len(set(names)) != len(names):
                raise UserError(f"{path}: its 'class_names' must be a list of distinct names, got {short_repr(names)}")
            for name in names:
                check_plain_name(name, f"{path}: its 'class_names' entry")
    except UserError as err:
        raise DataError(str(err)) from None
    return record


def check_finite(state: dict, path: str | Path) -> None:
    """DataError when a floating-point tensor of `state` holds NaN or inf (a diverged run, or an edited file)."""
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise DataError(f"{path} holds non-finite weights (NaN or inf in '{key}'): the run diverged or the file "
                            "was edited; refusing it (use an earlier checkpoint)")


def load_weights(model: torch.nn.Module, state: dict, path: str | Path) -> None:
    """`model.load_state_dict(state)`, with a one-line DataError naming the first key that is missing, extra
    or of another shape: the record describes a network its weights do not fit (damaged or edited)."""
    mine = model.state_dict()
    missing, extra = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    wrong = [f"'{k}' is {tuple(state[k].shape)}, expected {tuple(mine[k].shape)}" for k in mine
             if k in state and tuple(state[k].shape) != tuple(mine[k].shape)]
    problems = ([f"'{missing[0]}' is missing"] if missing else []) + ([f"'{extra[0]}' is not expected"] if extra else [])
    problems += wrong[:1]
    if problems:
        count = len(missing) + len(extra) + len(wrong)
        raise DataError(f"{path}: its weights do not fit the network it describes ({'; '.join(problems)}; {count} "
                        "key(s) in all): a damaged or edited checkpoint")
    model.load_state_dict(state)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]
