"""DiffAugment (Zhao et al., NeurIPS 2020): differentiable augmentations applied to every image D sees.

D is shown augmented reals and augmented fakes, and G's gradient flows through the same ops, so
the augmentations do not leak into the generated images. On minority sets of a few hundred images
this is what keeps D from memorising the training set and G from collapsing.
Images are float (B, C, H, W) in [-1, 1]; randomness comes from torch's global generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.core.errors import ConfigError
from training.core.registry import Registry

# The ops a policy names, e.g. "color,translation,cutout".
AUGMENTS = Registry("DiffAugment op", "train.diffaugment")


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.rand(x.shape[0], 1, 1, 1, device=x.device) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, device=x.device) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, device=x.device) + 0.5) + mean


@AUGMENTS.register("translation")
def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its size, filling with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp(0, h + 1)   # (B, H, 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp(0, w + 1)   # (B, 1, W)
    padded = F.pad(x, [1, 1, 1, 1])                                                      # zero border
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


@AUGMENTS.register("cutout")
def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a random square of `ratio` x the image size (centre anywhere, clipped at the border)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h, (b, 1, 1), device=x.device) - ch // 2
    left = torch.randint(0, w, (b, 1, 1), device=x.device) - cw // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1) - top         # (B, H, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w) - left        # (B, 1, W)
    inside = (rows >= 0) & (rows < ch) & (cols >= 0) & (cols < cw)      # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


@AUGMENTS.register("color")
def color(x: torch.Tensor) -> torch.Tensor:
    return contrast(saturation(brightness(x)))


def check_policy(policy: str | None, key: str = "train.diffaugment") -> None:
    """A one-line config error when `policy` names an op that does not exist."""
    for name in (policy or "").split(","):
        if policy and name.strip() not in AUGMENTS:
            raise ConfigError(f"'{key}' has unknown op '{name.strip()}' (known: {', '.join(AUGMENTS)})")


def diff_augment(x: torch.Tensor, policy: str | None, p: float = 1.0) -> torch.Tensor:
    """Apply the comma-separated `policy` (e.g. 'color,translation,cutout'); None = identity.

    With p < 1 each op is applied to each image with probability p (adaptive augmentation, where
    p follows D's overfitting); the draws are per image, so a batch mixes plain and augmented ones.
    """
    if not policy or p <= 0:
        return x
    for name in policy.split(","):
        op = AUGMENTS[name.strip()]
        if p >= 1:
            x = op(x)
        else:
            chosen = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p).to(x.dtype)
            x = chosen * op(x) + (1 - chosen) * x
    return x.contiguous()


class AdaptiveProbability:
    """The ADA heuristic (Karras et al., NeurIPS 2020) for DiffAugment's probability p.

    r = E[sign(D(real))] over the last `interval` D steps measures overfitting: near 0 when D cannot
    tell real from fake, near 1 when it is sure of every training image. p rises when r is above
    `target` and falls below it, by at most 1 over `speed_images` real images shown.
    """

    def __init__(self, target: float, speed_images: int, batch_size: int, interval: int = 4, p: float = 0.0):
        self.target, self.step = target, batch_size * interval / speed_images
        self.interval, self.p, self._signs, self._count = interval, p, 0.0, 0

    def observe(self, sign_sum: float, count: int) -> None:
        """Add one D step: the sum of sign(D(real)) over its `count` real images (all ranks' under torchrun)."""
        self._signs += sign_sum
        self._count += count
        if self._count >= self.interval * count:
            r = self._signs / self._count
            self.p = min(1.0, max(0.0, self.p + (self.step if r > self.target else -self.step)))
            self._signs, self._count = 0.0, 0

    def state_dict(self) -> dict:
        return {"p": self.p, "signs": self._signs, "count": self._count}

    def load_state_dict(self, state: dict) -> None:
        self.p, self._signs, self._count = state["p"], state["signs"], state["count"]
