"""Generator and discriminator families, found by name (`model.arch`).

Each family module registers a `(build_generator, build_discriminator)` pair with `register`.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], Callable[..., nn.Module]]] = {}


def register(name: str, build_generator: Callable[..., nn.Module], build_discriminator: Callable[..., nn.Module]) -> None:
    _REGISTRY[name] = (build_generator, build_discriminator)


def build_generator(model, data, num_classes: int = 0) -> nn.Module:
    """G of family `model.arch` from the `model` and `data` config sections (`num_classes`: conditional)."""
    return _REGISTRY[model.arch][0](model, data, num_classes)


def build_discriminator(model, data, loss_name: str, num_classes: int = 0) -> nn.Module:
    """D of family `model.arch`; `loss_name` decides its normalisation."""
    return _REGISTRY[model.arch][1](model, data, loss_name, num_classes)


def names() -> list[str]:
    return sorted(_REGISTRY)


from training.networks import dcgan  # noqa: E402,F401  (registers "dcgan")
