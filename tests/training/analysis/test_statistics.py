import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.analysis.statistics import delong, holm, placements


def brute_force_delong(labels, a, b):
    """DeLong et al. (1988) from the definition, O(m n) per run: the reference for the midrank version."""
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)

    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0

    comps = []
    for s in (a, b):
        v10 = np.array([np.mean([psi(s[i], s[j]) for j in neg]) for i in pos])
        v01 = np.array([np.mean([psi(s[i], s[j]) for i in pos]) for j in neg])
        comps.append((v10, v01))
    s10 = np.cov(np.stack([comps[0][0], comps[1][0]]))
    s01 = np.cov(np.stack([comps[0][1], comps[1][1]]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / len(pos) + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / len(neg)
    return comps[1][0].mean() - comps[0][0].mean(), np.sqrt(var)


def test_placements_average_to_the_auc_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60) + 0.3 * labels, 1)            # rounding makes ties
    v10, v01 = placements(scores[labels == 1], scores[labels == 0])
    assert v10.mean() == pytest.approx(roc_auc_score(labels, scores)) == pytest.approx(v01.mean())


def test_delong_matches_the_definition_and_sklearn():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], [40, 25])
    a = rng.normal(0, 1, 65) + 0.8 * labels
    b = a + rng.normal(0, 0.7, 65) + 0.4 * labels                    # correlated with a, better
    result = delong(labels, a, b)
    diff, se = brute_force_delong(labels, a, b)
    assert result.difference == pytest.approx(diff) and result.standard_error == pytest.approx(se)
    assert result.auc_a == pytest.approx(roc_auc_score(labels, a))
    assert result.ci_low < result.difference < result.ci_high and 0 < result.p_value < 1


def test_identical_runs_differ_by_nothing_and_seeds_average_placements():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], [30, 20])
    a = rng.random((3, 50)) + 0.5 * labels
    same = delong(labels, a, a.copy())
    assert same.difference == 0 and same.p_value == 1.0
    result = delong(labels, a, a[::-1] + 0.2 * labels)
    assert result.auc_a == pytest.approx(np.mean([roc_auc_score(labels, s) for s in a]))   # the seed-mean AUC


def test_holm_against_a_worked_example_and_its_definition():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])
    p = [0.001, 0.02, 0.03, 0.5]
    adjusted = holm(p)
    for k in range(len(p)):                                          # step-down: max over earlier ranks
        order = np.argsort(p)
        expected = max(min(1, (len(p) - r) * p[order[r]]) for r in range(list(order).index(k) + 1))
        assert adjusted[k] == pytest.approx(expected)
    assert all(a >= q for a, q in itertools.zip_longest(adjusted, p))


def test_minimum_detectable_effect_follows_seeds_arms_and_test_positives():
    from training.analysis.statistics import minimum_detectable_effect, prior_seed_spread, welch_df
    # 5 seeds, spread 6.5 pp, one arm: (t_8(0.975) + t_8(0.8)) * 0.065 * sqrt(2 / 5)
    assert minimum_detectable_effect(0.065, 5, 1) == pytest.approx((2.306 + 0.889) * 0.065 * np.sqrt(0.4), rel=1e-3)
    assert minimum_detectable_effect(0.065, 10, 1) < minimum_detectable_effect(0.065, 5, 1)
    assert minimum_detectable_effect(0.065, 5, 5) > minimum_detectable_effect(0.065, 5, 1)       # Holm's alpha / 5
    assert minimum_detectable_effect(0.065, 1, 1) == float("inf")
    assert prior_seed_spread(42) == pytest.approx(np.sqrt(0.04 ** 2 + 0.1 / 42))
    assert prior_seed_spread(500) < prior_seed_spread(42)
    assert welch_df(2.0, [1.0, 1.0], [3, 3]) == pytest.approx(4.0)       # equal parts: 2 (S - 1)
    assert welch_df(1.0, [0.0, 0.0], [3, 3]) == 1000.0                     # no seed part: normal
