"""Pixel statistics of synthetic vs real images: are brightness and contrast where the real ones are?

Pixel values are in [0, 1]. Per channel we report the set's mean, std, min, max and variance, and
an intensity histogram of each set (overlaid in `statistics_histograms.png`).

The verdict compares per-image statistics, not pooled pixels: each image's mean (brightness) and
std (contrast) per channel. The synthetic average of each is compared with the real average in units
of the real images' own spread of that statistic (a standardised difference, Glass's delta):

    shift = (mean_synthetic(stat) - mean_real(stat)) / sd_real(stat)

Why relative to the real spread: a fixed tolerance in grey levels means different things for a
dark ultrasound and a bright dermoscopy set, and a significance test flags any tiny difference once
there are thousands of images. A shift of 0.5 real standard deviations is a "medium" effect in
Cohen's convention (the synthetic set is visibly brighter or flatter on average), 1.0 a large one.
Small sets get a wider tolerance, by two standard errors of the difference, so that sampling noise
alone does not give a warning. With n images per set a shift's standard error is about sqrt(2 / n) real
standard deviations, so a set at no shift and one at the warning threshold lie apart from
`MIN_IMAGES_PER_SET` images on (quality.checks.verdicts); below it the verdict is `insufficient`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from quality.checks.verdicts import evidence, grade_above, images_to_separate, judge_evidence, worst
from training.core import atomic

SHIFT_WARN_SD = 0.5     # |shift| in real standard deviations: medium effect
SHIFT_FAIL_SD = 1.0     # large effect
NOISE_ALLOWANCE_SE = 2.0  # tolerance widened by this many standard errors of the difference
MIN_SPREAD = 1.0 / 255  # floor for sd_real: a set of identical images has no spread to measure in
HISTOGRAM_BINS = 64
MIN_IMAGES_PER_SET = images_to_separate(lambda n: 2 * np.sqrt(2 / n), SHIFT_WARN_SD)     # 123
FIGURE = "statistics_histograms.png"


def channel_statistics(unit: np.ndarray) -> dict[str, list[float]]:
    """Per-channel mean, std, min, max and variance over all pixels of a (N, C, H, W) set."""
    per_channel = unit.transpose(1, 0, 2, 3).reshape(unit.shape[1], -1).astype(np.float64)   # (C, N*H*W)
    return {"mean": per_channel.mean(1).tolist(), "std": per_channel.std(1).tolist(),
            "min": per_channel.min(1).tolist(), "max": per_channel.max(1).tolist(),
            "variance": per_channel.var(1).tolist()}


def per_image_statistics(unit: np.ndarray) -> dict[str, np.ndarray]:
    """Each image's mean (brightness) and std (contrast) per channel: arrays (N, C)."""
    pixels = unit.reshape(unit.shape[0], unit.shape[1], -1).astype(np.float64)
    return {"mean": pixels.mean(2), "std": pixels.std(2)}


def standardised_shift(synthetic: np.ndarray, real: np.ndarray) -> np.ndarray:
    """(mean over synthetic - mean over real) / sd over real, per channel, of an (N, C) statistic."""
    spread = np.maximum(real.std(0, ddof=1) if len(real) > 1 else np.zeros(real.shape[1]), MIN_SPREAD)
    return (synthetic.mean(0) - real.mean(0)) / spread


def noise_allowance_sd(num_real: int, num_synthetic: int) -> float:
    """Two standard errors of a difference of means, in units of one image's sd."""
    return NOISE_ALLOWANCE_SE * float(np.sqrt(1.0 / num_real + 1.0 / num_synthetic))


def intensity_histograms(unit: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Per-channel histogram of pixel values over [0, 1], as densities: (C, bins)."""
    return np.stack([np.histogram(unit[:, c], bins=bins, range=(0.0, 1.0), density=True)[0]
                     for c in range(unit.shape[1])])


def histogram_overlap(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Shared area of two density histograms per channel: 1 = identical, 0 = disjoint."""
    width = 1.0 / a.shape[1]
    return (np.minimum(a, b).sum(1) * width).tolist()


def shift_verdict(shifts: dict[str, np.ndarray], allowance_sd: float) -> tuple[str, str]:
    """Verdict and reason from the largest |shift| of brightness and contrast over channels."""
    warn, fail = SHIFT_WARN_SD + allowance_sd, SHIFT_FAIL_SD + allowance_sd
    verdicts, parts = [], []
    for name, label in (("mean", "brightness"), ("std", "contrast")):
        channel = int(np.abs(shifts[name]).argmax())
        value = float(shifts[name][channel])
        verdicts.append(grade_above(abs(value), warn, fail))
        parts.append(f"{label} {value:+.2f} sd (channel {channel})")
    return worst(verdicts), (f"largest per-image {', '.join(parts)} of the real spread; "
                             f"tolerance {warn:.2f} sd warn / {fail:.2f} sd fail")


def plot_histograms(real: np.ndarray, synthetic: np.ndarray, path: Path) -> None:
    """Overlay real and synthetic intensity histograms, one panel per channel."""
    channels = real.shape[0]
    names = ["grey"] if channels == 1 else ["red", "green", "blue"]
    centers = (np.arange(real.shape[1]) + 0.5) / real.shape[1]
    fig = Figure(figsize=(4 * channels, 3))
    for c, ax in enumerate(fig.subplots(1, channels, squeeze=False)[0]):
        ax.step(centers, real[c], where="mid", label="real")
        ax.step(centers, synthetic[c], where="mid", label="synthetic")
        ax.set(xlabel="pixel value", ylabel="density", title=names[c])
        ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)


def check_statistics(real: np.ndarray, synthetic: np.ndarray, out_dir: str | Path | None = None) -> dict:
    """Compare pixel statistics of two (N, C, H, W) sets in [0, 1]; plot into `out_dir` when given."""
    real_images, synthetic_images = per_image_statistics(real), per_image_statistics(synthetic)
    shifts = {name: standardised_shift(synthetic_images[name], real_images[name]) for name in ("mean", "std")}
    allowance = noise_allowance_sd(len(real), len(synthetic))
    verdict, reason = shift_verdict(shifts, allowance)
    images = min(len(real), len(synthetic))
    verdict, reason = judge_evidence(verdict, reason, images, MIN_IMAGES_PER_SET, "images per set")
    real_hist, synthetic_hist = intensity_histograms(real), intensity_histograms(synthetic)
    figures = []
    if out_dir is not None:
        plot_histograms(real_hist, synthetic_hist, Path(out_dir) / FIGURE)
        figures.append(FIGURE)
    return {
        "real": channel_statistics(real),
        "synthetic": channel_statistics(synthetic),
        "brightness_shift_sd": shifts["mean"].tolist(),
        "contrast_shift_sd": shifts["std"].tolist(),
        "histogram_overlap": histogram_overlap(real_hist, synthetic_hist),
        "noise_allowance_sd": allowance,
        "evidence": evidence(images, MIN_IMAGES_PER_SET, "images per set"),
        "thresholds": {"shift_warn_sd": SHIFT_WARN_SD, "shift_fail_sd": SHIFT_FAIL_SD,
                       "noise_allowance_standard_errors": NOISE_ALLOWANCE_SE},
        "verdict": verdict,
        "reason": reason,
        "figures": figures,
    }
