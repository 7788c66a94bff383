"""Memorisation: is any synthetic image a copy of a real (patient) training image?

For each synthetic image we find its nearest real training image, in pixel space (L2 on [0, 1]
pixels) and in the QA feature space. What counts as "too close" comes from the real set itself:
the leave-one-out nearest-neighbour distances between real images, i.e. how close two different
real images (patients) come. A synthetic image closer to a real image than the 1st percentile of
those distances in pixels *and* in features is flagged as a possible copy: a copy is close in every
representation. Close in one space alone is what independent images with less detail (close in
pixels: demo lesions without hairs sit near plain real ones) or of similar content (close in
features) are: on 200 independent draws of 200 demo images with no copies, the single-space tests
warned on 6-13 % of fresh draws and 20-39 % of hairless ones, both spaces together on 0 % and 4.5 %,
while still finding every set with 5 % noisy copies and 86 % of sets with 5 % copies shifted by one
pixel (bench/bench_qa_calibration.py --memorisation_draws). Without features, pixels decide alone.

An independent draw from the real distribution is flagged by chance about as often as a real image
is by the same test against the other real images: if k of the n real images are, the chance is
(k + 1) / (n + 1), about 0.5-1.5 %. The flagged share must be clearly above chance: we warn above
2 % (and twice the chance) and fail above 5 % (and five times the chance), each only when a
binomial test says so too (p < 0.01; for a fail p < 0.001 against the 95 % upper bound of the
chance rate, which is itself estimated from the few real images below the thresholds).
A pixel-identical copy of a real image fails the check on its own: it is a patient image in the
synthetic set.

The evidence it needs (`synthetic_images_needed`): the fewest synthetic images from which a set flagged
just above the warning share would be found (binomial p < 0.01 against the chance rate) at every larger
size too. Few real images make the chance rate, and with it the number needed, larger.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.stats import beta, binom

from quality.checks.verdicts import FAIL, INSUFFICIENT, MOST_IMAGES, PASS, WARN, evidence, judge_evidence, worst
from quality.features.image_sets import flatten, pixel_hashes, to_unit
from quality.features.neighbours import nearest_neighbours
from training.core import atomic

COPY_PERCENTILE = 1.0       # of real-to-real nearest-neighbour distances
FLAGGED_WARN_ABOVE = 0.02   # chance is ~1-2 %
FLAGGED_FAIL_ABOVE = 0.05
WARN_TIMES_CHANCE = 2.0     # small real sets have a higher chance rate; the thresholds follow it
FAIL_TIMES_CHANCE = 5.0
WARN_P_VALUE = 0.01         # binomial test of the flagged count against the chance rate
FAIL_P_VALUE = 0.001
CLOSEST_PAIRS_SHOWN = 8
PAIRS_FIGURE = "memorisation_closest_pairs.png"
HISTOGRAM_FIGURE = "memorisation_distances.png"
SEARCH_IMAGES = 100_000     # synthetic set sizes searched by `synthetic_images_needed`


def count_exact_copies(real: torch.Tensor, synthetic: torch.Tensor) -> int:
    """How many synthetic images are pixel-identical to some real image."""
    real_hashes = set(pixel_hashes(real))
    return sum(h in real_hashes for h in pixel_hashes(synthetic))


def copy_threshold(real_to_real: np.ndarray) -> float:
    """The distance below which a synthetic image is close to a real one in a space: the real 1st percentile."""
    return float(np.percentile(real_to_real, COPY_PERCENTILE))


def distance_summary(distances: np.ndarray) -> dict:
    """Min, 1st percentile, median and max of a distance distribution."""
    return {"min": float(distances.min()), "p01": float(np.percentile(distances, 1)),
            "median": float(np.median(distances)), "max": float(distances.max())}


@dataclass(frozen=True)
class NearestReal:
    """Nearest-neighbour distances in one space (pixels or features)."""

    real_to_real: np.ndarray        # (n,) leave-one-out distance of each real image to another real one
    synthetic_to_real: np.ndarray   # (m,) distance of each synthetic image to its nearest real one
    nearest: np.ndarray             # (m,) index of that real image
    threshold: float                # close below this

    @property
    def close(self) -> np.ndarray:
        """(m,) True where a synthetic image is closer to a real one than the threshold."""
        return self.synthetic_to_real < self.threshold

    @property
    def real_close(self) -> np.ndarray:
        """(n,) True where a real image is closer to another real one than the threshold."""
        return self.real_to_real < self.threshold

    def summary(self) -> dict:
        """JSON-ready numbers of this space."""
        return {"threshold": self.threshold, "num_close": int(self.close.sum()),
                "close_share": float(self.close.mean()), "real_close_share": float(self.real_close.mean()),
                "real_to_real": distance_summary(self.real_to_real),
                "synthetic_to_real": distance_summary(self.synthetic_to_real)}


@dataclass(frozen=True)
class PossibleCopies:
    """Synthetic images close to a real image in every space, tested against the share of real images
    that are close to another real one in every space (the chance rate)."""

    flagged: np.ndarray        # (m,) bool, synthetic images
    real_flagged: np.ndarray   # (n,) bool, real images against the other real ones

    @property
    def chance_share(self) -> float:
        """Share of an independent draw expected to be flagged: (k + 1) / (n + 1), k real flagged."""
        return (int(self.real_flagged.sum()) + 1) / (len(self.real_flagged) + 1)

    @property
    def chance_share_upper(self) -> float:
        """95 % upper confidence bound of the chance share (Clopper-Pearson on k + 1 of n + 1)."""
        below, n = int(self.real_flagged.sum()) + 1, len(self.real_flagged) + 1
        return float(beta.ppf(0.95, below + 1, n - below))

    def p_value(self, chance: float | None = None) -> float:
        """Probability of at least this many flagged images by chance (binomial tail)."""
        chance = self.chance_share if chance is None else chance
        return float(binom.sf(int(self.flagged.sum()) - 1, len(self.flagged), chance))

    def share_limits(self) -> tuple[float, float]:
        """(warn above, fail above) for the flagged share."""
        return (max(FLAGGED_WARN_ABOVE, WARN_TIMES_CHANCE * self.chance_share),
                max(FLAGGED_FAIL_ABOVE, FAIL_TIMES_CHANCE * self.chance_share))

    def synthetic_images_needed(self) -> int:
        """The fewest synthetic images m from which, at every larger m, a set whose flagged share is just above
        the warning share gives p < `WARN_P_VALUE` (so that a set at the warning threshold can be told from
        one at chance); `MOST_IMAGES` when none up to `SEARCH_IMAGES` can."""
        warn, _ = self.share_limits()
        sizes = np.arange(1, SEARCH_IMAGES + 1)
        found = binom.sf(np.floor(warn * sizes), sizes, self.chance_share) < WARN_P_VALUE   # P(X >= floor(w m) + 1)
        missed = np.flatnonzero(~found)
        if len(missed) == 0:
            return 1
        return MOST_IMAGES if missed[-1] == len(sizes) - 1 else int(sizes[missed[-1] + 1])

    def verdict(self) -> str:
        """pass / warn / fail (see the module docstring)."""
        share = float(self.flagged.mean())
        warn, fail = self.share_limits()
        if share > fail and self.p_value(self.chance_share_upper) < FAIL_P_VALUE:
            return FAIL
        return WARN if share > warn and self.p_value() < WARN_P_VALUE else PASS

    def summary(self) -> dict:
        """JSON-ready numbers of the test."""
        warn, fail = self.share_limits()
        return {"num_flagged": int(self.flagged.sum()), "flagged_share": float(self.flagged.mean()),
                "chance_share": self.chance_share, "chance_share_upper_95": self.chance_share_upper,
                "p_value": self.p_value(), "p_value_at_upper_chance": self.p_value(self.chance_share_upper),
                "flagged_share_warn_above": warn, "flagged_share_fail_above": fail, "verdict": self.verdict()}


def possible_copies(found: dict[str, NearestReal]) -> PossibleCopies:
    """The images close to a real one in every space of `found`."""
    spaces = list(found.values())
    return PossibleCopies(np.logical_and.reduce([s.close for s in spaces]),
                          np.logical_and.reduce([s.real_close for s in spaces]))


def nearest_real(real: np.ndarray, synthetic: np.ndarray) -> NearestReal:
    """Distances of (m, d) synthetic vectors to (n, d) real ones, and the real-to-real reference."""
    real_to_real, _ = nearest_neighbours(real, real, leave_one_out=True)
    synthetic_to_real, nearest = nearest_neighbours(synthetic, real)
    return NearestReal(real_to_real, synthetic_to_real, nearest, copy_threshold(real_to_real))


def closest_pairs(found: NearestReal, flagged: np.ndarray, real_names: list[str], synthetic_names: list[str],
                  count: int) -> list[dict]:
    """The `count` synthetic images nearest to a real one in `found`'s space, with that real image, the
    distance and whether the image is `flagged` as a possible copy."""
    order = np.argsort(found.synthetic_to_real, kind="stable")[:count]
    return [{"synthetic": synthetic_names[i], "real": real_names[found.nearest[i]],
             "distance": float(found.synthetic_to_real[i]), "flagged": bool(flagged[i]),
             "synthetic_index": int(i), "real_index": int(found.nearest[i])} for i in order]


def plot_closest_pairs(real: torch.Tensor, synthetic: torch.Tensor, pairs: list[dict], path: Path) -> None:
    """Synthetic | nearest real, one row per pair."""
    fig = Figure(figsize=(4, 2 * len(pairs)))
    axes = fig.subplots(len(pairs), 2, squeeze=False)
    for row, pair in zip(axes, pairs):
        for ax, image, title in ((row[0], synthetic[pair["synthetic_index"]], f"synthetic {pair['synthetic']}"),
                                 (row[1], real[pair["real_index"]], f"real {pair['real']}")):
            pixels = image.permute(1, 2, 0).numpy()
            ax.imshow(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, cmap="gray", vmin=0, vmax=255)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
        flag = "  FLAGGED" if pair["flagged"] else ""
        row[0].text(1.05, 0.5, f"L2 {pair['distance']:.2f}{flag}", transform=row[0].transAxes, fontsize=7,
                    ha="center", va="center", rotation=90)
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)


def plot_distance_histograms(found: dict[str, NearestReal], path: Path) -> None:
    """Real-to-real vs synthetic-to-real nearest-neighbour distances, one panel per space."""
    fig = Figure(figsize=(5 * len(found), 3.5))
    for ax, (space, distances) in zip(fig.subplots(1, len(found), squeeze=False)[0], found.items()):
        bins = np.histogram_bin_edges(np.concatenate([distances.real_to_real, distances.synthetic_to_real]), bins=30)
        ax.hist(distances.real_to_real, bins=bins, alpha=0.6, density=True, label="real to nearest other real")
        ax.hist(distances.synthetic_to_real, bins=bins, alpha=0.6, density=True, label="synthetic to nearest real")
        ax.axvline(distances.threshold, color="k", linestyle="--", label=f"real {COPY_PERCENTILE:g}st percentile")
        ax.set(xlabel=f"nearest-neighbour distance ({space})", ylabel="density")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)


def memorisation_verdict(found: dict[str, NearestReal], copies: PossibleCopies, exact_copies: int) -> tuple[str, str]:
    """The verdict of the possible-copies test over the spaces of `found`; any exact copy fails."""
    verdicts = [copies.verdict()] + [FAIL] * bool(exact_copies)   # a patient image is never acceptable
    alone = ", ".join(f"{space} alone {d.close.mean():.1%}" for space, d in found.items()) if len(found) > 1 else ""
    reason = (f"synthetic images closer to a real image than the real {COPY_PERCENTILE:g}st percentile in "
              f"{' and '.join(found)}: {copies.flagged.mean():.1%} (chance {copies.chance_share:.1%}, "
              f"p = {copies.p_value():.2g}){f' ({alone})' if alone else ''}; exact pixel copies: {exact_copies}")
    return worst(verdicts), reason


def check_memorisation(real: torch.Tensor, synthetic: torch.Tensor, out_dir: str | Path | None = None, *,
                       real_features: np.ndarray | None = None, synthetic_features: np.ndarray | None = None,
                       real_names: list[str] | None = None, synthetic_names: list[str] | None = None) -> dict:
    """Nearest-real-image analysis of uint8 (N, C, H, W) sets, in pixels and (when given) features: a
    synthetic image close to a real one in every space is a possible copy."""
    if len(real) < 2 or len(synthetic) < 1:
        return {"verdict": INSUFFICIENT, "reason": "needs at least 2 real images and 1 synthetic image",
                "evidence": evidence(len(synthetic), 1, "synthetic images"), "thresholds": {}, "figures": []}
    real_names = real_names or [f"real[{i}]" for i in range(len(real))]
    synthetic_names = synthetic_names or [f"synthetic[{i}]" for i in range(len(synthetic))]
    found = {"pixel": nearest_real(flatten(to_unit(real)), flatten(to_unit(synthetic)))}
    if real_features is not None and synthetic_features is not None:
        found["feature"] = nearest_real(real_features, synthetic_features)
    copies, exact_copies = possible_copies(found), count_exact_copies(real, synthetic)
    verdict, reason = memorisation_verdict(found, copies, exact_copies)
    needed = copies.synthetic_images_needed()
    verdict, reason = judge_evidence(verdict, reason, len(synthetic), needed, "synthetic images")
    pairs = closest_pairs(found["pixel"], copies.flagged, real_names, synthetic_names,
                          min(CLOSEST_PAIRS_SHOWN, len(synthetic)))
    figures = []
    if out_dir is not None:
        plot_closest_pairs(real, synthetic, pairs, Path(out_dir) / PAIRS_FIGURE)
        plot_distance_histograms(found, Path(out_dir) / HISTOGRAM_FIGURE)
        figures = [PAIRS_FIGURE, HISTOGRAM_FIGURE]
    return {
        **{space: distances.summary() for space, distances in found.items()},
        "possible_copies": {"spaces": list(found), **copies.summary()},
        "exact_copies": exact_copies,
        "evidence": evidence(len(synthetic), needed, "synthetic images"),
        "closest_pairs_pixel": [{k: v for k, v in p.items() if not k.endswith("_index")} for p in pairs],
        "thresholds": {"copy_percentile_of_real_to_real": COPY_PERCENTILE,
                       "flagged_share_warn_above": FLAGGED_WARN_ABOVE, "flagged_share_fail_above": FLAGGED_FAIL_ABOVE,
                       "warn_times_chance": WARN_TIMES_CHANCE, "fail_times_chance": FAIL_TIMES_CHANCE,
                       "warn_p_value_below": WARN_P_VALUE, "fail_p_value_below": FAIL_P_VALUE,
                       "exact_copies_fail_above": 0},
        "verdict": verdict,
        "reason": reason,
        "figures": figures,
    }
