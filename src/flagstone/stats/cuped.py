"""CUPED (Deng, Xu, Kohavi and Walker, WSDM 2013): regression adjustment on a pre-period covariate.

For each unit, Y is the metric during the experiment and X the same unit's value before
exposure. With θ = Cov(Y, X) / Var(X) pooled over every arm (within-arm sums of products
and squares added up: one θ for all arms, so the adjustment cannot favour one), each
arm's adjusted mean is

    Ȳ_a − θ (X̄_a − X̄)        with X̄ the pre-period mean over all arms,

and its per-unit variance Var(Y) + θ² Var(X) − 2θ Cov(Y, X) = Var(Y)(1 − ρ²) when θ is the
within-sample optimum. Randomisation makes X independent of the arm, so the adjusted
difference stays unbiased while its variance drops by the share of Var(Y) that X explains.
The uncertainty in θ itself is ignored, as in the paper (negligible at experiment sizes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce

from flagstone.stats.frequentist import Moments
from flagstone.stats.summaries import Cuped


@dataclass(frozen=True, slots=True)
class CupedAdjustment:
    theta: float
    pre_mean: float  # X̄ over all arms
    moments: Mapping[str, Moments]  # adjusted mean and variance per arm
    variance_reduction: float  # 1 − Σ adjusted Var/n ÷ Σ unadjusted Var/n, over all arms


def pooled_theta(summaries: Mapping[str, Cuped]) -> tuple[float, float]:
    """(θ, pre-period mean over all arms).

    θ pools the within-arm covariances and variances, Σ_a S_xy,a / Σ_a S_xx,a, so the
    adjusted difference between two arms equals the treatment coefficient of the OLS
    regression y ~ arm + x over the pooled units (ANCOVA, Lin 2013 without interactions).
    """
    sxy = sxx = 0.0
    for s in summaries.values():
        if s.n > 1:
            sxy += s.covariance * (s.n - 1)
            sxx += s.pre.variance * (s.n - 1)
    pooled = reduce(lambda a, b: a + b, summaries.values())
    return (sxy / sxx if sxx > 0 else 0.0), pooled.pre.mean


def adjust(summaries: Mapping[str, Cuped]) -> CupedAdjustment:
    theta, pre_mean = pooled_theta(summaries)
    moments: dict[str, Moments] = {}
    before = after = 0.0
    for arm, s in summaries.items():
        variance = s.post.variance + theta**2 * s.pre.variance - 2 * theta * s.covariance
        moments[arm] = Moments(
            float(s.n), s.post.mean - theta * (s.pre.mean - pre_mean), max(variance, 0.0)
        )
        if s.n:
            before += s.post.variance / s.n
            after += max(variance, 0.0) / s.n
    reduction = 1 - after / before if before > 0 else 0.0
    return CupedAdjustment(theta, pre_mean, moments, reduction)
