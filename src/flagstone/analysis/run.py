"""One analysis: the experiment's YAML + data (raw or aggregated) → ``flagstone.stats`` → a report.

Pure of output: the CLI renders the ``Analysis`` it returns (text, JSON, markdown, HTML).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import importlib
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flagstone.analysis.ingest import (
    Aggregates,
    Data,
    aggregate,
    read_stats_file,
    rows_to_aggregates,
)
from flagstone.analysis.sources import InputError, resolve
from flagstone.analysis.sql import MetricQuery, QueryPlan
from flagstone.errors import FlagstoneError, UsageError

if TYPE_CHECKING:
    from flagstone.model import Environment, Experiment
    from flagstone.stats.engine import DimensionResult, ExperimentResult, ExperimentSpec
    from flagstone.stats.interaction import InteractionResult

DAY = 86_400.0
MAX_LOOKS = 60
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}


def parse_window(text: str | None) -> float | None:
    """``7d``, ``12h``, ``30m``, ``90s`` or ``2w`` → seconds."""
    if text is None:
        return None
    value, unit = text[:-1], text[-1:].lower()
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if unit not in _UNITS or not math.isfinite(number) or number <= 0:
        raise UsageError(
            f"--window {text!r}: write a positive length with a unit, e.g. 7d, 12h, 30m"
        )
    return number * _UNITS[unit]


def parse_time(text: str) -> float:
    """An ISO 8601 time (``2026-03-01T09:00:00Z``) → epoch seconds (UTC unless stated)."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FlagstoneError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-03-01T09:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find_experiment(env: Environment, key: str) -> Experiment:
    experiment = env.experiments.get(key)
    if experiment is None:
        close = difflib.get_close_matches(key, list(env.experiments), n=1)
        raise UsageError(
            f"no experiment {key!r} in {env.name}"
            + (f"; did you mean {close[0]!r}?" if close else "")
            + (
                f" (it has {', '.join(sorted(env.experiments))})"
                if env.experiments and not close
                else ""
            )
        )
    return experiment


def experiment_spec(env: Environment, experiment: Experiment) -> ExperimentSpec:
    from flagstone.stats.engine import ExperimentSpec

    flag = env.flags.get(experiment.flag)
    arms = list(flag.variants) if flag is not None else None
    return ExperimentSpec.from_mapping(experiment.key, experiment.raw, arms=arms)


def metric_queries(spec: ExperimentSpec) -> tuple[MetricQuery, ...]:
    return tuple(
        MetricQuery(m.name, m.kind, m.winsorize, m.numerator, m.denominator) for m in spec.metrics
    )


