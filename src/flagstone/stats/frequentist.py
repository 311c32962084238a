"""Fixed-horizon tests of one arm against control: Welch t, two-proportion z, Fisher exact.

Both the absolute lift (μ_t − μ_c) and the relative lift ((μ_t − μ_c) / μ_c, delta method)
come with a standard error and a confidence interval. The p-value is computed on the
scale the analysis reports (``relative`` or absolute), so the p-value and the interval
on that scale always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import special

from flagstone.stats.summaries import Proportion, Summary

Alternative = Literal["two-sided", "greater", "less"]
"""``greater``: the treatment's mean is larger than control's (H1: Δ > 0)."""

# Cochran's rule: the χ²/normal approximation needs every expected 2×2 cell count ≥ 5.
SMALL_EXPECTED_COUNT = 5.0


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its standard error and confidence interval (±inf when one-sided)."""

    value: float
    stderr: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True, slots=True)
class Moments:
    """What every test needs from a summary: units, mean and per-unit variance."""

    n: float
    mean: float
    variance: float

    @classmethod
    def of(cls, summary: Summary) -> Moments:
        return cls(float(summary.n), summary.mean, summary.variance)


@dataclass(frozen=True, slots=True)
class FrequentistResult:
    test: str  # "welch-t", "z", "fisher-exact"; "none" when degenerate
    alternative: Alternative
    scale: Literal["absolute", "relative"]
    absolute: Estimate
    relative: Estimate | None  # None when the control mean is 0
    statistic: float
    df: float  # inf for z tests
    p_value: float
    exact_p_value: float | None = None  # Fisher's, when counts are small
    is_small_counts: bool = False
    degenerate: str | None = None  # why no test could be run

    @property
    def estimate(self) -> Estimate:
        """The estimate on the reported scale."""
        if self.scale == "relative" and self.relative is not None:
            return self.relative
        return self.absolute


def welch_df(a: Moments, b: Moments) -> float:
    """Welch–Satterthwaite degrees of freedom."""
    va, vb = a.variance / a.n, b.variance / b.n
    denominator = va * va / (a.n - 1) + vb * vb / (b.n - 1)
    return (va + vb) ** 2 / denominator if denominator > 0 else math.inf


def relative_lift(c: Moments, t: Moments) -> tuple[float, float] | None:
    """(estimate, delta-method standard error) of μ_t / μ_c − 1; None when μ_c = 0."""
    if c.mean == 0:
        return None
    estimate = t.mean / c.mean - 1
    variance = t.variance / (c.mean**2 * t.n) + c.variance * t.mean**2 / (c.mean**4 * c.n)
    return estimate, math.sqrt(variance)


def reported_lift(c: Moments, t: Moments, *, relative: bool = False) -> tuple[float, float]:
    """(estimate, standard error) on the scale ``compare_moments`` reports: the relative lift
    when asked for and defined, else the absolute difference; (0, 0) when no test can run."""
    if c.n < 2 or t.n < 2 or (c.variance <= 0 and t.variance <= 0):
        return 0.0, 0.0
    if relative and (rel := relative_lift(c, t)) is not None:
        return rel
    return t.mean - c.mean, math.sqrt(c.variance / c.n + t.variance / t.n)


def critical_value(alpha: float, alternative: Alternative, df: float) -> float:
    q = 1 - (alpha / 2 if alternative == "two-sided" else alpha)
    # scipy.special's ufuncs: ~1 µs, where scipy.stats' distribution objects take ~50 µs.
    return float(special.ndtri(q) if math.isinf(df) else special.stdtrit(df, q))


def interval(
    value: float, stderr: float, crit: float, alternative: Alternative
) -> tuple[float, float]:
    half = crit * stderr
    if alternative == "greater":
        return value - half, math.inf
    if alternative == "less":
        return -math.inf, value + half
    return value - half, value + half


def p_value(statistic: float, df: float, alternative: Alternative) -> float:
    def sf(x: float) -> float:  # P(T > x)
        return float(special.ndtr(-x) if math.isinf(df) else special.stdtr(df, -x))

    if alternative == "greater":
        return sf(statistic)
    if alternative == "less":
        return sf(-statistic)
    return min(1.0, 2 * sf(abs(statistic)))


