"""``experiment status``: every running experiment at a glance, for people and for alerts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flagstone.analysis.run import DAY, Inputs, analyze, iso, parse_time
from flagstone.errors import FlagstoneError

if TYPE_CHECKING:
    from flagstone.model import Environment


@dataclass(frozen=True, slots=True)
class ExperimentStatus:
    env: str
    key: str
    method: str
    started_at: str | None
    days_running: float | None
    units: dict[str, int]
    planned_units_per_arm: int | None
    srm_p_value: float | None
    srm: bool
    harmed_guardrails: tuple[str, ...]
    primary: str  # the primary metric's verdicts: "short better (p 0.003)"
    decided: bool  # a sequential (or any) primary comparison is significant
    expected_end: str | None
    problem: str | None = None  # no data, or data that could not be read

    @property
    def alerting(self) -> bool:
        return self.srm or bool(self.harmed_guardrails)

    @property
    def progress(self) -> float | None:
        if not self.planned_units_per_arm or not self.units:
            return None
        return min(self.units.values()) / self.planned_units_per_arm

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "experiment": self.key,
            "method": self.method,
            "started_at": self.started_at,
            "days_running": self.days_running,
            "units": dict(self.units),
            "planned_units_per_arm": self.planned_units_per_arm,
            "progress": self.progress,
            "srm": self.srm,
            "srm_p_value": self.srm_p_value,
            "harmed_guardrails": list(self.harmed_guardrails),
            "primary": self.primary,
            "decided": self.decided,
            "expected_end": self.expected_end,
            "alerting": self.alerting,
            "problem": self.problem,
        }


@dataclass(frozen=True, slots=True)
class StatusReport:
    experiments: tuple[ExperimentStatus, ...] = field(default_factory=tuple)
    at: str = ""

    @property
    def ok(self) -> bool:
        return not any(e.alerting for e in self.experiments)

    def payload(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "experiments": [e.as_dict() for e in self.experiments],
            "alerts": sum(e.alerting for e in self.experiments),
        }

    def markdown(self) -> str:
        from flagstone.analysis.render import _md_table

        if not self.experiments:
            return "**flagstone experiment status**: no running experiment.\n"
        rows = [status_cells(e) for e in self.experiments]
        icon = "✅" if self.ok else "❌"
        return f"**flagstone experiment status** {icon}\n\n" + _md_table(STATUS_HEADER, rows)


STATUS_HEADER = (
    "env",
    "experiment",
    "days",
    "units per arm",
    "plan",
    "SRM",
    "guardrails",
    "primary",
    "expected end",
)


def status_cells(e: ExperimentStatus) -> tuple[str, ...]:
    if e.problem:
        return (e.env, e.key, _days(e.days_running), "—", "—", "—", "—", e.problem, "—")
    units = ", ".join(f"{arm} {n:,}" for arm, n in e.units.items())
    plan = (
        f"{e.planned_units_per_arm:,} ({e.progress:.0%})"
        if e.planned_units_per_arm and e.progress is not None
        else "—"
    )
    srm = ("MISMATCH " if e.srm else "ok ") + (
        f"p {e.srm_p_value:.2g}" if e.srm_p_value is not None else ""
    )
    guard = "HARMED: " + ", ".join(e.harmed_guardrails) if e.harmed_guardrails else "ok"
    return (
        e.env,
        e.key,
        _days(e.days_running),
        units,
        plan,
        srm,
        guard,
        e.primary,
        e.expected_end or "—",
    )


def _days(days: float | None) -> str:
    return "—" if days is None else f"{days:.1f}"


def experiment_status(env: Environment, key: str, inputs: Inputs, now: float) -> ExperimentStatus:
    experiment = env.experiments[key]
    started = experiment.raw.get("started_at")
    days = (now - parse_time(started)) / DAY if started else None
    method = str((experiment.raw.get("analysis") or {}).get("method", "frequentist"))
    try:
        analysis = analyze(env, key, inputs, now=now)
    except FlagstoneError as e:
        return ExperimentStatus(
            env.name, key, method, started, days, {}, None, None, False, (), "", False, None, str(e)
        )
    r = analysis.result
    primary = r.metrics[0]
    verdicts = []
    decided = False
    for c in primary.comparisons:
        p = c.p_adjusted if c.p_adjusted is not None else c.p_value
        evidence = (
            f"beat {c.chance_to_beat:.0%}"
            if r.method == "bayesian" and c.chance_to_beat is not None
            else f"p {p:.2g}"
        )
        verdicts.append(f"{c.arm} {c.verdict} ({evidence})")
        decided = decided or c.is_significant
    units = analysis.aggregates.units
    planned = r.planned_units_per_arm
    expected_end = None
    if planned and days and days > 0 and units:
        smallest = min(units.values())
        rate = smallest / days  # units per arm per day so far
        if smallest >= planned:
            expected_end = "reached"
        elif rate > 0:
            expected_end = iso(now + (planned - smallest) / rate * DAY)[:10]
    return ExperimentStatus(
        env.name,
        key,
        r.method,
        started,
        days,
        dict(units),
        planned,
        r.srm.p_value if math.isfinite(r.srm.p_value) else None,
        r.srm.is_mismatch,
        r.harmed_guardrails,
        "; ".join(verdicts) or "no comparison",
        decided,
        expected_end,
    )


def running_status(envs: Sequence[Environment], inputs: Inputs, now: float) -> StatusReport:
    entries = [
        experiment_status(env, key, inputs, now)
        for env in envs
        for key, experiment in sorted(env.experiments.items())
        if experiment.status == "running"
    ]
    return StatusReport(tuple(entries), iso(now))
