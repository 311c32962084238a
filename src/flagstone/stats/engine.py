"""The one entry point ``analyze`` calls: every arm against control, every metric, every check.

    spec = ExperimentSpec.from_mapping("onboarding-length", raw_yaml_mapping)
    result = analyze_experiment(spec, {"d7_retention": {"control": Proportion(10_000, 1_200),
                                                        "short": Proportion(10_000, 1_290)}})
    result.to_dict()   # every number, JSON-ready

See docs/statistics.md for the methods, their assumptions and references.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal

from flagstone.errors import FlagstoneError
from flagstone.stats import bayesian, checks, correction, cuped, frequentist, power, sequential
from flagstone.stats.summaries import Cuped, Mean, Proportion, Ratio, Summary

STATS_VERSION = "flagstone-stats/1"
"""Written next to every result: bump when a method changes what it computes."""

MetricKind = Literal["proportion", "mean", "ratio"]
Role = Literal["primary", "secondary", "guardrail"]
Method = Literal["frequentist", "bayesian", "sequential"]
Data = Mapping[str, Mapping[str, Summary]]
"""metric name → arm → sufficient statistics (cumulative up to the analysis)."""


class SpecError(FlagstoneError):
    """An experiment definition the statistics cannot run on (no control arm, one arm, ...)."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: MetricKind
    role: Role = "primary"
    worse: Literal["increase", "decrease"] = "decrease"  # the direction that means harm
    margin: float | None = None  # guardrail non-inferiority margin, absolute
    winsorize: float | None = None  # percentile the ingestion caps values at
    numerator: str | None = None  # ratio metrics: the per-unit numerator and denominator
    denominator: str | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.worse == "decrease"


@dataclass(frozen=True, slots=True)
class AnalysisSpec:
    method: Method = "frequentist"
    alpha: float = 0.05
    power: float = 0.8
    mde: float | None = None
    relative: bool = False
    sides: Literal[1, 2] = 2
    correction: correction.Correction = "holm"
    cuped: bool = False
    sequential_tuning: float = (
        sequential.DEFAULT_TUNING
    )  # units (all arms) where the CS is tightest


@dataclass(frozen=True, slots=True)
class ExperimentSpec:
    key: str
    arms: tuple[str, ...]
    control: str
    weights: Mapping[str, float]
    metrics: tuple[MetricSpec, ...]
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)
    dimensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.arms) < 2:
            raise SpecError(
                f"experiment {self.key!r} needs at least two arms, has {list(self.arms)}"
            )
        if self.control not in self.arms:
            raise SpecError(
                f"experiment {self.key!r}: control {self.control!r} is not one of its arms {list(self.arms)}"
            )
        if not any(m.role == "primary" for m in self.metrics):
            raise SpecError(f"experiment {self.key!r} has no primary metric")

    @property
    def treatments(self) -> tuple[str, ...]:
        return tuple(a for a in self.arms if a != self.control)

    @property
    def primary(self) -> MetricSpec:
        return next(m for m in self.metrics if m.role == "primary")

    @classmethod
    def from_mapping(
        cls, key: str, raw: Mapping[str, Any], arms: Sequence[str] | None = None
    ) -> ExperimentSpec:
        """Build from an experiment's YAML mapping (``schemas/experiments.schema.json``).

        ``arms`` (the flag's variants) is needed only when the experiment has no
        ``weights``: the arms then split traffic equally.
        """
        weights = dict(raw.get("weights") or {})
        if not weights:
            if not arms:
                raise SpecError(
                    f"experiment {key!r} has no weights: pass the flag's variants as arms"
                )
            weights = {a: 100 / len(arms) for a in arms}
        arm_names = tuple(weights)
        control = str(raw.get("control", arm_names[0]))
        m = raw.get("metrics") or {}
        metrics = []
        if m.get("primary"):
            metrics.append(_metric(m["primary"], "primary"))
        metrics += [_metric(x, "secondary") for x in m.get("secondary") or ()]
        metrics += [_metric(x, "guardrail") for x in m.get("guardrails") or ()]
        a = dict(raw.get("analysis") or {})
        analysis = AnalysisSpec(
            method=a.get("method", "frequentist"),
            alpha=float(a.get("alpha", 0.05)),
            power=float(a.get("power", 0.8)),
            mde=float(a["mde"]) if a.get("mde") is not None else None,
            relative=bool(a.get("relative", False)),
            sides=int(a.get("sides", 2)),  # type: ignore[arg-type]
            correction=a.get("correction", "holm"),
            cuped=bool(a.get("cuped", False)),
            sequential_tuning=float(a.get("sequential_tuning", sequential.DEFAULT_TUNING)),
        )
        return cls(
            key=key,
            arms=arm_names,
            control=control,
            weights=weights,
            metrics=tuple(metrics),
            analysis=analysis,
            dimensions=tuple(raw.get("dimensions") or ()),
        )


