"""analyze_experiment: the entry point, its checks, notices, degenerate inputs and JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from flagstone.stats import (
    Cuped,
    ExperimentSpec,
    Look,
    Mean,
    Proportion,
    SpecError,
    SummaryError,
    analyze_experiment,
)

RAW = {
    "flag": "onboarding-flow",
    "status": "running",
    "weights": {"control": 50, "short": 50},
    "metrics": {
        "primary": {"name": "d7_retention", "kind": "proportion"},
        "secondary": [{"name": "revenue", "kind": "mean", "winsorize": 99}],
        "guardrails": [
            {"name": "crash_rate", "kind": "proportion", "worse": "increase", "margin": 0.002}
        ],
    },
    "analysis": {"method": "frequentist", "alpha": 0.05, "mde": 0.01, "correction": "holm"},
}


def spec_with(**analysis: object) -> ExperimentSpec:
    raw = {**RAW, "analysis": {**RAW["analysis"], **analysis}}  # type: ignore[dict-item]
    return ExperimentSpec.from_mapping("onboarding-length", raw)


def data(**overrides: object) -> dict:
    base = {
        "d7_retention": {"control": Proportion(20_000, 2400), "short": Proportion(20_000, 2650)},
        "revenue": {
            "control": Mean(20_000, 100_000.0, 900_000.0),
            "short": Mean(20_000, 101_000.0, 920_000.0),
        },
        "crash_rate": {"control": Proportion(20_000, 200), "short": Proportion(20_000, 205)},
    }
    base.update(overrides)  # type: ignore[arg-type]
    return base


def test_spec__from_yaml_mapping__reads_metrics_roles_and_analysis() -> None:
    spec = spec_with()
    assert spec.control == "control" and spec.treatments == ("short",)
    assert [(m.name, m.role) for m in spec.metrics] == [
        ("d7_retention", "primary"),
        ("revenue", "secondary"),
        ("crash_rate", "guardrail"),
    ]
    assert spec.metrics[2].worse == "increase" and not spec.metrics[2].higher_is_better
    assert spec.analysis.mde == 0.01


def test_spec__without_weights__splits_equally_over_the_flags_variants() -> None:
    raw = {k: v for k, v in RAW.items() if k != "weights"}
    spec = ExperimentSpec.from_mapping("x", raw, arms=["a", "b", "c"])
    assert spec.weights == pytest.approx({"a": 100 / 3, "b": 100 / 3, "c": 100 / 3})
    assert spec.control == "a"
    with pytest.raises(SpecError, match="no weights"):
        ExperimentSpec.from_mapping("x", raw)


def test_spec__control_not_an_arm__is_refused() -> None:
    with pytest.raises(SpecError, match="control 'nope'"):
        ExperimentSpec.from_mapping("x", {**RAW, "control": "nope"})


def test_summary__impossible_counts__are_refused() -> None:
    with pytest.raises(SummaryError, match="exceed"):
        Proportion(10, 11)
    with pytest.raises(SummaryError):
        Mean(-1, 0.0, 0.0)


def test_analyze__planted_lift__is_significant_and_better() -> None:
    result = analyze_experiment(spec_with(), data())
    primary = result.metric("d7_retention").comparisons[0]
    assert primary.is_significant and primary.verdict == "better"
    assert primary.p_adjusted is not None and primary.p_adjusted >= primary.p_value
    assert primary.estimate.ci_low > 0
    assert result.is_trustworthy and result.srm.p_value == 1.0


def test_analyze__holm__adjusts_over_primary_and_secondary_not_guardrails() -> None:
    result = analyze_experiment(spec_with(), data())
    primary = result.metric("d7_retention").comparisons[0]
    secondary = result.metric("revenue").comparisons[0]
    guard = result.metric("crash_rate").comparisons[0]
    smaller, larger = sorted([primary.p_value, secondary.p_value])
    adjusted = sorted([primary.p_adjusted, secondary.p_adjusted])  # type: ignore[type-var]
    assert adjusted == pytest.approx([2 * smaller, max(2 * smaller, larger)])
    assert guard.p_adjusted is None


def test_analyze__guardrail__harm_and_non_inferiority() -> None:
    harmed = analyze_experiment(
        spec_with(),
        data(crash_rate={"control": Proportion(20_000, 200), "short": Proportion(20_000, 290)}),
    )
    guard = harmed.metric("crash_rate").comparisons[0]
    assert guard.guardrail is not None and guard.guardrail.verdict == "harmed"
    assert harmed.harmed_guardrails == ("crash_rate:short",)
    assert any(n.code == "guardrail-harmed" and n.severity == "error" for n in harmed.notices)
    safe = analyze_experiment(
        spec_with(),
        data(crash_rate={"control": Proportion(200_000, 2000), "short": Proportion(200_000, 1990)}),
    )
    guard = safe.metric("crash_rate").comparisons[0].guardrail
    assert guard is not None and guard.verdict == "non-inferior"
    assert guard.non_inferiority_p_value is not None and guard.non_inferiority_p_value < 0.05


def test_analyze__srm__marks_every_result_untrustworthy() -> None:
    skewed = data(
        d7_retention={"control": Proportion(45_000, 5400), "short": Proportion(55_000, 6600)}
    )
    result = analyze_experiment(spec_with(), skewed)
    assert not result.is_trustworthy
    assert result.notices[0].code == "srm" and result.notices[0].severity == "error"


def test_analyze__units_for_srm__can_come_from_exposures() -> None:
    result = analyze_experiment(spec_with(), data(), units={"control": 45_000, "short": 55_000})
    assert result.srm.is_mismatch


def test_analyze__fixed_horizon_before_the_planned_size__warns_of_peeking() -> None:
    small = data(d7_retention={"control": Proportion(2000, 240), "short": Proportion(2000, 260)})
    result = analyze_experiment(spec_with(), small)
    assert result.planned_units_per_arm is not None and result.planned_units_per_arm > 2000
    assert "peeking" in {n.code for n in result.notices}
    sequential = analyze_experiment(spec_with(method="sequential"), small)
    assert "peeking" not in {n.code for n in sequential.notices}
    assert "under-powered" in {n.code for n in sequential.notices}


def test_analyze__winsorize_declared_without_a_cap__says_so() -> None:
    assert "winsorize-not-applied" in {
        n.code for n in analyze_experiment(spec_with(), data()).notices
    }
    capped = analyze_experiment(spec_with(), data(), caps={"revenue": 120.0})
    assert "winsorize-not-applied" not in {n.code for n in capped.notices}
    assert capped.metric("revenue").winsorized_at == 120.0


@pytest.mark.parametrize(
    "summaries, reason",
    [
        ({"control": Proportion(1, 0), "short": Proportion(100, 5)}, "control arm has 1 unit"),
        ({"control": Proportion(100, 0), "short": Proportion(100, 0)}, "no variation"),
        ({"control": Proportion(0, 0), "short": Proportion(0, 0)}, "has 0 unit"),
    ],
)
def test_analyze__degenerate_inputs__return_an_explicit_reason(
    summaries: dict, reason: str
) -> None:
    result = analyze_experiment(spec_with(), data(d7_retention=summaries))
    c = result.metric("d7_retention").comparisons[0]
    assert c.degenerate is not None and reason in c.degenerate
    assert not c.is_significant and c.p_value == 1.0 and c.verdict == "inconclusive"
    assert any(n.code == "degenerate" for n in result.notices)
    json.dumps(result.to_dict())


def test_analyze__empty_arm__is_reported_missing() -> None:
    result = analyze_experiment(spec_with(), data(revenue={"control": Mean(10, 5.0, 9.0)}))
    assert result.metric("revenue").comparisons == ()
    assert any(n.code == "missing-data" and n.metric == "revenue" for n in result.notices)


def test_analyze__small_counts__decide_on_fishers_exact_test() -> None:
    result = analyze_experiment(
        spec_with(), data(d7_retention={"control": Proportion(50, 1), "short": Proportion(50, 6)})
    )
    c = result.metric("d7_retention").comparisons[0]
    assert c.frequentist.is_small_counts and c.p_value == c.frequentist.exact_p_value
    assert "small-counts" in {n.code for n in result.notices}


def test_analyze__multi_arm__compares_each_arm_with_control() -> None:
    raw = {**RAW, "weights": {"control": 34, "a": 33, "b": 33}}
    spec = ExperimentSpec.from_mapping("m", raw)
    three = {
        "d7_retention": {
            "control": Proportion(9000, 900),
            "a": Proportion(9000, 1000),
            "b": Proportion(9000, 905),
        },
    }
    result = analyze_experiment(
        spec, three, units={"control": 9000, "a": 9000 * 33 // 34, "b": 9000 * 33 // 34}
    )
    arms = [c.arm for c in result.metric("d7_retention").comparisons]
    assert arms == ["a", "b"]
    a, b = result.metric("d7_retention").comparisons
    assert a.is_significant and not b.is_significant


def test_analyze__bayesian__reports_chance_to_beat_and_loss() -> None:
    result = analyze_experiment(spec_with(method="bayesian"), data())
    c = result.metric("d7_retention").comparisons[0]
    assert c.bayesian is not None and c.bayesian.model == "beta-binomial"
    assert c.chance_to_beat is not None and c.chance_to_beat > 0.99 and c.is_significant
    assert c.bayesian.expected_loss < c.bayesian.expected_loss_control
    revenue = result.metric("revenue").comparisons[0]
    assert revenue.bayesian is not None and revenue.bayesian.model == "normal"
    assert revenue.p_adjusted is None


def test_analyze__sequential__reports_the_running_minimum_and_intersection() -> None:
    spec = spec_with(method="sequential")
    rng = np.random.default_rng(1)
    looks, c_total, t_total = [], Proportion(0, 0), Proportion(0, 0)
    for day in range(1, 8):
        c_total = c_total + Proportion(3000, int(rng.binomial(3000, 0.12)))
        t_total = t_total + Proportion(3000, int(rng.binomial(3000, 0.135)))
        looks.append(
            Look(f"2026-01-0{day}", {"d7_retention": {"control": c_total, "short": t_total}})
        )
    *earlier, last = looks
    result = analyze_experiment(spec, last.data, earlier, at=last.at)
    seq = result.metric("d7_retention").comparisons[0].sequential
    assert seq is not None and len(seq.looks) == 7 and result.looks == 7
    running = [look.running_p_value for look in seq.looks]
    assert running == sorted(running, reverse=True)  # never "un-rejects"
    lows = [look.running_ci_low for look in seq.looks]
    highs = [look.running_ci_high for look in seq.looks]
    assert lows == sorted(lows) and highs == sorted(highs, reverse=True)
    c = result.metric("d7_retention").comparisons[0]
    assert c.p_value == seq.p_value and (c.estimate.ci_low, c.estimate.ci_high) == (
        seq.ci_low,
        seq.ci_high,
    )
    fixed = c.frequentist
    assert c.estimate.ci_high - c.estimate.ci_low > fixed.absolute.ci_high - fixed.absolute.ci_low
    assert seq.looks[-1].at == "2026-01-07"


@pytest.mark.parametrize("cuped", [False, True])
def test_analyze__sequential_look__uses_the_fixed_horizon_lift_of_that_look(cuped: bool) -> None:
    raw = {
        **RAW,
        "weights": {"control": 34, "short": 33, "long": 33},
        "metrics": {
            "primary": {"name": "revenue", "kind": "mean"},
            "guardrails": [{"name": "latency", "kind": "mean", "worse": "increase"}],
        },
        "analysis": {"method": "sequential", "relative": True, "cuped": cuped},
    }
    spec = ExperimentSpec.from_mapping("three-arms", raw)
    fixed_spec = ExperimentSpec.from_mapping(
        "three-arms", {**raw, "analysis": {**raw["analysis"], "method": "frequentist"}}
    )
    rng = np.random.default_rng(4)
    looks = []
    for day, n in enumerate((1, 400, 1600, 3200), start=1):  # the first look is degenerate
        look_data: dict = {}
        for metric in ("revenue", "latency"):
            look_data[metric] = {}
            for k, arm in enumerate(("control", "short", "long")):
                pre = rng.normal(10, 3, n)
                post = 0.8 * pre + rng.normal(0.1 * k, 2, n)
                post_mean = Mean.of(list(post))
                look_data[metric][arm] = (
                    Cuped(post_mean, Mean.of(list(pre)), float((post * pre).sum()))
                    if cuped
                    else post_mean
                )
        looks.append(Look(f"2026-01-0{day}", look_data))
    *earlier, last = looks
    result = analyze_experiment(spec, last.data, earlier, at=last.at)
    for metric in ("revenue", "latency"):
        for comparison in result.metric(metric).comparisons:
            seq = comparison.sequential
            assert seq is not None and len(seq.looks) == len(looks)
            for look, seq_look in zip(looks, seq.looks, strict=True):
                alone = analyze_experiment(fixed_spec, look.data).metric(metric)
                fixed = next(c for c in alone.comparisons if c.arm == comparison.arm)
                assert (seq_look.estimate, seq_look.stderr) == (
                    fixed.estimate.value,
                    fixed.estimate.stderr,
                )
    guard = result.metric("latency").comparisons[0].guardrail
    assert guard is not None and 0 <= guard.harm_p_value <= 1


def test_analyze__cuped__uses_pooled_theta_and_reports_the_reduction() -> None:
    rng = np.random.default_rng(9)
    summaries = {}
    for arm, lift in (("control", 0.0), ("short", 0.3)):
        pre = rng.normal(10, 3, 4000)
        post = 0.9 * pre + rng.normal(0, 1.5, 4000) + lift
        summaries[arm] = Cuped(Mean.of(list(post)), Mean.of(list(pre)), float((post * pre).sum()))
    spec = ExperimentSpec.from_mapping(
        "c",
        {
            **RAW,
            "metrics": {"primary": {"name": "spend", "kind": "mean"}},
            "analysis": {"cuped": True},
        },
    )
    result = analyze_experiment(spec, {"spend": summaries})
    c = result.metric("spend").comparisons[0]
    assert c.cuped is not None and c.cuped.variance_reduction > 0.7
    assert result.metric("spend").cuped_theta == pytest.approx(0.9, abs=0.05)
    assert c.absolute.stderr < c.cuped.unadjusted.absolute.stderr
    assert c.is_significant


def test_analyze__relative_with_zero_control__falls_back_to_absolute() -> None:
    result = analyze_experiment(
        spec_with(relative=True),
        data(d7_retention={"control": Proportion(5000, 0), "short": Proportion(5000, 30)}),
    )
    c = result.metric("d7_retention").comparisons[0]
    assert c.scale == "absolute" and c.relative is None
    assert "relative-undefined" in {n.code for n in result.notices}


def test_to_dict__is_json_with_every_number_and_no_infinities() -> None:
    result = analyze_experiment(
        spec_with(sides=1),
        data(),
        dimensions={
            "platform": {
                "ios": {"control": 10_000, "short": 10_050},
                "web": {"control": 10_000, "short": 9950},
            }
        },
    )
    doc = result.to_dict()
    text = json.dumps(doc, sort_keys=True, allow_nan=False)
    back = json.loads(text)
    comparison = back["metrics"][0]["comparisons"][0]
    assert comparison["estimate"]["ci_high"] is None  # one-sided: +inf becomes null
    assert back["metrics"][0]["arms"][0]["summary"] == {
        "kind": "proportion",
        "n": 20_000,
        "successes": 2400,
        "sum": 2400.0,
        "sum_sq": 2400.0,
        "mean": 0.12,
        "variance": pytest.approx(0.1056),
    }
    assert back["version"] == "flagstone-stats/1" and back["is_trustworthy"] is True
    assert back["balance"][0]["dimension"] == "platform" and "is_imbalanced" in back["balance"][0]
    assert not any(isinstance(v, float) and math.isinf(v) for v in _walk(doc))


def _walk(value: object):  # type: ignore[no-untyped-def]
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
    else:
        yield value
