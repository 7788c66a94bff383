"""Simulated classifier studies whose truth is known, for calibrating the comparison's primary test.

A study is a baseline recipe and another recipe, each trained with a few seeds and scored on one shared
test set; each seed's threshold for the primary metric is chosen on its own validation scores, as the
trainer does. Scores follow a simple model of real classifiers:

    score = separation_seed * label + difficulty_image + noise_seed_image

* separation_seed = the recipe's separation + seed_effect * N(0, 1): training luck moves the whole model;
* difficulty_image ~ N(0, 1 - interaction): easy and hard images, shared by every model;
* noise_seed_image ~ N(0, interaction): a seed's own luck on particular images.

The validation split is small, so each seed's 90 %-specificity threshold moves too: that, as in real
runs, is a large part of the seed-to-seed spread of the primary metric. A recipe "better by d" has the
separation that raises the expected sensitivity at 90 % specificity by d (in the population, averaged
over seeds).

Each study goes through the comparison's own functions (bootstrap_differences, mean_differences,
recipe_bootstrap, primary_tests, as compare() calls them) on in-memory Runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import norm

from training.analysis.comparison import (
    FAMILY_ALPHA,
    Run,
    bootstrap_differences,
    bootstrap_p_value,
    mean_differences,
    primary_tests,
    recipe_bootstrap,
)
from training.classify.metrics import PRIMARY_METRIC, PRIMARY_SPECIFICITY, specificity_threshold


@dataclass(frozen=True)
class Design:
    """One simulated study design.

    Attributes:
        seeds: seeds per recipe.
        seed_effect: standard deviation of a seed's separation (training luck), in score units.
        interaction: share of the image variance that is a seed's own (0: every seed finds the same images hard).
        effect: true difference of the expected primary metric, other recipe - baseline (0.05 = +5 pp).
        test: (positives, negatives) of the test split; val: of the validation split (BreastMNIST's by default).
        separation: the baseline's mean separation in score units (1.66: AUC about 0.88, sensitivity at 90 %
            specificity about 0.65, like the shipped BreastMNIST baseline).
    """

    seeds: int = 3
    seed_effect: float = 0.15
    interaction: float = 0.4
    effect: float = 0.0
    test: tuple[int, int] = (42, 114)
    val: tuple[int, int] = (21, 57)
    separation: float = 1.66

    def other_separation(self) -> float:
        """The separation whose expected sensitivity at the population's 90 %-specificity cut is `effect` higher.

        Scores have variance 1 within a class, so the cut is z90 and a seed's sensitivity Phi(s - z90), whose mean
        over s ~ N(mu, seed_effect^2) is Phi((mu - z90) / sqrt(1 + seed_effect^2)).
        """
        z90, spread = norm.ppf(PRIMARY_SPECIFICITY), np.sqrt(1 + self.seed_effect ** 2)
        base = norm.cdf((self.separation - z90) / spread)
        return float(z90 + norm.ppf(base + self.effect) * spread)


@dataclass(frozen=True)
class StudyResult:
    """One simulated study's primary-metric p-values: the shipped recipe-level test, the same two-stage
    bootstrap read by percentiles without the small-sample corrections, and the test-images-only bootstrap."""

    recipe_p: float
    uncorrected_p: float
    test_only_p: float
    seed_spread: float          # mean over both recipes of the primary metric's std over seeds (ddof 1)


def _labels(positives: int, negatives: int) -> np.ndarray:
    return np.repeat([0, 1], [negatives, positives])


def simulate_run(rng: np.random.Generator, design: Design, separation: float, test_difficulty: np.ndarray,
                 val_difficulty: np.ndarray, label: str) -> Run:
    """One recipe's seeds scored on the shared test images, each seed thresholded on the validation split."""
    test_labels, val_labels = _labels(*design.test), _labels(*design.val)
    own = np.sqrt(design.interaction)
    scores, thresholds = [], []
    for _ in range(design.seeds):
        seed_separation = separation + design.seed_effect * rng.standard_normal()
        val_scores = seed_separation * val_labels + val_difficulty + own * rng.standard_normal(len(val_labels))
        thresholds.append(specificity_threshold(val_labels, val_scores, PRIMARY_SPECIFICITY))
        scores.append(seed_separation * test_labels + test_difficulty + own * rng.standard_normal(len(test_labels)))
    n = len(test_labels)
    return Run(label=label, run_dir=Path(label), summary={}, seeds=tuple(range(design.seeds)),
               thresholds=np.array(thresholds), keys=tuple((f"{i:064x}", 0) for i in range(n)),
               labels=test_labels, scores=np.array(scores), spec90_thresholds=np.array(thresholds))


def simulate_study(rng: np.random.Generator, design: Design, resamples: int = 1000) -> StudyResult:
    """Simulate one study of `design` and test the primary metric three ways (StudyResult)."""
    shared = np.sqrt(1 - design.interaction)
    test_difficulty = shared * rng.standard_normal(sum(design.test))
    val_difficulty = shared * rng.standard_normal(sum(design.val))
    base = simulate_run(rng, design, design.separation, test_difficulty, val_difficulty, "baseline")
    other = simulate_run(rng, design, design.other_separation(), test_difficulty, val_difficulty, "other")
    seed = int(rng.integers(2 ** 31))
    metrics = [PRIMARY_METRIC]
    samples = bootstrap_differences(base, [other], metrics, resamples, seed)
    pair = mean_differences(base, [other], samples, metrics)[0][PRIMARY_METRIC]
    recipe = recipe_bootstrap(base, [other], PRIMARY_METRIC, resamples, seed)
    test = primary_tests(recipe, [samples[0][PRIMARY_METRIC]], [pair])[0]
    plain = recipe_bootstrap(base, [other], PRIMARY_METRIC, resamples, seed, correct_small_sample=False)[0]
    spread = np.mean([np.std(_per_seed(run), ddof=1) for run in (base, other)])
    return StudyResult(recipe_p=_or_one(test["p_value"]),
                       uncorrected_p=_or_one(None if plain is None else bootstrap_p_value(plain.replicates)),
                       test_only_p=_or_one(bootstrap_p_value(samples[0][PRIMARY_METRIC])), seed_spread=float(spread))


def _per_seed(run: Run) -> np.ndarray:
    """Each seed's primary metric (sensitivity at its threshold_spec90) on the whole test set, (S,)."""
    positives = run.labels == 1
    return np.array([np.mean(s[positives] >= t) for s, t in zip(run.scores, run.spec90_thresholds)])


def _or_one(p: float | None) -> float:
    return 1.0 if p is None else p


@dataclass(frozen=True)
class Rates:
    """Share of studies whose p < alpha, per test, over `studies` simulated studies of one design."""

    design: Design
    studies: int
    recipe: float
    uncorrected: float
    test_only: float
    seed_spread: float


def rejection_rates(design: Design, studies: int, seed: int = 0, resamples: int = 1000,
                    alpha: float = FAMILY_ALPHA) -> Rates:
    """Simulate `studies` studies of `design` and count how often each test says the recipes differ."""
    rng = np.random.default_rng(seed)
    results = [simulate_study(rng, design, resamples) for _ in range(studies)]
    return Rates(design, studies, recipe=float(np.mean([r.recipe_p < alpha for r in results])),
                 uncorrected=float(np.mean([r.uncorrected_p < alpha for r in results])),
                 test_only=float(np.mean([r.test_only_p < alpha for r in results])),
                 seed_spread=float(np.mean([r.seed_spread for r in results])))
