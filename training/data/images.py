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
    return read_image_and_mode(path)[0]


def read_image_and_mode(path: str | Path) -> tuple[np.ndarray, str]:
    """`read_image`'s pixels and the file's own colour mode as Pillow names it ('L', 'RGB', 'P', 'RGBA', ...):
    what prepare_data.py reports, since a grey scan saved as RGB is grey in content but RGB on disk."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                top = 65535.0 if arr.max() > 255 else 255.0
                return np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), img.mode
            if img.mode in ("L", "LA", "1"):
                return np.asarray(img.convert("L")), img.mode
            return np.asarray(img.convert("RGB")), img.mode
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
    """Resize a (H, W) or (H, W, C) uint8 array to size x size with an anti-aliased filter (a non-square
    one is squashed: prepare_data.py makes every image square first, by its --resize policy)."""
    return resize_to(pixels, size, size)


# How prepare_data.py makes a non-square image square (`--resize`). The default is `pad`: it is the one policy
# that keeps every pixel and every shape. `squash` changes aspect ratios, and with them the shapes a reader
# of the image relies on (a round lesion becomes an oval, left-right symmetry changes); `center_crop` cuts
# off the edges, where a finding can lie, without saying which. Padding adds black bands instead: black is
# the background of most scans (MRI, CT, X-ray, ultrasound), and prepare_data.py reports how many images of
# each class get bands, because bands whose width differs between classes would be a shortcut to the label.
RESIZE_POLICIES = ("pad", "center_crop", "squash")
DEFAULT_RESIZE = "pad"


def make_square(pixels: np.ndarray, policy: str, size: int | None = None) -> np.ndarray:
    """A (H, W) or (H, W, C) uint8 image made square by `policy` (RESIZE_POLICIES), then resized to `size`.

    Without `size`, the square keeps the image's own scale: `pad` gives a square of the longer side,
    `center_crop` and `squash` one of the shorter side (nothing is upsampled).
    """
    if policy not in RESIZE_POLICIES:
        raise DataError(f"--resize must be one of {', '.join(RESIZE_POLICIES)}, got {policy!r}")
    h, w = pixels.shape[:2]
    if h != w:
        if policy == "pad":
            side = max(h, w)
            out = np.zeros((side, side, *pixels.shape[2:]), dtype=pixels.dtype)
            top, left = (side - h) // 2, (side - w) // 2
            out[top:top + h, left:left + w] = pixels
            pixels = out
        elif policy == "center_crop":
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            pixels = pixels[top:top + side, left:left + side]
        else:
            pixels = resize_to(pixels, min(h, w), min(h, w))
    return pixels if size is None else resize(pixels, size)


def resize_to(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a (H, W) or (H, W, C) uint8 array to height x width with an anti-aliased filter."""
    if pixels.shape[0] == height and pixels.shape[1] == width:
        return pixels
    squeeze = pixels.ndim == 3 and pixels.shape[2] == 1
    img = Image.fromarray(pixels[:, :, 0] if squeeze else pixels)
    out = np.asarray(img.resize((width, height), Image.Resampling.LANCZOS))
    return out[:, :, None] if squeeze else out


def is_grey_content(pixels: np.ndarray) -> bool:
    """True for a (H, W) image, and for an RGB one whose three channels are identical (grey saved as RGB)."""
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        return True
    return bool(np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2]))


def to_mode(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(H, W) grey for `channels` 1, (H, W, 3) RGB for 3, as the processed dataset stores them.

    Grey content in an RGB array keeps its first channel exactly; real colour becomes grey by Pillow's
    luma (ITU-R 601), which only an explicit --channels 1 asks for. Grey becomes RGB by repeating it.
    """
    if channels == 1:
        if pixels.ndim == 2:
            return pixels
        if is_grey_content(pixels):
            return np.ascontiguousarray(pixels[..., 0])
        return np.asarray(Image.fromarray(pixels).convert("L"))
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    return pixels