def _metric(raw: Mapping[str, Any], role: Role) -> MetricSpec:
    return MetricSpec(
        name=str(raw["name"]),
        kind=raw["kind"],
        role=role,
        worse=raw.get("worse", "decrease"),
        margin=float(raw["margin"]) if raw.get("margin") is not None else None,
        winsorize=float(raw["winsorize"]) if raw.get("winsorize") is not None else None,
        numerator=raw.get("numerator"),
        denominator=raw.get("denominator"),
    )


@dataclass(frozen=True, slots=True)
class Look:
    """An earlier analysis: the cumulative sufficient statistics as they stood ``at`` then."""

    at: str | None  # ISO 8601 time of that analysis
    data: Data


@dataclass(frozen=True, slots=True)
class Notice:
    code: str  # stable: "srm", "imbalance", "peeking", "under-powered", "small-counts", ...
    message: str
    severity: Literal["error", "warning", "info"] = "warning"
    metric: str | None = None
    arm: str | None = None


@dataclass(frozen=True, slots=True)
class ArmStats:
    arm: str
    n: int
    mean: float
    variance: float
    summary: Summary


@dataclass(frozen=True, slots=True)
class GuardrailResult:
    worse: Literal["increase", "decrease"]
    margin: float | None
    harm_p_value: float  # one-sided, H0: no harm
    non_inferiority_p_value: float | None  # one-sided, H0: harm ≥ margin
    verdict: Literal["harmed", "non-inferior", "no-harm-detected", "inconclusive"]

    @property
    def is_harmed(self) -> bool:
        return self.verdict == "harmed"


@dataclass(frozen=True, slots=True)
class CupedResult:
    theta: float
    variance_reduction: float  # share of the lift's variance removed, 0..1
    unadjusted: frequentist.FrequentistResult


@dataclass(frozen=True, slots=True)
class Comparison:
    arm: str
    control: str
    scale: Literal["absolute", "relative"]
    estimate: frequentist.Estimate  # on ``scale``; the interval the method reports
    absolute: frequentist.Estimate
    relative: frequentist.Estimate | None
    p_value: float  # the one decided on: exact when small, always-valid when sequential
    p_adjusted: float | None  # after the correction (None: guardrails and Bayesian)
    chance_to_beat: float | None
    is_significant: bool
    verdict: Literal["better", "worse", "inconclusive", "harmed", "not-harmed"]
    frequentist: frequentist.FrequentistResult
    bayesian: bayesian.BayesianResult | None = None
    sequential: sequential.SequentialResult | None = None
    guardrail: GuardrailResult | None = None
    cuped: CupedResult | None = None
    degenerate: str | None = None


@dataclass(frozen=True, slots=True)
class MetricResult:
    name: str
    kind: MetricKind
    role: Role
    worse: Literal["increase", "decrease"]
    arms: tuple[ArmStats, ...]
    comparisons: tuple[Comparison, ...]
    winsorized_at: float | None = None
    cuped_theta: float | None = None


@dataclass(frozen=True, slots=True)
class ExperimentResult:
    key: str
    method: Method
    alpha: float
    sides: int
    correction: correction.Correction
    control: str
    arms: tuple[str, ...]
    srm: checks.SrmResult
    balance: tuple[checks.BalanceResult, ...]
    metrics: tuple[MetricResult, ...]
    notices: tuple[Notice, ...]
    planned_units_per_arm: int | None
    looks: int
    version: str = STATS_VERSION

    @property
    def is_trustworthy(self) -> bool:
        """False when the sample ratio mismatches: no lift can be believed then."""
        return not self.srm.is_mismatch

    @property
    def harmed_guardrails(self) -> tuple[str, ...]:
        return tuple(
            f"{m.name}:{c.arm}"
            for m in self.metrics
            for c in m.comparisons
            if c.guardrail is not None and c.guardrail.is_harmed
        )

    def metric(self, name: str) -> MetricResult:
        return next(m for m in self.metrics if m.name == name)

    def to_dict(self) -> dict[str, Any]:
        """Every number as plain JSON values (±inf and NaN become null)."""
        out = to_jsonable(self)
        assert isinstance(out, dict)
        return out


