from __future__ import annotations

import pytest
from scipy import stats as sps

from flagstone.stats import balance, sample_ratio_mismatch


def test_srm__matches_scipy_chisquare_against_the_weights() -> None:
    r = sample_ratio_mismatch({"a": 3300, "b": 3400, "c": 3100}, {"a": 30, "b": 40, "c": 30})
    ref = sps.chisquare([3300, 3400, 3100], [9800 * 0.3, 9800 * 0.4, 9800 * 0.3])
    assert r.chi2 == pytest.approx(ref.statistic)
    assert r.p_value == pytest.approx(ref.pvalue)
    assert r.df == 2
    assert r.is_mismatch


def test_srm__balanced_split__is_not_a_mismatch() -> None:
    r = sample_ratio_mismatch(
        {"control": 50_120, "treatment": 49_880}, {"control": 50, "treatment": 50}
    )
    assert not r.is_mismatch and r.p_value > 0.1


def test_srm__no_units__is_degenerate_not_a_mismatch() -> None:
    r = sample_ratio_mismatch({}, {"control": 50, "treatment": 50})
    assert r.degenerate == "no units yet" and not r.is_mismatch


def test_srm__units_in_an_arm_without_weight__is_a_mismatch() -> None:
    r = sample_ratio_mismatch(
        {"control": 10, "treatment": 10, "ghost": 3}, {"control": 50, "treatment": 50}
    )
    assert r.is_mismatch and r.observed["ghost"] == 3


def test_balance__matches_scipy_chi2_contingency() -> None:
    counts = {
        "ios": {"c": 500, "t": 380},
        "android": {"c": 450, "t": 560},
        "web": {"c": 50, "t": 60},
    }
    r = balance("platform", counts, ["c", "t"])
    ref = sps.chi2_contingency([[450, 560], [500, 380], [50, 60]], correction=False)
    assert r.chi2 == pytest.approx(ref.statistic)
    assert r.p_value == pytest.approx(ref.pvalue)
    assert r.df == 2 and r.is_imbalanced and not r.is_sparse


def test_balance__one_value__is_degenerate() -> None:
    r = balance("country", {"DE": {"c": 10, "t": 12}}, ["c", "t"])
    assert r.degenerate and not r.is_imbalanced
