"""The experiment lifecycle, draft → running → stopped → concluded, as edits of the YAML.

Each function changes one experiment's round-trip mapping in place (comments and order
survive) and returns what it did in words, or raises ``LifecycleError`` when the
transition is not allowed. They read no files and write none: ``cli/experiment.py``
loads, validates and writes (all or nothing) around them.

Rules: ``start`` takes a draft; ``stop`` a running experiment; ``conclude`` a running or
stopped one; ``ramp`` changes traffic of a draft freely and of a running experiment only
upward (lowering it would un-enroll units mid-experiment). From start until it is
concluded, what decides assignment and analysis is frozen: ``FROZEN_FIELDS``.
``frozen_problems`` holds a hand edit (verify, validate --base, rollback, revert,
promote) to the same rules, the status changes included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flagstone.errors import FlagstoneError, Problem

if TYPE_CHECKING:
    from flagstone.model import Environment
    from flagstone.stats.engine import ExperimentResult
    from flagstone.stats.power import Plan

LIFECYCLE = ("draft", "running", "stopped", "concluded")
ALLOWED_FROM = {
    "start": ("draft",),
    "stop": ("running",),
    "conclude": ("running", "stopped"),
    "ramp": ("draft", "running"),
}
STATUS_AFTER = {"start": "running", "stop": "stopped", "conclude": "concluded"}
# The status changes the commands make; any other (stopped → running, concluded → draft…)
# would enroll units again under a design already analysed, or rewrite a decision.
TRANSITIONS = frozenset(
    (before, after) for action, after in STATUS_AFTER.items() for before in ALLOWED_FROM[action]
)
# Units were enrolled under the design and the analysis (conclude) still reads it.
FROZEN_STATUSES = ("running", "stopped")
# Changing any of these while units are enrolled moves units between arms or changes what
# the analysis compares; the flag's variants are the arms when there are no weights.
FROZEN_FIELDS = ("flag", "unit", "salt", "weights", "control", "metrics", "layer", "audience")
METRIC_ROLES = ("primary", "secondary", "guardrail")
METRIC_KINDS = ("proportion", "mean", "ratio")


class LifecycleError(FlagstoneError):
    """A lifecycle step the experiment's state does not allow."""

    code = "lifecycle"


def check_transition(key: str, status: str, action: str) -> None:
    allowed = ALLOWED_FROM[action]
    if status not in allowed:
        raise LifecycleError(
            f"experiment {key!r} is {status}; {action} needs a "
            f"{' or '.join(allowed)} experiment ({' → '.join(LIFECYCLE)})"
        )


@dataclass(frozen=True, slots=True)
class MetricArg:
    role: str
    name: str
    kind: str
    options: Mapping[str, Any]

    def as_yaml(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, **self.options}


def parse_metric(text: str) -> MetricArg:
    """``ROLE:NAME:KIND[:key=value…]``, e.g. ``guardrail:crash_rate:proportion:worse=increase``."""
    parts = text.split(":")
    if len(parts) < 3 or parts[0] not in METRIC_ROLES or parts[2] not in METRIC_KINDS:
        raise LifecycleError(
            f"--metric {text!r}: write ROLE:NAME:KIND with ROLE one of {', '.join(METRIC_ROLES)} "
            f"and KIND one of {', '.join(METRIC_KINDS)}, e.g. primary:d7_retention:proportion "
            "or guardrail:crash_rate:proportion:worse=increase"
        )
    options: dict[str, Any] = {}
    for item in parts[3:]:
        name, sep, value = item.partition("=")
        if not sep:
            raise LifecycleError(
                f"--metric {text!r}: {item!r} is not key=value (e.g. worse=increase)"
            )
        if name in ("margin", "winsorize"):
            try:
                options[name] = _number(float(value))
            except ValueError:
                raise LifecycleError(f"--metric {text!r}: {name} must be a number") from None
        elif name in ("worse", "numerator", "denominator"):
            options[name] = value
        else:
            raise LifecycleError(
                f"--metric {text!r}: unknown option {name!r} "
                "(worse, margin, winsorize, numerator, denominator)"
            )
    return MetricArg(parts[0], parts[1], parts[2], options)


