"""Reading and writing image files, with one-line errors for the ways they go wrong.

Images travel through the project as uint8 numpy arrays, (H, W) for grey and (H, W, 3) for RGB,
and as uint8 torch tensors (N, C, H, W) once stacked for training.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from training.core.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")        # grey stored with more than 8 bits per pixel
ORIENTATION_TAG = 0x0112                                 # EXIF: how a camera held the sensor (1: upright)


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_image(path: str | Path, high_bit_top: int | None = None) -> np.ndarray:
    """Decode an image file to uint8 (H, W) grey or (H, W, 3) RGB (see `read_image_and_mode`)."""
    return read_image_and_mode(path, high_bit_top)[0]


def read_image_and_mode(path: str | Path, high_bit_top: int | None = None) -> tuple[np.ndarray, str]:
    """`read_image`'s pixels and the file's own colour mode as Pillow names it ('L', 'RGB', 'P', 'RGBA', ...):
    what prepare_data.py reports, since a grey scan saved as RGB is grey in content but RGB on disk.

    A grey image of more than 8 bits is scaled to 0-255 by `high_bit_top`, the largest value of its data
    set's bit depth (prepare_data.py finds it over every file, so that a 12-bit scan stored in a 16-bit PNG
    neither turns black nor gets a brightness of its own), else by 65,535."""
    pixels, mode = read_stored(path)
    if mode in HIGH_BIT_MODES:
        top = float(high_bit_top or 65535)
        pixels = np.clip(pixels.astype(np.float64) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return pixels, mode


def read_stored(path: str | Path) -> tuple[np.ndarray, str]:
    """The pixels as stored, upright (the EXIF orientation a camera records is applied) and with transparent
    pixels black (as padding is): uint8 (H, W) or (H, W, 3), or the integer values of a grey image of more
    than 8 bits (HIGH_BIT_MODES); and the file's colour mode."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if img.getexif().get(ORIENTATION_TAG, 1) != 1:      # only a camera's file: no copy of every other image
                img = ImageOps.exif_transpose(img)
            if mode in HIGH_BIT_MODES:
                return np.asarray(img, dtype=np.int64), mode
            if "A" in img.mode or "transparency" in img.info:
                rgba = img.convert("LA" if img.mode in ("LA", "L") else "RGBA")
                base = Image.new(rgba.mode, rgba.size, 0)
                img = Image.alpha_composite(base, rgba) if rgba.mode == "RGBA" else _composite_grey(rgba)
            if img.mode in ("L", "LA", "1"):
                return np.asarray(img.convert("L")), mode
            return np.asarray(img.convert("RGB")), mode
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except Image.DecompressionBombError:
        raise DataError(f"refusing to decode {path}: its size would exceed Pillow's decompression-bomb limit") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def _composite_grey(la: Image.Image) -> Image.Image:
    """An 'LA' image over black: each pixel's grey value times its opacity."""
    grey, alpha = (np.asarray(band, dtype=np.uint16) for band in la.split())
    return Image.fromarray(((grey * alpha + 127) // 255).astype(np.uint8), "L")


def high_bit_top(peak: int) -> int:
    """The largest value of the smallest bit depth (8 to 32 bits) that holds `peak`: 3,632 -> 4,095 (12 bits)."""
    bits = max(8, int(peak).bit_length())
    return (1 << bits) - 1


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


def classifier_size_problem(real_sides: set[int], synthetic_sides: set[int], size: int) -> tuple[str, str] | None:
    """(why, the setting that works, e.g. 'data.image_size = 32') when a classifier trained at `size` px
    would see real and synthetic training images arrive by different resizing paths; None when both arrive
    alike.

    A classifier can learn the path instead of the class: every synthetic image is of the class the GAN
    learned. Upsampling only some images leaves those blurry. And where the GAN upsampled the real images
    to learn them (28 px scans, a 32 px GAN), only its resolution is safe: at 28 px the synthetic images
    would be resampled down and the real ones not, and a small CNN tells BreastMNIST's real malignant scans
    from its GAN's at AUC 0.82 that way, against 0.63 at 32 px, where the real images are upsampled as the
    GAN's training images were (bench/bench_resize_path.py, docs/results.md). `real_sides` and
    `synthetic_sides` are the images' shorter sides before resizing.
    """
    if len(real_sides) > 1 and min(real_sides) < size:
        return (f"the real training images come in sizes {sorted(real_sides)} px and data.image_size is {size}: "
                "upsampling some of them more than others would let the classifier learn blur instead of the class",
                f"data.image_size <= {min(real_sides)}")
    if len(synthetic_sides) == 1 and min(real_sides, default=size) < min(synthetic_sides):
        made_at = min(synthetic_sides)
        if size == made_at:
            return None
        return (f"the synthetic images are {made_at} px, from a GAN that learned real images upsampled from "
                f"{min(real_sides)} px: at {size} px they would be resampled and the real ones resized from their "
                "own size, a difference of origin a classifier can learn instead of the class (at the GAN's size "
                "every real image takes the path the GAN's training images took)", f"data.image_size = {made_at}")
    sides = real_sides | synthetic_sides
    if len(sides) > 1 and min(sides) < size:
        return (f"train images come in sizes {sorted(sides)} px and data.image_size is {size}: upsampling only the "
                "synthetic ones would let the classifier learn 'blurry means synthetic'", f"data.image_size <= {min(sides)}")
    return None


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
