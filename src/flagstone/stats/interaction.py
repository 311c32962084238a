"""Interaction between two experiments that ran on the same units.

Input: per-cell sufficient statistics, one summary per (arm of A, arm of B) pair.

Means — the two-way ANOVA of the OLS model y ~ A + B + A:B, computed from the cells'
sufficient statistics alone (the normal equations need only each cell's n and sum, the
error sum of squares only its sum of squares). The interaction sum of squares is
SSE(A + B) − SSE(A + B + A:B) with (a−1)(b−1) degrees of freedom; being the last term,
it is the same under type I (A:B entered last), II and III sums of squares, so the
F-test does not depend on that choice even in unbalanced designs. Main effects are
reported with type II sums of squares (each main effect adjusted for the other, as
statsmodels ``anova_lm(typ=2)``), which is meaningful when the interaction is absent.

Proportions — the interaction contrast g(p₁₁) − g(p₁₀) − g(p₀₁) + g(p₀₀) for each pair
of treatment arms, on two scales: additive (g = identity: does A add the same number of
points whatever B is?) and log-odds (g = logit: does A multiply the odds by the same
factor?). An effect can be additive on one scale and interact on the other whenever the
baselines differ, so both are stated. The joint Wald χ² over all contrasts has
(a−1)(b−1) degrees of freedom; the log-odds variance of a cell is 1/s + 1/f, with 0.5
added to s and f when a cell has no successes or no failures (Haldane–Anscombe). On the
log-odds scale this equals the Wald test of the interaction in the saturated logistic
regression.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import special

from flagstone.stats.summaries import Mean, Proportion

Cell = tuple[str, str]  # (arm of A, arm of B)


@dataclass(frozen=True, slots=True)
class CellSummary:
    a_arm: str
    b_arm: str
    n: int
    mean: float


@dataclass(frozen=True, slots=True)
class AnovaRow:
    source: str  # "A", "B", "A:B", "Residual"
    sum_sq: float
    df: int
    f: float | None
    p_value: float | None


@dataclass(frozen=True, slots=True)
class Contrast:
    a_arm: str
    b_arm: str
    estimate: float  # difference in differences on the term's scale
    stderr: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True, slots=True)
class InteractionTerm:
    scale: Literal["additive", "log-odds"]
    test: Literal["anova-f", "wald-chi2"]
    statistic: float
    df: int
    df_resid: int | None  # the F-test's denominator degrees of freedom
    p_value: float
    contrasts: tuple[Contrast, ...]


@dataclass(frozen=True, slots=True)
class InteractionResult:
    kind: Literal["mean", "proportion"]
    a: str
    b: str
    a_arms: tuple[str, ...]
    b_arms: tuple[str, ...]
    cells: tuple[CellSummary, ...]
    anova: tuple[AnovaRow, ...]
    terms: tuple[InteractionTerm, ...]
    alpha: float
    verdict: str
    degenerate: str | None = None

    @property
    def is_interaction(self) -> bool:
        return any(t.p_value < self.alpha for t in self.terms)


def _arms(
    cells: Mapping[Cell, object], a_control: str | None, b_control: str | None
) -> tuple[list[str], list[str]]:
    a_arms = sorted({a for a, _ in cells}, key=lambda x: (x != a_control, x))
    b_arms = sorted({b for _, b in cells}, key=lambda x: (x != b_control, x))
    return a_arms, b_arms


def _design_row(i: int, j: int, a: int, b: int, terms: str) -> NDArray[np.float64]:
    row = [1.0]
    if "A" in terms:
        row += [1.0 if i == k else 0.0 for k in range(1, a)]
    if "B" in terms:
        row += [1.0 if j == k else 0.0 for k in range(1, b)]
    return np.array(row)


def _sse(cells: Sequence[tuple[int, int, Mean]], a: int, b: int, terms: str) -> float:
    """Error sum of squares of y ~ 1 (+ A) (+ B) by weighted least squares on cell sums."""
    rows = [(_design_row(i, j, a, b, terms), m) for i, j, m in cells]
    xtx = sum(m.n * np.outer(x, x) for x, m in rows)
    xty = sum(m.sum * x for x, m in rows)
    yty = sum(m.sum_sq for _, m in rows)
    coef = np.linalg.lstsq(np.asarray(xtx), np.asarray(xty), rcond=None)[0]
    return float(yty - coef @ np.asarray(xty))


def _contrasts(
    values: NDArray[np.float64],
    variances: NDArray[np.float64],
    a: int,
    b: int,
    a_arms: list[str],
    b_arms: list[str],
    alpha: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[Contrast, ...]]:
    """Interaction contrasts (i, j ≥ 1) over cells indexed i*b + j, and their covariance."""
    rows = []
    for i in range(1, a):
        for j in range(1, b):
            c = np.zeros(a * b)
            c[i * b + j], c[i * b], c[j], c[0] = 1.0, -1.0, -1.0, 1.0
            rows.append(c)
    matrix = np.array(rows)
    estimates = matrix @ values
    covariance = matrix @ np.diag(variances) @ matrix.T
    z = float(special.ndtri(1 - alpha / 2))
    out = []
    for k, (i, j) in enumerate((i, j) for i in range(1, a) for j in range(1, b)):
        se = math.sqrt(covariance[k, k])
        out.append(
            Contrast(
                a_arms[i],
                b_arms[j],
                float(estimates[k]),
                se,
                float(estimates[k]) - z * se,
                float(estimates[k]) + z * se,
            )
        )
    return estimates, covariance, tuple(out)


def _wald(estimates: NDArray[np.float64], covariance: NDArray[np.float64]) -> tuple[float, float]:
    statistic = float(estimates @ np.linalg.pinv(covariance) @ estimates)
    return statistic, float(special.chdtrc(len(estimates), statistic))


def interaction(
    cells: Mapping[Cell, Mean | Proportion],
    *,
    a: str = "A",
    b: str = "B",
    a_control: str | None = None,
    b_control: str | None = None,
    alpha: float = 0.05,
) -> InteractionResult:
    """Does experiment A's effect depend on the arm of experiment B?"""
    a_arms, b_arms = _arms(cells, a_control, b_control)
    na, nb = len(a_arms), len(b_arms)
    is_proportion = all(isinstance(s, Proportion) for s in cells.values())
    kind: Literal["mean", "proportion"] = "proportion" if is_proportion else "mean"
    ordered = [cells.get((x, y)) for x in a_arms for y in b_arms]
    summaries = tuple(
        CellSummary(x, y, s.n if s else 0, s.mean if s else 0.0)
        for (x, y), s in zip(((x, y) for x in a_arms for y in b_arms), ordered, strict=True)
    )

    def result(
        anova: tuple[AnovaRow, ...],
        terms: tuple[InteractionTerm, ...],
        degenerate: str | None = None,
    ) -> InteractionResult:
        r = InteractionResult(
            kind, a, b, tuple(a_arms), tuple(b_arms), summaries, anova, terms, alpha, "", degenerate
        )
        return InteractionResult(
            kind,
            a,
            b,
            tuple(a_arms),
            tuple(b_arms),
            summaries,
            anova,
            terms,
            alpha,
            verdict(r),
            degenerate,
        )

    if na < 2 or nb < 2:
        return result((), (), "each experiment needs at least two arms among the cells")
    empty = [
        f"{x}×{y}"
        for (x, y), s in zip(((x, y) for x in a_arms for y in b_arms), ordered, strict=True)
        if s is None or s.n < 2
    ]
    if empty:
        return result((), (), f"cells with fewer than 2 units: {', '.join(empty)}")
    assert all(s is not None for s in ordered)
    if is_proportion:
        props = [s for s in ordered if isinstance(s, Proportion)]
        return result((), _proportion_terms(props, na, nb, a_arms, b_arms, alpha))
    means = [
        s if isinstance(s, Mean) else Mean(s.n, s.sum, s.sum_sq) for s in ordered if s is not None
    ]
    anova, term = _anova(means, na, nb, a_arms, b_arms, alpha)
    return result(anova, (term,))


