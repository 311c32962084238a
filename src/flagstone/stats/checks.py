"""Trust checks run before any lift is read: sample ratio mismatch and covariate balance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import special

# The industry threshold (Kohavi et al., "Trustworthy Online Controlled Experiments", ch. 21):
# an SRM at p < 0.001 means the assignment or the logging is broken, not bad luck.
SRM_THRESHOLD = 0.001
BALANCE_THRESHOLD = 0.001


@dataclass(frozen=True, slots=True)
class SrmResult:
    observed: Mapping[str, int]
    expected: Mapping[str, float]
    chi2: float
    df: int
    p_value: float
    threshold: float = SRM_THRESHOLD
    degenerate: str | None = None

    @property
    def is_mismatch(self) -> bool:
        return self.degenerate is None and self.p_value < self.threshold


def sample_ratio_mismatch(
    units_by_arm: Mapping[str, int],
    weights: Mapping[str, float],
    *,
    threshold: float = SRM_THRESHOLD,
) -> SrmResult:
    """Pearson χ² goodness of fit of the units per arm against the configured weights."""
    arms = [a for a in weights if weights[a] > 0]
    observed = {a: int(units_by_arm.get(a, 0)) for a in arms}
    total = sum(observed.values())
    weight_sum = sum(weights[a] for a in arms)
    expected = {a: total * weights[a] / weight_sum for a in arms}
    unexpected = sorted(a for a, n in units_by_arm.items() if a not in arms and n > 0)
    if unexpected:
        observed.update({a: int(units_by_arm[a]) for a in unexpected})
        return SrmResult(
            observed,
            expected,
            float("inf"),
            len(arms) - 1,
            0.0,
            threshold,
        )
    if total == 0 or len(arms) < 2:
        reason = "no units yet" if total == 0 else "fewer than two arms have weight"
        return SrmResult(observed, expected, 0.0, max(len(arms) - 1, 0), 1.0, threshold, reason)
    chi2 = sum((observed[a] - expected[a]) ** 2 / expected[a] for a in arms)
    # scipy.stats.chisquare computes the same, with ~500 µs of overhead per call.
    p = float(special.chdtrc(len(arms) - 1, chi2))
    return SrmResult(observed, expected, float(chi2), len(arms) - 1, p, threshold)


@dataclass(frozen=True, slots=True)
class BalanceResult:
    dimension: str
    counts: Mapping[str, Mapping[str, int]]  # value -> arm -> units
    chi2: float
    df: int
    p_value: float
    is_sparse: bool  # some expected cell < 5: the χ² approximation is rough
    threshold: float = BALANCE_THRESHOLD
    degenerate: str | None = None

    @property
    def is_imbalanced(self) -> bool:
        return self.degenerate is None and self.p_value < self.threshold


def balance(
    dimension: str,
    counts: Mapping[str, Mapping[str, int]],
    arms: list[str] | tuple[str, ...],
    *,
    threshold: float = BALANCE_THRESHOLD,
) -> BalanceResult:
    """χ² test of independence between a dimension's values and the arm.

    Randomisation makes every pre-exposure attribute independent of the arm; a
    dimension whose mix differs across arms points at biased enrolment or logging
    (e.g. one arm crashing on one platform before its exposure is logged).
    """
    values = sorted(v for v in counts if sum(counts[v].get(a, 0) for a in arms) > 0)
    table = np.array([[counts[v].get(a, 0) for a in arms] for v in values], dtype=float)
    kept_arms = table.sum(axis=0) > 0 if len(values) else np.zeros(len(arms), dtype=bool)
    if len(values) < 2 or kept_arms.sum() < 2:
        return BalanceResult(
            dimension, counts, 0.0, 0, 1.0, False, threshold, "fewer than two values or arms"
        )
    table = table[:, kept_arms]
    from scipy import stats  # scipy.stats costs more at import than all the rest

    result = stats.chi2_contingency(table, correction=False)
    return BalanceResult(
        dimension,
        counts,
        float(result.statistic),
        int(result.dof),
        float(result.pvalue),
        bool((result.expected_freq < 5).any()),
        threshold,
    )
