"""What a generator takes as input, and how it is drawn.

A generator's latent vector z (length `z_dim`) is `noise_dim` standard-normal values followed, for an
InfoGAN, by its codes: one categorical code as a one-hot of `info_categories` values, then
`info_continuous` values uniform in [-1, 1]. A conditional generator also takes class labels, given
beside z. Training, metrics, grids and bulk synthesis all draw latents here, so a latent seed means
the same image everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.core.errors import UserError


@dataclass(frozen=True)
class LatentSpec:
    noise_dim: int
    num_classes: int = 0          # > 0: a conditional generator, labels in [0, num_classes)
    info_categories: int = 0      # > 0: an InfoGAN categorical code with this many values
    info_continuous: int = 0      # InfoGAN continuous codes, each uniform in [-1, 1]

    @property
    def z_dim(self) -> int:
        return self.noise_dim + self.info_categories + self.info_continuous

    @property
    def has_codes(self) -> bool:
        return self.info_categories > 0 or self.info_continuous > 0

    def code_names(self) -> list[str]:
        """The names `--fix_code` and `--sweep_code` accept: `cat`, `cont0`, `cont1`, ..."""
        return (["cat"] if self.info_categories else []) + [f"cont{i}" for i in range(self.info_continuous)]


def draw(spec: LatentSpec, num: int, generator: torch.Generator) -> torch.Tensor:
    """`num` latents (num, z_dim) on CPU; for one seed, the first rows never depend on `num`."""
    noise = torch.randn(num, spec.noise_dim, generator=generator)
    parts = [noise]
    if spec.info_categories:
        category = torch.randint(spec.info_categories, (num,), generator=generator)
        parts.append(F.one_hot(category, spec.info_categories).float())
    if spec.info_continuous:
        parts.append(torch.rand(num, spec.info_continuous, generator=generator) * 2 - 1)
    return torch.cat(parts, 1)


def split_codes(spec: LatentSpec, z: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The InfoGAN codes inside z: (category indices (B,) or None, continuous values (B, k) or None)."""
    start = spec.noise_dim
    category = z[:, start:start + spec.info_categories].argmax(1) if spec.info_categories else None
    start += spec.info_categories
    continuous = z[:, start:start + spec.info_continuous] if spec.info_continuous else None
    return category, continuous


def set_code(spec: LatentSpec, z: torch.Tensor, name: str, value: float) -> torch.Tensor:
    """z with one InfoGAN code fixed: `cat` to a category index, `contN` to a value."""
    z = z.clone()
    if name == "cat" and spec.info_categories:
        if value != int(value) or not 0 <= value < spec.info_categories:
            raise UserError(f"code 'cat' takes a category 0..{spec.info_categories - 1}, not {value}")
        z[:, spec.noise_dim:spec.noise_dim + spec.info_categories] = F.one_hot(
            torch.tensor(int(value)), spec.info_categories).float()
        return z
    if name.startswith("cont") and name[4:].isdigit() and int(name[4:]) < spec.info_continuous:
        z[:, spec.noise_dim + spec.info_categories + int(name[4:])] = value
        return z
    known = ", ".join(spec.code_names()) or "none: this generator has no InfoGAN codes"
    raise UserError(f"unknown latent code '{name}' (codes: {known})")


def code_values(spec: LatentSpec, name: str, steps: int = 8) -> list[float]:
    """The values a sweep of one code walks through: every category, or `steps` points of [-2, 2]."""
    set_code(spec, torch.zeros(1, spec.z_dim), name, 0.0)     # validates the name
    if name == "cat":
        return [float(c) for c in range(spec.info_categories)]
    return torch.linspace(-2, 2, steps).tolist()           # beyond the training range [-1, 1], as InfoGAN shows


def class_labels(spec: LatentSpec, num: int, label: int | None = None, per_row: int = 1) -> torch.Tensor | None:
    """Labels for a conditional generator (None for others): all `label`, or else the classes taking
    turns every `per_row` images (so a grid with rows of `per_row` shows one class per row)."""
    if not spec.num_classes:
        return None
    if label is not None:
        if not 0 <= label < spec.num_classes:
            raise UserError(f"class index {label} is outside 0..{spec.num_classes - 1}")
        return torch.full((num,), label, dtype=torch.int64)
    return (torch.arange(num) // per_row) % spec.num_classes
