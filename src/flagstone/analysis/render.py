"""An analysis as data a reader takes in: rows per metric, warnings, JSON and markdown (pure).

The rich table (``cli/analyze.py``), the markdown and the HTML report (``html.py``) all
read the same rows, so the three never disagree on a number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flagstone.analysis.run import Analysis, iso, summaries_dict

if TYPE_CHECKING:
    from flagstone.stats.engine import Comparison, MetricResult


@dataclass(frozen=True, slots=True)
class Row:
    arm: str
    n: int
    mean: str
    lift: str  # estimate with its interval, on the reported scale
    evidence: str  # "p 0.0123" or "beat 97.1%"
    verdict: str  # better / worse / inconclusive / harmed / not-harmed; "control"
    bar: str  # text CI bar
    low: float | None = None
    high: float | None = None
    value: float | None = None


def _is_prop(m: MetricResult) -> bool:
    return m.kind == "proportion"


def fmt_mean(m: MetricResult, value: float) -> str:
    return f"{value:.2%}" if _is_prop(m) else f"{value:.4g}"


def fmt_effect(m: MetricResult, c: Comparison, value: float) -> str:
    if not math.isfinite(value):
        return "∞" if value > 0 else "−∞"
    if c.scale == "relative":
        return f"{value:+.2%}"
    if _is_prop(m):
        return f"{value * 100:+.2f} pp"
    return f"{value:+.4g}"


def lift_text(m: MetricResult, c: Comparison) -> str:
    e = c.estimate
    return (
        f"{fmt_effect(m, c, e.value)} [{fmt_effect(m, c, e.ci_low)}, {fmt_effect(m, c, e.ci_high)}]"
    )


def evidence_text(c: Comparison, method: str) -> str:
    if c.guardrail is not None:
        return f"harm p {c.guardrail.harm_p_value:.3g}"
    if method == "bayesian" and c.chance_to_beat is not None:
        return f"beat {c.chance_to_beat:.1%}"
    p = c.p_adjusted if c.p_adjusted is not None else c.p_value
    label = "p adj" if c.p_adjusted is not None and c.p_adjusted != c.p_value else "p"
    return f"{label} {p:.3g}"


def ci_bar(low: float, high: float, value: float, lo: float, hi: float, width: int = 25) -> str:
    """``──┼──[━━●━━]────``: the interval on an axis from ``lo`` to ``hi`` with 0 marked."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return ""

    def pos(x: float) -> int:
        x = min(max(x, lo), hi)
        return min(width - 1, max(0, round((x - lo) / (hi - lo) * (width - 1))))

    cells = ["─"] * width
    if lo <= 0 <= hi:
        cells[pos(0.0)] = "┼"
    a, b = pos(low if math.isfinite(low) else lo), pos(high if math.isfinite(high) else hi)
    for i in range(a, b + 1):
        cells[i] = "━"
    cells[a] = "[" if math.isfinite(low) else "<"
    cells[b] = "]" if math.isfinite(high) else ">"
    cells[pos(value)] = "●"
    return "".join(cells)


def metric_rows(m: MetricResult, method: str) -> list[Row]:
    comparisons = {c.arm: c for c in m.comparisons}
    bounds = [
        x
        for c in m.comparisons
        for x in (c.estimate.ci_low, c.estimate.ci_high, c.estimate.value, 0.0)
        if math.isfinite(x)
    ]
    lo, hi = (min(bounds), max(bounds)) if bounds else (0.0, 0.0)
    pad = (hi - lo) * 0.05
    rows = []
    for arm in m.arms:
        c = comparisons.get(arm.arm)
        if c is None:
            rows.append(Row(arm.arm, arm.n, fmt_mean(m, arm.mean), "", "", "control", ""))
            continue
        e = c.estimate
        rows.append(
            Row(
                arm.arm,
                arm.n,
                fmt_mean(m, arm.mean),
                lift_text(m, c),
                evidence_text(c, method),
                c.verdict + (" (degenerate)" if c.degenerate else ""),
                ci_bar(e.ci_low, e.ci_high, e.value, lo - pad, hi + pad),
                e.ci_low,
                e.ci_high,
                e.value,
            )
        )
    return rows


def metric_title(m: MetricResult) -> str:
    role = {"primary": "primary", "secondary": "secondary", "guardrail": "guardrail"}[m.role]
    extra = []
    if m.winsorized_at is not None:
        extra.append(f"winsorized at {m.winsorized_at:.4g}")
    if m.cuped_theta is not None:
        extra.append(f"CUPED θ {m.cuped_theta:.3g}")
    if m.role == "guardrail":
        extra.append(f"harm = {m.worse}")
    return f"{m.name} ({m.kind}, {role}{'; ' + ', '.join(extra) if extra else ''})"


