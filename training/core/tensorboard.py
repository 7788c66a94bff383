"""Optional TensorBoard logging (`output.tensorboard: true`), as StudioGAN and stylegan2-ada users watch runs.

TensorBoard is an optional dependency: without it a run says so once and carries on; the JSON and
PNG outputs are written either way and stay the record of the run.
"""

from __future__ import annotations

from pathlib import Path

import torch


class TensorBoardLog:
    """Scalars and image grids for `tensorboard --logdir results/gan`; a no-op when disabled or absent."""

    def __init__(self, log_dir: Path, enabled: bool):
        self.writer = None
        if not enabled:
            return
        try:  # optional: imported only when asked for
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("note: output.tensorboard is on but the tensorboard package is not installed "
                  "(pip install tensorboard); logging to JSON and PNG only")
            return
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, step: int, values: dict, prefix: str) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def image_grid(self, step: int, tag: str, images: torch.Tensor, nrow: int) -> None:
        """A grid of float images in [-1, 1], (B, C, H, W)."""
        if self.writer is None:
            return
        from torchvision.utils import make_grid  # light, and only needed here
        self.writer.add_image(tag, make_grid((images + 1) / 2, nrow=nrow).clamp(0, 1), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
