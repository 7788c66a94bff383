"""Reading and writing image files, with one-line errors for the ways they go wrong.

Images travel through the project as uint8 numpy arrays, (H, W) for grey and (H, W, 3) for RGB,
and as uint8 torch tensors (N, C, H, W) once stacked for training.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from training.core.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 (H, W) grey or (H, W, 3) RGB; alpha is dropped."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                top = 65535.0 if arr.max() > 255 else 255.0
                return np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
            if img.mode in ("L", "LA", "1"):
                return np.asarray(img.convert("L"))
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except Image.DecompressionBombError:
        raise DataError(f"refusing to decode {path}: its size would exceed Pillow's decompression-bomb limit") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def encode_png(pixels: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG bytes of a uint8 grey or RGB array (deterministic for the same pixels and level)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def pixel_sha256(pixels: np.ndarray) -> str:
    """Hash of the decoded pixel content (shape included), independent of the file format."""
    digest = hashlib.sha256(f"{pixels.dtype}{pixels.shape}".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def to_channels(pixels: np.ndarray, channels: int, path: str | Path) -> np.ndarray:
    """Return (H, W, C) with the requested channel count, or refuse a real mismatch.

    An RGB file whose three channels are identical is accepted as grey (a common way of saving
    ultrasound or X-ray); colour content is never silently thrown away, and grey is never
    silently painted into three channels.
    """
    if pixels.ndim == 2:
        if channels == 1:
            return pixels[:, :, None]
        raise DataError(f"{path} is greyscale but data.channels is 3 (set data.channels=1)")
    if channels == 3:
        return pixels
    if np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2]):
        return pixels[:, :, :1]
    raise DataError(f"{path} has 3 colour channels but data.channels is 1 (set data.channels=3)")


def resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize a (H, W) or (H, W, C) uint8 array to size x size with an anti-aliased filter."""
    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels
    squeeze = pixels.ndim == 3 and pixels.shape[2] == 1
    img = Image.fromarray(pixels[:, :, 0] if squeeze else pixels)
    out = np.asarray(img.resize((size, size), Image.Resampling.LANCZOS))
    return out[:, :, None] if squeeze else out
