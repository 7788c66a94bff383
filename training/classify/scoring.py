"""Scores of a classifier: class probabilities of uint8 tensors or of images in memory, the positive class's score.

The one place a classifier turns images into probabilities: training, evaluation, the K+1 GAN,
the synthesis filter and pseudo-labelling all score through these functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.classify.checkpoint import load_classifier
from training.core.errors import DataError
from training.core.precision import to_device
from training.data.folders import to_float


@torch.no_grad()
def class_probabilities(model: torch.nn.Module, images: torch.Tensor, device: torch.device,
                        batch_size: int = 256) -> np.ndarray:
    """Softmax over the class logits, (N, K) float64, for uint8 images (N, C, S, S); eval mode, fp32."""
    model.eval()
    probs = [torch.softmax(model(to_float(to_device(images[i:i + batch_size], device))).float(), 1).cpu()
             for i in range(0, len(images), batch_size)]
    return torch.cat(probs).numpy().astype(np.float64)


def positive_scores(model: torch.nn.Module, images: torch.Tensor, positive: int, device: torch.device,
                    batch_size: int = 256) -> np.ndarray:
    """P(positive class) per image, (N,) float64."""
    return class_probabilities(model, images, device, batch_size)[:, positive]


@dataclass(frozen=True)
class PixelScorer:
    """A saved classifier as a function of images in memory: uint8 (N, H, W, C) -> class probabilities (N, K).

    Images of another size are resized (bilinear, antialiased) to the classifier's; a one-image batch
    is scored as a pair, so batch norm in eval mode and every kernel see the same shapes and an image's
    score does not depend on how many it was scored with.
    """

    model: torch.nn.Module
    class_names: list[str]
    image_size: int
    channels: int
    device: torch.device

    @torch.no_grad()
    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if pixels.shape[3] != self.channels:
            raise DataError(f"the classifier expects {self.channels}-channel images, got {pixels.shape[3]}")
        x = to_float(torch.from_numpy(pixels).permute(0, 3, 1, 2))
        x = x if len(x) > 1 else x.repeat(2, 1, 1, 1)
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return torch.softmax(self.model(x.to(self.device)), 1)[:len(pixels)].cpu().numpy()


def load_pixel_scorer(path: str | Path, device: torch.device | str = "cpu") -> PixelScorer:
    """The classifier saved at `path` (best_model.pth) as a `PixelScorer`."""
    model, record = load_classifier(path, device)
    data = record["config"]["data"]
    return PixelScorer(model, record["class_names"], data["image_size"], data["channels"], torch.device(device))
