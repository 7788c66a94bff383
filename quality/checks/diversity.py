"""Diversity of synthetic images: are they as varied as the real ones, or collapsed onto a few modes?

PCA (scikit-learn) is fitted on real and synthetic pixel vectors together, so both sets are measured
along the same axes; the mean pairwise distance of synthetic images in that space is divided by the
real one. An independent draw from the real distribution has a ratio near 1 whatever the image size,
modality or set size, which a fixed distance threshold (the reference guide's "< 10") cannot give
(docs/user_guide.md#thresholds-diversity).

Near-duplicates are synthetic pairs closer (in pixel space) than a small fraction of the median
distance between a real image and its nearest other real image, i.e. far closer than two distinct
real images usually are. The real set's own rate under the same radius is the baseline (a dataset
can hold near-identical frames of one patient).

The evidence the check needs (`images_needed`, by the rule of quality.checks.verdicts): a mean pairwise
distance is a U-statistic, whose log has a standard error of about 2 cv / sqrt(n), cv being the spread of
each real image's mean distance to the others over their mean; and a near-duplicate share at the warning
threshold w has a binomial standard error sqrt(w (1 - w) / n), against none for a set without duplicates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.metrics import pairwise_distances

from quality.checks.verdicts import (
    FAIL,
    INSUFFICIENT,
    WARN,
    evidence,
    grade_above,
    grade_below,
    images_to_separate,
    judge_evidence,
    worst,
)
from quality.features.image_sets import flatten
from quality.features.neighbours import close_pairs, nearest_neighbours
from training.core import atomic

MAX_COMPONENTS = 50
FULL_SVD_MAX = 1000               # images (or pixels) up to which PCA uses an exact SVD
# Mode collapse: synthetic images on average less than half as far apart as real ones have lost
# most of the variety (partial collapse onto a few modes, warn); below a fifth they are nearly one
# image (fail). Mild mode dropping (ratios 0.7-0.9) is common in good GANs and is not flagged.
RATIO_WARN_BELOW = 0.5
RATIO_FAIL_BELOW = 0.2
NEAR_DUPLICATE_FRACTION = 0.1     # of the real median nearest-neighbour distance
# Share of synthetic images with a near-duplicate, above the real set's own share.
DUPLICATES_WARN_ABOVE = 0.05
DUPLICATES_FAIL_ABOVE = 0.25
FIGURE = "diversity_pca.png"


def pca_components(num_samples: int, num_features: int) -> int:
    """min(50, n_samples - 1, n_features): PCA cannot find more directions than that."""
    return max(1, min(MAX_COMPONENTS, num_samples - 1, num_features))


def fit_pca(real: np.ndarray, synthetic: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, PCA]:
    """Project (n, d) real and (m, d) synthetic vectors on the PCA axes of both sets together."""
    both = np.concatenate([real, synthetic])
    # An exact SVD is cheapest while one side of the matrix is small; scikit-learn's "auto" picks the
    # randomized solver already at a few dozen images, which is slower there and not exact.
    solver = "full" if min(both.shape) <= FULL_SVD_MAX else "randomized"
    pca = PCA(n_components=pca_components(*both.shape), svd_solver=solver, random_state=seed).fit(both)
    return pca.transform(real), pca.transform(synthetic), pca


def mean_pairwise_distance(distances: np.ndarray) -> float:
    """Mean over all pairs i < j of an (n, n) distance matrix (n >= 2)."""
    return float(distances[np.triu_indices(len(distances), k=1)].mean())


def images_needed(real_distances: np.ndarray) -> int:
    """Images per set at which a set at distance ratio 1 and one at the collapse warning, and a set without
    near-duplicates and one at the duplicate warning, lie apart; from the real points' (n, n) distances (n >= 3)."""
    per_image = real_distances.sum(axis=1) / (len(real_distances) - 1)   # each image's mean distance to the others
    cv = float(per_image.std(ddof=1) / max(per_image.mean(), 1e-12))
    # log ratio of two U-statistics, one per set: standard error 2 cv sqrt(2 / n); two such sets.
    by_ratio = images_to_separate(lambda n: 2 * 2 * cv * np.sqrt(2 / n), float(np.log(1 / RATIO_WARN_BELOW)))
    w = DUPLICATES_WARN_ABOVE
    by_duplicates = images_to_separate(lambda n: np.sqrt(w * (1 - w) / n), w)
    return max(by_ratio, by_duplicates)


def near_duplicate_radius(real_pixels: np.ndarray) -> tuple[float, float]:
    """(radius, real median nearest-neighbour distance) in pixel space."""
    median = float(np.median(nearest_neighbours(real_pixels, real_pixels, leave_one_out=True)[0]))
    return NEAR_DUPLICATE_FRACTION * median, median