def to_jsonable(value: Any) -> Any:
    """Dataclasses (with their properties), mappings and tuples as JSON-ready values."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        out = {f.name: to_jsonable(getattr(value, f.name)) for f in fields(value)}
        for name, attr in vars(type(value)).items():
            if isinstance(attr, property) and not name.startswith("_"):
                out[name] = to_jsonable(getattr(value, name))
        if isinstance(value, Proportion | Mean | Ratio | Cuped):
            out["kind"] = type(value).__name__.lower()
        return out
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _alternative(spec: AnalysisSpec, metric: MetricSpec) -> frequentist.Alternative:
    if spec.sides == 2:
        return "two-sided"
    return "greater" if metric.higher_is_better else "less"


def _moments(
    spec: ExperimentSpec, metric: MetricSpec, by_arm: Mapping[str, Summary]
) -> tuple[dict[str, frequentist.Moments], cuped.CupedAdjustment | None]:
    summaries = {a: by_arm[a] for a in spec.arms if a in by_arm}
    if spec.analysis.cuped and summaries and all(isinstance(s, Cuped) for s in summaries.values()):
        adjustment = cuped.adjust({a: s for a, s in summaries.items() if isinstance(s, Cuped)})
        return dict(adjustment.moments), adjustment
    return {a: frequentist.Moments.of(s) for a, s in summaries.items()}, None


def _plain(summary: Summary) -> Summary:
    return summary.post if isinstance(summary, Cuped) else summary


def _is_proportion(a: Summary, b: Summary) -> bool:
    return isinstance(_plain(a), Proportion) and isinstance(_plain(b), Proportion)


def _frequentist(
    spec: ExperimentSpec,
    metric: MetricSpec,
    moments: Mapping[str, frequentist.Moments],
    data: Mapping[str, Summary],
    arm: str,
    alternative: frequentist.Alternative,
    adjusted: bool,
) -> frequentist.FrequentistResult:
    a = spec.analysis
    c_summary, t_summary = data[spec.control], data[arm]
    if adjusted:
        return frequentist.compare_moments(
            moments[spec.control],
            moments[arm],
            alpha=a.alpha,
            alternative=alternative,
            relative=a.relative,
            z_test=False,
        )
    return frequentist.compare(
        _plain(c_summary),
        _plain(t_summary),
        alpha=a.alpha,
        alternative=alternative,
        relative=a.relative,
    )


def _harm_p(
    result: frequentist.FrequentistResult, metric: MetricSpec
) -> tuple[float, float | None]:
    """(one-sided p for harm, one-sided p for non-inferiority at the margin)."""
    est = result.absolute
    if result.degenerate or est.stderr <= 0:
        return 1.0, None
    harm = est.value if not metric.higher_is_better else -est.value  # > 0 means harm
    z = harm / est.stderr
    harm_p = frequentist.p_value(z, result.df, "greater")
    ni_p = None
    if metric.margin is not None:
        ni_p = frequentist.p_value((harm - metric.margin) / est.stderr, result.df, "less")
    return harm_p, ni_p


def _guardrail(
    metric: MetricSpec, alpha: float, harm_p: float, ni_p: float | None
) -> GuardrailResult:
    verdict: Literal["harmed", "non-inferior", "no-harm-detected", "inconclusive"]
    if harm_p < alpha:
        verdict = "harmed"
    elif ni_p is not None:
        verdict = "non-inferior" if ni_p < alpha else "inconclusive"
    else:
        verdict = "no-harm-detected"
    return GuardrailResult(metric.worse, metric.margin, harm_p, ni_p, verdict)


def _look_estimates(
    spec: ExperimentSpec, metric: MetricSpec, looks: Sequence[Look]
) -> dict[str, list[sequential.LookEstimate]]:
    """Per treatment arm, the lift on the reported scale at every look (oldest first).

    Each look's moments (CUPED-adjusted with θ pooled over that look's arms) are computed
    once for all arms; a sequential read needs only the estimate and its standard error.
    """
    estimates: dict[str, list[sequential.LookEstimate]] = {arm: [] for arm in spec.treatments}
    for look in looks:
        by_arm = look.data.get(metric.name, {})
        if spec.control not in by_arm:
            continue
        moments, _ = _moments(spec, metric, by_arm)
        control = moments[spec.control]
        for arm, out in estimates.items():
            if arm not in by_arm:
                continue
            value, stderr = frequentist.reported_lift(
                control, moments[arm], relative=spec.analysis.relative
            )
            n = by_arm[spec.control].n + by_arm[arm].n
            out.append(sequential.LookEstimate(look.at, n, value, stderr))
    return estimates


def _sequential(
    spec: ExperimentSpec,
    estimates: Sequence[sequential.LookEstimate],
    alternative: frequentist.Alternative,
) -> sequential.SequentialResult:
    return sequential.confidence_sequence(
        estimates,
        alpha=spec.analysis.alpha,
        tuning=spec.analysis.sequential_tuning,
        alternative=alternative,
    )


def _plan(spec: ExperimentSpec, data: Data) -> int | None:
    """Units per arm the analysis plan needs, from the primary metric's control arm."""
    a = spec.analysis
    primary = spec.primary
    control = data.get(primary.name, {}).get(spec.control)
    if a.mde is None or control is None or control.n < 2:
        return None
    plain = _plain(control)
    is_prop = isinstance(plain, Proportion)
    design = power.Design(
        baseline=plain.mean,
        baseline_sd=None if is_prop else math.sqrt(plain.variance) or None,
        alpha=a.alpha,
        power=a.power,
        sides=a.sides,
        arms=len(spec.arms),
        metrics=sum(1 for m in spec.metrics if m.role != "guardrail"),
        correction=a.correction,
        relative=a.relative,
    )
    try:
        return power.sample_size(design, a.mde).units_per_arm
    except power.PlanError:
        return None


