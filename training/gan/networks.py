"""Generator and discriminator families, found by name (`model.arch`).

Each family module (dcgan.py, ...) defines its builders and registers them with
`@GENERATORS.register(name)` / `@DISCRIMINATORS.register(name)` (training/gan/architectures.py);
importing the family here is what makes its name known.
"""

from __future__ import annotations

from torch import nn

from training.gan import dcgan, resnet  # noqa: F401  (register "dcgan", "resnet")
from training.gan.architectures import DISCRIMINATORS, GENERATORS


def build_generator(model, data, num_classes: int = 0) -> nn.Module:
    """G of family `model.arch` from the `model` and `data` config sections (`num_classes`: conditional)."""
    return GENERATORS[model.arch](model, data, num_classes)


def build_discriminator(model, data, loss_name: str, num_classes: int = 0) -> nn.Module:
    """D of family `model.arch`; `loss_name` decides its normalisation."""
    return DISCRIMINATORS[model.arch](model, data, loss_name, num_classes)


def names() -> list[str]:
    return sorted(GENERATORS)
