"""Bayesian read-outs: chance to beat control, credible interval, expected loss.

Proportions use the exact beta-binomial model: a uniform Beta(1, 1) prior per arm, so the
posterior of each arm's rate is Beta(1 + successes, 1 + failures). Chance to beat,
expected loss and the credible intervals of the absolute and relative lift are integrals
over those two posteriors, computed with Gauss–Legendre quadrature over the narrower
posterior's bulk, between its 1e-14 and 1 − 1e-14 quantiles (96 nodes; 384 when a posterior
is skewed by fewer than 200 successes or failures), accurate to ~1e-7: over the wider one's
nodes the narrow one's CDF is a near-step. Quantiles by Newton's method on that CDF and its
density, started from the normal approximation. The expected loss of keeping control follows
from the treatment's: E[max(T − C, 0)] − E[max(C − T, 0)] = E[T − C].

Means, ratios and CUPED metrics use the normal approximation on the lift with a flat
prior: Δ ~ N(Δ̂, SE²), so chance to beat = Φ(Δ̂ / SE) and the credible interval equals the
frequentist one. Expected loss is the posterior mean of the shortfall of a choice:
choosing the treatment loses E[max(μ_c − μ_t, 0)], keeping control loses E[max(μ_t − μ_c, 0)].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import special

from flagstone.stats.frequentist import Moments, relative_lift
from flagstone.stats.summaries import Proportion, Summary

# Near-normal posteriors need few nodes; skewed small-count ones (a mode at 0) need more.
# Gauss-Legendre nodes and weights, computed on first use: the 384-node rule is an
# eigenproblem that would otherwise run at import, on the thread analyze imports this on.
_NODES = 96
_SKEWED_NODES = 384


@cache
def _legendre(n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return nodes, weights


_SKEWED_BELOW = 200  # successes or failures
_TAIL = 1e-14


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

    def sf(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """1 − cdf without the cancellation: I_{1−x}(b, a)."""
        return special.betainc(self.b, self.a, np.clip(1.0 - x, 0.0, 1.0))

    def pdf(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        inside = (x > 0) & (x < 1)
        v = np.where(inside, x, 0.5)
        log_pdf = (self.a - 1) * np.log(v) + (self.b - 1) * np.log1p(-v) - self._log_beta
        return np.where(inside, np.exp(log_pdf), 0.0)

    @cached_property
    def _log_beta(self) -> float:
        return float(special.betaln(self.a, self.b))

    @cached_property
    def nodes(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Quadrature points x and weights w·pdf(x) over the posterior's bulk."""
        # Between the 1e-14 and 1 − 1e-14 quantiles: what lies outside cannot matter.
        lo = float(special.betaincinv(self.a, self.b, _TAIL))
        hi = float(special.betaincinv(self.a, self.b, 1 - _TAIL))
        skewed = min(self.a, self.b) < _SKEWED_BELOW
        nodes, weights = _legendre(_SKEWED_NODES if skewed else _NODES)
        x = (hi - lo) / 2 * nodes + (hi + lo) / 2
        log_pdf = (
            (self.a - 1) * np.log(x) + (self.b - 1) * np.log1p(-x) - special.betaln(self.a, self.b)
        )
        return x, (hi - lo) / 2 * weights * np.exp(log_pdf)


def _prob_greater(x: _Beta, y: _Beta) -> float:
    """P(X > Y) = ∫ f_X(v) F_Y(v) dv = ∫ f_Y(v) S_X(v) dv, over the narrower posterior's bulk.

    Over the wider one's nodes the integrand would hold the narrow posterior's CDF, a near
    step that 96 nodes cannot resolve (with 1% of the units in one arm, errors of 1e-3).
    """
    if x.sd <= y.sd:
        v, w = x.nodes
        p = np.dot(w, y.cdf(v))
    else:
        v, w = y.nodes
        p = np.dot(w, x.sf(v))
    return float(np.clip(p, 0.0, 1.0))


def _posterior(p: Proportion) -> _Beta:
    return _Beta(1 + p.successes, 1 + p.n - p.successes)


def _expected_shortfall(x: _Beta, y: _Beta) -> float:
    """E[max(X − Y, 0)] = E[X·1{X>Y}] − E[Y·1{X>Y}], each a size-biased probability."""
    x_biased, y_biased = _Beta(x.a + 1, x.b), _Beta(y.a + 1, y.b)
    return max(x.mean * _prob_greater(x_biased, y) - y.mean * _prob_greater(x, y_biased), 0.0)