def analyze_experiment(
    spec: ExperimentSpec,
    data: Data,
    looks: Sequence[Look] = (),
    *,
    units: Mapping[str, int] | None = None,
    dimensions: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None,
    caps: Mapping[str, float] | None = None,
    at: str | None = None,
) -> ExperimentResult:
    """Analyse an experiment from sufficient statistics.

    ``data``: metric → arm → summary, cumulative up to now. ``looks``: the earlier
    analyses (oldest first, each cumulative) for ``method: sequential``; the current
    ``data`` is appended as the latest look, taken ``at`` (ISO time). ``units``: exposed
    units per arm for the SRM check (default: the primary metric's n). ``dimensions``:
    dimension → value → arm → units, for the balance checks. ``caps``: metric → the value
    the ingestion capped it at, for metrics declared with ``winsorize``.
    """
    a = spec.analysis
    notices: list[Notice] = []
    primary_data = data.get(spec.primary.name, {})
    exposed = dict(units) if units is not None else {arm: s.n for arm, s in primary_data.items()}
    srm = checks.sample_ratio_mismatch(exposed, spec.weights)
    if srm.is_mismatch:
        observed = ", ".join(f"{arm} {n}" for arm, n in srm.observed.items())
        notices.append(
            Notice(
                "srm",
                f"sample ratio mismatch (χ² p = {srm.p_value:.2g} < {srm.threshold}): units per arm "
                f"{observed} do not match the weights; every result is untrustworthy until the "
                f"assignment or logging is fixed",
                severity="error",
            )
        )
    balance_results = tuple(
        checks.balance(dim, counts, spec.arms) for dim, counts in (dimensions or {}).items()
    )
    for b in balance_results:
        if b.is_imbalanced:
            notices.append(
                Notice(
                    "imbalance",
                    f"arms differ in their mix of {b.dimension} (χ² p = {b.p_value:.2g}): enrolment "
                    f"or logging depends on {b.dimension}",
                )
            )
    planned = _plan(spec, data)
    all_looks = [*looks, Look(at, data)]
    metric_results: list[MetricResult] = []
    family: list[tuple[int, int]] = []  # (metric index, comparison index) under correction
    pending: list[list[dict[str, Any]]] = []
    for metric in spec.metrics:
        by_arm = data.get(metric.name, {})
        missing = [arm for arm in spec.arms if arm not in by_arm]
        if missing:
            notices.append(
                Notice(
                    "missing-data",
                    f"{metric.name}: no data for arm(s) {', '.join(missing)}",
                    metric=metric.name,
                )
            )
        if metric.winsorize is not None and (caps is None or metric.name not in caps):
            notices.append(
                Notice(
                    "winsorize-not-applied",
                    f"{metric.name} declares winsorize: {metric.winsorize:g} but its values were not capped",
                    metric=metric.name,
                )
            )
        if a.cuped and by_arm and not all(isinstance(s, Cuped) for s in by_arm.values()):
            notices.append(
                Notice(
                    "cuped-unavailable",
                    f"{metric.name}: CUPED needs pre-period statistics for every arm; analysed unadjusted",
                    severity="info",
                    metric=metric.name,
                )
            )
        moments, adjustment = _moments(spec, metric, by_arm)
        arms_stats = tuple(
            ArmStats(arm, s.n, s.mean, s.variance, s)
            for arm in spec.arms
            if (s := by_arm.get(arm)) is not None
        )
        rows: list[dict[str, Any]] = []
        if spec.control in by_arm:
            look_estimates = (
                _look_estimates(spec, metric, all_looks) if a.method == "sequential" else {}
            )
            for arm in spec.treatments:
                if arm not in by_arm:
                    continue
                rows.append(
                    _compare(
                        spec, metric, moments, adjustment, by_arm, arm, look_estimates.get(arm, [])
                    )
                )
                if metric.role != "guardrail" and a.method != "bayesian":
                    family.append((len(pending), len(rows) - 1))
        pending.append(rows)
        metric_results.append(
            MetricResult(
                metric.name,
                metric.kind,
                metric.role,
                metric.worse,
                arms_stats,
                (),
                caps.get(metric.name) if caps else None,
                adjustment.theta if adjustment else None,
            )
        )
    adjusted = correction.adjust([pending[i][j]["p_value"] for i, j in family], a.correction)
    for (i, j), p_adj in zip(family, adjusted, strict=True):
        pending[i][j]["p_adjusted"] = p_adj
    final = []
    for metric, result, rows in zip(spec.metrics, metric_results, pending, strict=True):
        comparisons = tuple(_finish(spec, metric, row) for row in rows)
        final.append(
            MetricResult(
                result.name,
                result.kind,
                result.role,
                result.worse,
                result.arms,
                comparisons,
                result.winsorized_at,
                result.cuped_theta,
            )
        )
        for c in comparisons:
            if c.degenerate:
                notices.append(
                    Notice(
                        "degenerate",
                        f"{metric.name} {c.arm}: {c.degenerate}",
                        metric=metric.name,
                        arm=c.arm,
                    )
                )
            if c.frequentist.is_small_counts:
                notices.append(
                    Notice(
                        "small-counts",
                        f"{metric.name} {c.arm}: few conversions; Fisher's exact test decides "
                        f"(p = {c.frequentist.exact_p_value:.3g})",
                        metric=metric.name,
                        arm=c.arm,
                    )
                )
            if a.relative and c.relative is None and not c.degenerate:
                notices.append(
                    Notice(
                        "relative-undefined",
                        f"{metric.name}: the control mean is 0, so the lift is reported in absolute terms",
                        metric=metric.name,
                        arm=c.arm,
                    )
                )
            if c.guardrail is not None and c.guardrail.is_harmed:
                notices.append(
                    Notice(
                        "guardrail-harmed",
                        f"guardrail {metric.name} is harmed in {c.arm} (one-sided p = {c.guardrail.harm_p_value:.3g})",
                        severity="error",
                        metric=metric.name,
                        arm=c.arm,
                    )
                )
            if c.sequential is not None and c.sequential.is_intersection_empty:
                notices.append(
                    Notice(
                        "sequence-disagrees",
                        f"{metric.name} {c.arm}: the confidence sequences of successive looks do not "
                        "overlap; the effect may be drifting over time",
                        metric=metric.name,
                        arm=c.arm,
                    )
                )
    if planned is not None:
        smallest = min((s.n for s in primary_data.values()), default=0)
        if smallest < planned:
            if a.method == "frequentist":
                notices.append(
                    Notice(
                        "peeking",
                        f"fixed-horizon read at {smallest} units per arm, before the planned {planned}: "
                        "p-values hold only at the planned size (use method: sequential to monitor)",
                    )
                )
            else:
                notices.append(
                    Notice(
                        "under-powered",
                        f"{smallest} units per arm of the {planned} planned to detect the MDE",
                        severity="info",
                    )
                )
    return ExperimentResult(
        key=spec.key,
        method=a.method,
        alpha=a.alpha,
        sides=a.sides,
        correction=a.correction,
        control=spec.control,
        arms=spec.arms,
        srm=srm,
        balance=balance_results,
        metrics=tuple(final),
        notices=tuple(notices),
        planned_units_per_arm=planned,
        looks=len(all_looks),
    )