def parse_weights(text: str) -> dict[str, float]:
    """``control=50,short=50`` → {"control": 50, "short": 50}."""
    weights: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        try:
            weights[name.strip()] = _number(float(value))
        except ValueError:
            raise LifecycleError(
                f"--weights {text!r}: write arm=percent pairs, e.g. control=50,short=50"
            ) from None
        if not sep or not name.strip():
            raise LifecycleError(
                f"--weights {text!r}: write arm=percent pairs, e.g. control=50,short=50"
            )
    return weights


def _number(value: float) -> float:
    return int(value) if value.is_integer() else value


def create_experiment(
    data: Any,
    key: str,
    *,
    flag: str,
    variants: Sequence[str],
    metrics: Sequence[MetricArg],
    weights: Mapping[str, float] | None = None,
    traffic: float | None = None,
    control: str | None = None,
    hypothesis: str | None = None,
    owner: str | None = None,
    unit: str | None = None,
    layer: str | None = None,
    consent: bool = False,
    dimensions: Sequence[str] = (),
    analysis: Mapping[str, Any] | None = None,
) -> str:
    """Add a draft experiment to ``data`` (an experiments document's mapping)."""
    from flagstone.edit import mapping, sequence

    if key in data:
        raise LifecycleError(f"experiment {key!r} already exists here")
    primaries = [m for m in metrics if m.role == "primary"]
    if len(primaries) != 1:
        raise LifecycleError(
            "an experiment needs exactly one primary metric: --metric primary:NAME:KIND"
            + (f" (got {len(primaries)})" if primaries else "")
        )
    arms = list(weights) if weights else list(variants)
    unknown = [a for a in arms if a not in variants]
    if unknown:
        raise LifecycleError(
            f"arm(s) {', '.join(unknown)} are not variants of flag {flag!r} "
            f"({', '.join(variants)}): the arms are the flag's variants"
        )
    if control is not None and control not in arms:
        raise LifecycleError(f"--control {control!r} is not an arm ({', '.join(arms)})")
    node = mapping()
    if hypothesis:
        node["hypothesis"] = hypothesis
    if owner:
        node["owner"] = owner
    node["flag"] = flag
    if unit:
        node["unit"] = unit
    node["status"] = "draft"
    node["traffic"] = _number(float(traffic if traffic is not None else 100))
    node["weights"] = mapping(
        weights or {a: _number(round(100 / len(arms), 4)) for a in arms}, flow=True
    )
    node["control"] = control or arms[0]
    if layer:
        node["layer"] = layer
    if consent:
        node["consent"] = "required"
    if dimensions:
        node["dimensions"] = sequence(dimensions, flow=True)
    block = mapping()
    block["primary"] = mapping(primaries[0].as_yaml(), flow=True)
    for role, field in (("secondary", "secondary"), ("guardrail", "guardrails")):
        items = [mapping(m.as_yaml(), flow=True) for m in metrics if m.role == role]
        if items:
            block[field] = sequence(items)
    node["metrics"] = block
    if analysis:
        node["analysis"] = mapping(analysis, flow=True)
    data[key] = node
    return f"experiment {key} created (draft) on flag {flag}"


def start_experiment(node: Any, key: str, at: str, *, tuning: float | None = None) -> str:
    check_transition(key, str(node.get("status")), "start")
    node["status"] = "running"
    node["started_at"] = at
    if tuning is not None:
        analysis = node.get("analysis")
        if analysis is not None and "sequential_tuning" not in analysis:
            analysis["sequential_tuning"] = int(tuning)
    return f"experiment {key} started"


