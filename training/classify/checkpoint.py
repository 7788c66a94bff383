"""best_model.pth: one classifier checkpoint format, written by `train_classifier` and the K+1 GAN alike.

The record holds the weights (on the CPU), the classifier config that rebuilds the network, the
class names, the positive class and the decision threshold chosen on validation, so a user of the
file needs no YAML. Read safely (weights_only) by `load_classifier`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training.classify.config import ClassifierConfig
from training.classify.networks import build_classifier
from training.core import atomic
from training.core.checkpoint_io import load_weights, read_record
from training.core.config import from_dict, to_dict

CHECKPOINT_FORMAT = "medgan-classifier/1"
CHECKPOINT_FILE = "best_model.pth"


def save_classifier(path: str | Path, model: torch.nn.Module, config: ClassifierConfig, names: list[str],
                    positive: int, *, threshold: float, seed: int, best_epoch: int, **extra: Any) -> None:
    """Write the record atomically; `extra` adds provenance (e.g. trained_by, the K+1 GAN's own config)."""
    atomic.torch_save({"format": CHECKPOINT_FORMAT, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                       "config": to_dict(config), "class_names": names, "positive_class": names[positive],
                       "threshold": threshold, "seed": seed, "best_epoch": best_epoch, **extra}, path)


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """A classifier saved by `save_classifier`, in eval mode, and its record."""
    record = read_record(path, CHECKPOINT_FORMAT, "classifier", f"{CHECKPOINT_FILE} from train_classifier.py")
    config = from_dict(ClassifierConfig, record["config"], source=str(path))
    model = build_classifier(config.model, config.data.channels, config.data.image_size, len(record["class_names"]),
                             load_pretrained=False)
    load_weights(model, record["state_dict"], path)
    return model.to(device).eval(), record
