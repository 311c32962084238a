"""Monte-Carlo validation: error rates, power and coverage of the real code paths, seeded.

Each simulation draws sufficient statistics directly (binomial counts, or sums of
lognormal values), so thousands of experiments take about a second.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from flagstone.stats import (
    Design,
    ExperimentSpec,
    Mean,
    MetricSpec,
    Proportion,
    analyze_experiment,
    sample_ratio_mismatch,
    sample_size,
)
from flagstone.stats.engine import AnalysisSpec
from flagstone.stats.frequentist import compare
from flagstone.stats.power import power_at
from flagstone.stats.sequential import LookEstimate, confidence_sequence

SIMULATIONS = 10_000


def lognormal_summaries(
    rng: np.random.Generator, sims: int, n: int, scale: float = 1.0
) -> list[Mean]:
    values = rng.lognormal(0.0, 1.0, (sims, n)) * scale
    sums, squares = values.sum(axis=1), (values * values).sum(axis=1)
    return [Mean(n, float(s), float(q)) for s, q in zip(sums, squares, strict=True)]


def test_aa__proportions__false_positive_rate_is_alpha() -> None:
    rng = np.random.default_rng(2024)
    n = 2000
    c, t = rng.binomial(n, 0.1, SIMULATIONS), rng.binomial(n, 0.1, SIMULATIONS)
    p = np.array(
        [
            compare(Proportion(n, int(a)), Proportion(n, int(b))).p_value
            for a, b in zip(c, t, strict=True)
        ]
    )
    assert 0.04 <= (p < 0.05).mean() <= 0.06
    # And p is uniform: the 10% and 50% points are where they should be.
    assert 0.08 <= (p < 0.1).mean() <= 0.12
    assert 0.47 <= (p < 0.5).mean() <= 0.53


def test_aa__skewed_lognormal_mean__false_positive_rate_is_alpha() -> None:
    rng = np.random.default_rng(7)
    control = lognormal_summaries(rng, SIMULATIONS, 500)
    treatment = lognormal_summaries(rng, SIMULATIONS, 500)
    p = np.array([compare(a, b).p_value for a, b in zip(control, treatment, strict=True)])
    assert 0.04 <= (p < 0.05).mean() <= 0.06


def test_ab__known_effect__power_matches_the_analytic_value() -> None:
    rng = np.random.default_rng(99)
    design = Design(baseline=0.12)
    plan = sample_size(design, 0.01)
    n = plan.units_per_arm
    c, t = rng.binomial(n, 0.12, SIMULATIONS), rng.binomial(n, 0.13, SIMULATIONS)
    p = np.array(
        [
            compare(Proportion(n, int(a)), Proportion(n, int(b))).p_value
            for a, b in zip(c, t, strict=True)
        ]
    )
    assert abs((p < 0.05).mean() - plan.achieved_power) <= 0.03
    # At half the sample size the analytic power drops, and so does the simulated one.
    half = n // 2
    c, t = rng.binomial(half, 0.12, SIMULATIONS), rng.binomial(half, 0.13, SIMULATIONS)
    p = np.array(
        [
            compare(Proportion(half, int(a)), Proportion(half, int(b))).p_value
            for a, b in zip(c, t, strict=True)
        ]
    )
    assert abs((p < 0.05).mean() - power_at(design, 0.01, half)) <= 0.03


def test_ab__mean_metric__power_matches_the_analytic_value() -> None:
    rng = np.random.default_rng(5)
    design = Design(baseline=10.0, baseline_sd=3.0)
    plan = sample_size(design, 0.4)
    n = plan.units_per_arm
    x = rng.normal(10.0, 3.0, (SIMULATIONS, n))
    y = rng.normal(10.4, 3.0, (SIMULATIONS, n))
    p = np.array(
        [
            compare(
                Mean(n, float(a.sum()), float((a * a).sum())),
                Mean(n, float(b.sum()), float((b * b).sum())),
            ).p_value
            for a, b in zip(x, y, strict=True)
        ]
    )
    assert abs((p < 0.05).mean() - plan.achieved_power) <= 0.03


def test_confidence_intervals__cover_the_true_lift_95_percent() -> None:
    rng = np.random.default_rng(31)
    n = 3000
    c, t = rng.binomial(n, 0.2, SIMULATIONS), rng.binomial(n, 0.23, SIMULATIONS)
    covered_abs = covered_rel = 0
    for a, b in zip(c, t, strict=True):
        r = compare(Proportion(n, int(a)), Proportion(n, int(b)))
        assert r.relative is not None
        covered_abs += r.absolute.ci_low <= 0.03 <= r.absolute.ci_high
        covered_rel += r.relative.ci_low <= 0.15 <= r.relative.ci_high
    assert 0.94 <= covered_abs / SIMULATIONS <= 0.96
    assert 0.94 <= covered_rel / SIMULATIONS <= 0.96


def test_confidence_intervals__relative_lift_of_a_skewed_mean__cover_95_percent() -> None:
    rng = np.random.default_rng(17)
    true_mean = math.exp(0.5)
    control = lognormal_summaries(rng, 5000, 1000)
    treatment = lognormal_summaries(rng, 5000, 1000, scale=1.1)
    covered = 0
    for a, b in zip(control, treatment, strict=True):
        r = compare(a, b, relative=True)
        covered += r.estimate.ci_low <= 0.1 <= r.estimate.ci_high
        assert r.scale == "relative"
    assert true_mean > 0
    assert 0.94 <= covered / 5000 <= 0.96


def peeking_rejections(sims: int, peeks: int, per_peek: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    c = rng.binomial(per_peek, 0.1, (sims, peeks)).cumsum(axis=1)
    t = rng.binomial(per_peek, 0.1, (sims, peeks)).cumsum(axis=1)
    fixed = sequential = 0
    for sim in range(sims):
        looks, any_fixed = [], False
        for k in range(peeks):
            n = per_peek * (k + 1)
            r = compare(Proportion(n, int(c[sim, k])), Proportion(n, int(t[sim, k])))
            any_fixed |= r.p_value < 0.05
            looks.append(LookEstimate(None, 2 * n, r.absolute.value, r.absolute.stderr))
        fixed += any_fixed
        sequential += confidence_sequence(looks, alpha=0.05).p_value < 0.05
    return fixed / sims, sequential / sims


def test_twenty_peeks__fixed_horizon_inflates_errors__sequential_holds_alpha() -> None:
    fixed, sequential = peeking_rejections(sims=2500, peeks=20, per_peek=500, seed=12)
    assert fixed > 0.10
    assert sequential <= 0.05


def test_sequential__still_detects_a_real_effect() -> None:
    rng = np.random.default_rng(4)
    sims, peeks, per_peek = 500, 10, 2000
    c = rng.binomial(per_peek, 0.10, (sims, peeks)).cumsum(axis=1)
    t = rng.binomial(per_peek, 0.115, (sims, peeks)).cumsum(axis=1)
    detected = 0
    for sim in range(sims):
        looks = []
        for k in range(peeks):
            n = per_peek * (k + 1)
            r = compare(Proportion(n, int(c[sim, k])), Proportion(n, int(t[sim, k])))
            looks.append(LookEstimate(None, 2 * n, r.absolute.value, r.absolute.stderr))
        detected += confidence_sequence(looks, alpha=0.05).p_value < 0.05
    assert detected / sims > 0.8


def test_srm__detects_a_49_51_split_at_100_000_units() -> None:
    weights = {"control": 50, "treatment": 50}
    assert sample_ratio_mismatch({"control": 49_000, "treatment": 51_000}, weights).is_mismatch
    rng = np.random.default_rng(8)
    biased = rng.binomial(100_000, 0.49, 2000)
    fair = rng.binomial(100_000, 0.50, 20_000)
    detected = np.mean(
        [
            sample_ratio_mismatch(
                {"control": int(k), "treatment": 100_000 - int(k)}, weights
            ).is_mismatch
            for k in biased
        ]
    )
    false_alarms = np.mean(
        [
            sample_ratio_mismatch(
                {"control": int(k), "treatment": 100_000 - int(k)}, weights
            ).is_mismatch
            for k in fair
        ]
    )
    assert detected > 0.99
    assert false_alarms <= 0.002  # the threshold is p < 0.001


def test_holm__three_arms_two_metrics__family_wise_error_is_at_most_alpha() -> None:
    rng = np.random.default_rng(21)
    spec = ExperimentSpec(
        key="aa",
        arms=("control", "b", "c"),
        control="control",
        weights={"control": 1, "b": 1, "c": 1},
        metrics=(
            MetricSpec("conv", "proportion"),
            MetricSpec("clicks", "proportion", role="secondary"),
        ),
        analysis=AnalysisSpec(correction="holm"),
    )
    sims, n = 2000, 5000
    counts = rng.binomial(n, 0.3, (sims, 2, 3))
    uncorrected = any_rejected = 0
    for sim in range(sims):
        data = {
            metric: {arm: Proportion(n, int(counts[sim, m, k])) for k, arm in enumerate(spec.arms)}
            for m, metric in enumerate(("conv", "clicks"))
        }
        result = analyze_experiment(spec, data)
        comparisons = [c for metric in result.metrics for c in metric.comparisons]
        any_rejected += any(c.is_significant for c in comparisons)
        uncorrected += any(c.p_value < 0.05 for c in comparisons)
    assert any_rejected / sims <= 0.05
    assert uncorrected / sims > 0.12  # four tests uncorrected: the inflation Holm removes


@pytest.mark.parametrize("correlation", [0.7])
def test_cuped__aa_false_positive_rate_holds_and_variance_drops(correlation: float) -> None:
    from flagstone.stats import Cuped
    from flagstone.stats.cuped import adjust
    from flagstone.stats.frequentist import compare_moments

    rng = np.random.default_rng(77)
    sims, n = 3000, 400
    rejections, reductions = 0, []
    for _ in range(sims):
        arms = {}
        for arm in ("control", "treatment"):
            pre = rng.normal(10, 2, n)
            post = (
                10 + correlation * (pre - 10) + rng.normal(0, 2 * math.sqrt(1 - correlation**2), n)
            )
            arms[arm] = Cuped(Mean.of(list(post)), Mean.of(list(pre)), float((post * pre).sum()))
        adjustment = adjust(arms)
        r = compare_moments(adjustment.moments["control"], adjustment.moments["treatment"])
        rejections += r.p_value < 0.05
        reductions.append(adjustment.variance_reduction)
    assert 0.04 <= rejections / sims <= 0.06
    assert np.mean(reductions) == pytest.approx(correlation**2, abs=0.02)