def stop_experiment(node: Any, key: str, at: str) -> str:
    check_transition(key, str(node.get("status")), "stop")
    node["status"] = "stopped"
    node["stopped_at"] = at
    return f"experiment {key} stopped"


def ramp_traffic(node: Any, key: str, traffic: float) -> str:
    status = str(node.get("status"))
    check_transition(key, status, "ramp")
    if not 0 < traffic <= 100:
        raise LifecycleError(f"--traffic {traffic:g}: a percentage above 0 and at most 100")
    old = float(node.get("traffic", 100))
    if status == "running" and traffic < old:
        raise LifecycleError(
            f"experiment {key!r} is running at {old:g}% traffic; traffic only ramps up while it "
            "runs (lowering it would drop enrolled units mid-experiment): stop it instead"
        )
    node["traffic"] = _number(float(traffic))
    return f"experiment {key} traffic {old:g}% → {traffic:g}%"


def conclude_experiment(
    node: Any, key: str, *, winner: str, reason: str, at: str, results: Mapping[str, Any]
) -> str:
    from flagstone.edit import mapping

    check_transition(key, str(node.get("status")), "conclude")
    arms = list(node.get("weights") or {})
    if winner != "none" and arms and winner not in arms:
        raise LifecycleError(
            f"--winner {winner!r} is not an arm of {key!r} ({', '.join(arms)}); "
            "name one, or 'none' to keep control"
        )
    if not reason.strip():
        raise LifecycleError("--reason must say why (it is the decision record in git)")
    if node.get("status") == "running":
        node["stopped_at"] = at
    node["status"] = "concluded"
    decision = mapping()
    decision["winner"] = winner
    decision["reason"] = reason
    decision["concluded_at"] = at
    decision["results"] = _yaml_tree(results)
    node["decision"] = decision
    return f"experiment {key} concluded: winner {winner}"


def roll_out_winner(flag_node: Any, flag: str, winner: str) -> str:
    variants = flag_node.get("variants") or {}
    if winner not in variants:
        raise LifecycleError(f"--rollout: {winner!r} is not a variant of flag {flag!r}")
    flag_node["default"] = winner
    return f"flag {flag} default → {winner}"