def _compare(
    spec: ExperimentSpec,
    metric: MetricSpec,
    moments: Mapping[str, frequentist.Moments],
    adjustment: cuped.CupedAdjustment | None,
    by_arm: Mapping[str, Summary],
    arm: str,
    look_estimates: Sequence[sequential.LookEstimate],
) -> dict[str, Any]:
    a = spec.analysis
    alternative = _alternative(a, metric)
    result = _frequentist(spec, metric, moments, by_arm, arm, alternative, adjustment is not None)
    row: dict[str, Any] = {"arm": arm, "frequentist": result, "p_adjusted": None}
    if adjustment is not None:
        plain = frequentist.compare(
            _plain(by_arm[spec.control]),
            _plain(by_arm[arm]),
            alpha=a.alpha,
            alternative=alternative,
            relative=a.relative,
        )
        # The share of the lift's variance that the covariate removed, for this pair of arms.
        reduction = (
            1 - (result.absolute.stderr / plain.absolute.stderr) ** 2
            if plain.absolute.stderr > 0
            else 0.0
        )
        row["cuped"] = CupedResult(adjustment.theta, reduction, plain)
    decision_p = (
        result.exact_p_value
        if result.is_small_counts and result.exact_p_value is not None
        else result.p_value
    )
    row["estimate"] = result.estimate
    if a.method == "sequential":
        seq = _sequential(spec, look_estimates, alternative)
        row["sequential"] = seq
        decision_p = seq.p_value
        row["estimate"] = frequentist.Estimate(
            result.estimate.value, result.estimate.stderr, seq.ci_low, seq.ci_high
        )
    if a.method == "bayesian":
        c, t = _plain(by_arm[spec.control]), _plain(by_arm[arm])
        if adjustment is not None:
            row["bayesian"] = bayesian.normal_lift(
                moments[spec.control],
                moments[arm],
                alpha=a.alpha,
                higher_is_better=metric.higher_is_better,
            )
        else:
            row["bayesian"] = bayesian.bayesian_compare(
                c, t, alpha=a.alpha, higher_is_better=metric.higher_is_better
            )
    if metric.role == "guardrail":
        if a.method == "sequential":
            harm_alt: frequentist.Alternative = "less" if metric.higher_is_better else "greater"
            harm_seq = _sequential(spec, look_estimates, harm_alt)
            harm_p, ni_p = harm_seq.p_value, _harm_p(result, metric)[1]
        else:
            two_sided = (
                result
                if alternative == "two-sided"
                else _frequentist(
                    spec, metric, moments, by_arm, arm, "two-sided", adjustment is not None
                )
            )
            harm_p, ni_p = _harm_p(two_sided, metric)
            if result.is_small_counts:
                c, t = _plain(by_arm[spec.control]), _plain(by_arm[arm])
                assert isinstance(c, Proportion) and isinstance(t, Proportion)
                harm_alt = "less" if metric.higher_is_better else "greater"
                harm_p = frequentist.fisher_exact_p(c, t, harm_alt)
        row["guardrail"] = _guardrail(metric, a.alpha, harm_p, ni_p)
    row["p_value"] = decision_p
    return row


