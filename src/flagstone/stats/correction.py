"""Multiple-testing corrections: adjusted p-values, as statsmodels' ``multipletests``.

- ``bonferroni``: m·p — controls the family-wise error rate (FWER).
- ``holm``: Holm's step-down — FWER like Bonferroni, uniformly more powerful.
- ``bh``: Benjamini–Hochberg step-up — controls the false discovery rate (independent or
  positively dependent tests, which arms sharing one control are).
- ``none``: unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Correction = Literal["holm", "bh", "bonferroni", "none"]
CORRECTIONS: tuple[Correction, ...] = ("holm", "bh", "bonferroni", "none")


def adjust(p_values: Sequence[float], method: Correction) -> list[float]:
    """Adjusted p-values in the input order; reject where adjusted p < α."""
    m = len(p_values)
    if method == "none" or m <= 1:
        return [float(p) for p in p_values]
    if method == "bonferroni":
        return [min(1.0, m * p) for p in p_values]
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * p_values[i]))
            adjusted[i] = running
        return adjusted
    if method == "bh":
        running = 1.0
        for rank in range(m - 1, -1, -1):
            i = order[rank]
            running = min(running, m / (rank + 1) * p_values[i])
            adjusted[i] = min(1.0, running)
        return adjusted
    raise ValueError(f"unknown correction {method!r}; use one of {', '.join(CORRECTIONS)}")


def planning_alpha(alpha: float, comparisons: int, method: Correction) -> float:
    """The per-test α a sample size should be planned for under ``method``.

    Holm and BH reject the smallest p-value at α/m, so planning at α/m (Bonferroni)
    keeps the planned power even when only one of the m effects is real.
    """
    if method == "none" or comparisons <= 1:
        return alpha
    return alpha / comparisons