def frozen_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Fields of a running experiment that ``after`` changes (and must not)."""
    return [f for f in FROZEN_FIELDS if _plain(before.get(f)) != _plain(after.get(f))]


STOP_FIRST = (
    "conclude the experiment first (flagstone experiment conclude KEY --env ENV --winner ARM "
    '--reason "..."), then change it; or start a new experiment with the new design'
)
LIFECYCLE_HINT = (
    "change an experiment's status with flagstone experiment start, stop and conclude "
    f"({' → '.join(LIFECYCLE)}); to run it again, create a new experiment"
)


def frozen_problems(
    before: Environment | None, after: Environment | None, change: str, hint: str = STOP_FIRST
) -> list[Problem]:
    """A problem, without line:col yet, for each experiment running or stopped (not yet
    concluded) in ``before`` whose ``FROZEN_FIELDS`` differ in ``after``, whose status
    goes other than forward through ``TRANSITIONS``, or whose traffic drops while it runs;
    ``change`` names what changes them ("this commit", "the rollback"). Stopping or
    concluding it in the same change does not excuse a frozen field: the units enrolled so
    far were assigned, and are analysed, under the old design."""
    if before is None or after is None:
        return []
    problems = []
    for key, old in before.experiments.items():
        new = after.experiments.get(key)
        if new is None:
            continue
        where = f"experiment {key!r} is {old.status} in {before.name}: {change}"
        if old.status != new.status and (old.status, new.status) not in TRANSITIONS:
            problems.append(
                Problem(
                    new.file,
                    0,
                    0,
                    f"{where} would set its status to {new.status}, which no lifecycle "
                    f"step does ({' → '.join(LIFECYCLE)})",
                    "experiment-lifecycle",
                    path=(key, "status") if "status" in new.raw else (key,),
                    hint=LIFECYCLE_HINT,
                )
            )
        if old.status not in FROZEN_STATUSES:
            continue
        if old.status == new.status == "running" and new.traffic < old.traffic:
            problems.append(
                Problem(
                    new.file,
                    0,
                    0,
                    f"{where} would lower its traffic ({old.traffic:g}% → {new.traffic:g}%), "
                    "which only ramps up while it runs: lowering it drops enrolled units "
                    "mid-experiment",
                    "experiment-frozen",
                    path=(key, "traffic") if "traffic" in new.raw else (key,),
                    hint="keep the traffic, or stop the experiment (flagstone experiment stop)",
                )
            )
        fixed = "while it runs" if old.status == "running" else "until it is concluded"
        changed = frozen_changes(old.raw, new.raw)
        if changed:
            problems.append(
                Problem(
                    new.file,
                    0,
                    0,
                    f"{where} would change its {', '.join(changed)}, which stay fixed {fixed}",
                    "experiment-frozen",
                    path=(key, changed[0]) if changed[0] in new.raw else (key,),
                    hint=hint,
                )
            )
        elif "weights" not in new.raw and "weights" not in old.raw:
            # No weights: the flag's variants, in order, are the arms, split equally.
            arms = _variant_names(before, old.flag)
            flag = after.flags.get(new.flag)
            if flag is not None and arms != _variant_names(after, new.flag):
                problems.append(
                    Problem(
                        flag.file,
                        0,
                        0,
                        f"{where.removesuffix(': ' + change)} on the variants of flag "
                        f"{new.flag!r} as its arms (it declares no weights): {change} "
                        f"would change them ({', '.join(arms)} → "
                        f"{', '.join(_variant_names(after, new.flag))})",
                        "experiment-frozen",
                        path=(new.flag, "variants") if "variants" in flag.raw else (new.flag,),
                        hint=hint,
                    )
                )
    return problems


def _variant_names(env: Environment, flag_key: str) -> list[str]:
    flag = env.flags.get(flag_key)
    variants = flag.raw.get("variants") if flag is not None else None
    return [str(v) for v in variants] if isinstance(variants, Mapping) else []


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- power check (start) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PowerCheck:
    plan: Plan | None
    max_days: float | None
    message: str

    @property
    def is_reachable(self) -> bool:
        return (
            self.plan is not None
            and self.plan.days is not None
            and (self.max_days is None or self.plan.days <= self.max_days)
        )


def check_power(
    raw: Mapping[str, Any],
    *,
    arms: int,
    baseline: float,
    baseline_sd: float | None,
    daily_units: float,
    max_days: float,
) -> PowerCheck:
    """Can the declared MDE be detected within ``max_days`` at the experiment's traffic?"""
    from flagstone.stats.power import Design, PlanError, sample_size

    analysis = raw.get("analysis") or {}
    metrics = raw.get("metrics") or {}
    design = Design(
        baseline=baseline,
        baseline_sd=baseline_sd,
        alpha=float(analysis.get("alpha", 0.05)),
        power=float(analysis.get("power", 0.8)),
        sides=2 if int(analysis.get("sides", 2)) == 2 else 1,
        arms=arms,
        metrics=1 + len(metrics.get("secondary") or ()),
        correction=analysis.get("correction", "holm"),
        relative=bool(analysis.get("relative", False)),
        traffic=float(raw.get("traffic", 100)),
        daily_units=daily_units,
    )
    try:
        plan = sample_size(design, float(analysis["mde"]))
    except PlanError as e:
        return PowerCheck(None, max_days, f"the plan cannot be made: {e}")
    days = plan.days if plan.days is not None else math.inf
    words = (
        f"{plan.units_per_arm:,} units per arm detect the MDE {analysis['mde']:g} at "
        f"{design.power:.0%} power; at {design.traffic:g}% of {daily_units:,.0f} daily units that "
        f"takes {days:,} day(s)"
    )
    if days > max_days:
        words += f", more than the {max_days:g} allowed (--max-days)"
    return PowerCheck(plan, max_days, words)


