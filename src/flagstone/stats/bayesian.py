"""Bayesian read-outs: chance to beat control, credible interval, expected loss.

Proportions use the exact beta-binomial model: a uniform Beta(1, 1) prior per arm, so the
posterior of each arm's rate is Beta(1 + successes, 1 + failures). Chance to beat,
expected loss and the credible intervals of the absolute and relative lift are integrals
over those two posteriors, computed with 256-node Gauss–Legendre quadrature over ±12
posterior standard deviations of the control arm (accurate to ~1e-9).

Means, ratios and CUPED metrics use the normal approximation on the lift with a flat
prior: Δ ~ N(Δ̂, SE²), so chance to beat = Φ(Δ̂ / SE) and the credible interval equals the
frequentist one. Expected loss is the posterior mean of the shortfall of a choice:
choosing the treatment loses E[max(μ_c − μ_t, 0)], keeping control loses E[max(μ_t − μ_c, 0)].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

from flagstone.stats.frequentist import Moments, relative_lift
from flagstone.stats.summaries import Proportion, Summary

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(256)
_WINDOW_SDS = 12.0


@dataclass(frozen=True, slots=True)
class BayesianResult:
    model: Literal["beta-binomial", "normal"]
    chance_to_beat: float  # P(treatment better than control), "better" per the metric's direction
    absolute_low: float  # equal-tailed credible interval of μ_t − μ_c
    absolute_high: float
    relative_low: float | None  # of μ_t / μ_c − 1; None when it is undefined
    relative_high: float | None
    expected_loss: float  # of choosing the treatment, in the metric's units
    expected_loss_control: float  # of keeping control
    degenerate: str | None = None


class _Beta:
    def __init__(self, a: float, b: float) -> None:
        self.a, self.b = a, b
        self.mean = a / (a + b)
        self.sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))

    def cdf(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return special.betainc(self.a, self.b, np.clip(x, 0.0, 1.0))

    @cached_property
    def nodes(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Quadrature points x and weights w·pdf(x) over the posterior's bulk."""
        lo = max(0.0, self.mean - _WINDOW_SDS * self.sd)
        hi = min(1.0, self.mean + _WINDOW_SDS * self.sd)
        x = (hi - lo) / 2 * _NODES + (hi + lo) / 2
        log_pdf = (
            (self.a - 1) * np.log(x) + (self.b - 1) * np.log1p(-x) - special.betaln(self.a, self.b)
        )
        return x, (hi - lo) / 2 * _WEIGHTS * np.exp(log_pdf)


def _prob_greater(x: _Beta, y: _Beta) -> float:
    """P(X > Y) = ∫ f_X(v) F_Y(v) dv."""
    v, w = x.nodes
    return float(np.clip(np.dot(w, y.cdf(v)), 0.0, 1.0))


def _posterior(p: Proportion) -> _Beta:
    return _Beta(1 + p.successes, 1 + p.n - p.successes)


def _expected_shortfall(x: _Beta, y: _Beta) -> float:
    """E[max(X − Y, 0)] = E[X·1{X>Y}] − E[Y·1{X>Y}], each a size-biased probability."""
    x_biased, y_biased = _Beta(x.a + 1, x.b), _Beta(y.a + 1, y.b)
    return max(x.mean * _prob_greater(x_biased, y) - y.mean * _prob_greater(x, y_biased), 0.0)


def _quantile(cdf: object, q: float, lo: float, hi: float) -> float:
    f = cdf  # P(statistic ≤ d), increasing in d
    assert callable(f)
    while f(lo) > q:
        lo = lo - (hi - lo)
    while f(hi) < q:
        hi = hi + (hi - lo)
    return float(optimize.brentq(lambda d: f(d) - q, lo, hi, xtol=1e-12, rtol=1e-10))


