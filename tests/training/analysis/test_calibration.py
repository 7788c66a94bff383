"""The comparison's primary test on simulated studies with a known truth (the fast version of
bench/bench_comparison_calibration.py)."""

import pytest

from training.analysis.calibration import Design, rejection_rates


def test_identical_recipes_are_rarely_called_different():
    """Two recipes that differ only by seed: at 3 seeds the recipe-level test keeps its false-positive rate near
    the nominal 5 % (at most 0.2 over 60 studies), where the test-images-only bootstrap does not."""
    rates = rejection_rates(Design(seeds=3, seed_effect=0.15, interaction=0.4), studies=60, seed=0, resamples=200)
    assert rates.recipe <= 0.2
    assert rates.test_only > rates.recipe


def test_the_better_recipe_has_the_stated_margin():
    d = Design(effect=0.05)
    assert d.other_separation() > d.separation
    assert Design(effect=0.0).other_separation() == pytest.approx(d.separation)