def _anova(
    means: list[Mean], na: int, nb: int, a_arms: list[str], b_arms: list[str], alpha: float
) -> tuple[tuple[AnovaRow, ...], InteractionTerm]:
    indexed = [(k // nb, k % nb, m) for k, m in enumerate(means)]
    sse_full = sum(m.sum_sq - m.sum * m.sum / m.n for m in means)
    n_total = sum(m.n for m in means)
    df_resid = n_total - na * nb
    sse_ab = _sse(indexed, na, nb, "AB")
    ss_a = _sse(indexed, na, nb, "B") - sse_ab
    ss_b = _sse(indexed, na, nb, "A") - sse_ab
    ss_int = max(sse_ab - sse_full, 0.0)
    mse = sse_full / df_resid if df_resid > 0 else math.nan

    def row(source: str, ss: float, df: int) -> AnovaRow:
        if not mse > 0:
            return AnovaRow(source, ss, df, None, None)
        f = ss / df / mse
        return AnovaRow(source, ss, df, f, float(special.fdtrc(df, df_resid, f)))

    df_int = (na - 1) * (nb - 1)
    rows = (
        row("A", ss_a, na - 1),
        row("B", ss_b, nb - 1),
        row("A:B", ss_int, df_int),
        AnovaRow("Residual", sse_full, df_resid, None, None),
    )
    values = np.array([m.mean for m in means])
    variances = np.array([m.variance / m.n for m in means])
    _, _, contrasts = _contrasts(values, variances, na, nb, a_arms, b_arms, alpha)
    interaction_row = rows[2]
    term = InteractionTerm(
        "additive",
        "anova-f",
        interaction_row.f if interaction_row.f is not None else 0.0,
        df_int,
        df_resid,
        interaction_row.p_value if interaction_row.p_value is not None else 1.0,
        contrasts,
    )
    return rows, term


def _proportion_terms(
    props: list[Proportion], na: int, nb: int, a_arms: list[str], b_arms: list[str], alpha: float
) -> tuple[InteractionTerm, ...]:
    p = np.array([s.mean for s in props])
    n = np.array([s.n for s in props], dtype=float)
    additive_var = p * (1 - p) / n
    successes = np.array([s.successes for s in props], dtype=float)
    failures = n - successes
    zero = (successes == 0) | (failures == 0)
    s_adj, f_adj = successes + 0.5 * zero, failures + 0.5 * zero
    log_odds = np.log(s_adj / f_adj)
    log_odds_var = 1 / s_adj + 1 / f_adj
    terms = []
    for scale, values, variances in (
        ("additive", p, additive_var),
        ("log-odds", log_odds, log_odds_var),
    ):
        estimates, covariance, contrasts = _contrasts(
            values, variances, na, nb, a_arms, b_arms, alpha
        )
        if not np.any(np.diag(covariance) > 0):
            statistic, p_value = 0.0, 1.0
        else:
            statistic, p_value = _wald(estimates, covariance)
        terms.append(
            InteractionTerm(
                scale,  # type: ignore[arg-type]
                "wald-chi2",
                statistic,
                len(estimates),
                None,
                p_value,
                contrasts,
            )
        )
    return tuple(terms)


def verdict(r: InteractionResult) -> str:
    """One plain sentence a product manager can act on."""
    if r.degenerate:
        return f"No interaction analysis: {r.degenerate}."
    if not r.terms:
        return "No interaction analysis."

    def fmt(t: InteractionTerm) -> str:
        name = "F" if t.test == "anova-f" else "χ²"
        return f"{name} = {t.statistic:.2f}, p = {t.p_value:.3g}"

    significant = [t for t in r.terms if t.p_value < r.alpha]
    if not significant:
        shown = "; ".join(f"{t.scale}: {fmt(t)}" for t in r.terms)
        return (
            f"No evidence that {r.a}'s effect depends on {r.b}'s arm ({shown}): "
            f"each experiment can be read on its own."
        )
    if r.kind == "proportion" and len(significant) == 1:
        t = significant[0]
        other = "log-odds" if t.scale == "additive" else "additive"
        meaning = (
            "the same relative (odds) effect on different baselines, not a true conflict"
            if t.scale == "additive"
            else "the same number of points on different baselines, not a true conflict"
        )
        return (
            f"{r.a}'s effect depends on {r.b}'s arm on the {t.scale} scale ({fmt(t)}) "
            f"but not on the {other} scale: consistent with {meaning}; read the per-cell results."
        )
    t = significant[0]
    return (
        f"{r.a}'s effect depends on {r.b}'s arm ({fmt(t)}): do not read either experiment "
        f"alone; decide on the per-cell results."
    )
