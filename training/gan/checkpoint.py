"""The two checkpoint kinds, both written atomically.

* Training state (`checkpoint_epoch_NNNN.pth`): G, D, EMA, optimisers, loss scalers, epoch, step
  counters, histories and the resolved config, everything `--resume` needs. No RNG states: the
  training loop re-seeds every stream from (seed, epoch) at the start of each epoch.
* Generator (`final_generator.pth`, `best_generator.pth`): the EMA generator's weights plus the
  model/data config and class name, so generation needs no YAML.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from training.core import atomic
from training.core.checkpoint_io import load_checkpoint, load_weights, read_record
from training.core.config import from_dict, to_dict
from training.core.errors import DataError, short_repr
from training.gan.config import DataConfig, ModelConfig
from training.gan.networks import build_generator

GENERATOR_FORMAT = "medgan-generator/1"
_GENERATOR_KEYS = ("model", "data", "class_name", "epoch")       # besides format and state_dict (read_record)
_EPOCH_FILE = re.compile(r"checkpoint_epoch_(\d+)\.pth$")


def checkpoint_path(ckpt_dir: str | Path, epoch: int) -> Path:
    return Path(ckpt_dir) / f"checkpoint_epoch_{epoch:04d}.pth"


def checkpoint_epoch(path: str | Path) -> int:
    """The epoch in a training checkpoint's file name (checkpoint_epoch_NNNN.pth)."""
    match = _EPOCH_FILE.search(Path(path).name)
    if match is None:
        raise ValueError(f"not a training checkpoint's name: {Path(path).name}")
    return int(match.group(1))


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Training-state checkpoints in `ckpt_dir`, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _EPOCH_FILE.search(p.name))]
    return [p for _, p in sorted(found)]


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    atomic.torch_save(state, path)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """A training-state checkpoint, read safely (training.core.checkpoint_io)."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not {"G", "D", "state", "config"} <= state.keys():
        raise DataError(f"{path} is not a training checkpoint of this toolkit")
    return state


def generated_class(config: Any) -> str | None:
    """The class a generator makes: the minority class, `all` for one trained on every class, None
    for a conditional one (which makes any class on demand)."""
    if config.model.conditional:
        return None
    return config.data.minority_class if config.data.train_on == "minority" else "all"


def save_generator(path: str | Path, generator: torch.nn.Module, config: Any, *, epoch: int,
                   metrics: dict | None = None, class_names: list[str] | None = None) -> None:
    """Save a lean, self-describing generator (weights on CPU + what is needed to rebuild it)."""
    atomic.torch_save({
        "format": GENERATOR_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in generator.state_dict().items()},
        "model": to_dict(config.model),
        "data": to_dict(config.data),
        "class_name": generated_class(config),
        "class_names": class_names or [config.data.minority_class],   # what it learned (a conditional G's labels)
        "run_name": config.output.name,
        "epoch": epoch,
        "metrics": metrics or {},
        "config": to_dict(config),
    }, path)


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a generator saved by `save_generator`; returns (G in eval mode, its record)."""
    path = Path(path)
    record = read_record(path, GENERATOR_FORMAT, "generator checkpoint", "final_generator.pth or best_generator.pth")
    missing = [key for key in _GENERATOR_KEYS if key not in record]
    if missing or not isinstance(record["model"], dict) or not isinstance(record["data"], dict):
        raise DataError(f"{path} lacks {', '.join(repr(k) for k in missing) or 'a model or data section'}: a damaged "
                        "or edited generator checkpoint")
    if not isinstance(record["epoch"], int) or isinstance(record["epoch"], bool):
        raise DataError(f"{path}: its 'epoch' must be a whole number, got {short_repr(record['epoch'])}")
    model = from_dict(ModelConfig, record["model"], source=str(path))
    data = from_dict(DataConfig, record["data"], source=str(path))
    generator = build_generator(model, data, len(record.get("class_names") or []))
    load_weights(generator, record["state_dict"], path)      # every key and shape, or one line
    return generator.to(device).eval(), record
