"""The registries of generator and discriminator families (`model.arch`), filled by each family module."""

from __future__ import annotations

from training.core.registry import Registry

GENERATORS = Registry("generator architecture", "model.arch")
DISCRIMINATORS = Registry("discriminator architecture", "model.arch")
