"""Bayesian read-outs against closed forms and posterior draws; power against statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special
from statsmodels.stats.power import NormalIndPower, TTestIndPower

from flagstone.stats import (
    Design,
    Mean,
    PlanError,
    Proportion,
    minimum_detectable_effect,
    sample_size,
)
from flagstone.stats.bayesian import bayesian_compare, beta_binomial
from flagstone.stats.frequentist import Moments, compare
from flagstone.stats.power import power_at


def miller_prob_b_beats_a(a_a: int, b_a: int, a_b: int, b_b: int) -> float:
    """Evan Miller's closed form for P(p_B > p_A) with integer Beta parameters."""
    total = 0.0
    for i in range(a_b):
        total += math.exp(
            special.betaln(a_a + i, b_a + b_b)
            - math.log(b_b + i)
            - special.betaln(1 + i, b_b)
            - special.betaln(a_a, b_a)
        )
    return total


@pytest.mark.parametrize(
    "c, t",
    [
        ((100, 49), (100, 51)),
        ((40, 2), (35, 6)),
        ((5000, 600), (5000, 660)),
        ((462_215, 151_846), (1603, 550)),  # a 0.3% treatment: the control's posterior is narrow
    ],
)
def test_beta_binomial__chance_to_beat__equals_the_closed_form(
    c: tuple[int, int], t: tuple[int, int]
) -> None:
    r = beta_binomial(Proportion(*c), Proportion(*t))
    exact = miller_prob_b_beats_a(1 + c[1], 1 + c[0] - c[1], 1 + t[1], 1 + t[0] - t[1])
    assert r.chance_to_beat == pytest.approx(exact, abs=1e-9)


def test_beta_binomial__risk__matches_gbstats_published_numbers() -> None:
    # gbstats tests/bayesian/test_tests.py, 49/100 vs 51/100: risk [0.03872, 0.01912].
    r = beta_binomial(Proportion(100, 49), Proportion(100, 51))
    assert round(r.expected_loss_control, 5) == 0.03872
    assert round(r.expected_loss, 5) == 0.01912


def test_beta_binomial__intervals_and_loss__agree_with_posterior_draws() -> None:
    rng = np.random.default_rng(3)
    r = beta_binomial(Proportion(30, 0), Proportion(30, 2))  # a skewed, small-count case
    c, t = rng.beta(1, 31, 2_000_000), rng.beta(3, 29, 2_000_000)
    assert r.chance_to_beat == pytest.approx((t > c).mean(), abs=2e-3)
    assert r.expected_loss == pytest.approx(np.maximum(c - t, 0).mean(), rel=0.01)
    assert r.expected_loss_control == pytest.approx(np.maximum(t - c, 0).mean(), rel=0.01)
    assert (r.absolute_low, r.absolute_high) == pytest.approx(
        tuple(np.quantile(t - c, [0.025, 0.975])), abs=1e-3
    )
    assert r.relative_low == pytest.approx(np.quantile(t / c - 1, 0.025), abs=0.01)


@pytest.mark.parametrize(
    "c, t", [((1603, 550), (462_215, 151_846)), ((462_215, 151_846), (1603, 550))]
)
def test_beta_binomial__unbalanced_arms__agree_with_posterior_draws(
    c: tuple[int, int], t: tuple[int, int]
) -> None:
    # One arm with 0.3% of the units: its posterior is 17 times wider than the other's,
    # whose CDF a quadrature over the wide one's nodes cannot resolve.
    rng = np.random.default_rng(11)
    r = beta_binomial(Proportion(*c), Proportion(*t))
    draws = 4_000_000
    diff = rng.beta(1 + t[1], 1 + t[0] - t[1], draws) - (
        control := rng.beta(1 + c[1], 1 + c[0] - c[1], draws)
    )
    # Tolerances are 4-6 Monte-Carlo standard errors of each quantity at this many draws.
    assert r.expected_loss == pytest.approx(np.maximum(-diff, 0).mean(), rel=0.005)
    assert r.expected_loss_control == pytest.approx(np.maximum(diff, 0).mean(), rel=0.005)
    assert (r.absolute_low, r.absolute_high) == pytest.approx(
        tuple(np.quantile(diff, [0.025, 0.975])), abs=1e-4
    )
    assert (r.relative_low, r.relative_high) == pytest.approx(
        tuple(np.quantile(diff / control, [0.025, 0.975])), abs=3e-4
    )


