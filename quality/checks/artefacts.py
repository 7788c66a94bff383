"""Frequency-domain artefacts: checkerboard patterns and excess high-frequency energy.

Transposed convolutions with stride 2 whose kernel size is not a multiple of the stride paint a
periodic pattern with a period of 2 (and, stacked, 4) pixels. In the Fourier spectrum that is energy
at the Nyquist frequency (0.5 cycles/pixel) and half of it (0.25), on the axes and diagonals,
and more energy overall in the outer band of radial frequencies. Both are measured on each image's
grey version (mean over channels) after removing its mean and applying a Hann window (so the edges
of the image do not leak a bright cross into the spectrum), and compared with the real images:

Both are measured per image and compared as geometric means (the ratio of the mean logs), because
per-image energy is heavy-tailed (one very noisy scan would dominate an arithmetic mean):

* high-frequency share: power at radial frequency >= 0.75 Nyquist over all non-DC power. 1.5x more
  than real is energy the real images do not have, 3x a strong artefact. The same 1.5x tolerance the
  other way, 1/1.5 = 0.67x real or less, is a blurry set, or one missing the real images' fine
  structure (hairs, speckle, sharp borders): a warning, never a fail, because what blur costs
  downstream is measured by the detectability (a "looks synthetic" shortcut) and usefulness checks.
  Neither FID nor the pixel statistics flagged the soft demo lesions (0.23x real), so this is the
  check that tells a person to look at the contact sheet.
* checkerboard peaks: at each Nyquist / half-Nyquist position, the power of the 3x3 bins there over
  the median power of the ring of bins around them (the peak's prominence); the check reports the
  largest synthetic / real ratio over the positions. 2x is a faint regular grid, 5x a clear one.
  Both sets are measured the same way, so structure the real images have (e.g. a scanner's grid)
  is not counted against the GAN.

Both tolerances are widened by two standard errors of the log ratio (from the real images' spread),
so that a few dozen heterogeneous real images do not raise a warning on sampling noise alone. The same
spread says how many images the check needs (`images_needed`): with n per set a log ratio's standard
error is about spread * sqrt(2 / n), and a set at ratio 1 and one at a warning threshold lie apart from
the n of quality.checks.verdicts.images_to_separate on; below it the verdict is `insufficient`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from quality.checks.verdicts import (
    INSUFFICIENT,
    PASS,
    evidence,
    grade_above,
    grade_below,
    images_to_separate,
    judge_evidence,
    worst,
)
from training.core import atomic

HIGH_BAND_START = 0.75             # radial frequency, as a fraction of Nyquist
HF_RATIO_WARN = 1.5
HF_RATIO_FAIL = 3.0
BLUR_RATIO_WARN = 1 / HF_RATIO_WARN   # fine-detail share at or below this fraction of the real one: blurry (warn only)
PEAK_RATIO_WARN = 2.0
PEAK_RATIO_FAIL = 5.0
# (vertical, horizontal) frequency in cycles/pixel where stride-2 (0.5) and two stacked stride-2
# (0.25) upsampling layers put their periodic patterns.
PEAK_FREQUENCIES = ((0.5, 0.0), (0.0, 0.5), (0.5, 0.5), (0.25, 0.0), (0.0, 0.25), (0.25, 0.25),
                    (0.5, 0.25), (0.25, 0.5))
NOISE_ALLOWANCE_SE = 2.0           # tolerances are multiplied by exp(this many standard errors)
NEIGHBOURHOOD = (2, 3)             # Chebyshev distance in bins of the reference ring around a peak
EPS = 1e-12
FIGURE = "artefacts_spectra.png"


def grey(unit: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H, W), the mean over channels."""
    return unit.mean(axis=1, dtype=np.float64)


def power_spectra(images: np.ndarray) -> np.ndarray:
    """Per-image power spectrum |FFT(window * (x - mean))|^2 / (H W): (N, H, W), DC at [0, 0]."""
    height, width = images.shape[1:]
    window = np.outer(np.hanning(height), np.hanning(width))
    centred = (images - images.mean(axis=(1, 2), keepdims=True)) * window
    return np.abs(np.fft.fft2(centred)) ** 2 / (height * width)


def mean_log_magnitude(power: np.ndarray) -> np.ndarray:
    """Mean over images of log10 |FFT|, DC shifted to the centre, for display: (H, W)."""
    return np.fft.fftshift((0.5 * np.log10(power + EPS)).mean(axis=0))


def radial_frequency(height: int, width: int) -> np.ndarray:
    """Radial frequency of each FFT bin as a fraction of Nyquist (1 on the axes' edge, sqrt(2) at corners)."""
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    return np.hypot(fy, fx) / 0.5


