"""Evidence before a verdict: every check states how many images it needs, by one rule, and below it a pass
or a warning is `insufficient` while a clear fail stands."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from quality.checks import artefacts, diversity, fidelity, memorisation, pixel_statistics, usefulness
from quality.checks.verdicts import FAIL, INSUFFICIENT, MOST_IMAGES, PASS, Z_95, images_to_separate
from tests.quality.checks.test_checks import smooth_images


def test_images_to_separate_is_the_closed_form_for_a_mean():
    """Two sets whose statistic has standard error c sqrt(2 / n) each: n >= 2 (2 z c / gap)^2."""
    for c, gap in ((1.0, 0.5), (1.1, np.log(1.5)), (0.3, 0.1)):
        expected = int(np.ceil(2 * (2 * Z_95 * c / gap) ** 2))
        assert images_to_separate(lambda n, c=c: 2 * c * np.sqrt(2 / n), gap) == expected
    assert pixel_statistics.MIN_IMAGES_PER_SET == 123
    assert images_to_separate(lambda n: 1.0, 0.5) == MOST_IMAGES      # noise that no number of images removes


def test_statistics_below_their_need_say_insufficient_but_a_clear_shift_still_fails():
    need = pixel_statistics.MIN_IMAGES_PER_SET
    real, other = smooth_images(0, need), smooth_images(1, need)
    assert pixel_statistics.check_statistics(real, other)["verdict"] == PASS
    few = pixel_statistics.check_statistics(real[:need - 1], other[:need - 1])
    assert few["verdict"] == INSUFFICIENT and few["evidence"] == {"images": need - 1, "needed": need,
                                                                  "unit": "images per set"}
    assert f"needs {need} to tell a good set from a bad one" in few["reason"]
    brighter = pixel_statistics.check_statistics(real[:20], np.clip(other[:20] + 0.3, 0, 1))
    assert brighter["verdict"] == FAIL                              # a tell found on few images is a tell


def test_artefacts_need_more_images_when_the_real_images_vary_more():
    """Half the real images with a dark stroke (as half the demo's have hairs) spread the fine-detail share:
    the check needs more images to tell a 1.5x excess from none."""
    plain = smooth_images(0, 100)
    stroked = plain.copy()
    stroked[::2, :, 10:22, 16] = 0.05
    need = lambda x: artefacts.images_needed(artefacts.power_spectra(artefacts.grey(x)))
    assert need(stroked) > need(plain)
    assert artefacts.check_artefacts(plain, smooth_images(1, 100))["evidence"]["needed"] == need(plain)


def test_diversity_needs_enough_images_to_see_a_duplicate_share():
    real = smooth_images(0, 100)
    result = diversity.check_diversity(real, smooth_images(1, 100))
    # A 5 % near-duplicate share against none: z sqrt(0.05 * 0.95 / n) <= 0.05 from n = 73 on.
    assert result["verdict"] == PASS and result["evidence"]["needed"] >= 73
    assert diversity.check_diversity(real, smooth_images(1, 40))["verdict"] == INSUFFICIENT


def test_memorisation_needs_the_synthetic_images_at_which_a_share_at_the_warning_limit_is_significant():
    many_real, few_real = (memorisation.PossibleCopies(np.zeros(1, bool), np.zeros(n, bool)) for n in (1000, 100))
    for copies in (many_real, few_real):
        m = copies.synthetic_images_needed()
        warn, _ = copies.share_limits()
        p_at = lambda size, warn=warn, chance=copies.chance_share: binom.sf(np.floor(warn * size), size, chance)
        assert p_at(m) < memorisation.WARN_P_VALUE <= p_at(m - 1)
        assert all(p_at(size) < memorisation.WARN_P_VALUE for size in range(m, 3 * m))
    # Fewer real images: a higher chance rate, so more synthetic images before a copy rate stands out.
    assert few_real.synthetic_images_needed() > many_real.synthetic_images_needed()


def test_fidelity_reports_the_noise_of_its_ratio_and_needs_only_its_baseline():
    rng = np.random.default_rng(0)
    real, synthetic = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    base = fidelity.baseline_from_features(real, synthetic, np.random.default_rng(0))
    again = fidelity.baseline_from_features(real, synthetic, np.random.default_rng(0))
    assert base["log_fid_spread"] > 0 and base["ratio_noise_factor_95"] == again["ratio_noise_factor_95"] > 1
    assert fidelity.baseline_from_features(real[:5], synthetic[:5], np.random.default_rng(0))["log_fid_spread"] is None


@pytest.mark.parametrize("val_minority, expected", [(400, PASS), (8, INSUFFICIENT)])
def test_usefulness_counts_validation_minority_images(val_minority, expected):
    rng = np.random.default_rng(3)
    classes = lambda n_other, n_minority: (np.concatenate([rng.normal(0, 1, (n_other, 6)), rng.normal(0.8, 1, (n_minority, 6))]),
                                           np.repeat([0, 1], [n_other, n_minority]))
    train_x, train_y = classes(800, 200)
    val_x, val_y = classes(4 * val_minority, val_minority)
    result = usefulness.check_usefulness(train_x, train_y, val_x, val_y, rng.normal(0.8, 1, (200, 6)))
    assert result["verdict"] == expected and result["evidence"]["images"] == val_minority
    assert result["evidence"]["unit"] == "validation minority images"


def test_one_synthetic_image_gives_insufficient_in_every_image_check_not_an_error():
    from quality.checks.detectability import check_detectability
    from tests.quality.checks.test_checks import to_uint8

    real, one = smooth_images(0, 50), smooth_images(1, 1)
    results = [pixel_statistics.check_statistics(real, one), artefacts.check_artefacts(real, one),
               diversity.check_diversity(real, one), memorisation.check_memorisation(to_uint8(real), to_uint8(one)),
               check_detectability(real, one, cnn_epochs=1)]
    assert [r["verdict"] for r in results] == [INSUFFICIENT] * 5
    assert all(r["evidence"]["images"] == 1 < r["evidence"]["needed"] for r in results)
