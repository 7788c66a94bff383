import numpy as np
import pytest
import torch

from quality.checks.detectability import AUC_FAIL, AUC_WARN, MIN_IMAGES_PER_SET, check_detectability
from quality.checks.usefulness import check_usefulness


def blobs(rng: np.random.Generator, n: int, brightness: float = 0.5) -> np.ndarray:
    """(n, 1, 8, 8) images in [0, 1]: a random bright square on a grey background, plus noise."""
    x = np.full((n, 1, 8, 8), brightness) + rng.normal(0, 0.1, (n, 1, 8, 8))
    for i, (r, c) in enumerate(rng.integers(0, 5, (n, 2))):
        x[i, 0, r:r + 3, c:c + 3] += 0.3
    return x.clip(0, 1)


def strokes(rng: np.random.Generator, n: int, with_stroke: bool) -> np.ndarray:
    """(n, 1, 16, 16) noise images with six dark pixels in one random column: six scattered rows, or
    (`with_stroke`) six consecutive ones (wrapping around), a short line. Every pixel is dark equally
    often either way, so no pixel gives the line away (what a generator's missing hairs look like to a
    linear model)."""
    x = rng.uniform(0.4, 0.8, (n, 1, 16, 16))
    for i, (r, c) in enumerate(rng.integers(0, 16, (n, 2))):
        rows = (r + np.arange(6)) % 16 if with_stroke else rng.choice(16, 6, replace=False)
        x[i, 0, rows, c] = 0.1
    return x


@pytest.mark.parametrize("n", [5, 40])
@pytest.mark.parametrize("ties", [False, True])
def test_the_bootstrap_aucs_at_once_are_sklearns_roc_auc_of_each_resample(n, ties):
    from sklearn.metrics import roc_auc_score

    from quality.checks.detectability import weighted_aucs

    rng = np.random.default_rng(n)
    negative, positive = rng.random(n), rng.random(n) + 0.2
    if ties:
        negative, positive = np.round(negative, 1), np.round(positive, 1)
    draws = [(rng.integers(0, n, n), rng.integers(0, n, n)) for _ in range(20)]
    counts = [np.stack([np.bincount(d[k], minlength=n) for d in draws]).astype(float) for k in (0, 1)]
    expected = [roc_auc_score(np.repeat([0, 1], n), np.concatenate([negative[i], positive[j]])) for i, j in draws]
    np.testing.assert_allclose(weighted_aucs(negative, positive, *counts), expected, atol=1e-12)


def test_two_samples_of_one_distribution_are_indistinguishable():
    rng = np.random.default_rng(0)
    result = check_detectability(blobs(rng, 200), blobs(rng, 200), seed=0, cnn_epochs=5)
    assert set(result["views"]) == {"cnn", "pixels"}          # 8 px: too small for a frame view
    assert all(abs(v["auc"] - 0.5) < 0.1 for v in result["views"].values())
    assert result["ci_low"] < 0.5 < result["ci_high"] and result["p_value"] > 0.01
    assert result["verdict"] == "pass"


def test_obviously_different_sets_are_detected_and_fail():
    rng = np.random.default_rng(1)
    result = check_detectability(blobs(rng, 200), blobs(rng, 200, brightness=0.62), seed=0, cnn=False)
    assert result["auc"] > 0.97 and result["ci_low"] > AUC_FAIL and result["verdict"] == "fail"
    assert result["p_value"] < 1e-6


def test_the_cnn_sees_a_stroke_the_linear_views_miss_and_its_view_decides():
    rng = np.random.default_rng(5)
    result = check_detectability(strokes(rng, 200, False), strokes(rng, 200, True), seed=0, bootstrap=0, cnn_epochs=15)
    assert result["views"]["cnn"]["auc"] > 0.8 and max(v["auc"] for k, v in result["views"].items() if k != "cnn") < 0.6
    assert result["decisive_view"] == "cnn" and result["verdict"] != "pass" and "CNN" in result["reason"]


def test_the_cnn_view_is_deterministic_and_leaves_the_global_random_state_alone():
    from quality.checks.cnn_detector import cnn_out_of_fold_scores

    rng = np.random.default_rng(6)
    x, y = np.concatenate([strokes(rng, 20, False), strokes(rng, 20, True)]), np.repeat([0, 1], 20)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = cnn_out_of_fold_scores(x, y, seed=3, epochs=2)
    assert torch.rand(1) == before
    np.testing.assert_array_equal(first, cnn_out_of_fold_scores(x, y, seed=3, epochs=2))
    assert not np.array_equal(first, cnn_out_of_fold_scores(x, y, seed=4, epochs=2))


def test_too_few_images_give_insufficient_never_pass_and_a_clear_tell_still_fails():
    rng = np.random.default_rng(7)
    few = MIN_IMAGES_PER_SET - 1
    alike = check_detectability(blobs(rng, few), blobs(rng, few), seed=0, cnn_epochs=2)
    assert alike["verdict"] == "insufficient" and f"needs {MIN_IMAGES_PER_SET}" in alike["reason"]
    assert alike["evidence"] == {"images": few, "needed": MIN_IMAGES_PER_SET, "unit": "images per set"}
    obvious = check_detectability(blobs(rng, few), blobs(rng, few, brightness=0.9), seed=0, cnn=False)
    assert obvious["verdict"] == "fail"


