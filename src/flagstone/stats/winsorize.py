"""Winsorization: capping a metric's per-unit values at a percentile before summing.

Sufficient statistics cannot be winsorized after the fact (the cap changes every squared
value), so the ingestion layer does it, in this order:

1. aggregate the metric to one value per exposed unit (units with no events count as 0,
   as they do in the sums);
2. compute the cap over **all arms pooled** — ``quantile_cont(value, p / 100)`` in DuckDB,
   ``PERCENTILE_CONT(p / 100)`` in Postgres and Snowflake, ``APPROX_QUANTILES`` in
   BigQuery — so every arm is capped at the same value and the cap cannot depend on the
   treatment;
3. replace each value by ``LEAST(value, cap)`` and only then take n, Σ and Σ²;
4. pass the cap to ``analyze_experiment(..., caps={metric: cap})`` so results report it.

Only the upper tail is capped: metrics that warrant winsorizing (revenue, session
length) are bounded below by 0. ``cap_at_percentile`` is the reference for step 2
(linear interpolation, as ``quantile_cont``); ``winsorize`` does steps 2–3 on raw values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flagstone.stats.summaries import Mean


def cap_at_percentile(values: Sequence[float], percentile: float) -> float:
    """The ``percentile``-th percentile (linear interpolation) of the pooled values."""
    if not 50 < percentile <= 100:
        raise ValueError(f"winsorize percentile must be in (50, 100], got {percentile}")
    return float(np.percentile(np.asarray(values, dtype=float), percentile, method="linear"))


def winsorize(values: Sequence[float], cap: float) -> Mean:
    """The sufficient statistics of ``values`` capped at ``cap``."""
    capped = np.minimum(np.asarray(values, dtype=float), cap)
    return Mean(len(capped), float(capped.sum()), float((capped * capped).sum()))
