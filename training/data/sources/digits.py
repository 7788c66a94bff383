"""The handwritten digits shipped with scikit-learn (`sklearn.datasets.load_digits`): real data, offline.

1,797 grey 8 x 8 images of the digits 0-9 (about 180 per class, UCI optdigits) with 17 grey levels.
They are scaled to 0-255 and upsampled to `image_size` (default 32 px) so the networks built for
MNIST-sized images take them unchanged; upsampling adds pixels, not detail. Each class is split into
train/val/test with a fixed seed (`assign_splits`, shared with the MNIST-family sources).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np
from sklearn.datasets import load_digits

from training.core.errors import DataError
from training.data.images import resize
from training.data.processed import Record

DIGITS_LEVELS = 16          # load_digits pixels are integers 0..16


def assign_splits(images: np.ndarray, labels: np.ndarray, fractions: dict[str, float], seed: int,
                  rest: str = "train") -> np.ndarray:
    """The split name of each image: per class, a seeded shuffle cut into `fractions`, the remainder `rest`.

    Images with identical pixels are kept together, so a duplicate cannot leak from train into a
    held-out split. The cut of class k depends on (seed, k) and that class's images alone.

    Args:
        images: (N, ...) uint8 pixels, used only to group identical images.
        labels: (N,) integer class labels.
        fractions: held-out split name -> share of each class, e.g. {"val": 0.1, "test": 0.2}.
        seed: the split seed.
        rest: the split that receives what is not held out.
    """
    out = np.full(len(labels), rest, dtype=object)
    for class_id in np.unique(labels):
        groups: dict[bytes, list[int]] = defaultdict(list)
        for index in np.flatnonzero(labels == class_id):
            groups[images[index].tobytes()].append(int(index))
        keys = sorted(groups)
        np.random.default_rng([seed, int(class_id)]).shuffle(keys)
        start = 0
        for split, fraction in fractions.items():
            count = round(len(keys) * fraction)
            for key in keys[start:start + count]:
                out[groups[key]] = split
            start += count
        if start >= len(keys):
            raise DataError(f"class {class_id} has {len(keys)} distinct images: too few to split")
    return out


def digits_splits(seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (1797, 8, 8) scaled to 0-255, their labels, and each one's split."""
    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / DIGITS_LEVELS)).astype(np.uint8)        # (1797, 8, 8)
    labels = digits.target.astype(np.int64)
    return pixels, labels, assign_splits(pixels, labels, {"val": val_fraction, "test": test_fraction}, seed)


def digits_records(seed: int = 0, image_size: int = 32, val_fraction: float = 0.1,
                   test_fraction: float = 0.2) -> tuple[Iterator[Record], int]:
    """Records of scikit-learn's digits (classes '0'..'9'), split per class with `seed`, and their count."""
    pixels, labels, splits = digits_splits(seed, val_fraction, test_fraction)

    def generate() -> Iterator[Record]:
        for index, (image, label, split) in enumerate(zip(pixels, labels, splits)):
            yield Record(split, str(label), f"digit_{index:04d}", resize(image, image_size),
                         origin=f"sklearn digits[{index}]")

    return generate(), len(labels)