def headline(a: Analysis) -> str:
    r = a.result
    sides = "two-sided" if r.sides == 2 else "one-sided"
    units = sum(a.aggregates.units.values())
    method = str(r.method)
    tunings = {c.sequential.tuning for m in r.metrics for c in m.comparisons if c.sequential}
    if r.method == "sequential" and tunings:
        # which always-valid method, and the sample size it is tightest at
        method += (
            " (asymptotic confidence sequences, Waudby-Smith et al. 2024, tuned at "
            f"{min(tunings):,.0f} units; {r.looks} looks)"
        )
    return (
        f"{a.key} in {a.env} ({a.status}): {units:,} units, {method}, α = {r.alpha:g} "
        f"{sides}, correction {r.correction}; SRM p = {r.srm.p_value:.3g}"
    )


def warnings(a: Analysis) -> list[tuple[str, str]]:
    """(severity, message) for every notice and ingestion warning, errors first."""
    order = {"error": 0, "warning": 1, "info": 2}
    items = [(n.severity, n.message) for n in a.result.notices]
    items += [("warning", w) for w in a.warnings]
    items += [("info", n) for n in a.notes]
    return sorted(items, key=lambda x: order.get(x[0], 3))


@dataclass(frozen=True, slots=True)
class AnalysisReport:
    """``flagstone analyze``'s result: ok when the data is trustworthy and no guardrail is harmed."""

    analysis: Analysis

    @property
    def ok(self) -> bool:
        return self.analysis.ok

    def payload(self) -> dict[str, Any]:
        a = self.analysis
        agg = a.aggregates
        out: dict[str, Any] = {
            "env": a.env,
            "experiment": a.key,
            "status": a.status,
            "started_at": a.started_at,
            "at": a.at,
            "trustworthy": a.result.is_trustworthy,
            "harmed_guardrails": list(a.result.harmed_guardrails),
            "units": dict(agg.units),
            "excluded": {
                "multiple_arms": agg.multiple_arms,
                "consent_refused": agg.consent_refused,
                "consent_not_given": agg.consent_not_given,
            },
            "exposures": {
                "first": iso(agg.first_exposure) if agg.first_exposure is not None else None,
                "last": iso(agg.last_exposure) if agg.last_exposure is not None else None,
            },
            "warnings": list(a.warnings),
            "notes": list(a.notes),
            "result": a.result.to_dict(),
            "statistics": summaries_dict(agg.data),
            "by": a.by.to_dict() if a.by is not None else None,
            "interaction": None,
        }
        if a.interaction_with is not None:
            from flagstone.stats.engine import to_jsonable

            out["interaction"] = {
                "with": a.interaction_with,
                "metrics": {k: to_jsonable(v) for k, v in a.interactions.items()},
            }
        return out

    def markdown(self) -> str:
        return analysis_markdown(self.analysis)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _data_text(value: object) -> str:
    """A value from the data (a dimension value the client sent) as markdown text: never
    markup, HTML or an @mention (``_cell`` then escapes its pipes)."""
    from flagstone.report_diff import escape

    return escape(str(value)).replace("\\|", "|")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def analysis_markdown(a: Analysis) -> str:
    r = a.result
    icon = "✅" if a.ok else "❌"
    out = [f"### {icon} Experiment `{a.key}` ({a.env})\n", f"{headline(a)}\n"]
    notes = warnings(a)
    if notes:
        marks = {"error": "❌", "warning": "⚠️", "info": "ℹ️"}
        out.append("\n".join(f"- {marks.get(s, '')} {m}" for s, m in notes) + "\n")
    for m in r.metrics:
        out.append(f"\n#### {metric_title(m)}\n")
        out.append(
            _md_table(
                ("arm", "n", "mean", "lift [CI]", "evidence", "verdict"),
                [
                    (x.arm, f"{x.n:,}", x.mean, x.lift, x.evidence, x.verdict)
                    for x in metric_rows(m, r.method)
                ],
            )
        )
    if a.by is not None:
        out.append(f"\n#### By {a.by.dimension} ({a.by.correction} over {a.by.tests} tests)\n")
        rows = []
        for s in a.by.slices:
            for m in s.result.metrics:
                for c in m.comparisons:
                    rows.append(
                        (
                            _data_text(s.value),
                            m.name,
                            c.arm,
                            lift_text(m, c),
                            evidence_text(c, r.method),
                            c.verdict,
                        )
                    )
        out.append(
            _md_table((a.by.dimension, "metric", "arm", "lift [CI]", "evidence", "verdict"), rows)
        )
    for name, ix in a.interactions.items():
        out.append(f"\n#### Interaction with `{a.interaction_with}` on {name}\n")
        out.append(
            _md_table(
                ("scale", "test", "statistic", "df", "p"),
                [
                    (t.scale, t.test, f"{t.statistic:.4g}", t.df, f"{t.p_value:.3g}")
                    for t in ix.terms
                ],
            )
        )
        out.append(f"\n{ix.verdict}\n")
    out.append(f"\n<sub>{r.version}, analysed {a.at}</sub>\n")
    return "".join(out)
