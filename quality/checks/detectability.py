"""Detectability: can a classifier tell the synthetic images from the real ones? (a classifier two-sample test)

A classifier is trained to separate real minority images (label 0) from synthetic ones (label 1) and
scored, by k-fold cross-validation, only on images it did not train on (Lopez-Paz & Oquab, ICLR 2017).
Its ROC-AUC is the check's number, with a bootstrap confidence interval over the held-out scores:

* about 0.5: the classifier cannot tell them apart;
* near 1.0: "looks synthetic" is an easy feature, and a downstream classifier trained on real benign +
  synthetic malignant images can use it as a shortcut for the minority label (Raja Babu et al. 2024).

Two detectors run, each a logistic regression on standardised inputs: one on the pixels (the simplest
model that could learn the shortcut) and one on the domain encoder's features when they are available;
the more successful one decides. Both sets are cut to the same size, so chance is exactly 0.5.

Where the pixel detector finds its shortcut is reported too: the same detector on the outer
`BORDER_PIXELS`-pixel frame of the images alone, and on the rest. A frame far more telling than the
interior points at the edges (a generator's zero padding, a resizing step only one side went
through); measured on six zero-padded demo GANs: the frame alone gave AUC 0.94-0.99, the interior
0.37-0.50.
It is a diagnosis, not a third detector: the verdict stays with the pixel and feature views.

Thresholds (docs/user_guide.md#thresholds-detectability): AUC above 0.75 warns, above 0.90 fails. A
rule of thumb, not a calibration: at 0.90 a linear model ranks a random synthetic image above a
random real one nine times in ten, which is a shortcut any classifier will find.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from quality.checks.verdicts import grade_above

AUC_WARN = 0.75
AUC_FAIL = 0.90
FOLDS = 5
MAX_PER_SET = 1000           # images per side; keeps the pixel model to seconds
BOOTSTRAP = 1000
CI_LEVEL = 0.95
REGULARISATION_C = 0.1       # inverse L2 strength: many more inputs (pixels) than images
BORDER_PIXELS = 2            # the frame whose pixels `where_pixels_tell` tests apart from the interior
RANK_TOLERANCE = 1e-10       # Gram eigenvalues below this fraction of the largest are rounding, not data
BORDER_HINT_MARGIN = 0.1     # the frame's AUC this much above the interior's: name the edges in the reason


def span_coordinates(train: np.ndarray, held_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets in orthonormal coordinates of the span of the training rows, when there are more inputs
    than training rows (pixels); otherwise unchanged.

    An L2-penalised linear model's weights lie in that span (representer theorem) and the coordinates
    keep lengths, so the model fitted on them is the same model, up to the solver's tolerance, with at
    most n instead of D inputs: 12-14x faster for the pixel detector on 2 x 200 demo images of 3,072 pixels
    (bench/bench_detectability.py). From the Gram matrix: train = U S V^T, train train^T = U S^2 U^T.
    """
    if train.shape[1] <= train.shape[0] or not train.any():      # all zero: constant images have no span
        return train, held_out
    eigenvalues, vectors = np.linalg.eigh(train @ train.T)
    keep = eigenvalues > eigenvalues[-1] * RANK_TOLERANCE       # standardising leaves at least one null direction
    s, u = np.sqrt(eigenvalues[keep]), vectors[:, keep]
    return u * s, held_out @ train.T @ (u / s)                  # train V = U S, held_out V = held_out train^T U S^-1


