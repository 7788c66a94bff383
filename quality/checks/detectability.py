"""Detectability: can a classifier tell the synthetic images from the real ones? (a classifier two-sample test)

A classifier is trained to separate real minority images (label 0) from synthetic ones (label 1) and
scored, by k-fold cross-validation, only on images it did not train on (Lopez-Paz & Oquab, ICLR 2017).
Its ROC-AUC is the check's number, with a bootstrap confidence interval over the held-out scores and a
one-sided Mann-Whitney p-value (H0: the held-out scores do not rank synthetic above real):

* about 0.5: the classifier cannot tell them apart;
* near 1.0: "looks synthetic" is an easy feature, and a downstream classifier trained on real benign +
  synthetic malignant images can use it as a shortcut for the minority label (Raja Babu et al. 2024).

Several detectors ("views") look, and every one counts: the most successful decides the verdict.

* `cnn`: a small convolutional network on the images (quality.checks.cnn_detector), the view that sees
  what a person sees: thin strokes one set lacks, soft edges, texture;
* `pixels`: a logistic regression on the standardised pixels;
* `features`: the same on the domain encoder's features, when they are available;
* `border` / `interior`: the pixel model on the outer `BORDER_PIXELS`-pixel frame alone and on the
  rest. A frame far more telling than the interior points at the edges (a generator's zero padding,
  a resizing step only one side went through); the reason then says so.

Both sets are cut to the same size, so chance is exactly 0.5.

Thresholds and the evidence a verdict needs were set from bench/bench_qa_calibration.py before any
shipped generator was measured against them (docs/user_guide.md#thresholds-detectability): AUC above
`AUC_WARN` warns, above `AUC_FAIL` fails; with fewer than `MIN_IMAGES_PER_SET` images per set a pass or
a warning becomes `insufficient` (a tell found on fewer images still fails).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from quality.checks.cnn_detector import EPOCHS as CNN_EPOCHS
from quality.checks.cnn_detector import cnn_out_of_fold_scores
from quality.checks.verdicts import INSUFFICIENT, Z_95, evidence, grade_above, images_to_separate, judge_evidence

AUC_WARN = 0.65
AUC_FAIL = 0.90
FOLDS = 5
MAX_PER_SET = 1000           # images per side for the linear views; keeps the pixel model to seconds
CNN_MAX_PER_SET = 500        # images per side for the network: a minute on 2 CPU cores at 32 px
BOOTSTRAP = 1000
CI_LEVEL = 0.95
REGULARISATION_C = 0.1       # inverse L2 strength: many more inputs (pixels) than images
BORDER_PIXELS = 2            # the frame of the `border` view
RANK_TOLERANCE = 1e-10       # Gram eigenvalues below this fraction of the largest are rounding, not data
BORDER_HINT_MARGIN = 0.1     # the frame's AUC this much above the interior's: name the edges in the reason
VIEW_NAMES = {"cnn": "a small CNN on the images", "pixels": "a linear classifier on the pixels",
              "features": "a linear classifier on the domain features",
              "border": f"a linear classifier on the outer {BORDER_PIXELS}-pixel frame",
              "interior": "a linear classifier on the pixels inside the frame"}


def auc_standard_error(auc: float, per_set: int) -> float:
    """Standard error of an AUC on `per_set` images per label (Hanley & McNeil, Radiology 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    n = per_set
    return float(np.sqrt((auc * (1 - auc) + (n - 1) * (q1 - auc ** 2) + (n - 1) * (q2 - auc ** 2)) / n ** 2))


def images_needed(warn_above: float, z: float = Z_95) -> int:
    """The fewest images per set at which a set at chance (AUC 0.5) and a set at the warning threshold lie
    apart, their `z`-sigma intervals not overlapping: below it a pass cannot be told from a warning."""
    return images_to_separate(lambda n: auc_standard_error(0.5, n) + auc_standard_error(warn_above, n),
                              warn_above - 0.5, z)


MIN_IMAGES_PER_SET = images_needed(AUC_WARN)   # 109 at AUC_WARN 0.65: below it, `insufficient`


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
    """P(synthetic) of every row of (N, D) `x` from a logistic regression that did not see it (k-fold)."""
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
    counts = [np.zeros((bootstrap, len(g))) for g in groups]      # how often each image is drawn, per resample
    for b in range(bootstrap):
        for count, g in zip(counts, groups):
            count[b] = np.bincount(rng.choice(len(g), size=len(g), replace=True), minlength=len(g))
    resampled = weighted_aucs(scores[groups[0]], scores[groups[1]], counts[0], counts[1])
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return auc, float(low), float(high)


def weighted_aucs(negative: np.ndarray, positive: np.ndarray, negative_counts: np.ndarray,
                  positive_counts: np.ndarray) -> np.ndarray:
    """ROC-AUC of each resample given as draw counts (rows), all at once: the Mann-Whitney statistic, the
    share of (negative, positive) pairs the positive wins, ties counting half (= roc_auc_score of the
    resampled images; tests/quality/checks compare them)."""
    order = np.argsort(negative, kind="stable")
    sorted_negative = negative[order]
    below = np.concatenate([np.zeros((len(negative_counts), 1)), np.cumsum(negative_counts[:, order], axis=1)], axis=1)
    less = below[:, np.searchsorted(sorted_negative, positive, side="left")]        # negatives scored lower
    tied = below[:, np.searchsorted(sorted_negative, positive, side="right")] - less
    wins = ((less + 0.5 * tied) * positive_counts).sum(axis=1)
    return wins / (negative_counts.sum(axis=1) * positive_counts.sum(axis=1))


def detect(real: np.ndarray, synthetic: np.ndarray, seed: int, bootstrap: int = BOOTSTRAP, scorer=None,
           max_per_set: int = MAX_PER_SET) -> dict:
    """The two-sample test of one view: real and synthetic rows (any trailing shape), cut to the same size.

    `scorer(x, y, seed)` gives every row's out-of-fold P(synthetic); default: the linear model on
    flattened rows.
    """
    rng = np.random.default_rng(seed)
    n = min(len(real), len(synthetic), max_per_set)
    x = np.concatenate([real[rng.choice(len(real), n, replace=False)],
                        synthetic[rng.choice(len(synthetic), n, replace=False)]])
    y = np.repeat([0, 1], n)
    if scorer is None:
        scores = out_of_fold_scores(x.reshape(len(x), -1).astype(np.float64), y, seed)
    else:
        scores = scorer(x, y, seed)
    auc, low, high = auc_interval(y, scores, rng, bootstrap)
    p_value = float(mannwhitneyu(scores[y == 1], scores[y == 0], alternative="greater").pvalue)
    return {"auc": auc, "ci_low": low, "ci_high": high, "p_value": p_value, "images_per_set": int(n)}


def border_mask(height: int, width: int, border: int = BORDER_PIXELS) -> np.ndarray:
    """(H, W) True on the outer `border` pixels of an image."""
    mask = np.ones((height, width), dtype=bool)
    mask[border:height - border, border:width - border] = False
    return mask


def run_views(real_unit: np.ndarray, synthetic_unit: np.ndarray, real_features: np.ndarray | None,
              synthetic_features: np.ndarray | None, seed: int, bootstrap: int, cnn: bool, cnn_epochs: int,
              device: str) -> dict[str, dict]:
    """Every view's two-sample test, by view name."""
    views = {}
    if cnn:
        views["cnn"] = detect(real_unit, synthetic_unit, seed, bootstrap, max_per_set=CNN_MAX_PER_SET,
                              scorer=lambda x, y, s: cnn_out_of_fold_scores(x, y, s, epochs=cnn_epochs, device=device))
    views["pixels"] = detect(real_unit, synthetic_unit, seed, bootstrap)
    if real_features is not None and synthetic_features is not None:
        views["features"] = detect(real_features, synthetic_features, seed, bootstrap)
    if min(real_unit.shape[2:]) > 4 * BORDER_PIXELS:
        frame = border_mask(*real_unit.shape[2:])
        for name, mask in (("border", frame), ("interior", ~frame)):
            views[name] = detect(real_unit[:, :, mask], synthetic_unit[:, :, mask], seed, bootstrap)
    return views


def check_detectability(real_unit: np.ndarray, synthetic_unit: np.ndarray, *, real_features: np.ndarray | None = None,
                        synthetic_features: np.ndarray | None = None, seed: int = 0, bootstrap: int = BOOTSTRAP,
                        cnn: bool = True, cnn_epochs: int = CNN_EPOCHS, device: str = "cpu") -> dict:
    """Classifier two-sample test of (N, C, H, W) sets in [0, 1] (and their features, when given).

    `bootstrap` 0 skips the confidence intervals and `cnn` False the network (what a checkpoint screen
    runs at every evaluation; the report says which views ran).
    """
    images = min(len(real_unit), len(synthetic_unit))
    if images < FOLDS:          # out-of-fold scores need an image of each set in every fold
        return {"views": {}, "evidence": evidence(images, MIN_IMAGES_PER_SET, "images per set"),
                "thresholds": {"auc_warn_above": AUC_WARN, "auc_fail_above": AUC_FAIL}, "figures": [],
                "verdict": INSUFFICIENT, "reason": (f"{images} images per set, and this check needs "
                                                    f"{MIN_IMAGES_PER_SET} to tell a good set from a bad one")}
    views = run_views(real_unit, synthetic_unit, real_features, synthetic_features, seed, bootstrap, cnn,
                      cnn_epochs, device)
    decisive = max(views, key=lambda k: views[k]["auc"])
    d = views[decisive]
    verdict = grade_above(d["auc"], AUC_WARN, AUC_FAIL)
    interval = "" if np.isnan(d["ci_low"]) else f" [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    reason = (f"{VIEW_NAMES[decisive]} tells synthetic from real with held-out AUC {d['auc']:.3f}{interval}, "
              f"p = {d['p_value']:.2g} ({d['images_per_set']} images per set; 0.5 = indistinguishable; "
              f"warn > {AUC_WARN:g}, fail > {AUC_FAIL:g}; views: {', '.join(views)})")
    if "border" in views and views["border"]["auc"] > max(AUC_WARN, views["interior"]["auc"] + BORDER_HINT_MARGIN):
        reason += (f"; the frame alone gives AUC {views['border']['auc']:.3f}, the interior "
                   f"{views['interior']['auc']:.3f}: the edges give the images away (padding or resizing artefacts)")
    verdict, reason = judge_evidence(verdict, reason, images, MIN_IMAGES_PER_SET, "images per set")
    return {"views": views, "decisive_view": decisive,
            "auc": d["auc"], "ci_low": d["ci_low"], "ci_high": d["ci_high"], "p_value": d["p_value"],
            "evidence": evidence(images, MIN_IMAGES_PER_SET, "images per set"),
            "thresholds": {"auc_warn_above": AUC_WARN, "auc_fail_above": AUC_FAIL, "folds": FOLDS,
                           "ci_level": CI_LEVEL, "min_images_per_set": MIN_IMAGES_PER_SET},
            "verdict": verdict, "reason": reason, "figures": []}
