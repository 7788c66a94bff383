"""Loading a class of a processed dataset into memory as one uint8 tensor.

Minority sets are hundreds to a few thousand images, so they live in memory as (N, C, H, W)
uint8 and batches are plain index lookups: no worker processes, no per-step decoding.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from training.core.errors import DataError
from training.data.images import is_image_file, read_image, resize, to_channels


def class_dir(root: str | Path, split: str, class_name: str) -> Path:
    """The folder of one class in one split, with a clear error when it is missing or empty."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root} (make it with training/prepare_data.py)")
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"{root} has no {split}/ folder")
    folder = split_dir / class_name
    if not folder.is_dir():
        known = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
        raise DataError(f"class '{class_name}' not found in {split_dir} (classes: {', '.join(known) or 'none'})")
    return folder


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not files:
        raise DataError(f"{folder} holds no images")
    return files


def list_classes(split_dir: str | Path) -> list[str]:
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"folder not found: {split_dir}")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir} has no class sub-folders")
    return classes


def load_images(files: list[Path], image_size: int, channels: int) -> torch.Tensor:
    """Decode, check channels, resize; returns uint8 (N, channels, image_size, image_size)."""
    out = np.empty((len(files), image_size, image_size, channels), dtype=np.uint8)
    for i, path in enumerate(files):
        out[i] = resize(to_channels(read_image(path), channels, path), image_size)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def load_class(root: str | Path, split: str, class_name: str, image_size: int, channels: int) -> torch.Tensor:
    """All images of `class_name` in `split`, as uint8 (N, C, H, W)."""
    return load_images(list_images(class_dir(root, split, class_name)), image_size, channels)


def load_split(root: str | Path, split: str, image_size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """All classes of a split: images uint8 (N, C, H, W), labels int64 (N,), class names."""
    classes = list_classes(Path(root) / split)
    images, labels = [], []
    for label, name in enumerate(classes):
        x = load_class(root, split, name, image_size, channels)
        images.append(x)
        labels.append(torch.full((len(x),), label, dtype=torch.int64))
    return torch.cat(images), torch.cat(labels), classes


def tensor_digest(images: torch.Tensor) -> str:
    """Short content hash of an image tensor: a cache key that changes whenever the data changes."""
    digest = hashlib.sha256(str(tuple(images.shape)).encode())
    digest.update(images.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range G produces."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding to nearest."""
    return images.add(1.0).mul_(127.5).add_(0.5).clamp_(0, 255).to(torch.uint8)


# Errors that only the destination can cause: a full disk or quota, a file too large, a read-only mount.
_DESTINATION_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` as `dst` (copy where links are impossible); never writes onto an existing file,
    which could be a link back into an input folder. A full disk is reported against `dst` (the copy's
    OSError names the source it read, which is not at fault)."""
    if dst.exists():
        raise DataError(f"two inputs map to the same file {dst.name}; nothing was written")
    try:
        os.link(src, dst)
    except OSError:            # another filesystem, or links not allowed
        try:
            shutil.copy2(src, dst)
        except OSError as err:
            if err.errno in _DESTINATION_ERRORS:
                raise OSError(err.errno, err.strerror, str(dst)) from err
            raise
