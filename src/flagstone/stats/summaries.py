"""Sufficient statistics: what one GROUP BY per arm and metric returns.

Every method in ``flagstone.stats`` reads only these summaries, never unit rows, so a
warehouse can aggregate billions of rows and hand over a few numbers per arm. Each
summary pools with ``+`` (per-day or per-file aggregates combine exactly) and exposes
``n``, ``mean`` and a per-unit ``variance`` such that ``variance / n`` is the variance of
``mean``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeAlias

from flagstone.errors import FlagstoneError


class SummaryError(FlagstoneError):
    """Sufficient statistics that cannot describe any data (negative counts, successes > n)."""


def _check_count(name: str, value: float) -> None:
    if value < 0 or not math.isfinite(value):
        raise SummaryError(f"{name} must be a finite number ≥ 0, got {value!r}")


def _sample_variance(n: float, total: float, total_sq: float) -> float:
    if n <= 1:
        return 0.0
    # Clamp: sum_sq - sum²/n can come out a hair below 0 in floating point.
    return max((total_sq - total * total / n) / (n - 1), 0.0)


def _sample_covariance(n: float, sum_x: float, sum_y: float, sum_xy: float) -> float:
    if n <= 1:
        return 0.0
    return (sum_xy - sum_x * sum_y / n) / (n - 1)


@dataclass(frozen=True, slots=True)
class Proportion:
    """A 0/1 outcome per unit: ``n`` units of which ``successes`` converted."""

    n: int
    successes: int

    def __post_init__(self) -> None:
        _check_count("n", self.n)
        _check_count("successes", self.successes)
        if self.successes > self.n:
            raise SummaryError(f"successes ({self.successes}) exceed n ({self.n})")

    def __add__(self, other: Proportion) -> Proportion:
        return Proportion(self.n + other.n, self.successes + other.successes)

    @property
    def sum(self) -> float:
        return float(self.successes)

    @property
    def sum_sq(self) -> float:
        return float(self.successes)  # 0² = 0, 1² = 1

    @property
    def mean(self) -> float:
        return self.successes / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """Bernoulli variance p(1 - p), as gbstats' ``ProportionStatistic``."""
        p = self.mean
        return p * (1 - p)


@dataclass(frozen=True, slots=True)
class Mean:
    """A real value per unit: ``n`` units, the ``sum`` of their values and of their squares."""

    n: int
    sum: float
    sum_sq: float

    def __post_init__(self) -> None:
        _check_count("n", self.n)
        _check_count("sum_sq", self.sum_sq)
        if not math.isfinite(self.sum):
            raise SummaryError(f"sum must be finite, got {self.sum!r}")

    def __add__(self, other: Mean) -> Mean:
        return Mean(self.n + other.n, self.sum + other.sum, self.sum_sq + other.sum_sq)

    @classmethod
    def of(cls, values: list[float] | tuple[float, ...]) -> Mean:
        """Summarise raw values (small data, tests); warehouses send the sums directly."""
        return cls(len(values), math.fsum(values), math.fsum(v * v for v in values))

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """Sample variance (n - 1 denominator)."""
        return _sample_variance(self.n, self.sum, self.sum_sq)


@dataclass(frozen=True, slots=True)
class Ratio:
    """A ratio metric (e.g. revenue per session): per unit a numerator M and a denominator D.

    The estimate is ΣM / ΣD; its variance comes from the delta method, which needs the
    sums, the sums of squares and the sum of cross-products M·D over units.
    """

    n: int
    num_sum: float
    num_sum_sq: float
    den_sum: float
    den_sum_sq: float
    num_den_sum: float

    def __post_init__(self) -> None:
        _check_count("n", self.n)
        _check_count("num_sum_sq", self.num_sum_sq)
        _check_count("den_sum_sq", self.den_sum_sq)
        for name in ("num_sum", "den_sum", "num_den_sum"):
            if not math.isfinite(getattr(self, name)):
                raise SummaryError(f"{name} must be finite")

    def __add__(self, other: Ratio) -> Ratio:
        return Ratio(
            self.n + other.n,
            self.num_sum + other.num_sum,
            self.num_sum_sq + other.num_sum_sq,
            self.den_sum + other.den_sum,
            self.den_sum_sq + other.den_sum_sq,
            self.num_den_sum + other.num_den_sum,
        )

    @property
    def numerator(self) -> Mean:
        return Mean(self.n, self.num_sum, self.num_sum_sq)

    @property
    def denominator(self) -> Mean:
        return Mean(self.n, self.den_sum, self.den_sum_sq)

    @property
    def covariance(self) -> float:
        return _sample_covariance(self.n, self.num_sum, self.den_sum, self.num_den_sum)

    @property
    def mean(self) -> float:
        return self.num_sum / self.den_sum if self.den_sum else 0.0

    @property
    def variance(self) -> float:
        """Per-unit delta-method variance of ΣM/ΣD: (σ²_M − 2rσ_MD + r²σ²_D) / μ_D²."""
        mean_d = self.denominator.mean
        if mean_d == 0:
            return 0.0
        r = self.mean
        v = (
            self.numerator.variance - 2 * r * self.covariance + r * r * self.denominator.variance
        ) / (mean_d * mean_d)
        return max(v, 0.0)


@dataclass(frozen=True, slots=True)
class Cuped:
    """A metric with its pre-experiment covariate, for CUPED / regression adjustment.

    ``post`` is the metric during the experiment, ``pre`` the same units' value before
    exposure (0 for units with no history), ``post_pre_sum`` Σ post·pre over units.
    """

    post: Mean | Proportion
    pre: Mean | Proportion
    post_pre_sum: float

    def __post_init__(self) -> None:
        if self.post.n != self.pre.n:
            raise SummaryError(
                f"CUPED post and pre summaries must cover the same units "
                f"(n {self.post.n} vs {self.pre.n})"
            )
        if not math.isfinite(self.post_pre_sum):
            raise SummaryError("post_pre_sum must be finite")

    def __add__(self, other: Cuped) -> Cuped:
        return Cuped(
            _add(self.post, other.post),
            _add(self.pre, other.pre),
            self.post_pre_sum + other.post_pre_sum,
        )

    @property
    def n(self) -> int:
        return self.post.n

    @property
    def mean(self) -> float:
        return self.post.mean

    @property
    def variance(self) -> float:
        return self.post.variance

    @property
    def covariance(self) -> float:
        return _sample_covariance(self.n, self.post.sum, self.pre.sum, self.post_pre_sum)


def _add(a: Mean | Proportion, b: Mean | Proportion) -> Mean | Proportion:
    if isinstance(a, Proportion) and isinstance(b, Proportion):
        return a + b
    return Mean(a.n + b.n, a.sum + b.sum, a.sum_sq + b.sum_sq)


Summary: TypeAlias = Proportion | Mean | Ratio | Cuped