def degenerate_reason(c: Moments, t: Moments) -> str | None:
    if c.n < 2 or t.n < 2:
        arm = "control" if c.n < 2 else "treatment"
        return f"the {arm} arm has {int(min(c.n, t.n))} unit(s); at least 2 are needed"
    if c.variance <= 0 and t.variance <= 0:
        return "no variation in either arm: every unit has the same value"
    return None


def degenerate_result(
    reason: str, alternative: Alternative, scale: Literal["absolute", "relative"]
) -> FrequentistResult:
    """gbstats' 'default output': no evidence either way, and the reason why."""
    none = Estimate(0.0, 0.0, 0.0, 0.0)
    return FrequentistResult(
        test="none",
        alternative=alternative,
        scale=scale,
        absolute=none,
        relative=None,
        statistic=0.0,
        df=math.inf,
        p_value=1.0,
        degenerate=reason,
    )


def fisher_exact_p(control: Proportion, treatment: Proportion, alternative: Alternative) -> float:
    table = np.array(
        [
            [treatment.successes, treatment.n - treatment.successes],
            [control.successes, control.n - control.successes],
        ]
    )
    # scipy's "greater" is an odds ratio > 1 for the first row: the treatment converts more.
    from scipy import stats  # only small counts need it; imported then

    result = stats.fisher_exact(table, alternative=alternative)
    return float(result.pvalue)


def has_small_counts(control: Proportion, treatment: Proportion) -> bool:
    n = control.n + treatment.n
    successes = control.successes + treatment.successes
    failures = n - successes
    expected = (
        min(control.n, treatment.n) * min(successes, failures) / n if n else 0.0
    )  # the smallest expected cell of the 2×2 table
    return expected < SMALL_EXPECTED_COUNT


def compare(
    control: Summary,
    treatment: Summary,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    relative: bool = False,
) -> FrequentistResult:
    """Test ``treatment`` against ``control``.

    Proportions use the unpooled (Wald) two-proportion z-test, whose interval the p-value
    matches; when the smallest expected cell count is below 5, Fisher's exact p-value is
    computed as well and is the one to decide on (``is_small_counts``). Means, ratios and
    CUPED metrics use Welch's t-test with Welch–Satterthwaite degrees of freedom.
    """
    is_proportion = isinstance(control, Proportion) and isinstance(treatment, Proportion)
    result = compare_moments(
        Moments.of(control),
        Moments.of(treatment),
        alpha=alpha,
        alternative=alternative,
        relative=relative,
        z_test=is_proportion,
    )
    if result.degenerate or not is_proportion:
        return result
    assert isinstance(control, Proportion) and isinstance(treatment, Proportion)
    if not has_small_counts(control, treatment):
        return result
    return replace(
        result,
        exact_p_value=fisher_exact_p(control, treatment, alternative),
        is_small_counts=True,
    )


def compare_moments(
    c: Moments,
    t: Moments,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    relative: bool = False,
    z_test: bool = False,
) -> FrequentistResult:
    """The test on (n, mean, variance) per arm: CUPED passes its adjusted moments here."""
    scale: Literal["absolute", "relative"] = "relative" if relative else "absolute"
    reason = degenerate_reason(c, t)
    if reason:
        return degenerate_result(reason, alternative, scale)
    df = math.inf if z_test else welch_df(c, t)
    crit = critical_value(alpha, alternative, df)
    diff = t.mean - c.mean
    diff_se = math.sqrt(c.variance / c.n + t.variance / t.n)
    absolute = Estimate(diff, diff_se, *interval(diff, diff_se, crit, alternative))
    rel = relative_lift(c, t)
    relative_estimate = (
        Estimate(rel[0], rel[1], *interval(rel[0], rel[1], crit, alternative)) if rel else None
    )
    if relative and relative_estimate is not None:
        value, stderr = relative_estimate.value, relative_estimate.stderr
    else:
        scale, value, stderr = "absolute", diff, diff_se
    statistic = value / stderr if stderr > 0 else math.copysign(math.inf, value)
    return FrequentistResult(
        test="z" if z_test else "welch-t",
        alternative=alternative,
        scale=scale,
        absolute=absolute,
        relative=relative_estimate,
        statistic=statistic,
        df=df,
        p_value=p_value(statistic, df, alternative),
    )
