"""flagstone.stats against scipy, statsmodels and gbstats' published numbers, case by case."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps
from statsmodels.stats import proportion as sm_proportion
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests

from flagstone.stats import Cuped, Mean, Proportion, Ratio, adjust, interaction
from flagstone.stats.cuped import adjust as cuped_adjust
from flagstone.stats.frequentist import compare, compare_moments
from flagstone.stats.sequential import always_valid_p, halfwidth, mixing_rho


def mean_from(mean: float, sd: float, n: int) -> Mean:
    return Mean(n, mean * n, sd * sd * (n - 1) + n * mean * mean)


def test_welch__unequal_variances__matches_scipy_and_differs_from_student() -> None:
    c, t = mean_from(10.0, 1.0, 40), mean_from(10.9, 4.0, 12)
    r = compare(c, t)
    welch = sps.ttest_ind_from_stats(10.9, 4.0, 12, 10.0, 1.0, 40, equal_var=False)
    student = sps.ttest_ind_from_stats(10.9, 4.0, 12, 10.0, 1.0, 40, equal_var=True)
    assert r.test == "welch-t"
    assert r.statistic == pytest.approx(welch.statistic, rel=1e-9)
    assert r.p_value == pytest.approx(welch.pvalue, rel=1e-9)
    assert abs(r.p_value - student.pvalue) > 0.1  # Student's pooled variance is wrong here
    ci = sps.ttest_ind_from_stats(10.9, 4.0, 12, 10.0, 1.0, 40, equal_var=False)
    assert r.df == pytest.approx(
        (16 / 12 + 1 / 40) ** 2 / ((16 / 12) ** 2 / 11 + (1 / 40) ** 2 / 39), rel=1e-12
    )
    assert ci.pvalue == pytest.approx(r.p_value)


def test_welch__confidence_interval__matches_scipy_ttest_ind() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(0, 1, 50), rng.normal(0.4, 2, 30)
    r = compare(Mean.of(list(x)), Mean.of(list(y)), alpha=0.1)
    ref = sps.ttest_ind(y, x, equal_var=False)
    low, high = ref.confidence_interval(confidence_level=0.9)
    assert (r.absolute.ci_low, r.absolute.ci_high) == pytest.approx((low, high), rel=1e-9)
    one = compare(Mean.of(list(x)), Mean.of(list(y)), alternative="greater")
    assert one.p_value == pytest.approx(
        sps.ttest_ind(y, x, equal_var=False, alternative="greater").pvalue
    )
    assert math.isinf(one.absolute.ci_high)


def test_two_proportions__wald_z__matches_statsmodels() -> None:
    c, t = Proportion(2000, 240), Proportion(2100, 300)
    r = compare(c, t)
    ref = sm_proportion.test_proportions_2indep(300, 2100, 240, 2000, method="wald", compare="diff")
    assert r.test == "z"
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    low, high = sm_proportion.confint_proportions_2indep(
        300, 2100, 240, 2000, method="wald", compare="diff"
    )
    assert (r.absolute.ci_low, r.absolute.ci_high) == pytest.approx((low, high), rel=1e-9)
    assert not r.is_small_counts and r.exact_p_value is None


def test_two_proportions__small_counts__fisher_exact_is_computed() -> None:
    c, t = Proportion(40, 1), Proportion(40, 7)
    r = compare(c, t)
    assert r.is_small_counts
    assert r.exact_p_value == pytest.approx(sps.fisher_exact([[7, 33], [1, 39]]).pvalue)
    greater = compare(c, t, alternative="greater")
    assert greater.exact_p_value == pytest.approx(
        sps.fisher_exact([[7, 33], [1, 39]], alternative="greater").pvalue
    )


def test_relative_lift__delta_method__matches_gbstats_published_case() -> None:
    # gbstats tests/frequentist/test_tests.py: Statistic(value=0.41, stddev=3.9, n=3407)
    # vs (0.7, 6.2, 3461): expected 0.29, ci [0.04538, 0.53462], p 0.02016, relative
    # uplift 0.70732. (That release's uplift stddev, 0.30435, predates gbstats' current
    # delta-method variance, which gives the 0.37879 below — as this module does.)
    c, t = mean_from(0.41, 3.9, 3407), mean_from(0.7, 6.2, 3461)
    r = compare(c, t)
    assert round(r.absolute.value, 5) == 0.29
    assert (round(r.absolute.ci_low, 5), round(r.absolute.ci_high, 5)) == (0.04538, 0.53462)
    assert round(r.p_value, 5) == 0.02016
    assert r.relative is not None
    assert (round(r.relative.value, 5), round(r.relative.stderr, 5)) == (0.70732, 0.37879)


def test_relative_lift__delta_method__covers_like_fieller_on_a_large_sample() -> None:
    # The delta-method variance of μ_t/μ_c against a direct Monte-Carlo of the ratio of means.
    rng = np.random.default_rng(11)
    c, t = mean_from(5.0, 2.0, 400), mean_from(5.5, 2.5, 500)
    r = compare(c, t, relative=True)
    draws = rng.normal(5.5, 2.5 / math.sqrt(500), 200_000) / rng.normal(
        5.0, 2.0 / math.sqrt(400), 200_000
    )
    assert r.scale == "relative"
    assert r.estimate.stderr == pytest.approx(draws.std(), rel=0.01)


def test_ratio_metric__delta_method__matches_the_linearised_unit_values() -> None:
    # Delta method = the variance of the linearised values (M − r·D) / μ_D per unit.
    rng = np.random.default_rng(5)
    sessions = rng.poisson(4, 3000) + 1
    revenue = rng.gamma(2, 3, 3000) * sessions
    ratio = Ratio(
        3000,
        revenue.sum(),
        (revenue**2).sum(),
        sessions.sum(),
        (sessions**2).sum(),
        (revenue * sessions).sum(),
    )
    r = revenue.sum() / sessions.sum()
    linearised = (revenue - r * sessions) / sessions.mean()
    assert ratio.mean == pytest.approx(r)
    assert ratio.variance == pytest.approx(linearised.var(ddof=1), rel=1e-9)
    doubled = ratio + ratio
    assert doubled.n == 6000 and doubled.mean == pytest.approx(r)


def test_cuped__adjusted_lift__equals_the_ols_treatment_coefficient() -> None:
    rng = np.random.default_rng(3)
    n = 800
    pre = rng.gamma(2, 5, 2 * n)
    arm = np.repeat([0, 1], n)
    post = 0.8 * pre + rng.normal(0, 3, 2 * n) + 0.7 * arm
    frame = pd.DataFrame({"y": post, "x": pre, "treat": arm})
    fit = smf.ols("y ~ treat + x", frame).fit()

    def summary(mask: np.ndarray) -> Cuped:
        return Cuped(
            Mean.of(list(post[mask])), Mean.of(list(pre[mask])), float((post * pre)[mask].sum())
        )

    adjustment = cuped_adjust({"control": summary(arm == 0), "treat": summary(arm == 1)})
    assert adjustment.theta == pytest.approx(fit.params["x"], rel=1e-9)
    result = compare_moments(adjustment.moments["control"], adjustment.moments["treat"])
    assert result.absolute.value == pytest.approx(fit.params["treat"], rel=1e-9)
    # Welch-style per-arm residual variances vs OLS's pooled one: equal in expectation.
    assert result.absolute.stderr == pytest.approx(fit.bse["treat"], rel=0.03)
    plain = compare(Mean.of(list(post[arm == 0])), Mean.of(list(post[arm == 1])))
    reduction = 1 - (result.absolute.stderr / plain.absolute.stderr) ** 2
    assert reduction == pytest.approx(np.corrcoef(post, pre)[0, 1] ** 2, abs=0.02)
    assert adjustment.variance_reduction == pytest.approx(reduction, abs=0.01)


@pytest.mark.parametrize(
    "method, statsmodels_name", [("holm", "holm"), ("bh", "fdr_bh"), ("bonferroni", "bonferroni")]
)
def test_corrections__match_statsmodels_multipletests(method: str, statsmodels_name: str) -> None:
    p = [0.001, 0.04, 0.03, 0.2, 0.011, 0.5, 0.049]
    expected = multipletests(p, method=statsmodels_name)[1]
    assert adjust(p, method) == pytest.approx(list(expected), rel=1e-12)  # type: ignore[arg-type]
    assert adjust(p, "none") == p


def test_sequential__gbstats_published_confidence_sequence() -> None:
    # gbstats test_sequential_test_runs: relative CI (-0.55844, 1.56516), se 0.33341, tuning 1000.
    c = Mean(3000, 1396.87, 52377.9767)
    t = Mean(3461, 2422.7, 134698.29)
    r = compare(c, t, relative=True)
    assert r.relative is not None
    assert round(r.relative.value, 5) == 0.50336
    assert round(r.relative.stderr, 5) == 0.33341
    half = halfwidth(r.relative.stderr, 3000 + 3461, 0.05, 1000)
    assert (round(r.relative.value - half, 5), round(r.relative.value + half, 5)) == (
        -0.55844,
        1.56516,
    )
    # gbstats reports p = 1 here: the interval contains 0 by far.
    assert always_valid_p(r.relative.value / r.relative.stderr, 6461, 0.05, 1000) == 1.0


def test_sequential__p_value__is_the_level_whose_sequence_touches_zero() -> None:
    rho = mixing_rho(0.05, 1000)
    p = always_valid_p(0.05 / 0.01, 10_000, 0.05, 1000)
    assert 0 < p < 0.05
    assert halfwidth(0.01, 10_000, p, rho=rho) == pytest.approx(0.05, rel=1e-12)


def anova_frame() -> pd.DataFrame:
    # An unbalanced 2×3 design, small enough to read: the classic case where SS types differ.
    rows = {
        ("control", "control"): [4.1, 5.0, 3.8, 4.6, 5.2],
        ("control", "b1"): [5.1, 4.9, 6.0, 5.5],
        ("control", "b2"): [4.0, 4.4, 5.1, 4.8, 4.2, 4.9],
        ("a1", "control"): [5.9, 6.3, 5.2, 6.8],
        ("a1", "b1"): [6.1, 7.2, 6.6, 7.9, 6.4, 7.0, 6.9],
        ("a1", "b2"): [8.3, 7.7, 9.1, 8.0, 8.8],
    }
    return pd.DataFrame(
        [(a, b, v) for (a, b), values in rows.items() for v in values], columns=["A", "B", "y"]
    )


def test_interaction__anova_from_sufficient_statistics__matches_statsmodels_ols() -> None:
    frame = anova_frame()
    fit = smf.ols("y ~ C(A) * C(B)", frame).fit()
    type2 = anova_lm(fit, typ=2)
    type3 = anova_lm(smf.ols("y ~ C(A, Sum) * C(B, Sum)", frame).fit(), typ=3)
    cells = {(a, b): Mean.of(list(g.y)) for (a, b), g in frame.groupby(["A", "B"])}
    r = interaction(cells, a="A", b="B", a_control="control", b_control="control")
    rows = {row.source: row for row in r.anova}
    assert rows["A"].sum_sq == pytest.approx(type2.loc["C(A)", "sum_sq"], rel=1e-9)
    assert rows["B"].sum_sq == pytest.approx(type2.loc["C(B)", "sum_sq"], rel=1e-9)
    assert rows["A:B"].sum_sq == pytest.approx(type2.loc["C(A):C(B)", "sum_sq"], rel=1e-9)
    # The interaction term is the same under type II and type III.
    assert rows["A:B"].sum_sq == pytest.approx(type3.loc["C(A, Sum):C(B, Sum)", "sum_sq"], rel=1e-9)
    assert rows["A:B"].f == pytest.approx(type2.loc["C(A):C(B)", "F"], rel=1e-9)
    assert rows["A:B"].p_value == pytest.approx(type2.loc["C(A):C(B)", "PR(>F)"], rel=1e-9)
    assert rows["Residual"].df == int(type2.loc["Residual", "df"])
    assert r.is_interaction
    assert "depends on" in r.verdict


def test_interaction__log_odds__matches_the_saturated_logistic_regression() -> None:
    counts = {
        ("c", "c"): (400, 40),
        ("c", "t"): (400, 60),
        ("t", "c"): (400, 56),
        ("t", "t"): (400, 120),
    }
    rows = []
    for (a, b), (n, s) in counts.items():
        rows += [(a, b, 1)] * s + [(a, b, 0)] * (n - s)
    frame = pd.DataFrame(rows, columns=["A", "B", "y"])
    fit = smf.logit("y ~ C(A) * C(B)", frame).fit(disp=0)
    term = "C(A)[T.t]:C(B)[T.t]"
    cells = {k: Proportion(n, s) for k, (n, s) in counts.items()}
    r = interaction(cells, a_control="c", b_control="c")
    log_odds = next(t for t in r.terms if t.scale == "log-odds")
    assert log_odds.contrasts[0].estimate == pytest.approx(fit.params[term], rel=1e-6)
    assert log_odds.contrasts[0].stderr == pytest.approx(fit.bse[term], rel=1e-6)
    assert log_odds.p_value == pytest.approx(fit.pvalues[term], rel=1e-5)
    additive = next(t for t in r.terms if t.scale == "additive")
    assert additive.contrasts[0].estimate == pytest.approx(0.30 - 0.14 - 0.15 + 0.10)