def high_frequency_shares(power: np.ndarray) -> np.ndarray:
    """Per image, the share of its non-DC power in the outer band of radial frequencies: (N,)."""
    radius = radial_frequency(*power.shape[1:])
    total = power[:, radius > 0].sum(axis=1)
    return power[:, radius >= HIGH_BAND_START].sum(axis=1) / np.maximum(total, EPS)


def _block_offsets(near: int, far: int) -> list[tuple[int, int]]:
    """(dy, dx) at Chebyshev distance near..far."""
    return [(dy, dx) for dy in range(-far, far + 1) for dx in range(-far, far + 1) if near <= max(abs(dy), abs(dx))]


def _gather(power: np.ndarray, row: int, col: int, offsets: list[tuple[int, int]]) -> np.ndarray:
    """(N, len(offsets)) powers around (row, col), wrapping around the spectrum's edges."""
    height, width = power.shape[1:]
    rows = np.array([(row + dy) % height for dy, _ in offsets])
    cols = np.array([(col + dx) % width for _, dx in offsets])
    return power[:, rows, cols]


def peak_prominences(power: np.ndarray, frequency: tuple[float, float]) -> np.ndarray:
    """Per image, mean power of the 3x3 bins at `frequency` over the median power of the ring around: (N,).

    The 3x3 block holds a periodic pattern's whole peak (the Hann window spreads it over +-1 bin) and
    averages nine noisy bins rather than trusting one.
    """
    height, width = power.shape[1:]
    row, col = round(frequency[0] * height) % height, round(frequency[1] * width) % width
    peak = _gather(power, row, col, _block_offsets(0, 1)).mean(axis=1)
    ring = np.median(_gather(power, row, col, _block_offsets(*NEIGHBOURHOOD)), axis=1)
    return peak / np.maximum(ring, EPS)


