"""Sample size, duration and minimum detectable effect for a planned experiment.

Proportions: the unpooled (Wald) two-proportion z-test that ``frequentist.compare`` runs,
with the baseline rate p₁ in control and p₂ = p₁ + δ in each treatment arm:

    power(n) = Φ(|δ|/σ − z) + Φ(−|δ|/σ − z),   σ = sqrt((p₁(1−p₁) + p₂(1−p₂)) / n)

(only the first term when one-sided; z = z_{1−α/2} or z_{1−α}), which is statsmodels'
``NormalIndPower`` with effect size δ / sqrt((p₁q₁ + p₂q₂)/2).

Means: Welch's t with the same standard deviation s in both arms is Student's t with
2n − 2 degrees of freedom; power comes from the noncentral t with noncentrality
δ / (s·sqrt(2/n)), as statsmodels' ``TTestIndPower``.

The units per arm are the smallest integer n reaching the target power. Several
treatment arms and metrics divide α by the number of comparisons (see
``correction.planning_alpha``). Duration = ⌈arms × n / (daily units × traffic)⌉ days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import special

from flagstone.errors import FlagstoneError
from flagstone.stats.correction import Correction, planning_alpha

MAX_UNITS = 10**12


class PlanError(FlagstoneError):
    """A plan that cannot be made: a rate outside (0, 1), a zero effect, ..."""


@dataclass(frozen=True, slots=True)
class Design:
    """What is planned for; ``mde`` is absolute unless ``relative``."""

    baseline: float
    baseline_sd: float | None = None  # given: a mean metric; absent: a proportion
    alpha: float = 0.05
    power: float = 0.8
    sides: Literal[1, 2] = 2
    arms: int = 2
    metrics: int = 1
    correction: Correction = "holm"
    relative: bool = False
    traffic: float = 100.0  # % of eligible units enrolled
    daily_units: float | None = None  # eligible units per day

    @property
    def kind(self) -> Literal["proportion", "mean"]:
        return "proportion" if self.baseline_sd is None else "mean"

    @property
    def comparisons(self) -> int:
        return (self.arms - 1) * self.metrics

    @property
    def test_alpha(self) -> float:
        return planning_alpha(self.alpha, self.comparisons, self.correction)


@dataclass(frozen=True, slots=True)
class Plan:
    design: Design
    mde_absolute: float
    mde_relative: float | None  # None when the baseline is 0
    units_per_arm: int
    total_units: int
    achieved_power: float
    enrolled_per_day: float | None
    days: int | None


def _check(design: Design) -> None:
    if design.kind == "proportion" and not 0 < design.baseline < 1:
        raise PlanError(
            f"a proportion's baseline must be between 0 and 1 (exclusive), got {design.baseline}; "
            "pass --baseline-sd for a mean metric"
        )
    if design.baseline_sd is not None and design.baseline_sd <= 0:
        raise PlanError(f"--baseline-sd must be > 0, got {design.baseline_sd}")
    if not 0 < design.alpha < 0.5:
        raise PlanError(f"alpha must be in (0, 0.5), got {design.alpha}")
    if not 0 < design.power < 1:
        raise PlanError(f"power must be in (0, 1), got {design.power}")
    if design.arms < 2:
        raise PlanError(f"an experiment needs at least 2 arms, got {design.arms}")
    if design.metrics < 1:
        raise PlanError(f"metrics must be ≥ 1, got {design.metrics}")
    if not 0 < design.traffic <= 100:
        raise PlanError(f"traffic must be a percentage in (0, 100], got {design.traffic}")
    if design.daily_units is not None and design.daily_units <= 0:
        raise PlanError(f"daily units must be > 0, got {design.daily_units}")


def absolute_effect(design: Design, mde: float) -> float:
    if mde <= 0:
        raise PlanError(f"the minimum detectable effect must be > 0, got {mde}")
    delta = mde * abs(design.baseline) if design.relative else mde
    if design.relative and design.baseline == 0:
        raise PlanError("a relative effect needs a non-zero baseline")
    if design.kind == "proportion" and design.baseline + delta >= 1:
        raise PlanError(
            f"baseline {design.baseline} + effect {delta:g} reaches 1: no rate can be that high"
        )
    return delta


def power_at(design: Design, delta: float, n: float) -> float:
    """Power of the test with ``n`` units per arm against an absolute effect ``delta``."""
    alpha = design.test_alpha
    if design.kind == "proportion":
        p1, p2 = design.baseline, design.baseline + delta
        sigma = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n)
        z = float(special.ndtri(1 - alpha / design.sides))
        power = float(special.ndtr(abs(delta) / sigma - z))
        if design.sides == 2:
            power += float(special.ndtr(-abs(delta) / sigma - z))
        return power
    assert design.baseline_sd is not None
    df = 2 * n - 2
    ncp = abs(delta) / (design.baseline_sd * math.sqrt(2 / n))
    crit = special.stdtrit(df, 1 - alpha / design.sides)
    # scipy.special, not scipy.stats: `experiment plan` then starts without scipy.stats.
    upper = _finite(1 - float(special.nctdtr(df, ncp, crit)), float(special.ndtr(ncp - crit)))
    if design.sides == 2:
        upper += _finite(float(special.nctdtr(df, ncp, -crit)), float(special.ndtr(-crit - ncp)))
    return upper


def _finite(value: float, fallback: float) -> float:
    # scipy's noncentral t returns NaN far in its tails, where the normal is exact enough.
    return float(value) if math.isfinite(value) else float(fallback)


def _duration(design: Design, per_arm: int) -> tuple[float | None, int | None]:
    if design.daily_units is None:
        return None, None
    per_day = design.daily_units * design.traffic / 100
    return per_day, math.ceil(per_arm * design.arms / per_day)


def _plan(design: Design, delta: float, n: int) -> Plan:
    per_day, days = _duration(design, n)
    return Plan(
        design,
        delta,
        delta / abs(design.baseline) if design.baseline else None,
        n,
        n * design.arms,
        power_at(design, delta, n),
        per_day,
        days,
    )


def sample_size(design: Design, mde: float) -> Plan:
    """Units per arm to detect ``mde`` with the design's power."""
    _check(design)
    delta = absolute_effect(design, mde)
    if power_at(design, delta, MAX_UNITS) < design.power:
        raise PlanError("the effect is too small to detect with any sample size")
    lo, hi = 2, 4
    while power_at(design, delta, hi) < design.power:
        lo, hi = hi, hi * 2
    from scipy import optimize  # on first use: analyze does not plan

    exact = optimize.brentq(lambda n: power_at(design, delta, n) - design.power, lo, hi, xtol=1e-6)
    n = max(2, math.ceil(exact - 1e-9))
    while power_at(design, delta, n) < design.power:  # guard against the root's rounding
        n += 1
    return _plan(design, delta, n)


def minimum_detectable_effect(design: Design, units_per_arm: int) -> Plan:
    """The smallest effect detected with the design's power at ``units_per_arm``."""
    _check(design)
    if units_per_arm < 2:
        raise PlanError(f"units per arm must be ≥ 2, got {units_per_arm}")
    upper = (1 - design.baseline) * (1 - 1e-12) if design.kind == "proportion" else None
    if upper is not None and power_at(design, upper, units_per_arm) < design.power:
        raise PlanError(
            f"{units_per_arm} units per arm cannot reach {design.power:.0%} power for any effect"
        )
    if upper is None:
        assert design.baseline_sd is not None
        upper = design.baseline_sd
        while power_at(design, upper, units_per_arm) < design.power:
            upper *= 2
    from scipy import optimize

    delta = optimize.brentq(
        lambda d: power_at(design, d, units_per_arm) - design.power, 1e-12, upper, xtol=1e-12
    )
    return _plan(design, float(delta), units_per_arm)
