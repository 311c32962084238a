"""Experiment statistics on sufficient statistics (see docs/statistics.md).

A pure library: summaries in, frozen results out, no I/O. scipy and numpy are imported
only inside this package, so ``import flagstone`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flagstone.stats.checks import BalanceResult, SrmResult, balance, sample_ratio_mismatch
    from flagstone.stats.engine import (
        STATS_VERSION,
        AnalysisSpec,
        ArmStats,
        Comparison,
        DimensionResult,
        ExperimentResult,
        ExperimentSpec,
        GuardrailResult,
        Look,
        MetricResult,
        MetricSpec,
        Notice,
        SliceResult,
        SpecError,
        analyze_by_dimension,
        analyze_experiment,
        to_jsonable,
    )

# engine and checks (and through them scipy.stats, which costs more than the rest of a
# command's start-up) are imported on first use: `experiment plan` needs only power.py.
# The light modules are imported eagerly, which also binds `interaction` and `winsorize`
# to the functions rather than to their same-named submodules.
from flagstone.stats.correction import CORRECTIONS, Correction, adjust
from flagstone.stats.interaction import InteractionResult, interaction
from flagstone.stats.power import Design, Plan, PlanError, minimum_detectable_effect, sample_size
from flagstone.stats.summaries import Cuped, Mean, Proportion, Ratio, Summary, SummaryError
from flagstone.stats.winsorize import cap_at_percentile, winsorize

_LAZY = {
    "AnalysisSpec": "flagstone.stats.engine",
    "ArmStats": "flagstone.stats.engine",
    "BalanceResult": "flagstone.stats.checks",
    "Comparison": "flagstone.stats.engine",
    "DimensionResult": "flagstone.stats.engine",
    "ExperimentResult": "flagstone.stats.engine",
    "ExperimentSpec": "flagstone.stats.engine",
    "GuardrailResult": "flagstone.stats.engine",
    "Look": "flagstone.stats.engine",
    "MetricResult": "flagstone.stats.engine",
    "MetricSpec": "flagstone.stats.engine",
    "Notice": "flagstone.stats.engine",
    "STATS_VERSION": "flagstone.stats.engine",
    "SliceResult": "flagstone.stats.engine",
    "SpecError": "flagstone.stats.engine",
    "SrmResult": "flagstone.stats.checks",
    "analyze_by_dimension": "flagstone.stats.engine",
    "analyze_experiment": "flagstone.stats.engine",
    "balance": "flagstone.stats.checks",
    "sample_ratio_mismatch": "flagstone.stats.checks",
    "to_jsonable": "flagstone.stats.engine",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flagstone.stats' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "CORRECTIONS",
    "STATS_VERSION",
    "AnalysisSpec",
    "ArmStats",
    "BalanceResult",
    "Comparison",
    "Correction",
    "Cuped",
    "Design",
    "DimensionResult",
    "ExperimentResult",
    "ExperimentSpec",
    "GuardrailResult",
    "InteractionResult",
    "Look",
    "Mean",
    "MetricResult",
    "MetricSpec",
    "Notice",
    "Plan",
    "PlanError",
    "Proportion",
    "Ratio",
    "SliceResult",
    "SpecError",
    "SrmResult",
    "Summary",
    "SummaryError",
    "adjust",
    "analyze_by_dimension",
    "analyze_experiment",
    "balance",
    "cap_at_percentile",
    "interaction",
    "minimum_detectable_effect",
    "sample_ratio_mismatch",
    "sample_size",
    "to_jsonable",
    "winsorize",
]
