"""Usefulness: does a classifier trained with the synthetic images work on real ones? (train on synthetic, test on real)

Two classifiers are trained on the real training split of every class; in the second, the real
minority images are replaced by the same number of synthetic ones. Both are scored on the real
validation split, and the check reports the ratio of their ROC-AUCs (minority vs the rest). This is the
"train on synthetic, test on real" protocol (Esteban et al. 2017) that Ravuri & Vinyals (2019) call the
classification accuracy score: it measures what the images are for, and predicts downstream value
better than FID does.

The classifier is a logistic regression on the domain encoder's features (the space FID uses here):
fast and deterministic. It is a probe of whether synthetic images carry the minority class's features,
not a replacement for the full comparison of classifiers that the pipeline runs afterwards.

Thresholds (docs/user_guide.md#thresholds-usefulness): a ratio below 0.95 warns, below 0.85 fails; a
rule of thumb: synthetic images that lose more than 15 % of the real images' AUC teach the wrong features.

The evidence is the validation split's minority images: the ratio's standard error comes from a paired
bootstrap of the validation images (both probes scored on the same resampled images), scaled as
1 / sqrt(n) to the number of minority images at which a ratio of 1 and one at the warning threshold lie
apart (quality.checks.verdicts).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from quality.checks.verdicts import evidence, grade_below, images_to_separate, judge_evidence

RATIO_WARN = 0.95
RATIO_FAIL = 0.85
REGULARISATION_C = 1.0
BOOTSTRAP = 200             # paired resamples of the validation images for the ratio's standard error


def probe_scores(train_x: np.ndarray, train_is_minority: np.ndarray, val_x: np.ndarray) -> np.ndarray:
    """P(minority) of each validation row from a class-balanced logistic regression trained on
    (train_x, train_is_minority)."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=REGULARISATION_C, class_weight="balanced",
                                                               max_iter=2000))
    model.fit(train_x, train_is_minority)
    return model.predict_proba(val_x)[:, 1]


def minority_images_needed(val_is_minority: np.ndarray, real_scores: np.ndarray, synthetic_scores: np.ndarray,
                           rng: np.random.Generator) -> int:
    """Validation minority images at which a ratio of 1 and one at `RATIO_WARN` lie apart, from the ratio's
    paired-bootstrap standard error on this validation split, scaled as 1 / sqrt(n)."""
    groups = [np.flatnonzero(val_is_minority == k) for k in (0, 1)]
    ratios = []
    for _ in range(BOOTSTRAP):
        idx = np.concatenate([rng.choice(g, len(g), replace=True) for g in groups])
        ratios.append(roc_auc_score(val_is_minority[idx], synthetic_scores[idx])
                      / max(roc_auc_score(val_is_minority[idx], real_scores[idx]), 1e-12))
    spread, have = float(np.std(ratios, ddof=1)), len(groups[1])
    return images_to_separate(lambda n: 2 * spread * np.sqrt(have / n), 1 - RATIO_WARN)


def check_usefulness(train_features: np.ndarray, train_is_minority: np.ndarray, val_features: np.ndarray,
                     val_is_minority: np.ndarray, synthetic_features: np.ndarray, seed: int = 0) -> dict:
    """TSTR ratio of features: real train (N, D) with a 0/1 minority mask, real val, and synthetic minority (M, D)."""
    rng = np.random.default_rng(seed)
    minority, others = np.flatnonzero(train_is_minority), np.flatnonzero(~train_is_minority.astype(bool))
    n = min(len(minority), len(synthetic_features))
    real_scores = probe_scores(train_features[np.concatenate([others, minority[:n]])],
                               np.repeat([0, 1], [len(others), n]), val_features)
    chosen = rng.choice(len(synthetic_features), n, replace=False)
    swapped = np.concatenate([train_features[others], synthetic_features[chosen]])
    synthetic_scores = probe_scores(swapped, np.repeat([0, 1], [len(others), n]), val_features)
    real_auc, synthetic_auc = (float(roc_auc_score(val_is_minority, s)) for s in (real_scores, synthetic_scores))
    ratio = synthetic_auc / real_auc
    verdict = grade_below(ratio, RATIO_WARN, RATIO_FAIL)
    reason = (f"trained with {n} synthetic instead of the real minority images, a linear probe reaches validation AUC "
              f"{synthetic_auc:.3f} against {real_auc:.3f} with the real ones (ratio {ratio:.2f}; warn < {RATIO_WARN:g}, "
              f"fail < {RATIO_FAIL:g})")
    val_minority = int(np.sum(val_is_minority))
    needed = minority_images_needed(np.asarray(val_is_minority).astype(int), real_scores, synthetic_scores, rng)
    verdict, reason = judge_evidence(verdict, reason, val_minority, needed, "validation minority images")
    return {"real_auc": real_auc, "synthetic_auc": synthetic_auc, "ratio": ratio, "minority_images": int(n),
            "evidence": evidence(val_minority, needed, "validation minority images"),
            "thresholds": {"ratio_warn_below": RATIO_WARN, "ratio_fail_below": RATIO_FAIL},
            "verdict": verdict, "reason": reason, "figures": []}