def duplicate_share(pixels: np.ndarray, radius: float) -> tuple[int, float]:
    """Number of near-duplicate pairs, and share of images that have at least one."""
    num_pairs, has_close = close_pairs(pixels, radius)
    return num_pairs, float(has_close.mean())


def plot_pca(real: np.ndarray, synthetic: np.ndarray, explained: np.ndarray, path: Path) -> None:
    """Scatter of the first two principal components, real vs synthetic."""
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    second = 1 if real.shape[1] > 1 else 0
    ax.scatter(real[:, 0], real[:, second], s=10, alpha=0.6, label="real")
    ax.scatter(synthetic[:, 0], synthetic[:, second], s=10, alpha=0.6, marker="x", label="synthetic")
    ax.set(xlabel=f"PC1 ({explained[0]:.1%} of variance)",
           ylabel=f"PC{second + 1} ({explained[second]:.1%} of variance)", title="PCA of pixels")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)


def diversity_verdict(ratio: float, excess_duplicate_share: float) -> tuple[str, str]:
    """Worst of the collapse verdict (pairwise-distance ratio) and the near-duplicate verdict."""
    by_ratio = grade_below(ratio, RATIO_WARN_BELOW, RATIO_FAIL_BELOW)
    by_duplicates = grade_above(excess_duplicate_share, DUPLICATES_WARN_ABOVE, DUPLICATES_FAIL_ABOVE)
    reason = (f"synthetic/real mean pairwise distance {ratio:.2f} (warn < {RATIO_WARN_BELOW}, fail < "
              f"{RATIO_FAIL_BELOW}); near-duplicates {excess_duplicate_share:+.1%} of images above the real rate")
    if by_ratio in (WARN, FAIL):
        reason = "possible mode collapse: " + reason
    return worst([by_ratio, by_duplicates]), reason


def check_diversity(real: np.ndarray, synthetic: np.ndarray, out_dir: str | Path | None = None,
                    seed: int = 0) -> dict:
    """Diversity of two (N, C, H, W) sets in [0, 1]; needs two images on each side."""
    if len(real) < 3 or len(synthetic) < 2:
        return {"verdict": INSUFFICIENT, "reason": "diversity needs at least 3 real and 2 synthetic images",
                "evidence": evidence(min(len(real), len(synthetic)), 3, "images per set"), "thresholds": {},
                "figures": []}
    real_pixels, synthetic_pixels = flatten(real), flatten(synthetic)
    real_pc, synthetic_pc, pca = fit_pca(real_pixels, synthetic_pixels, seed)
    real_distances = pairwise_distances(real_pc)          # the ratio and the evidence both read it
    real_distance = mean_pairwise_distance(real_distances)
    synthetic_distance = mean_pairwise_distance(pairwise_distances(synthetic_pc))
    ratio = synthetic_distance / max(real_distance, 1e-12)
    radius, real_median_nn = near_duplicate_radius(real_pixels)
    synthetic_pairs, synthetic_share = duplicate_share(synthetic_pixels, radius)
    real_pairs, real_share = duplicate_share(real_pixels, radius)
    verdict, reason = diversity_verdict(ratio, synthetic_share - real_share)
    images, needed = min(len(real), len(synthetic)), images_needed(real_distances)
    verdict, reason = judge_evidence(verdict, reason, images, needed, "images per set")
    figures = []
    if out_dir is not None:
        plot_pca(real_pc, synthetic_pc, pca.explained_variance_ratio_, Path(out_dir) / FIGURE)
        figures.append(FIGURE)
    return {
        "pca_components": int(pca.n_components_),
        "pca_explained_variance": float(pca.explained_variance_ratio_.sum()),
        "pca_explained_variance_first_2": pca.explained_variance_ratio_[:2].tolist(),
        "real_mean_pairwise_distance": real_distance,
        "synthetic_mean_pairwise_distance": synthetic_distance,
        "pairwise_distance_ratio": ratio,
        "near_duplicate_radius": radius,
        "real_median_nearest_neighbour_distance": real_median_nn,
        "synthetic_near_duplicate_pairs": synthetic_pairs,
        "synthetic_near_duplicate_share": synthetic_share,
        "real_near_duplicate_pairs": real_pairs,
        "real_near_duplicate_share": real_share,
        "evidence": evidence(images, needed, "images per set"),
        "thresholds": {"ratio_warn_below": RATIO_WARN_BELOW, "ratio_fail_below": RATIO_FAIL_BELOW,
                       "near_duplicate_fraction_of_real_median_nn": NEAR_DUPLICATE_FRACTION,
                       "excess_duplicate_share_warn_above": DUPLICATES_WARN_ABOVE,
                       "excess_duplicate_share_fail_above": DUPLICATES_FAIL_ABOVE},
        "verdict": verdict,
        "reason": reason,
        "figures": figures,
    }