def out_of_fold_scores(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """P(synthetic) of every image from a logistic regression that did not see it (k-fold)."""
    scores = np.empty(len(y))
    folds = StratifiedKFold(n_splits=min(FOLDS, int(np.bincount(y).min())), shuffle=True, random_state=seed)
    for train, held_out in folds.split(x, y):
        scaler = StandardScaler().fit(x[train])
        fit_on, score_on = span_coordinates(scaler.transform(x[train]), scaler.transform(x[held_out]))
        model = LogisticRegression(C=REGULARISATION_C, max_iter=2000).fit(fit_on, y[train])
        scores[held_out] = model.predict_proba(score_on)[:, 1]
    return scores


def auc_interval(y: np.ndarray, scores: np.ndarray, rng: np.random.Generator,
                 bootstrap: int = BOOTSTRAP) -> tuple[float, float, float]:
    """ROC-AUC and its percentile-bootstrap interval (resampling images within each label); no interval
    (NaN ends) with `bootstrap` 0."""
    auc = float(roc_auc_score(y, scores))
    if bootstrap == 0:
        return auc, float("nan"), float("nan")
    groups = [np.flatnonzero(y == k) for k in (0, 1)]
    resampled = []
    for _ in range(bootstrap):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        resampled.append(roc_auc_score(y[idx], scores[idx]))
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return auc, float(low), float(high)


def detect(real: np.ndarray, synthetic: np.ndarray, seed: int, bootstrap: int = BOOTSTRAP) -> dict:
    """The two-sample test on one view: (N, D) real and (M, D) synthetic rows, cut to the same size."""
    rng = np.random.default_rng(seed)
    n = min(len(real), len(synthetic), MAX_PER_SET)
    x = np.concatenate([real[rng.choice(len(real), n, replace=False)],
                        synthetic[rng.choice(len(synthetic), n, replace=False)]]).astype(np.float64)
    y = np.repeat([0, 1], n)
    auc, low, high = auc_interval(y, out_of_fold_scores(x, y, seed), rng, bootstrap)
    return {"auc": auc, "ci_low": low, "ci_high": high, "images_per_set": int(n)}


def border_mask(height: int, width: int, border: int = BORDER_PIXELS) -> np.ndarray:
    """(H, W) True on the outer `border` pixels of an image."""
    mask = np.ones((height, width), dtype=bool)
    mask[border:height - border, border:width - border] = False
    return mask


def where_pixels_tell(real_unit: np.ndarray, synthetic_unit: np.ndarray, seed: int) -> dict:
    """The pixel detector's AUC on the border frame alone and on the interior alone (no interval)."""
    frame = border_mask(*real_unit.shape[2:])
    part = lambda unit, mask: unit[:, :, mask].reshape(len(unit), -1)
    return {"border_pixels": BORDER_PIXELS,
            "border_auc": detect(part(real_unit, frame), part(synthetic_unit, frame), seed, bootstrap=0)["auc"],
            "interior_auc": detect(part(real_unit, ~frame), part(synthetic_unit, ~frame), seed, bootstrap=0)["auc"]}


def check_detectability(real_unit: np.ndarray, synthetic_unit: np.ndarray, *, real_features: np.ndarray | None = None,
                        synthetic_features: np.ndarray | None = None, seed: int = 0, bootstrap: int = BOOTSTRAP,
                        locate: bool = True) -> dict:
    """Classifier two-sample test of (N, C, H, W) sets in [0, 1] (and their features, when given).

    `bootstrap` 0 skips the confidence interval and `locate` False the border/interior diagnosis (a
    checkpoint screen needs only the verdict).
    """
    views = {"pixels": detect(real_unit.reshape(len(real_unit), -1), synthetic_unit.reshape(len(synthetic_unit), -1),
                              seed, bootstrap)}
    if real_features is not None and synthetic_features is not None:
        views["features"] = detect(real_features, synthetic_features, seed, bootstrap)
    decisive = max(views, key=lambda k: views[k]["auc"])
    d = views[decisive]
    verdict = grade_above(d["auc"], AUC_WARN, AUC_FAIL)
    reason = (f"a linear classifier on {decisive} tells synthetic from real with held-out AUC {d['auc']:.3f} "
              f"[{d['ci_low']:.3f}, {d['ci_high']:.3f}] ({d['images_per_set']} images per set; 0.5 = indistinguishable; "
              f"warn > {AUC_WARN:g}, fail > {AUC_FAIL:g})")
    locatable = locate and min(real_unit.shape[2:]) > 4 * BORDER_PIXELS
    where = where_pixels_tell(real_unit, synthetic_unit, seed) if locatable else None
    if where is not None and where["border_auc"] > max(AUC_WARN, where["interior_auc"] + BORDER_HINT_MARGIN):
        reason += (f"; the outer {BORDER_PIXELS}-pixel frame alone gives AUC {where['border_auc']:.3f}, the interior "
                   f"{where['interior_auc']:.3f}: the edges give the images away (padding or resizing artefacts)")
    return {"views": views, "decisive_view": decisive, "where": where,
            "auc": d["auc"], "ci_low": d["ci_low"], "ci_high": d["ci_high"],
            "thresholds": {"auc_warn_above": AUC_WARN, "auc_fail_above": AUC_FAIL, "folds": FOLDS,
                           "ci_level": CI_LEVEL},
            "verdict": verdict, "reason": reason, "figures": []}
