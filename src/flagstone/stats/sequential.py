"""Always-valid inference: asymptotic confidence sequences (Waudby-Smith et al.).

Method: the two-sided normal-mixture asymptotic confidence sequence of Waudby-Smith,
Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central limit theory and asymptotic
confidence sequences" (Annals of Statistics, 2024; arXiv:2103.06476), eq. 9, the method
GrowthBook and Eppo use. With Δ̂ the estimated lift, SE its standard error and n the
units in both arms so far, the interval at level α is

    Δ̂ ± SE · sqrt( 2(nρ² + 1) / (nρ²) · ln( sqrt(nρ² + 1) / α ) )

and it holds at every n simultaneously: looking after every unit keeps the chance of
ever excluding the true lift ≤ α. The always-valid p-value is the smallest α whose
sequence excludes 0: ``min(1, sqrt(nρ²+1) · exp(−z² nρ² / (2(nρ²+1))))`` with z = Δ̂/SE.

Tuning: ρ is chosen so the sequence is tightest at n* units (eq. 161):
ρ² = (−2 ln α + ln(1 − 2 ln α)) / n*. The default n* is 5,000 (GrowthBook's default);
set it to the planned sample size so the interval is narrowest when the decision is due.

Over several analyses, results are reported as the running minimum of the p-values and
the running intersection of the intervals, so a result never "un-rejects".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_TUNING = 5000


def mixing_rho(alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """ρ that makes the sequence tightest at ``tuning`` units (eq. 161)."""
    log_alpha = math.log(alpha)
    return math.sqrt((-2 * log_alpha + math.log(1 - 2 * log_alpha)) / tuning)


def halfwidth(
    stderr: float,
    n: float,
    alpha: float,
    tuning: float = DEFAULT_TUNING,
    *,
    rho: float | None = None,
) -> float:
    """Half-width of the confidence sequence for an estimate with standard error ``stderr``.

    ``rho`` defaults to the one tuned for ``alpha`` at ``tuning`` units.
    """
    rho2n = n * (rho if rho is not None else mixing_rho(alpha, tuning)) ** 2
    return stderr * math.sqrt(2 * (rho2n + 1) / rho2n * math.log(math.sqrt(rho2n + 1) / alpha))


def always_valid_p(
    z: float,
    n: float,
    alpha: float,
    tuning: float = DEFAULT_TUNING,
    *,
    rho: float | None = None,
) -> float:
    """The smallest level at which the sequence excludes 0 (ρ tuned at ``alpha``)."""
    rho2n = n * (rho if rho is not None else mixing_rho(alpha, tuning)) ** 2
    if math.isinf(z):
        return 0.0
    log_p = 0.5 * math.log(rho2n + 1) - z * z * rho2n / (2 * (rho2n + 1))
    return min(1.0, math.exp(log_p))


@dataclass(frozen=True, slots=True)
class SequentialLook:
    """One analysis: its own interval and p-value, and the running ones up to it."""

    at: str | None
    n: int  # units in both arms
    estimate: float
    stderr: float
    p_value: float
    ci_low: float
    ci_high: float
    running_p_value: float
    running_ci_low: float
    running_ci_high: float


@dataclass(frozen=True, slots=True)
class SequentialResult:
    tuning: float
    p_value: float  # running minimum over every look
    ci_low: float  # running intersection
    ci_high: float
    looks: tuple[SequentialLook, ...]
    is_intersection_empty: bool = False


@dataclass(frozen=True, slots=True)
class LookEstimate:
    """What one analysis contributes: the estimate on the reported scale at that time."""

    at: str | None
    n: int
    estimate: float
    stderr: float


def confidence_sequence(
    looks: Sequence[LookEstimate],
    *,
    alpha: float = 0.05,
    tuning: float = DEFAULT_TUNING,
    alternative: str = "two-sided",
) -> SequentialResult:
    """Running always-valid p-value and interval over ``looks`` (oldest first).

    One-sided analyses use the two-sided boundary's one bound, which keeps the error
    rate ≤ α (conservative), and a p-value of 1 when the estimate points the other way.
    """
    out: list[SequentialLook] = []
    running_p, low, high = 1.0, -math.inf, math.inf
    rho = mixing_rho(alpha, tuning)
    for look in looks:
        if look.stderr <= 0 or look.n < 2:
            p, lo, hi = 1.0, -math.inf, math.inf
        else:
            half = halfwidth(look.stderr, look.n, alpha, rho=rho)
            lo, hi = look.estimate - half, look.estimate + half
            p = always_valid_p(look.estimate / look.stderr, look.n, alpha, rho=rho)
            if alternative == "greater":
                hi = math.inf
                p = p if look.estimate > 0 else 1.0
            elif alternative == "less":
                lo = -math.inf
                p = p if look.estimate < 0 else 1.0
        running_p, low, high = min(running_p, p), max(low, lo), min(high, hi)
        out.append(
            SequentialLook(
                look.at, look.n, look.estimate, look.stderr, p, lo, hi, running_p, low, high
            )
        )
    empty = low > high
    if empty and out:
        # The sequences disagree (the model is badly off, e.g. a drifting effect): report
        # the latest interval rather than an empty one, and say so.
        low, high = out[-1].ci_low, out[-1].ci_high
    return SequentialResult(tuning, running_p, low, high, tuple(out), empty)