def _finish(spec: ExperimentSpec, metric: MetricSpec, row: dict[str, Any]) -> Comparison:
    a = spec.analysis
    result: frequentist.FrequentistResult = row["frequentist"]
    estimate: frequentist.Estimate = row["estimate"]
    bayes: bayesian.BayesianResult | None = row.get("bayesian")
    guard: GuardrailResult | None = row.get("guardrail")
    degenerate = result.degenerate or (bayes.degenerate if bayes else None)
    good = estimate.value if metric.higher_is_better else -estimate.value
    verdict: Literal["better", "worse", "inconclusive", "harmed", "not-harmed"]
    if guard is not None:
        significant = guard.is_harmed
        verdict = "harmed" if significant else "not-harmed"
    elif a.method == "bayesian" and bayes is not None:
        beat = bayes.chance_to_beat
        significant = not degenerate and (beat >= 1 - a.alpha or beat <= a.alpha)
        verdict = ("better" if beat >= 0.5 else "worse") if significant else "inconclusive"
    else:
        p = row["p_adjusted"] if row["p_adjusted"] is not None else row["p_value"]
        significant = not degenerate and p < a.alpha
        verdict = ("better" if good > 0 else "worse") if significant else "inconclusive"
    return Comparison(
        arm=row["arm"],
        control=spec.control,
        scale=result.scale,
        estimate=estimate,
        absolute=result.absolute,
        relative=result.relative,
        p_value=row["p_value"],
        p_adjusted=row["p_adjusted"],
        chance_to_beat=bayes.chance_to_beat if bayes else None,
        is_significant=bool(significant),
        verdict=verdict,
        frequentist=result,
        bayesian=bayes,
        sequential=row.get("sequential"),
        guardrail=guard,
        cuped=row.get("cuped"),
        degenerate=degenerate,
    )


