"""The generator and discriminator: the DCGAN family (training/gan/dcgan.py), built from the config."""

from __future__ import annotations

from training.gan.dcgan import build_discriminator, build_generator

__all__ = ["build_discriminator", "build_generator"]