def _quantile(
    cdf: Callable[[float], float],
    pdf: Callable[[float], float],
    q: float,
    guess: float,
    scale: float,
    low: float = -math.inf,
) -> float:
    """Solve cdf(d) = q: Newton from the normal guess, bracketing as the fallback.

    Newton's error squares each step (e_next ≈ K·e²); K is estimated from the last two
    steps, so the iteration stops once the next step would be below 1e-10 of the scale
    (with a 100× margin) instead of taking one more step to see it.
    """
    bounded = math.isfinite(low)
    d = max(guess, low + 1e-9 * scale) if bounded else guess
    tolerance = 1e-10 * scale
    previous_step = math.inf
    for _ in range(30):
        density = pdf(d)
        if not density > 0:
            break
        d_next = d - (cdf(d) - q) / density
        if bounded and d_next <= low:
            d_next = (d + low) / 2
        step = abs(d_next - d)
        if step <= tolerance:
            return d_next
        converging = step < previous_step <= 1e-3 * scale
        if converging and 100 * step**3 / previous_step**2 <= tolerance:
            return d_next  # K ≈ step / previous_step², so the next step ≈ K·step²
        previous_step = step
        d = d_next
    lo, hi = guess - scale, guess + scale
    if bounded:
        lo = max(lo, low)
    while cdf(lo) > q and not (bounded and lo <= low):
        lo = max(lo - 4 * scale, low) if bounded else lo - 4 * scale
    while cdf(hi) < q:
        hi += 4 * scale
    from scipy import optimize  # imported when Newton's method gives up

    return float(optimize.brentq(lambda x: cdf(x) - q, lo, hi, xtol=1e-12 * scale))


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
    # E[max(B − A, 0)] − E[max(A − B, 0)] = E[B − A]: the loss of keeping control follows
    # from the treatment's without a second pair of integrals.
    good = t.mean - c.mean if higher_is_better else c.mean - t.mean
    loss_c = max(loss_t + good, 0.0)
    # Integrals over the narrower posterior's nodes, as in _prob_greater.
    if c.sd <= t.sd:
        xc, wc = c.nodes

        def diff_cdf(d: float) -> float:  # P(T − C ≤ d) = ∫ f_C(x) F_T(x + d) dx
            return float(np.dot(wc, t.cdf(xc + d)))

        def diff_pdf(d: float) -> float:
            return float(np.dot(wc, t.pdf(xc + d)))

        def ratio_cdf(r: float) -> float:  # P(T / C − 1 ≤ r) = ∫ f_C(x) F_T(x(1 + r)) dx
            return float(np.dot(wc, t.cdf(xc * (1 + r))))

        def ratio_pdf(r: float) -> float:
            return float(np.dot(wc, xc * t.pdf(xc * (1 + r))))
    else:
        yt, wt = t.nodes

        def diff_cdf(d: float) -> float:  # P(T − C ≤ d) = P(C ≥ T − d) = ∫ f_T(y) S_C(y − d) dy
            return float(np.dot(wt, c.sf(yt - d)))

        def diff_pdf(d: float) -> float:
            return float(np.dot(wt, c.pdf(yt - d)))

        def ratio_cdf(r: float) -> float:  # P(T / C − 1 ≤ r) = ∫ f_T(y) S_C(y / (1 + r)) dy
            if r <= -1:
                return 0.0  # P(T ≤ 0)
            return float(np.dot(wt, c.sf(yt / (1 + r))))

        def ratio_pdf(r: float) -> float:
            return float(np.dot(wt, yt / (1 + r) ** 2 * c.pdf(yt / (1 + r))))

    z = float(special.ndtri(1 - alpha / 2))
    sd = math.hypot(c.sd, t.sd)
    centre = t.mean - c.mean
    abs_lo = _quantile(diff_cdf, diff_pdf, alpha / 2, centre - z * sd, sd)
    abs_hi = _quantile(diff_cdf, diff_pdf, 1 - alpha / 2, centre + z * sd, sd)
    r_centre = t.mean / c.mean - 1
    r_sd = math.sqrt(t.sd**2 / c.mean**2 + c.sd**2 * t.mean**2 / c.mean**4)
    rel_lo = _quantile(ratio_cdf, ratio_pdf, alpha / 2, r_centre - z * r_sd, r_sd, low=-1.0)
    rel_hi = _quantile(ratio_cdf, ratio_pdf, 1 - alpha / 2, r_centre + z * r_sd, r_sd, low=-1.0)
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