def test_beta_binomial__lower_is_better__flips_the_chance() -> None:
    up = beta_binomial(Proportion(1000, 100), Proportion(1000, 130))
    down = beta_binomial(Proportion(1000, 100), Proportion(1000, 130), higher_is_better=False)
    assert down.chance_to_beat == pytest.approx(1 - up.chance_to_beat, abs=1e-9)
    assert down.expected_loss == pytest.approx(up.expected_loss_control)


def test_normal_lift__chance_to_beat_is_one_minus_the_one_sided_p() -> None:
    c, t = Mean(400, 4000.0, 41_000.0), Mean(420, 4300.0, 45_500.0)
    bayes = bayesian_compare(c, t)
    freq = compare(c, t)
    assert bayes.model == "normal"
    z = freq.absolute.value / freq.absolute.stderr
    assert bayes.chance_to_beat == pytest.approx(special.ndtr(z))
    assert bayes.absolute_low == pytest.approx(
        freq.absolute.value - 1.959963985 * freq.absolute.stderr
    )


def test_bayesian__too_few_units__is_degenerate() -> None:
    r = bayesian_compare(Proportion(1, 1), Proportion(10, 3))
    assert r.degenerate and r.chance_to_beat == 0.5


def test_sample_size__proportions__matches_statsmodels_normal_ind_power() -> None:
    plan = sample_size(Design(0.12), 0.01)
    es = 0.01 / math.sqrt((0.12 * 0.88 + 0.13 * 0.87) / 2)
    assert plan.units_per_arm == math.ceil(NormalIndPower().solve_power(es, alpha=0.05, power=0.8))
    assert plan.achieved_power >= 0.8


def test_sample_size__relative_one_sided_and_corrected() -> None:
    plan = sample_size(
        Design(0.12, relative=True, sides=1, arms=3, metrics=3, correction="holm"), 0.1
    )
    es = 0.012 / math.sqrt((0.12 * 0.88 + 0.132 * 0.868) / 2)
    expected = NormalIndPower().solve_power(es, alpha=0.05 / 6, power=0.8, alternative="larger")
    assert plan.mde_absolute == pytest.approx(0.012)
    assert plan.units_per_arm == math.ceil(expected)
    assert plan.total_units == 3 * plan.units_per_arm


def test_sample_size__means__matches_statsmodels_ttest_ind_power() -> None:
    plan = sample_size(Design(10.0, baseline_sd=3.0), 0.5)
    assert plan.units_per_arm == math.ceil(
        TTestIndPower().solve_power(0.5 / 3, alpha=0.05, power=0.8)
    )


def test_duration__from_daily_units_and_traffic() -> None:
    plan = sample_size(Design(0.12, daily_units=20_000, traffic=50), 0.01)
    assert plan.enrolled_per_day == 10_000
    assert plan.days == math.ceil(plan.total_units / 10_000)


def test_minimum_detectable_effect__inverts_the_sample_size() -> None:
    plan = sample_size(Design(0.12), 0.01)
    reverse = minimum_detectable_effect(Design(0.12), plan.units_per_arm)
    assert reverse.mde_absolute == pytest.approx(0.01, rel=1e-3)
    assert reverse.mde_absolute <= 0.01
    means = minimum_detectable_effect(Design(10, baseline_sd=3), 1000)
    assert means.mde_absolute == pytest.approx(
        3 * TTestIndPower().solve_power(None, nobs1=1000, alpha=0.05, power=0.8), rel=1e-6
    )


@pytest.mark.parametrize(
    "design, mde, message",
    [
        (Design(1.2), 0.01, "between 0 and 1"),
        (Design(0.95), 0.1, "reaches 1"),
        (Design(0.1), 0.0, "must be > 0"),
        (Design(0.1, arms=1), 0.01, "at least 2 arms"),
        (Design(0.1, traffic=0), 0.01, "traffic"),
    ],
)
def test_plan__impossible_designs__say_why(design: Design, mde: float, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        sample_size(design, mde)


def test_power_at__grows_with_n() -> None:
    d = Design(0.3)
    assert power_at(d, 0.02, 1000) < power_at(d, 0.02, 5000) < power_at(d, 0.02, 20000)
    assert Moments(2, 0.0, 1.0).n == 2