def geometric_ratio(synthetic: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """(synthetic / real ratio of geometric means, noise factor exp(2 standard errors of the log ratio))."""
    log_synthetic, log_real = np.log(np.maximum(synthetic, EPS)), np.log(np.maximum(real, EPS))
    spread = log_real.std(ddof=1) if len(log_real) > 1 else 0.0
    standard_error = spread * np.sqrt(1.0 / len(real) + 1.0 / len(synthetic))
    return float(np.exp(log_synthetic.mean() - log_real.mean())), float(np.exp(NOISE_ALLOWANCE_SE * standard_error))


def radial_profile(mean_power: np.ndarray, bins: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Mean power in rings of radial frequency: (bin centres as fraction of Nyquist, power)."""
    radius = radial_frequency(*mean_power.shape)
    edges = np.linspace(0, radius.max() + 1e-9, bins + 1)
    which = np.digitize(radius.ravel(), edges) - 1
    sums = np.bincount(which, weights=mean_power.ravel(), minlength=bins)[:bins]
    counts = np.bincount(which, minlength=bins)[:bins]
    keep = counts > 0
    return ((edges[:-1] + edges[1:]) / 2)[keep], sums[keep] / counts[keep]


def plot_spectra(real_power: np.ndarray, synthetic_power: np.ndarray, path: Path) -> None:
    """Mean log spectra of both sets, their difference, and radial power profiles."""
    real_log, synthetic_log = mean_log_magnitude(real_power), mean_log_magnitude(synthetic_power)
    difference = synthetic_log - real_log
    limit = max(float(np.abs(difference).max()), 1e-6)
    fig = Figure(figsize=(16, 3.8))
    axes = fig.subplots(1, 4)
    for ax, image, title, kwargs in (
            (axes[0], real_log, "real: mean log10 |FFT|", {"cmap": "viridis"}),
            (axes[1], synthetic_log, "synthetic: mean log10 |FFT|", {"cmap": "viridis"}),
            (axes[2], difference, "synthetic - real", {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit})):
        shown = ax.imshow(image, extent=(-0.5, 0.5, 0.5, -0.5), **kwargs)
        ax.set(title=title, xlabel="cycles/pixel", ylabel="cycles/pixel")
        fig.colorbar(shown, ax=ax, fraction=0.046)
    for power, label in ((real_power, "real"), (synthetic_power, "synthetic")):
        axes[3].semilogy(*radial_profile(power.mean(axis=0)), label=label)
    axes[3].axvline(HIGH_BAND_START, color="k", linestyle="--", label="high band")
    axes[3].set(title="radial power", xlabel="radial frequency / Nyquist", ylabel="mean power")
    axes[3].grid(alpha=0.3)
    axes[3].legend()
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)


def artefact_verdict(hf: tuple[float, float], peak: tuple[float, float], where: str) -> tuple[str, str]:
    """Worst of the high-frequency (too much: artefacts; too little: blur) and checkerboard verdicts; each
    (ratio, noise factor)."""
    (hf_ratio, hf_noise), (peak_ratio, peak_noise) = hf, peak
    blur_warn = BLUR_RATIO_WARN / hf_noise
    excess = grade_above(hf_ratio, HF_RATIO_WARN * hf_noise, HF_RATIO_FAIL * hf_noise)
    blur = grade_below(hf_ratio, blur_warn, 0.0)
    checkerboard = grade_above(peak_ratio, PEAK_RATIO_WARN * peak_noise, PEAK_RATIO_FAIL * peak_noise)
    reason = (f"high-frequency energy {hf_ratio:.2f}x real (warn < {blur_warn:.2f}: too little fine detail; warn > "
              f"{HF_RATIO_WARN * hf_noise:.2f}, fail > {HF_RATIO_FAIL * hf_noise:.2f}: artefacts); checkerboard peak at "
              f"{where} cycles/pixel {peak_ratio:.2f}x real (warn > {PEAK_RATIO_WARN * peak_noise:.2f}, "
              f"fail > {PEAK_RATIO_FAIL * peak_noise:.2f})")
    thin = "too little fine detail (blurry, or missing thin structures such as hairs or speckle; look at the contact sheet)"
    problems = [what for what, verdict in (("possible checkerboard/high-frequency artefacts", worst([excess, checkerboard])),
                                           (thin, blur)) if verdict != PASS]
    return worst([excess, blur, checkerboard]), (f"{'; '.join(problems)}: {reason}" if problems else reason)


def images_needed(real_power: np.ndarray) -> int:
    """Images per set at which every statistic of the check tells a set at ratio 1 from one at its warning
    threshold, from the spread of the statistic's log over the real images (two or more)."""
    statistics = [(high_frequency_shares(real_power), np.log(HF_RATIO_WARN))]
    statistics += [(peak_prominences(real_power, frequency), np.log(PEAK_RATIO_WARN)) for frequency in PEAK_FREQUENCIES]
    spreads = [(float(np.log(np.maximum(values, EPS)).std(ddof=1)), gap) for values, gap in statistics]
    return max(images_to_separate(lambda n, spread=spread: 2 * spread * np.sqrt(2 / n), gap) for spread, gap in spreads)


def check_artefacts(real: np.ndarray, synthetic: np.ndarray, out_dir: str | Path | None = None) -> dict:
    """Spectral artefact check of two (N, C, H, W) sets in [0, 1] of the same size."""
    if len(real) < 2 or len(synthetic) < 1:
        return {"verdict": INSUFFICIENT, "reason": "needs at least 2 real and 1 synthetic image",
                "evidence": evidence(min(len(real), len(synthetic)), 2, "images per set"), "thresholds": {},
                "figures": []}
    real_power, synthetic_power = power_spectra(grey(real)), power_spectra(grey(synthetic))
    hf = geometric_ratio(high_frequency_shares(synthetic_power), high_frequency_shares(real_power))
    peaks = {f"{fy:g},{fx:g}": geometric_ratio(peak_prominences(synthetic_power, (fy, fx)),
                                               peak_prominences(real_power, (fy, fx)))
             for fy, fx in PEAK_FREQUENCIES}
    # The peak furthest above its own tolerance decides.
    where = max(peaks, key=lambda k: peaks[k][0] / peaks[k][1])
    verdict, reason = artefact_verdict(hf, peaks[where], where)
    images, needed = min(len(real), len(synthetic)), images_needed(real_power)
    verdict, reason = judge_evidence(verdict, reason, images, needed, "images per set")
    figures = []
    if out_dir is not None:
        plot_spectra(real_power, synthetic_power, Path(out_dir) / FIGURE)
        figures.append(FIGURE)
    return {
        "real_high_frequency_share_median": float(np.median(high_frequency_shares(real_power))),
        "synthetic_high_frequency_share_median": float(np.median(high_frequency_shares(synthetic_power))),
        "high_frequency_ratio": hf[0],
        "high_frequency_noise_factor": hf[1],
        "peak_prominence_ratio": {k: ratio for k, (ratio, _) in peaks.items()},
        "peak_noise_factor": {k: noise for k, (_, noise) in peaks.items()},
        "max_peak_frequency": where,
        "max_peak_ratio": peaks[where][0],
        "blurry": bool(hf[0] < BLUR_RATIO_WARN / hf[1]),
        "evidence": evidence(images, needed, "images per set"),
        "thresholds": {"high_band_start_nyquist": HIGH_BAND_START, "high_frequency_ratio_warn_above": HF_RATIO_WARN,
                       "high_frequency_ratio_warn_below": BLUR_RATIO_WARN,
                       "high_frequency_ratio_fail_above": HF_RATIO_FAIL, "peak_ratio_warn_above": PEAK_RATIO_WARN,
                       "peak_ratio_fail_above": PEAK_RATIO_FAIL, "noise_allowance_standard_errors": NOISE_ALLOWANCE_SE},
        "verdict": verdict,
        "reason": reason,
        "figures": figures,
    }
