"""Experiment statistics on sufficient statistics (see docs/statistics.md).

A pure library: summaries in, frozen results out, no I/O. scipy and numpy are imported
only inside this package, so ``import flagstone`` stays light.
"""

from __future__ import annotations

from flagstone.stats.checks import BalanceResult, SrmResult, balance, sample_ratio_mismatch
from flagstone.stats.correction import CORRECTIONS, Correction, adjust
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
from flagstone.stats.interaction import InteractionResult, interaction
from flagstone.stats.power import Design, Plan, PlanError, minimum_detectable_effect, sample_size
from flagstone.stats.summaries import Cuped, Mean, Proportion, Ratio, Summary, SummaryError
from flagstone.stats.winsorize import cap_at_percentile, winsorize

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
