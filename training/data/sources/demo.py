"""The embedded default dataset: procedural dermoscopy-like skin-lesion images.

Each image is drawn from its own seeded generator, so the same seed gives the same bytes and any
image can be re-made alone. Classes follow the ABCD rule of dermoscopy:

* benign: roughly symmetric, smooth border, one brown tone;
* malignant: asymmetric, irregular border, two or three colours.

A latent "severity" in [0, 1] drives asymmetry, border irregularity and colour count. Benign
severities come from Beta(2, 7) and malignant ones from Beta(7, 3), which overlap: some benign
lesions look suspicious and some malignant ones look harmless, so no classifier scores 100 %.
Skin texture, illumination, lesion size, hair strokes and sensor noise vary per image.

Train and validation hold `imbalance` benign images per malignant one, like the real data the demo
stands for: the GAN has few malignant images to learn from, and the spec-90 threshold and the grid's
choice are made on a validation split as scarce as a real study's. The test split prepare_data.py
writes is balanced instead (as many malignant images as benign ones: 500 at the default size), for the
power of the study's comparison: with the 50 that the imbalance gives, the smallest gain in sensitivity
it can detect is about 27 pp (pipeline pre-flight, 3 seeds), with 500 about 19 pp; and scoring test
images is cheap. Each image has its own generator, keyed by (seed, split,
class, index), so more test images leave every other image byte for byte as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

from training.data.processed import Record

BENIGN, MALIGNANT = "benign", "malignant"

# Lesion pigments (RGB in [0, 1]): the benign tone is drawn near the first; malignant lesions mix 2-3.
_PIGMENTS = np.array([
    [0.55, 0.36, 0.24],  # mid brown
    [0.22, 0.13, 0.10],  # dark brown / black
    [0.40, 0.42, 0.52],  # blue-grey (regression structures)
    [0.62, 0.28, 0.25],  # red-brown
    [0.72, 0.52, 0.38],  # light brown
])


MAX_TEST_MALIGNANT = 100_000    # the most --demo_test_malignant takes
MAX_DEMO_IMAGES = 1_000_000     # the most --demo_num_train takes


def split_counts(num_train: int, imbalance: int, val_fraction: float, test_fraction: float,
                 test_malignant: int | None = None) -> dict:
    """Images per split and class with `imbalance` benign per malignant in every split, except that the
    test split holds `test_malignant` malignant images when it is given (its benign count stays)."""
    counts = {}
    for split, n in (("train", num_train),
                     ("val", round(num_train * val_fraction)),
                     ("test", round(num_train * test_fraction))):
        malignant = max(1, round(n / (imbalance + 1)))
        counts[split] = {BENIGN: max(1, n - malignant), MALIGNANT: malignant}
    if test_malignant is not None:
        counts["test"][MALIGNANT] = test_malignant
    return counts


def balanced_test_counts(num_train: int, imbalance: int, val_fraction: float, test_fraction: float,
                         test_malignant: int | None) -> dict:
    """`split_counts` as prepare_data.py writes the demo: `test_malignant` malignant test images, or when
    None as many as the benign test images (500 at the default size)."""
    counts = split_counts(num_train, imbalance, val_fraction, test_fraction)
    return split_counts(num_train, imbalance, val_fraction, test_fraction,
                        test_malignant or counts["test"][BENIGN])


VAL_FRACTION = TEST_FRACTION = 0.25     # of the training count: the demo's own split sizes


def demo_records(seed: int = 0, image_size: int = 64, num_train: int = 2200, imbalance: int = 10,
                 val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION,
                 test_malignant: int | None = None) -> tuple[Iterator[Record], int]:
    """Records of the demo dataset and their total count (2,000 benign : 200 malignant in train by default).

    `test_malignant` sets the malignant images of the test split; None keeps the imbalance of the other
    splits. prepare_data.py balances the test split (see the module docstring); train and val, where the
    imbalance is the point, are the same images whatever the test split holds.
    """
    counts = split_counts(num_train, imbalance, val_fraction, test_fraction, test_malignant)
    total = sum(n for per_class in counts.values() for n in per_class.values())

    jobs = [(seed, split_id, split, class_id, class_name, index, image_size)
            for split_id, (split, per_class) in enumerate(counts.items())
            for class_id, (class_name, n) in enumerate(per_class.items())
            for index in range(n)]

    def generate() -> Iterator[Record]:
        if len(jobs) < 256:  # not worth starting worker processes
            yield from map(_render_record, jobs)
            return
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            yield from pool.map(_render_record, jobs, chunksize=64)

    return generate(), total


def _render_record(job: tuple) -> Record:
    seed, split_id, split, class_id, class_name, index, image_size = job
    rng = np.random.default_rng([seed, split_id, class_id, index])  # one generator per image
    pixels = render_lesion(rng, image_size, malignant=class_name == MALIGNANT)
    return Record(split, class_name, f"{class_name}_{index:05d}", pixels)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-ish noise that varies over about `cells` blobs per side, (size, size) float32."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC))


def render_lesion(rng: np.random.Generator, size: int, malignant: bool, hairs: bool = True) -> np.ndarray:
    """One RGB uint8 (size, size, 3) dermoscopy-like image; `hairs=False` leaves the hair strokes out
    (bench/bench_qa_calibration.py: what QA says of a generator that never draws them)."""
    severity = rng.beta(7, 3) if malignant else rng.beta(2, 7)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    xx, yy = (xx + 0.5) / size * 2 - 1, (yy + 0.5) / size * 2 - 1   # pixel centres in [-1, 1]

    # Skin: a base tone, slow illumination changes and fine texture.
    skin_tone = np.array([rng.uniform(0.78, 0.95), rng.uniform(0.58, 0.76), rng.uniform(0.48, 0.66)])
    shading = 1 + 0.05 * _smooth_noise(rng, size, 3) - 0.12 * (xx ** 2 + yy ** 2) * rng.uniform(0.3, 1.0)
    texture = 0.025 * _smooth_noise(rng, size, max(4, size // 3))
    image = skin_tone[None, None, :] * (shading + texture)[:, :, None]

    # Shape: a radius that varies with angle; low harmonics give asymmetry, high ones an irregular border.
    cx, cy = rng.normal(0, 0.08, size=2)
    r, theta = np.hypot(xx - cx, yy - cy), np.arctan2(yy - cy, xx - cx)
    base_radius = rng.uniform(0.28, 0.58)
    radius = np.ones_like(theta) + rng.uniform(0, 0.08) * np.cos(2 * theta + rng.uniform(0, 2 * np.pi))
    radius += severity * rng.uniform(0.10, 0.25) * np.cos(theta + rng.uniform(0, 2 * np.pi))
    radius += severity * rng.uniform(0.04, 0.12) * np.cos(3 * theta + rng.uniform(0, 2 * np.pi))
    for k in range(5, 13):
        radius += severity ** 2 * rng.uniform(0, 0.05) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    radius *= base_radius
    edge_width = rng.uniform(0.02, 0.05) * (1.2 - 0.7 * severity)
    inside = 1 / (1 + np.exp(-(radius - r) / edge_width))

    # Colour: one tone with a darker centre, or 2-3 pigments in blotches.
    n_colours = 1 if severity < rng.uniform(0.3, 0.45) else (2 if severity < rng.uniform(0.6, 0.75) else 3)
    if n_colours == 1:
        tone = np.clip(_PIGMENTS[0] * rng.uniform(0.8, 1.15) + rng.normal(0, 0.03, 3), 0, 1)
        centre_dark = 1 - 0.2 * np.clip(1 - r / base_radius, 0, 1)
        lesion = tone[None, None, :] * centre_dark[:, :, None]
    else:
        chosen = _PIGMENTS[rng.choice(len(_PIGMENTS), size=n_colours, replace=False)]
        fields = np.stack([_smooth_noise(rng, size, 4) * 3 for _ in range(n_colours)])
        weights = np.exp(fields - fields.max(axis=0))
        weights /= weights.sum(axis=0)
        lesion = np.einsum("khw,kc->hwc", weights, chosen)
    lesion *= (1 + 0.04 * _smooth_noise(rng, size, max(4, size // 4)))[:, :, None]
    opacity = rng.uniform(0.75, 0.95) * inside
    image = image * (1 - opacity[:, :, None]) + lesion * opacity[:, :, None]

    # Hair: a few thin dark curves crossing the image.
    for _ in range(rng.choice(4, p=[0.45, 0.3, 0.15, 0.1]) if hairs else 0):
        p0, p1, p2 = rng.uniform(-1.2, 1.2, size=(3, 2))
        t = np.linspace(0, 1, 32 + 2 * size)[:, None]
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2           # (T, 2) Bezier points
        curve = curve.astype(np.float32)
        dist2 = np.min((xx[..., None] - curve[:, 0]) ** 2 + (yy[..., None] - curve[:, 1]) ** 2, axis=-1)
        strand = np.exp(-dist2 / (rng.uniform(0.6, 1.2) * 2 / size) ** 2) * rng.uniform(0.5, 0.85)
        image = image * (1 - strand[:, :, None]) + np.array([0.18, 0.12, 0.09]) * strand[:, :, None]

    image += rng.normal(0, 0.012, image.shape)   # sensor noise
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