def beta_binomial(
    control: Proportion,
    treatment: Proportion,
    *,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> BayesianResult:
    """Exact beta-binomial comparison of two conversion rates."""
    c, t = _posterior(control), _posterior(treatment)
    beat = _prob_greater(t, c) if higher_is_better else _prob_greater(c, t)
    loss_t = _expected_shortfall(c, t) if higher_is_better else _expected_shortfall(t, c)
    loss_c = _expected_shortfall(t, c) if higher_is_better else _expected_shortfall(c, t)
    xc, wc = c.nodes

    def diff_cdf(d: float) -> float:  # P(T − C ≤ d)
        return float(np.dot(wc, t.cdf(xc + d)))

    def ratio_cdf(r: float) -> float:  # P(T / C − 1 ≤ r)
        return float(np.dot(wc, t.cdf(xc * (1 + r))))

    spread = 6 * math.hypot(c.sd, t.sd)
    centre = t.mean - c.mean
    abs_lo = _quantile(diff_cdf, alpha / 2, centre - spread, centre + spread)
    abs_hi = _quantile(diff_cdf, 1 - alpha / 2, centre - spread, centre + spread)
    r_centre, r_spread = t.mean / c.mean - 1, spread / c.mean
    rel_lo = _quantile(ratio_cdf, alpha / 2, max(-1.0, r_centre - r_spread), r_centre + r_spread)
    rel_hi = _quantile(
        ratio_cdf, 1 - alpha / 2, max(-1.0, r_centre - r_spread), r_centre + r_spread
    )
    return BayesianResult("beta-binomial", beat, abs_lo, abs_hi, rel_lo, rel_hi, loss_t, loss_c)


def normal_lift(
    c: Moments,
    t: Moments,
    *,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> BayesianResult:
    """Flat-prior normal approximation on the lift."""
    if c.n < 2 or t.n < 2 or (c.variance <= 0 and t.variance <= 0):
        return BayesianResult("normal", 0.5, 0.0, 0.0, None, None, 0.0, 0.0, _why(c, t))
    diff = t.mean - c.mean
    se = math.sqrt(c.variance / c.n + t.variance / t.n)
    z = float(special.ndtri(1 - alpha / 2))
    good = diff if higher_is_better else -diff  # the lift in the "better" direction
    beat = float(special.ndtr(good / se))
    density = math.exp(-0.5 * (good / se) ** 2) / math.sqrt(2 * math.pi)
    loss_t = se * density - good * float(special.ndtr(-good / se))
    loss_c = se * density + good * float(special.ndtr(good / se))
    rel = relative_lift(c, t)
    rel_lo = rel[0] - z * rel[1] if rel else None
    rel_hi = rel[0] + z * rel[1] if rel else None
    return BayesianResult(
        "normal",
        beat,
        diff - z * se,
        diff + z * se,
        rel_lo,
        rel_hi,
        max(loss_t, 0.0),
        max(loss_c, 0.0),
    )


def _why(c: Moments, t: Moments) -> str:
    if c.n < 2 or t.n < 2:
        arm = "control" if c.n < 2 else "treatment"
        return f"the {arm} arm has {int(min(c.n, t.n))} unit(s); at least 2 are needed"
    return "no variation in either arm: every unit has the same value"


def bayesian_compare(
    control: Summary,
    treatment: Summary,
    *,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> BayesianResult:
    """Exact beta-binomial for two proportions, the normal approximation otherwise."""
    if isinstance(control, Proportion) and isinstance(treatment, Proportion):
        if control.n < 2 or treatment.n < 2:
            c, t = Moments.of(control), Moments.of(treatment)
            return BayesianResult("beta-binomial", 0.5, 0.0, 0.0, None, None, 0.0, 0.0, _why(c, t))
        return beta_binomial(control, treatment, alpha=alpha, higher_is_better=higher_is_better)
    return normal_lift(
        Moments.of(control), Moments.of(treatment), alpha=alpha, higher_is_better=higher_is_better
    )
