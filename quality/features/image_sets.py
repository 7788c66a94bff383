"""The two folders QA compares, loaded as uint8 tensors (N, C, H, W) of one size and channel count.

The checks work at the synthetic images' size (the generator's resolution) with the real images'
channel count, unless the caller fixes them; images of another size are resized and counted, so
the report can say so.
Unreadable files are skipped and recorded rather than stopping a QA run over one bad PNG; a folder
with no readable image, or a grey set compared with a colour set, is an error.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.core.errors import DataError
from training.core.progress import progress
from training.data.folders import list_images
from training.data.images import read_image, resize
from training.data.synthetic_folder import OWN_FILES

DEFAULT_MAX_IMAGES = 2000     # per set: keeps the O(N^2) neighbour searches to seconds on a CPU


@dataclass(frozen=True)
class DecodedFolder:
    """The readable images of one folder, still at their own sizes and channel counts."""

    role: str                   # "real" or "synthetic", for messages
    folder: Path
    files: list[Path]           # readable files, in the order of `pixels`
    pixels: list[np.ndarray]    # uint8 (H, W) or (H, W, 3)
    num_found: int              # image files in the folder before any subsampling
    skipped: list[dict]         # unreadable files: {"path", "reason"}


@dataclass(frozen=True)
class ImageSet:
    """One side of the comparison, ready for the checks."""

    role: str
    folder: Path
    files: list[Path]
    images: torch.Tensor        # uint8 (N, C, H, W)
    num_found: int
    skipped: list[dict]
    num_resized: int            # images whose size differed from the QA size
    sizes_found: list[str]      # distinct "HxW" sizes of the files, before resizing

    @classmethod
    def in_memory(cls, role: str, images: torch.Tensor) -> ImageSet:
        """uint8 (N, C, H, W) images that were never files (a GAN's samples), named role_NNNNNN."""
        files = [Path(f"{role}_{i:06d}") for i in range(len(images))]
        return cls(role, Path("<memory>"), files, images, len(images), [], 0, [])

    def names(self) -> list[str]:
        """File names, in the order of `images`."""
        return [p.name for p in self.files]

    def describe(self) -> dict:
        """JSON-ready counts for the report."""
        return {"folder": str(self.folder), "num_found": self.num_found, "num_used": len(self.files),
                "num_unreadable": len(self.skipped), "unreadable": self.skipped[:20],
                "num_resized": self.num_resized, "sizes_found": self.sizes_found}


def purpose_rng(seed: int, purpose: str) -> np.random.Generator:
    """A generator for one purpose (subsampling, splitting, ...) derived from the run's seed.

    Each purpose gets its own stream, so adding a random step elsewhere never changes this one.
    """
    return np.random.default_rng([seed, zlib.crc32(purpose.encode())])


def image_files(folder: str | Path, role: str) -> list[Path]:
    """The image files directly in `folder`.

    Sub-folders (such as rejected/), non-images and the grids the toolkit writes beside the samples
    (preview_grid.png, selection_scores.png) are not part of the set.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{role} folder not found: {folder}")
    files = [p for p in list_images(folder) if p.name not in OWN_FILES]
    if not files:
        raise DataError(f"{role} folder {folder} holds no images")
    return files


def decode_folder(folder: str | Path, role: str, max_images: int | None, seed: int) -> DecodedFolder:
    """Read up to `max_images` images of `folder` (a seeded random subset when there are more)."""
    files = image_files(folder, role)
    num_found = len(files)
    if max_images is not None and num_found > max_images:
        keep = np.sort(purpose_rng(seed, f"subsample-{role}").choice(num_found, max_images, replace=False))
        files = [files[i] for i in keep]
    readable, pixels, skipped = [], [], []
    for path in progress(files, desc=f"reading {role} images", unit="img"):
        try:
            pixels.append(read_image(path))
            readable.append(path)
        except DataError as err:
            skipped.append({"path": str(path), "reason": str(err)})
    if not pixels:
        raise DataError(f"{role} folder {folder} holds no readable images ({len(skipped)} unreadable)")
    return DecodedFolder(role, Path(folder), readable, pixels, num_found, skipped)


def is_colour(pixels: np.ndarray) -> bool:
    """True for RGB whose channels differ; grey saved as RGB (R == G == B) counts as grey."""
    if pixels.ndim == 2:
        return False
    return not (np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2]))


def holds_colour(decoded: DecodedFolder) -> bool:
    """Whether any image of the folder has real colour."""
    return any(is_colour(p) for p in decoded.pixels)


def check_colour_modes(real: DecodedFolder, synthetic: DecodedFolder, channels: int) -> None:
    """Refuse comparing grey with colour images, and --channels 1 on colour images."""
    real_colour, synthetic_colour = holds_colour(real), holds_colour(synthetic)
    if real_colour != synthetic_colour:
        mode = {True: "colour (RGB)", False: "grey"}
        raise DataError(f"channel mismatch: real folder {real.folder} holds {mode[real_colour]} images but "
                        f"synthetic folder {synthetic.folder} holds {mode[synthetic_colour]} images")
    if channels == 1 and real_colour:
        raise DataError(f"{real.folder} and {synthetic.folder} hold colour images; --channels 1 would throw the "
                        "colour away (use --channels 3)")


def default_format(real: DecodedFolder, synthetic: DecodedFolder) -> tuple[int, int]:
    """(image size, channels) the checks work in: the synthetic images' size (the shorter side of a
    non-square one), the real images' channels.

    A generator is trained on real images resized to its own resolution (e.g. 64 px data, 32 px GAN;
    28 px BreastMNIST, 32 px GAN), so that is the resolution at which the two sets are comparable: the
    real images take the same resizing path the generator's training images took, as in the training
    metrics. Resizing the synthetic images instead would give them a path of their own, a difference
    of origin that the detectability check would rightly count against them.
    """
    return int(min(synthetic.pixels[0].shape[:2])), 1 if real.pixels[0].ndim == 2 else 3


def conform(pixels: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 (size, size, channels); colour modes were checked by `check_colour_modes`."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] != channels:
        # grey -> RGB repeats the one channel; RGB (R == G == B) -> grey keeps the first.
        pixels = np.repeat(pixels, 3, axis=2) if channels == 3 else pixels[:, :, :1]
    return resize(pixels, size)


def stack(decoded: DecodedFolder, size: int, channels: int) -> ImageSet:
    """All images of `decoded` in one uint8 (N, C, size, size) tensor."""
    out = np.empty((len(decoded.pixels), size, size, channels), dtype=np.uint8)
    num_resized = 0
    for i, pixels in enumerate(decoded.pixels):
        num_resized += pixels.shape[0] != size or pixels.shape[1] != size
        out[i] = conform(pixels, size, channels)
    images = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    sizes = sorted({f"{p.shape[0]}x{p.shape[1]}" for p in decoded.pixels})
    return ImageSet(decoded.role, decoded.folder, decoded.files, images, decoded.num_found, decoded.skipped,
                    int(num_resized), sizes)


def load_pair(real_dir: str | Path, synthetic_dir: str | Path, *, image_size: int | None = None,
              channels: int | None = None, max_images: int | None = DEFAULT_MAX_IMAGES,
              seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Load both folders in one format: `image_size`/`channels`, or `default_format`'s."""
    if image_size is not None and not 8 <= image_size <= 1024:
        raise DataError("--image_size must be between 8 and 1024")
    real = decode_folder(real_dir, "real", max_images, seed)
    synthetic = decode_folder(synthetic_dir, "synthetic", max_images, seed)
    default_size, default_channels = default_format(real, synthetic)
    size, channels = image_size or default_size, channels or default_channels
    check_colour_modes(real, synthetic, channels)
    return stack(real, size, channels), stack(synthetic, size, channels)


def to_unit(images: torch.Tensor) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 numpy in [0, 1], the scale every pixel statistic is reported in."""
    return images.numpy().astype(np.float32) / 255.0


def flatten(unit: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, C*H*W): one pixel vector per image."""
    return unit.reshape(len(unit), -1)


def pixel_hashes(images: torch.Tensor) -> list[str]:
    """Content hash of each uint8 image: for exact copies, and for which images an encoder trained on."""
    return [hashlib.sha256(image.contiguous().numpy().tobytes()).hexdigest() for image in images]
