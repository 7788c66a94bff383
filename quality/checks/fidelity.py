"""Fidelity check: FID/KID (and IS, precision/recall) of synthetic vs real, with a verdict.

The numbers come from `quality.features.frechet.fidelity_metrics` (torch-fidelity) in the feature space of
`quality.features.extractors`. How they are judged depends on that space:

* Inception: the reference guide's thresholds, FID < 30 good and < 40 acceptable
  (docs/user_guide.md#thresholds-inception-fid); these are only
  meaningful in Inception space, where published FIDs live.
* Domain encoder: its features are standardised by the real training statistics, so its FID has
  no absolute scale. It is judged against a real-vs-real baseline instead: the real set is split in
  two parts A and B, and FID(A', B) is compared with FID(S', B), where A' and S' are equal-sized
  samples of part A and of the synthetic set. Both use the same number of images against the same
  reference, so FID's small-sample bias is the same on both sides and the ratio shows how much
  further the synthetic images are from real ones than another real sample is.
  A must be as new to the encoder as the synthetic images are: an encoder's features of its own
  training images are special, and with A drawn from them fresh draws of the real distribution
  scored 3.25x (demo data; bench/bench_qa_calibration.py). QA therefore trains its encoder without
  half of the real images, and A is that half (`unseen`); B is the half the encoder saw. Without
  such a half (Inception, or a real folder the encoder never saw), A and B are random halves.

The baseline is reported for Inception too, as context.

The evidence it needs: in Inception space, more images than its 2,048 features, or the covariances FID
compares are singular. In the domain space, the baseline's two halves (two images a side) and no more:
the ratio does not get sharper with more images. Real-vs-real FID shrinks with the sample size and so
does its spread, and the spread of log FID over random halves of the real side (`log_fid_spread`,
reported with the ratio's 95 % noise factor) stayed at 0.15-0.20 from 100 to 500 images a side on the
demo (bench/bench_qa_calibration.py): the ratio is good to about x/÷ 1.6 at any size. So this check
catches sets several times further from the real images than another real sample, and the subtler
tells are detectability's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from quality.checks.verdicts import INSUFFICIENT, WARN, Z_95, evidence, grade_above, judge_evidence
from quality.features.extractors import FeatureSpace
from quality.features.frechet import extract_features, fid_from_features, fidelity_metrics

INCEPTION_FID_GOOD = 30.0          # reference guide: "< 30 is excellent"
INCEPTION_FID_ACCEPTABLE = 40.0    # reference guide: "FID score < 40"
# Domain space: synthetic FID within 2x the real-vs-real FID is within what a second real sample of
# this size could show; beyond 4x the synthetic set is clearly further from the real one than any
# resampling explains. These are our heuristics, not published calibrations; the report says so.
BASELINE_RATIO_WARN = 2.0
BASELINE_RATIO_FAIL = 4.0
MIN_IMAGES = 2                     # FID needs a covariance, i.e. two images on each side
MIN_REAL_FOR_BASELINE = 2 * MIN_IMAGES
INCEPTION_MIN_IMAGES = 2049        # more than Inception's 2,048 features: a full-rank covariance
NOISE_DRAWS = 20                   # random halves of the real side that measure FID's sampling spread


def split_halves(num_images: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random split of range(num_images) into two halves (the first gets the odd one out)."""
    order = rng.permutation(num_images)
    middle = (num_images + 1) // 2
    return np.sort(order[:middle]), np.sort(order[middle:])


