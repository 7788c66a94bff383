"""Speed of the detectability check's pixel detector: fitted on the pixels, or on the span of the images.

    python bench/bench_detectability.py
    python bench/bench_detectability.py --images 500 --repeats 5

The pixel detector is a logistic regression on 3,072 inputs (32 px RGB) fitted on a few hundred images,
five times per check (k-fold), at every checkpoint screen of a GAN run and in QA. With more inputs than
images its weights lie in the span of the training images, so `out_of_fold_scores` fits it there (n
inputs instead of D): the same model up to the solver's tolerance. This prints both ways' seconds per
check, their AUCs and the largest difference in any image's score, on demo images at 32 px:

* `real vs real`: two independent draws of malignant demo images (AUC near 0.5);
* `hairs vs no hairs`: real draws against draws without hair strokes, the demo GANs' visible defect.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from bench_qa_calibration import demo_draws
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from quality.checks.detectability import FOLDS, REGULARISATION_C, out_of_fold_scores
from quality.features.image_sets import flatten, to_unit
from training.core.cli import Parser

ROOT = Path(__file__).resolve().parents[1]


def on_the_pixels(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """The reference: the same folds and model, fitted on all D inputs."""
    scores = np.empty(len(y))
    for train, held_out in StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed).split(x, y):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=REGULARISATION_C, max_iter=2000))
        scores[held_out] = model.fit(x[train], y[train]).predict_proba(x[held_out])[:, 1]
    return scores


def fastest(fn, x: np.ndarray, y: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        scores = fn(x, y, 0)
        times.append(time.perf_counter() - start)
    return min(times), scores


def main() -> None:
    p = Parser(__doc__)
    p.add_argument("--images", type=int, default=200, help="images per set (the demo has 200 minority images)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; the fastest counts")
    args = p.parse_args()
    pixels = lambda seed, hairs: flatten(to_unit(demo_draws(seed, args.images, hairs)))
    pairs = {"real vs real": (pixels(1, True), pixels(2, True)),
             "hairs vs no hairs": (pixels(1, True), pixels(3, False))}
    print(f"{args.images} images per set, {pairs['real vs real'][0].shape[1]} pixels, {FOLDS} folds; seconds per check")
    print(f"{'pair':<18} {'on pixels s':>11} {'on span s':>9} {'speed-up':>8} {'AUC pixels':>10} {'AUC span':>8} "
          f"{'max |score diff|':>16}")
    for name, (real, synthetic) in pairs.items():
        x, y = np.concatenate([real, synthetic]).astype(np.float64), np.repeat([0, 1], args.images)
        direct_s, direct = fastest(on_the_pixels, x, y, args.repeats)
        span_s, span = fastest(out_of_fold_scores, x, y, args.repeats)
        print(f"{name:<18} {direct_s:>11.2f} {span_s:>9.2f} {direct_s / span_s:>7.1f}x {roc_auc_score(y, direct):>10.3f} "
              f"{roc_auc_score(y, span):>8.3f} {np.abs(direct - span).max():>16.4f}")


if __name__ == "__main__":
    main()
