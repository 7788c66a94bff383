"""Contact sheet: random synthetic images beside random real ones, for a person to look at.

No number replaces looking: lesion borders, colour variation and anatomy are judged by eye. This
part has no verdict of its own; the report lists it as a manual item of the checklist.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from training.core import atomic

MAX_SHOWN = 64        # per side: an 8 x 8 grid
FIGURE = "visual_contact_sheet.png"


def sample_indices(num_images: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct random indices (all of them, shuffled, when there are fewer)."""
    return rng.permutation(num_images)[:count]


def grid_pixels(images: torch.Tensor) -> np.ndarray:
    """uint8 (N, C, H, W) -> one uint8 (H', W', 3) grid, about square."""
    from torchvision.utils import make_grid  # here: importing torchvision costs about a second per process

    nrow = max(1, math.ceil(math.sqrt(len(images))))
    images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    return make_grid(images, nrow=nrow, padding=2, pad_value=255).permute(1, 2, 0).numpy()


def plot_contact_sheet(synthetic: torch.Tensor, real: torch.Tensor, path: Path) -> None:
    """Synthetic grid on the left, real grid on the right."""
    fig = Figure(figsize=(12, 6.3))
    for ax, images, title in zip(fig.subplots(1, 2), (synthetic, real), ("synthetic", "real")):
        ax.imshow(grid_pixels(images), interpolation="nearest")
        ax.set_title(f"{title} (random {len(images)})")
        ax.axis("off")
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=120)


def contact_sheet(real: torch.Tensor, synthetic: torch.Tensor, out_dir: str | Path, rng: np.random.Generator,
                  count: int = MAX_SHOWN) -> dict:
    """Write the contact sheet of uint8 (N, C, H, W) sets; returns what was shown.

    Both sides show the same number of images, so neither looks more varied for having more.
    """
    count = min(count, len(real), len(synthetic))
    synthetic_shown = sample_indices(len(synthetic), count, rng)
    real_shown = sample_indices(len(real), count, rng)
    plot_contact_sheet(synthetic[torch.from_numpy(synthetic_shown)], real[torch.from_numpy(real_shown)],
                       Path(out_dir) / FIGURE)
    return {"num_synthetic_shown": len(synthetic_shown), "num_real_shown": len(real_shown),
            "synthetic_indices": synthetic_shown.tolist(), "real_indices": real_shown.tolist(),
            "note": "manual check: look for realistic texture, colours and shapes, and visible medical features",
            "figures": [FIGURE]}