def baseline_parts(num_real: int, unseen: np.ndarray | None, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Indices (A, B) of the real images for the baseline, and whether A is the unseen part: A the
    images the feature space never trained on and B the rest when there are two or more of each,
    random halves otherwise."""
    if unseen is not None and min(unseen.sum(), (~unseen).sum()) >= MIN_IMAGES:
        return np.flatnonzero(unseen), np.flatnonzero(~unseen), True
    return *split_halves(num_real, rng), False


def baseline(real, synthetic, rng: np.random.Generator, fid, unseen: np.ndarray | None = None) -> dict:
    """FID of real part A vs real part B, and of an equal-sized synthetic sample vs part B.

    `real` and `synthetic` are images or their FID-layer features (anything a numpy index array can
    index); `fid(a, b)` scores one set against another, so QA (images through torch-fidelity) and the
    training loop's screen (features it already holds) draw the same halves for the same `rng`.
    `unseen` ((N,) bool) marks the real images the feature space never trained on (`baseline_parts`).
    """
    half_a, half_b, unseen_split = baseline_parts(len(real), unseen, rng)
    matched = min(len(half_a), len(synthetic))
    synthetic_sample = np.sort(rng.choice(len(synthetic), matched, replace=False))
    reference = real[half_b]
    real_fid, synthetic_fid = fid(real[half_a[:matched]], reference), fid(synthetic[synthetic_sample], reference)
    ratio = None if real_fid is None or synthetic_fid is None else synthetic_fid / max(real_fid, 1e-6)
    return {"images_per_side": matched, "reference_images": len(reference),
            "real_side": "images the feature encoder never trained on" if unseen_split else "a random half",
            "real_vs_real_fid": real_fid, "synthetic_vs_real_fid": synthetic_fid, "ratio": ratio,
            **ratio_noise(real, half_a[:matched], reference, fid, rng)}


def ratio_noise(real, side: np.ndarray, reference, fid, rng: np.random.Generator) -> dict:
    """The spread of log FID over `NOISE_DRAWS` random halves of the real `side` (indices into `real`)
    against `reference`, and the 95 % noise factor of a ratio of two such FIDs; None where FID cannot be
    measured on the halves."""
    half = len(side) // 2
    values = ([fid(real[np.sort(rng.choice(side, half, replace=False))], reference) for _ in range(NOISE_DRAWS)]
              if half >= MIN_IMAGES else [None])
    if any(v is None or v <= 0 for v in values):
        return {"log_fid_spread": None, "ratio_noise_factor_95": None}
    spread = float(np.log(values).std(ddof=1))
    return {"log_fid_spread": spread, "ratio_noise_factor_95": float(np.exp(Z_95 * np.sqrt(2) * spread))}


def inception_verdict(fid: float) -> tuple[str, str]:
    """The reference guide's FID thresholds (Inception features only)."""
    verdict = grade_above(fid, INCEPTION_FID_GOOD, INCEPTION_FID_ACCEPTABLE)
    return verdict, (f"Inception FID {fid:.1f} (reference guide: < {INCEPTION_FID_GOOD:g} good, "
                     f"< {INCEPTION_FID_ACCEPTABLE:g} acceptable)")


def domain_verdict(baseline: dict) -> tuple[str, str]:
    """Domain features: the synthetic FID relative to the real-vs-real FID at the same sample size."""
    ratio = baseline["ratio"]
    if ratio is None:
        return WARN, "domain FID relative to the real-vs-real baseline could not be computed"
    verdict = grade_above(ratio, BASELINE_RATIO_WARN, BASELINE_RATIO_FAIL)
    return verdict, (f"domain-feature FID is {ratio:.2f}x the real-vs-real baseline "
                     f"({baseline['synthetic_vs_real_fid']:.2f} vs {baseline['real_vs_real_fid']:.2f} at "
                     f"{baseline['images_per_side']} images per side, real side: {baseline['real_side']}"
                     + (f"; the ratio's 95 % noise x/÷ {baseline['ratio_noise_factor_95']:.2f}"
                        if baseline.get("ratio_noise_factor_95") else "") + "; "
                     f"warn > {BASELINE_RATIO_WARN:g}x, "
                     f"fail > {BASELINE_RATIO_FAIL:g}x); domain FIDs are not comparable with Inception FIDs")


def thresholds_for(space: FeatureSpace) -> dict:
    """The thresholds that apply in this feature space, for the report."""
    if space.kind == "inception":
        return {"fid_good_below": INCEPTION_FID_GOOD, "fid_acceptable_below": INCEPTION_FID_ACCEPTABLE}
    return {"baseline_ratio_warn_above": BASELINE_RATIO_WARN, "baseline_ratio_fail_above": BASELINE_RATIO_FAIL}


def baseline_from_features(real_features: np.ndarray, synthetic_features: np.ndarray, rng: np.random.Generator,
                           unseen: np.ndarray | None = None) -> dict:
    """`baseline` of FID-layer features, (N, D) each (`unseen`: `FeatureSpace.unseen` of the real images)."""
    return baseline(real_features, synthetic_features, rng, fid_from_features, unseen)


def check_fidelity(real: torch.Tensor, synthetic: torch.Tensor, space: FeatureSpace, cache_dir: str | Path,
                   device: str = "cpu", rng: np.random.Generator | None = None, *,
                   real_features: np.ndarray | None = None, synthetic_features: np.ndarray | None = None,
                   report_metrics: bool = True) -> dict:
    """FID/KID/IS/precision/recall of uint8 (N, C, H, W) `synthetic` vs `real`, with a verdict.

    The verdict comes from FID-layer features (extracted here unless given): the real-vs-real baseline
    in the domain space, the guide's thresholds on FID in Inception space. `report_metrics` False
    skips torch-fidelity's full set of numbers (KID, IS, precision/recall), which a checkpoint screen
    does not need; the verdict is the same either way.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    base = {"feature_extractor": space.kind, "extractor_name": space.extractor,
            "thresholds": thresholds_for(space), "figures": []}
    if min(len(real), len(synthetic)) < MIN_IMAGES:
        return {**base, "verdict": INSUFFICIENT, "evidence": evidence(min(len(real), len(synthetic)), MIN_IMAGES,
                                                                      "images per side"),
                "reason": f"FID needs at least {MIN_IMAGES} real and {MIN_IMAGES} synthetic images"}
    if real_features is None or synthetic_features is None:
        real_features, synthetic_features = (extract_features(x, space, device) for x in (real, synthetic))
    metrics = (fidelity_metrics(synthetic, real, space, cache_dir=Path(cache_dir), device=device, prc=True)
               if report_metrics else {"fid": fid_from_features(synthetic_features, real_features)})
    skipped = {}
    if len(real) >= MIN_REAL_FOR_BASELINE:
        baseline = baseline_from_features(real_features, synthetic_features, rng, space.unseen(real))
    else:
        baseline = None
        skipped["baseline"] = f"needs at least {MIN_REAL_FOR_BASELINE} real images"
    for key, why in (("kid_mean", "KID needs 2 images per subset"),
                     ("precision", "precision/recall need more images than their neighbourhood size"),
                     ("is_mean", "IS needs Inception's ImageNet classes")):
        if metrics.get(key, 0) is None:
            skipped[key.split("_")[0]] = why
    if space.kind == "inception":
        found = evidence(min(len(real), len(synthetic)), INCEPTION_MIN_IMAGES, "images per set")
    elif baseline is not None:
        found = evidence(baseline["images_per_side"], MIN_IMAGES, "images per side")
    else:
        found = evidence(len(real), MIN_REAL_FOR_BASELINE, "real images")
    if metrics["fid"] is None:
        verdict, reason = WARN, "FID is not finite (too few or degenerate images)"
    elif space.kind == "inception":
        verdict, reason = inception_verdict(metrics["fid"])
    elif baseline is not None:
        verdict, reason = domain_verdict(baseline)
    else:
        verdict, reason = INSUFFICIENT, (f"domain FID cannot be judged without a real-vs-real baseline, which needs "
                                         f"{MIN_REAL_FOR_BASELINE} real images")
    verdict, reason = judge_evidence(verdict, reason, found["images"], found["needed"], found["unit"])
    return {**base, **metrics, "real_baseline": baseline, "skipped": skipped, "evidence": found, "verdict": verdict,
            "reason": reason}