@dataclass(frozen=True, slots=True)
class SliceResult:
    value: str
    result: ExperimentResult


@dataclass(frozen=True, slots=True)
class DimensionResult:
    """Results per value of one dimension, p-values corrected over every slice's tests."""

    dimension: str
    correction: correction.Correction
    tests: int  # slices × metrics × arms in the correction's family
    slices: tuple[SliceResult, ...]

    def to_dict(self) -> dict[str, Any]:
        out = to_jsonable(self)
        assert isinstance(out, dict)
        return out


def analyze_by_dimension(
    spec: ExperimentSpec,
    dimension: str,
    data_by_value: Mapping[str, Data],
    *,
    units_by_value: Mapping[str, Mapping[str, int]] | None = None,
) -> DimensionResult:
    """``analyze --by DIMENSION``: one analysis per value, corrected for the number of slices.

    Slicing multiplies the tests, so the p-values of every slice × metric × arm form one
    family under the experiment's correction (Holm when it is ``none``: a per-slice read
    is exploratory, and uncorrected slices find "effects" by chance). Each slice's SRM
    check is its own (a slice can mismatch when the whole does not).
    """
    method: correction.Correction = spec.analysis.correction
    if method == "none":
        method = "holm"
    uncorrected = ExperimentSpec(
        spec.key,
        spec.arms,
        spec.control,
        spec.weights,
        spec.metrics,
        AnalysisSpec(**{**_analysis_fields(spec.analysis), "correction": "none"}),
        spec.dimensions,
    )
    results = {
        value: analyze_experiment(uncorrected, data, units=(units_by_value or {}).get(value))
        for value, data in sorted(data_by_value.items())
    }
    family = [
        (value, i, j)
        for value, r in results.items()
        for i, m in enumerate(r.metrics)
        for j, c in enumerate(m.comparisons)
        if c.guardrail is None and c.p_adjusted is not None
    ]
    adjusted = correction.adjust(
        [results[v].metrics[i].comparisons[j].p_value for v, i, j in family], method
    )
    updates: dict[tuple[str, int, int], float] = {
        key: p for key, p in zip(family, adjusted, strict=True)
    }
    slices = []
    for value, r in results.items():
        metrics = []
        for i, m in enumerate(r.metrics):
            spec_metric = next(x for x in spec.metrics if x.name == m.name)
            comparisons = tuple(
                _recorrected(c, updates[(value, i, j)], spec.analysis.alpha, spec_metric)
                if (value, i, j) in updates
                else c
                for j, c in enumerate(m.comparisons)
            )
            metrics.append(replace(m, comparisons=comparisons))
        slices.append(SliceResult(value, replace(r, metrics=tuple(metrics), correction=method)))
    return DimensionResult(dimension, method, len(family), tuple(slices))


def _analysis_fields(a: AnalysisSpec) -> dict[str, Any]:
    return {f.name: getattr(a, f.name) for f in fields(a)}


def _recorrected(c: Comparison, p_adjusted: float, alpha: float, metric: MetricSpec) -> Comparison:
    significant = c.degenerate is None and p_adjusted < alpha
    good = c.estimate.value if metric.higher_is_better else -c.estimate.value
    verdict: Literal["better", "worse", "inconclusive"] = (
        ("better" if good > 0 else "worse") if significant else "inconclusive"
    )
    return replace(c, p_adjusted=p_adjusted, is_significant=significant, verdict=verdict)