def look_cuts(started_at: str | None, now: float, *, daily: bool = True) -> tuple[float, ...]:
    """Daily cuts since the start (at most ``MAX_LOOKS``, spread evenly), then "everything"."""
    if not daily or started_at is None:
        return ()
    start = parse_time(started_at)
    days = int((now - start) // DAY)
    step = max(1, math.ceil(days / MAX_LOOKS))
    cuts = [start + k * DAY for k in range(step, days + 1, step)]
    return (*cuts, 1e18)  # the last look is all the data there is


@dataclass(frozen=True, slots=True)
class Inputs:
    exposures: str | None = None
    metrics: str | None = None
    stats: Path | None = None
    window: float | None = None
    by: str | None = None
    interaction: str | None = None

    def check(self) -> None:
        if self.stats is not None:
            if self.exposures or self.metrics:
                raise UsageError("pass either --stats or --exposures with --metrics, not both")
            if self.interaction:
                raise UsageError("--interaction needs raw data: --exposures and --metrics")
            return
        if not (self.exposures and self.metrics):
            raise UsageError(
                "pass --exposures FILE and --metrics FILE (raw data), or --stats FILE "
                "(sufficient statistics from `flagstone analyze --print-sql`)"
            )


@dataclass
class Analysis:
    env: str
    key: str
    status: str
    started_at: str | None
    result: ExperimentResult
    aggregates: Aggregates
    at: str
    by: DimensionResult | None = None
    interactions: dict[str, InteractionResult] = field(default_factory=dict)
    interaction_with: str | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # informational, not a problem

    @property
    def ok(self) -> bool:
        return self.result.is_trustworthy and not self.result.harmed_guardrails


def query_plan(
    spec: ExperimentSpec,
    env: str,
    inputs: Inputs,
    looks: Sequence[float] = (),
    *,
    by: str | None = None,
    interaction: str | None = None,
    consent_counts: bool = False,
) -> QueryPlan:
    return _plan(
        spec.key,
        shape_of(spec),
        env,
        inputs,
        looks,
        by=by,
        interaction=interaction,
        consent_counts=consent_counts,
    )


def _plan(
    key: str,
    shape: QueryShape,
    env: str,
    inputs: Inputs,
    looks: Sequence[float] = (),
    *,
    by: str | None = None,
    interaction: str | None = None,
    consent_counts: bool = False,
) -> QueryPlan:
    return QueryPlan(
        experiment=key,
        metrics=shape.metrics,
        environment=env,
        window=inputs.window,
        cuped=shape.cuped,
        by=by,
        dimensions=shape.dimensions,
        looks=tuple(looks),
        interaction=interaction,
        consent_counts=consent_counts,
    )


@dataclass(frozen=True, slots=True)
class QueryShape:
    """What the aggregation query needs of an experiment."""

    metrics: tuple[MetricQuery, ...]
    cuped: bool
    sequential: bool
    dimensions: tuple[str, ...]


def shape_of(spec: ExperimentSpec) -> QueryShape:
    return QueryShape(
        metric_queries(spec),
        spec.analysis.cuped,
        spec.analysis.method == "sequential",
        spec.dimensions,
    )


def read_shape(raw: Mapping[str, Any]) -> QueryShape | None:
    """``shape_of`` read straight from the experiment's YAML, without ``flagstone.stats``
    (numpy and scipy take about a second to import): so they can load while DuckDB runs
    the query. None when the YAML is not of the expected form (the spec then reports it)."""
    try:
        listed = raw.get("metrics") or {}
        metrics = [listed["primary"]] if listed.get("primary") else []
        metrics += [*(listed.get("secondary") or ()), *(listed.get("guardrails") or ())]
        analysis = raw.get("analysis") or {}
        return QueryShape(
            tuple(
                MetricQuery(
                    str(m["name"]),
                    m["kind"],
                    float(m["winsorize"]) if m.get("winsorize") is not None else None,
                    m.get("numerator"),
                    m.get("denominator"),
                )
                for m in metrics
            ),
            bool(analysis.get("cuped", False)),
            analysis.get("method", "frequentist") == "sequential",
            tuple(raw.get("dimensions") or ()),
        )
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _import_quietly(module: str) -> None:
    # A failure is raised again, with its traceback, by the main thread's own import.
    with contextlib.suppress(Exception):
        importlib.import_module(module)


def _check_by(key: str, by: str | None, dimensions: Sequence[str]) -> None:
    if by is not None and by not in dimensions:
        raise UsageError(
            f"--by {by}: experiment {key!r} declares "
            + (f"dimensions {', '.join(dimensions)}" if dimensions else "no dimensions")
            + "; add it to the experiment's dimensions: so the runtime logs it"
        )


def gather(
    env: Environment, experiment: Experiment, inputs: Inputs, now: float
) -> tuple[ExperimentSpec, Aggregates]:
    """The experiment's sufficient statistics from raw data or a statistics file."""
    inputs.check()
    if inputs.stats is not None:
        spec = experiment_spec(env, experiment)
        _check_by(spec.key, inputs.by, spec.dimensions)
        rows = read_stats_file(inputs.stats)
        looks = sorted({float(r["look"]) for r in rows if r.get("look") not in (None, "")})
        return spec, rows_to_aggregates(
            rows, metric_queries(spec), _look_index(looks), cuped=spec.analysis.cuped
        )
    assert inputs.exposures is not None and inputs.metrics is not None
    exposures, metrics = resolve(inputs.exposures, "exposures"), resolve(inputs.metrics, "metrics")

    def run(shape: QueryShape) -> Aggregates:
        cuts = look_cuts(experiment.raw.get("started_at"), now, daily=shape.sequential)
        agg, _ = aggregate(
            _plan(
                experiment.key,
                shape,
                env.name,
                inputs,
                cuts,
                consent_counts=experiment.consent_required,
            ),
            exposures,
            metrics,
        )
        return agg

    early = read_shape(experiment.raw)
    if early is None:
        spec = experiment_spec(env, experiment)
        _check_by(spec.key, inputs.by, spec.dimensions)
        return spec, run(shape_of(spec))
    _check_by(experiment.key, inputs.by, early.dimensions)
    # DuckDB releases the GIL: the statistics import on another thread while the query
    # runs. duckdb itself is imported first, so the two threads never import the same module.
    importlib.import_module("duckdb")
    loading = threading.Thread(target=_import_quietly, args=("flagstone.stats.engine",))
    loading.start()
    try:
        agg = run(early)
    finally:
        loading.join()
    spec = experiment_spec(env, experiment)
    if shape_of(spec) != early:  # the numbers are always those of the spec's own query
        agg = run(shape_of(spec))
    return spec, agg


def _look_index(looks: Sequence[float]) -> tuple[float, ...]:
    # Rows of a statistics file carry the look index (0, 1, …), not its time.
    return tuple(float(i) for i in range(len(looks)))


def analyze(
    env: Environment,
    key: str,
    inputs: Inputs,
    *,
    now: float | None = None,
    interaction_env: Environment | None = None,
) -> Analysis:
    from flagstone.stats.engine import Look, analyze_by_dimension, analyze_experiment

    now = dt.datetime.now(dt.UTC).timestamp() if now is None else now
    experiment = find_experiment(env, key)
    spec, agg = gather(env, experiment, inputs, now)
    if not agg.units:
        raise InputError(
            f"no units exposed to experiment {key!r}"
            + (f" in {env.name}" if inputs.stats is None else "")
            + " in this data: check the experiment key and --env (exposures of other "
            "environments are left out)"
        )
    at = iso(now)
    looks = [Look(iso(cut) if cut < 1e17 else at, data) for cut, data in agg.looks]
    result = analyze_experiment(
        spec,
        agg.data,
        looks,
        units=agg.units,
        dimensions=agg.dimensions or None,
        caps=agg.caps or None,
        at=at,
    )
    analysis = Analysis(
        env.name, key, experiment.status, experiment.raw.get("started_at"), result, agg, at
    )
    if agg.multiple_arms:
        analysis.warnings.append(
            f"{agg.multiple_arms} unit(s) were exposed to more than one arm and are excluded: "
            "check that the unit id is stable and that the flag serves arms only through the experiment"
        )
    if agg.consent_refused:
        analysis.warnings.append(
            f"{agg.consent_refused} unit(s) without consent are excluded from the analysis"
        )
    if agg.exact_reruns:
        analysis.notes.append(
            "two units shared a 64-bit hash key, so the data was aggregated again keyed by "
            "the unit strings (exact, slower)"
        )
    if agg.consent_not_given is not None and experiment.consent_required:
        analysis.notes.append(
            f"{agg.consent_not_given:,} unit(s) were not enrolled for lacking consent "
            "(the runtime's consent_not_given counts: never logged, each unit counted once "
            "per process, so a unit served by several processes counts in each)"
        )
    if inputs.by is not None:
        assert inputs.exposures is not None and inputs.metrics is not None
        sliced, _ = aggregate(
            query_plan(spec, env.name, inputs, by=inputs.by),
            resolve(inputs.exposures, "exposures"),
            resolve(inputs.metrics, "metrics"),
        )
        analysis.by = analyze_by_dimension(
            spec, inputs.by, sliced.slices, units_by_value=sliced.slice_units
        )
    if inputs.interaction is not None:
        analysis.interaction_with = inputs.interaction
        analysis.interactions = _interactions(env, spec, inputs, interaction_env or env)
    return analysis


def _interactions(
    env: Environment, spec: ExperimentSpec, inputs: Inputs, other_env: Environment
) -> dict[str, InteractionResult]:
    from flagstone.stats.interaction import interaction
    from flagstone.stats.summaries import Cuped, Mean, Proportion

    assert inputs.interaction is not None and inputs.exposures is not None and inputs.metrics
    other = find_experiment(other_env, inputs.interaction)
    other_spec = experiment_spec(other_env, other)
    agg, _ = aggregate(
        query_plan(spec, env.name, inputs, interaction=other.key),
        resolve(inputs.exposures, "exposures"),
        resolve(inputs.metrics, "metrics"),
    )
    if not agg.slices:
        raise InputError(
            f"no unit is enrolled in both {spec.key!r} and {other.key!r} in this data: "
            "an interaction needs experiments that ran on the same units"
        )
    out = {}
    for metric in spec.metrics:
        if metric.kind == "ratio":
            continue
        cells: dict[tuple[str, str], Mean | Proportion] = {}
        for b_arm, data in agg.slices.items():
            for a_arm, summary in data.get(metric.name, {}).items():
                plain = summary.post if isinstance(summary, Cuped) else summary
                if isinstance(plain, Mean | Proportion):
                    cells[(a_arm, b_arm)] = plain
        if cells:
            out[metric.name] = interaction(
                cells,
                a=spec.key,
                b=other.key,
                a_control=spec.control,
                b_control=other_spec.control,
                alpha=spec.analysis.alpha,
            )
    return out


def summaries_dict(data: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    from flagstone.stats.engine import to_jsonable

    return {m: {a: to_jsonable(s) for a, s in arms.items()} for m, arms in data.items()}


__all__ = ["Analysis", "Data", "Inputs", "analyze", "gather", "parse_time", "parse_window"]
