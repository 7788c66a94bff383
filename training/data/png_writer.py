"""The worker side of bulk synthesis: encode uint8 images as PNG and write them atomically.

Kept apart from `training.synthesis.sampling` so that worker processes import only numpy and Pillow, never
torch: a pool of them starts in milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from training.data.images import encode_png, pixel_sha256

# zlib level 1: 2.5x faster than Pillow's default 6 on 64 px GAN samples, for files ~35 % larger
# (2.3 KB instead of 1.7 KB); lossless either way. Bulk synthesis is where the time goes.
COMPRESS_LEVEL = 1
TMP_SUFFIX = ".tmp"     # a file being written is .<name>.<pid>.tmp until its rename


def write_pngs(folder: str, names: list[str], pixels: np.ndarray) -> list[str]:
    """Write `pixels[i]` ((H, W, C) uint8) to `folder/names[i]`; return each image's pixel SHA-256.

    Grey images are stored and hashed as (H, W), like `prepare_data.py` does, so the hashes are
    comparable with a processed dataset's `manifest.csv`. Each file appears in one rename: a killed
    run never leaves a truncated PNG under a final name.
    """
    hashes = []
    for name, image in zip(names, pixels):
        image = image[:, :, 0] if image.shape[2] == 1 else image
        # A predictable temporary name (one writer per file): mkstemp's random names made ext4
        # file creation ~10x slower once the folder held a few thousand files.
        tmp = Path(folder) / f".{name}.{os.getpid()}{TMP_SUFFIX}"
        try:
            with open(tmp, "wb") as f:
                f.write(encode_png(image, COMPRESS_LEVEL))
            os.replace(tmp, Path(folder) / name)
        finally:
            tmp.unlink(missing_ok=True)
        hashes.append(pixel_sha256(image))
    return hashes


def stale_temporaries(folder: Path, names: set[str] | None = None) -> list[Path]:
    """Temporary files a killed writer left in `folder`: all of them, or those of the given final names."""
    found = []
    for tmp in folder.glob(f".synthetic_*{TMP_SUFFIX}"):
        name = tmp.name[1:-len(TMP_SUFFIX)].rpartition(".")[0]      # .<name>.<pid>.tmp -> <name>
        if names is None or name in names:
            found.append(tmp)
    return found