# --- the results block (conclude) -----------------------------------------------------


def _sig(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _exact(value: float) -> float | int:
    # Sufficient statistics are kept exactly: the decision must be recomputable from them.
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


def summary_fields(summary: Any) -> dict[str, Any]:
    from flagstone.stats.summaries import Cuped, Mean, Proportion, Ratio

    if isinstance(summary, Proportion):
        return {"n": summary.n, "successes": summary.successes}
    if isinstance(summary, Mean):
        return {"n": summary.n, "sum": _exact(summary.sum), "sum_sq": _exact(summary.sum_sq)}
    if isinstance(summary, Ratio):
        return {
            "n": summary.n,
            "num_sum": _exact(summary.num_sum),
            "num_sum_sq": _exact(summary.num_sum_sq),
            "den_sum": _exact(summary.den_sum),
            "den_sum_sq": _exact(summary.den_sum_sq),
            "num_den_sum": _exact(summary.num_den_sum),
        }
    if isinstance(summary, Cuped):
        post = summary_fields(summary.post)
        pre = summary_fields(summary.pre)
        post.update({f"pre_{k}": v for k, v in pre.items() if k != "n"})
        post["post_pre_sum"] = _exact(summary.post_pre_sum)
        return post
    raise TypeError(type(summary).__name__)


def results_block(result: ExperimentResult, at: str) -> dict[str, Any]:
    """Per metric and arm: n, the sufficient statistics and, against control, the estimate,
    its interval, the p-value (or chance to beat) and the verdict; the method and its version."""
    metrics: dict[str, Any] = {}
    for m in result.metrics:
        comparisons = {c.arm: c for c in m.comparisons}
        arms: dict[str, Any] = {}
        for arm in m.arms:
            entry = summary_fields(arm.summary)
            entry["mean"] = _sig(arm.mean)
            c = comparisons.get(arm.arm)
            if c is not None:
                entry["estimate"] = _sig(c.estimate.value)
                entry["ci"] = [_sig(c.estimate.ci_low), _sig(c.estimate.ci_high)]
                entry["scale"] = c.scale
                if result.method == "bayesian" and c.chance_to_beat is not None:
                    entry["chance_to_beat"] = _sig(c.chance_to_beat)
                else:
                    entry["p_value"] = _sig(c.p_value)
                    if c.p_adjusted is not None:
                        entry["p_adjusted"] = _sig(c.p_adjusted)
                entry["verdict"] = c.verdict
            arms[arm.arm] = entry
        block: dict[str, Any] = {"kind": m.kind, "role": m.role, "arms": arms}
        if m.winsorized_at is not None:
            block["winsorized_at"] = _exact(m.winsorized_at)
        metrics[m.name] = block
    return {
        "method": result.method,
        "version": result.version,
        "analysed_at": at,
        "alpha": result.alpha,
        "sides": result.sides,
        "correction": result.correction,
        "control": result.control,
        "srm": {"p_value": _sig(result.srm.p_value), "units": dict(result.srm.observed)},
        "metrics": metrics,
    }


def _yaml_tree(value: Any, depth: int = 0) -> Any:
    """Nested round-trip nodes; the per-arm and leaf mappings are written inline."""
    from flagstone.edit import mapping, sequence

    if isinstance(value, Mapping):
        leafy = all(not isinstance(v, Mapping) for v in value.values())
        return mapping(
            ((k, _yaml_tree(v, depth + 1)) for k, v in value.items()), flow=leafy and depth > 0
        )
    if isinstance(value, list | tuple):
        return sequence((_yaml_tree(v, depth + 1) for v in value), flow=True)
    return value