def test_without_the_bootstrap_the_verdict_and_auc_are_the_same():
    rng = np.random.default_rng(3)
    real, synthetic = blobs(rng, 60), blobs(rng, 60, brightness=0.6)
    full, screen = check_detectability(real, synthetic, seed=1, cnn=False), check_detectability(
        real, synthetic, seed=1, bootstrap=0, cnn=False)
    assert screen["auc"] == full["auc"] and screen["verdict"] == full["verdict"]
    assert np.isnan(screen["ci_low"]) and not np.isnan(full["ci_low"])


def test_features_view_is_used_when_it_detects_more():
    rng = np.random.default_rng(2)
    same_pixels = blobs(rng, 100), blobs(rng, 100)
    features = rng.normal(0, 1, (100, 4)), rng.normal(3, 1, (100, 4))     # only the features differ
    result = check_detectability(*same_pixels, real_features=features[0], synthetic_features=features[1], seed=0,
                                 cnn=False)
    assert result["decisive_view"] == "features" and result["views"]["pixels"]["auc"] < 0.7 and result["auc"] > 0.95


def test_a_shortcut_at_the_edges_counts_and_is_named():
    """Synthetic images whose outer frame is darker (what a zero-padded generator leaves) and whose
    interior is drawn like the real ones: the frame view decides, and the reason names the edges."""
    from quality.checks.detectability import border_mask

    rng = np.random.default_rng(4)
    real, synthetic = rng.uniform(0.3, 0.7, (150, 1, 16, 16)), rng.uniform(0.3, 0.7, (150, 1, 16, 16))
    synthetic[:, :, border_mask(16, 16)] -= 0.05
    result = check_detectability(real, synthetic, seed=0, bootstrap=0, cnn=False)
    views = result["views"]
    assert views["border"]["auc"] > 0.9 and abs(views["interior"]["auc"] - 0.5) < 0.12
    assert result["decisive_view"] == "border" and result["verdict"] == "fail"
    assert "the edges give the images away" in result["reason"]
    plain = check_detectability(real, rng.uniform(0.3, 0.7, (150, 1, 16, 16)), seed=0, bootstrap=0, cnn=False)
    assert "edges" not in plain["reason"] and plain["views"]["border"]["auc"] < 0.7


def two_classes(rng: np.random.Generator, n_major: int, n_minor: int, shift: float = 1.5):
    x = np.concatenate([rng.normal(0, 1, (n_major, 6)), rng.normal(0, 1, (n_minor, 6)) + shift])
    return x, np.repeat([0, 1], [n_major, n_minor]).astype(bool)


def test_real_images_standing_in_for_synthetic_ones_are_as_useful():
    rng = np.random.default_rng(3)
    train_x, train_y = two_classes(rng, 400, 60)
    val_x, val_y = two_classes(rng, 200, 30)
    more_real_minority = rng.normal(0, 1, (60, 6)) + 1.5               # an independent real sample
    result = check_usefulness(train_x, train_y, val_x, val_y, more_real_minority)
    assert result["ratio"] == pytest.approx(1.0, abs=0.05) and result["verdict"] == "pass"


def test_synthetic_images_of_the_wrong_kind_are_not_useful():
    rng = np.random.default_rng(4)
    train_x, train_y = two_classes(rng, 400, 60)
    val_x, val_y = two_classes(rng, 200, 30)
    wrong = rng.normal(0, 1, (60, 6)) - 1.5                             # away from the real minority class
    result = check_usefulness(train_x, train_y, val_x, val_y, wrong)
    assert result["ratio"] < 0.85 and result["verdict"] == "fail"


def test_pixel_detector_fitted_in_the_span_of_the_images_is_the_plain_model():
    """More pixels than images: fitting in the training images' span must give the model fitted on all
    pixels (same held-out scores up to the solver's tolerance), not a cheaper approximation of it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from quality.checks.detectability import FOLDS, REGULARISATION_C, out_of_fold_scores

    rng = np.random.default_rng(5)
    x = np.concatenate([blobs(rng, 60), blobs(rng, 60, brightness=0.53)]).reshape(120, -1)   # 64 pixels
    x = np.concatenate([x, rng.normal(0, 0.1, (120, 400))], axis=1)                             # 464 > 96 images
    y = np.repeat([0, 1], 60)
    plain = np.empty(len(y))
    for train, held_out in StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=0).split(x, y):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=REGULARISATION_C, max_iter=2000))
        plain[held_out] = model.fit(x[train], y[train]).predict_proba(x[held_out])[:, 1]
    scores = out_of_fold_scores(x, y, seed=0)
    assert np.abs(scores - plain).max() < 0.01 and np.ptp(scores) > 0.3
    blank = np.zeros((40, 500))                                # constant images: nothing to tell, no error
    assert np.allclose(out_of_fold_scores(blank, np.repeat([0, 1], 20), seed=0), 0.5)


def test_the_images_a_verdict_needs_follow_from_the_auc_standard_error():
    """At chance the Hanley-McNeil error is the Mann-Whitney null's exact sqrt((2n + 1) / 12 n^2); the need
    is the first n where a set at chance and one at the warning threshold lie 1.96 errors apart."""
    from quality.checks.detectability import auc_standard_error, images_needed

    assert auc_standard_error(0.5, 100) == pytest.approx(np.sqrt(201 / (12 * 100 ** 2)), rel=1e-3)
    n = images_needed(AUC_WARN)
    gap = lambda k: 1.96 * (auc_standard_error(0.5, k) + auc_standard_error(AUC_WARN, k))
    assert gap(n) <= AUC_WARN - 0.5 < gap(n - 1) and n == MIN_IMAGES_PER_SET
    assert images_needed(0.75) < n < images_needed(0.6)
