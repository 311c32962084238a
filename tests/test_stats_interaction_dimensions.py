"""Interaction verdicts and degenerate cells; per-dimension results corrected over slices."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from flagstone.stats import (
    ExperimentSpec,
    Mean,
    Proportion,
    analyze_by_dimension,
    analyze_experiment,
    interaction,
)

RAW = {
    "flag": "f",
    "status": "running",
    "weights": {"control": 50, "short": 50},
    "metrics": {"primary": {"name": "conv", "kind": "proportion"}},
    "analysis": {"correction": "holm"},
}


def test_interaction__none__says_each_experiment_can_be_read_alone() -> None:
    cells = {
        ("c", "c"): Proportion(5000, 500),
        ("c", "t"): Proportion(5000, 600),
        ("t", "c"): Proportion(5000, 550),
        ("t", "t"): Proportion(5000, 650),
    }
    r = interaction(cells, a="checkout", b="banner", a_control="c", b_control="c")
    assert not r.is_interaction
    assert r.verdict.startswith("No evidence that checkout's effect depends on banner's arm")
    assert {t.scale for t in r.terms} == {"additive", "log-odds"}


def test_interaction__additive_only__is_explained_as_a_baseline_effect() -> None:
    # The same odds ratio (2×) on two baselines: additive contrast ≠ 0, log-odds ≈ 0.
    def rate(odds: float) -> float:
        return odds / (1 + odds)

    n = 40_000
    base = {("c", "c"): 0.05, ("c", "t"): 0.4}
    cells = {}
    for (a, b), p in base.items():
        odds = p / (1 - p)
        cells[(a, b)] = Proportion(n, round(n * p))
        cells[("t", b)] = Proportion(n, round(n * rate(2 * odds)))
    r = interaction(cells, a="A", b="B", a_control="c", b_control="c")
    additive = next(t for t in r.terms if t.scale == "additive")
    log_odds = next(t for t in r.terms if t.scale == "log-odds")
    assert additive.p_value < 0.001 and log_odds.p_value > 0.05
    assert "additive scale" in r.verdict and "not on the log-odds scale" in r.verdict


def test_interaction__empty_cell__is_degenerate_with_a_reason() -> None:
    cells = {
        ("c", "c"): Mean(10, 10.0, 20.0),
        ("c", "t"): Mean(10, 12.0, 25.0),
        ("t", "c"): Mean(10, 11.0, 22.0),
    }
    r = interaction(cells, a_control="c", b_control="c")
    assert r.degenerate is not None and "t×t" in r.degenerate
    assert not r.is_interaction and r.verdict.startswith("No interaction analysis")


def test_interaction__three_by_two_proportions__joint_wald_has_two_degrees_of_freedom() -> None:
    rng = np.random.default_rng(2)
    cells = {
        (a, b): Proportion(3000, int(rng.binomial(3000, 0.2)))
        for a in ("c", "x", "y")
        for b in ("c", "t")
    }
    r = interaction(cells, a_control="c", b_control="c")
    assert all(t.df == 2 and len(t.contrasts) == 2 for t in r.terms)


def slice_data(rng: np.random.Generator, lift: float) -> dict:
    n = 8000
    return {
        "conv": {
            "control": Proportion(n, int(rng.binomial(n, 0.1))),
            "short": Proportion(n, int(rng.binomial(n, 0.1 + lift))),
        }
    }


def test_by_dimension__p_values_are_corrected_over_every_slice() -> None:
    rng = np.random.default_rng(6)
    spec = ExperimentSpec.from_mapping("e", RAW)
    data = {country: slice_data(rng, 0.0) for country in ("DE", "FR", "US", "JP", "BR")}
    data["US"] = slice_data(rng, 0.02)
    result = analyze_by_dimension(spec, "country", data)
    assert result.tests == 5 and result.correction == "holm"
    raw = [s.result.metrics[0].comparisons[0].p_value for s in result.slices]
    expected = multipletests(raw, method="holm")[1]
    got = [s.result.metrics[0].comparisons[0].p_adjusted for s in result.slices]
    assert got == pytest.approx(list(expected))
    significant = {
        s.value for s in result.slices if s.result.metrics[0].comparisons[0].is_significant
    }
    assert significant == {"US"}
    assert [s.value for s in result.slices] == sorted(data)
    assert result.to_dict()["slices"][0]["result"]["correction"] == "holm"


def test_by_dimension__aa_slices__rarely_find_anything() -> None:
    rng = np.random.default_rng(13)
    spec = ExperimentSpec.from_mapping("e", {**RAW, "analysis": {"correction": "none"}})
    sims, slices = 400, 8
    found = naive = 0
    for _ in range(sims):
        data = {f"v{k}": slice_data(rng, 0.0) for k in range(slices)}
        result = analyze_by_dimension(spec, "segment", data)
        found += any(s.result.metrics[0].comparisons[0].is_significant for s in result.slices)
        naive += any(
            analyze_experiment(spec, d).metrics[0].comparisons[0].is_significant
            for d in data.values()
        )
    assert found / sims <= 0.07  # corrected (Holm even though the experiment says none)
    assert naive / sims > 0.25  # eight uncorrected slices: ~1 − 0.95⁸ = 34%
