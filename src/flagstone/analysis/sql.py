"""The one aggregation query: raw exposures and metric events in, sufficient statistics out.

``aggregation_sql(plan, dialect)`` writes the query that DuckDB runs locally and that
``analyze --print-sql`` prints for a warehouse, so the two paths cannot drift. It reads two
relations with fixed columns (locally they are views over the files, see ``sources.py``):

    exposures(experiment, unit, arm, ts, environment, consent, <dimension>…)
    metric_events(unit, metric, value, ts)          ts: epoch seconds (DOUBLE)

and returns long rows, one per (kind, arm, slice, look, metric):

- ``metric``: n, sum, sum_sq of the per-unit values (proportions: 0/1 per unit); ratio
  metrics add den_sum, den_sum_sq, num_den_sum; CUPED adds pre_sum, pre_sum_sq,
  post_pre_sum; ``cap`` is the winsorization cap applied (pooled over arms);
- ``dimension``: units per arm and value of one declared dimension (balance checks);
- ``excluded``: units seen in more than one arm (``metric = 'multiple_arms'``) and units
  whose exposure says consent was refused (``metric = 'consent_refused'``), in ``n``.

The rules, in SQL: a unit's first exposure starts its attribution (first exposure wins);
a unit exposed to two arms is excluded and counted; metric events before the first
exposure are ignored (with CUPED they are the pre-period covariate); ``window`` keeps
events within that many seconds after the first exposure; every exposed unit counts in
``n``, units without events with value 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Dialect = Literal["duckdb", "postgres", "snowflake", "bigquery"]
DIALECTS: tuple[Dialect, ...] = ("duckdb", "postgres", "snowflake", "bigquery")

# Columns of every output row, in order (the sufficient-statistics file format too).
OUTPUT_COLUMNS = (
    "kind",
    "arm",
    "slice",
    "look",
    "metric",
    "n",
    "sum",
    "sum_sq",
    "den_sum",
    "den_sum_sq",
    "num_den_sum",
    "pre_sum",
    "pre_sum_sq",
    "post_pre_sum",
    "cap",
)
_TEXT_COLUMNS = {"kind", "arm", "slice", "metric"}


@dataclass(frozen=True, slots=True)
class MetricQuery:
    name: str
    kind: Literal["proportion", "mean", "ratio"]
    winsorize: float | None = None  # percentile, e.g. 99
    numerator: str | None = None  # ratio: the event names summed per unit
    denominator: str | None = None

    @property
    def events(self) -> tuple[str, ...]:
        """The metric names in ``metric_events`` this metric reads."""
        if self.kind == "ratio":
            return (
                self.numerator or f"{self.name}.numerator",
                self.denominator or f"{self.name}.denominator",
            )
        return (self.name,)


@dataclass(frozen=True, slots=True)
class QueryPlan:
    experiment: str
    metrics: tuple[MetricQuery, ...]
    environment: str | None = None  # exposures of other environments are left out
    window: float | None = None  # seconds after the first exposure
    cuped: bool = False  # pre-exposure events become each metric's covariate
    by: str | None = None  # slice every statistic by this dimension
    dimensions: tuple[str, ...] = ()  # balance counts for each
    looks: tuple[float, ...] = ()  # cumulative cuts (epoch seconds) for sequential looks
    interaction: str | None = None  # slice by the arm of this other experiment instead


def quote_literal(text: str, dialect: Dialect) -> str:
    if dialect == "bigquery":
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "'" + text.replace("'", "''") + "'"


_PLAIN = re.compile(r"[a-z_][a-z0-9_]*")
_RESERVED = {
    "all",
    "and",
    "as",
    "by",
    "case",
    "end",
    "from",
    "group",
    "in",
    "is",
    "not",
    "null",
    "on",
    "or",
    "order",
    "select",
    "table",
    "to",
    "user",
    "when",
    "where",
    "window",
}


def quote_ident(name: str, dialect: Dialect) -> str:
    # Plain lower-case names stay unquoted: Snowflake folds unquoted names to upper case,
    # so a quoted "country" would not find the column COUNTRY that CREATE TABLE made.
    if _PLAIN.fullmatch(name) and name not in _RESERVED:
        return name
    if dialect == "bigquery":
        return "`" + name.replace("`", "") + "`"
    return '"' + name.replace('"', '""') + '"'


def _double(dialect: Dialect) -> str:
    return {"bigquery": "FLOAT64", "postgres": "DOUBLE PRECISION"}.get(dialect, "DOUBLE")


def _text(dialect: Dialect) -> str:
    return "STRING" if dialect == "bigquery" else "VARCHAR"


def _number(value: float) -> str:
    return repr(float(value))


def _quantile(column: str, percentile: float, dialect: Dialect) -> str:
    p = percentile / 100
    if dialect == "duckdb":
        return f"quantile_cont({column}, {_number(p)})"
    if dialect == "bigquery":
        # BigQuery has no exact ordered-set PERCENTILE_CONT aggregate: 1,000 approximate
        # quantiles, the one at the percentile (error ≤ 0.1% of rank).
        return f"APPROX_QUANTILES({column}, 1000)[OFFSET({round(p * 1000)})]"
    return f"PERCENTILE_CONT({_number(p)}) WITHIN GROUP (ORDER BY {column})"


def _table(rows: Sequence[Sequence[str]], columns: Sequence[str], dialect: Dialect) -> str:
    """A small inline table (VALUES; BigQuery: UNNEST of STRUCTs)."""
    if dialect == "bigquery":
        structs = ", ".join(
            "STRUCT(" + ", ".join(f"{v} AS {c}" for v, c in zip(row, columns, strict=True)) + ")"
            for row in rows
        )
        return f"UNNEST([{structs}])"
    values = ", ".join("(" + ", ".join(row) + ")" for row in rows)
    return f"(VALUES {values}) AS t({', '.join(columns)})"


def aggregation_sql(plan: QueryPlan, dialect: Dialect = "duckdb") -> str:
    """The query (one statement, no trailing semicolon) for ``plan`` in ``dialect``."""

    def lit(text: str) -> str:
        return quote_literal(text, dialect)

    def ident(name: str) -> str:
        return quote_ident(name, dialect)

    double, text = _double(dialect), _text(dialect)
    materialized = " MATERIALIZED" if dialect in ("duckdb", "postgres") else ""
    dims = list(dict.fromkeys([*plan.dimensions, *([plan.by] if plan.by else [])]))
    dim_cols = {d: f"d{i}" for i, d in enumerate(dims)}

    where = [f"experiment = {lit(plan.experiment)}"]
    if plan.environment is not None:
        where.append(f"(environment IS NULL OR environment = {lit(plan.environment)})")
    dim_select = "".join(f",\n    MIN({ident(d)}) AS {dim_cols[d]}" for d in dims)
    # A unit is in one arm when its least and greatest arm agree: the same test as
    # COUNT(DISTINCT arm) = 1 without the second grouping (by unit and arm) that costs.
    exposed = (
        "exposed AS" + materialized + " (\n"
        "  SELECT unit, MIN(ts) AS first_ts, MIN(arm) AS arm, MAX(arm) AS last_arm,\n"
        "    MAX(CASE WHEN consent = FALSE THEN 1 ELSE 0 END) AS refused"
        + dim_select
        + "\n  FROM exposures\n  WHERE "
        + "\n    AND ".join(where)
        + "\n  GROUP BY unit\n)"
    )
    slice_col = dim_cols[plan.by] if plan.by else None
    enrolled_dims = "".join(f", x.{c}" for c in dim_cols.values())
    ctes = [exposed]
    other = ""
    if plan.interaction is not None:
        # Units enrolled in both experiments; each cell is (arm of A, arm of B).
        other_where = [f"experiment = {lit(plan.interaction)}", *where[1:]]
        ctes.append(
            "other AS (\n  SELECT unit, MIN(arm) AS arm\n  FROM exposures\n  WHERE "
            + "\n    AND ".join(other_where)
            + "\n  GROUP BY unit\n  HAVING MIN(arm) = MAX(arm)\n)"
        )
        other, enrolled_dims, slice_col = (
            "\n  JOIN other o ON o.unit = x.unit",
            enrolled_dims + ", o.arm AS ix",
            "ix",
        )
    ctes.append(
        "enrolled AS (\n"
        f"  SELECT x.unit, x.arm, x.first_ts{enrolled_dims}\n"
        f"  FROM exposed x{other}\n  WHERE x.arm = x.last_arm AND x.refused = 0\n)"
    )

    keys = ["e.arm"]
    if slice_col:
        keys.append(f"e.{slice_col}")
    source = "enrolled e"
    if plan.looks:
        looks = _table(
            [(str(i), _number(cut)) for i, cut in enumerate(plan.looks)], ("look", "cut"), dialect
        )
        source = (
            f"enrolled e\n  JOIN {looks} ON e.first_ts <= t.cut"
            if dialect != "bigquery"
            else (f"enrolled e\n  JOIN {looks} AS t ON e.first_ts <= t.cut")
        )
        keys.append("t.look")
    events = sorted({name for m in plan.metrics for name in m.events})
    join = [
        "m.unit = e.unit",
        "m.metric IN (" + ", ".join(lit(n) for n in events) + ")",
    ]
    if plan.window is not None and plan.cuped:
        join.append(f"m.ts >= e.first_ts - {_number(plan.window)}")
    if not plan.cuped:
        join.append("m.ts >= e.first_ts")
    if plan.window is not None:
        join.append(f"m.ts < e.first_ts + {_number(plan.window)}")
    if plan.looks:
        join.append("m.ts <= t.cut")
    post = "m.ts >= e.first_ts"
    columns: list[str] = []
    event_col = {name: f"v{i}" for i, name in enumerate(events)}
    for name in events:
        cond = f"m.metric = {lit(name)}" + (f" AND {post}" if plan.cuped else "")
        columns.append(f"COALESCE(SUM(CASE WHEN {cond} THEN m.value END), 0) AS {event_col[name]}")
    if plan.cuped:
        for m in plan.metrics:
            if m.kind == "ratio":
                continue
            name = m.events[0]
            columns.append(
                f"COALESCE(SUM(CASE WHEN m.metric = {lit(name)} AND m.ts < e.first_ts "
                f"THEN m.value END), 0) AS p{events.index(name)}"
            )
    select_keys = ", ".join(
        [
            *keys[:1],
            *([f"e.{slice_col} AS slice"] if slice_col else []),
            *(["t.look"] if plan.looks else []),
        ]
    )
    ctes.append(
        "per_unit AS (\n"
        f"  SELECT e.unit, {select_keys},\n    "
        + ",\n    ".join(columns)
        + f"\n  FROM {source}\n  LEFT JOIN metric_events m\n    ON "
        + "\n    AND ".join(join)
        + "\n  GROUP BY e.unit, "
        + ", ".join(keys)
        + "\n)"
    )

    # Per-unit values of each metric: proportions are 0/1 (did the unit convert at all).
    value_of: dict[str, str] = {}
    pre_of: dict[str, str] = {}
    for m in plan.metrics:
        if m.kind == "ratio":
            continue
        col = event_col[m.events[0]]
        pcol = f"p{events.index(m.events[0])}"
        if m.kind == "proportion":
            value_of[m.name] = f"CASE WHEN {col} > 0 THEN 1 ELSE 0 END"
            pre_of[m.name] = f"CASE WHEN {pcol} > 0 THEN 1 ELSE 0 END"
        else:
            value_of[m.name] = col
            pre_of[m.name] = pcol
    group_cols = ["arm", *(["slice"] if slice_col else []), *(["look"] if plan.looks else [])]
    capped = [m for m in plan.metrics if m.winsorize is not None and m.kind == "mean"]
    value_expr = dict(value_of)
    if capped:
        cap_cols = ", ".join(
            f"{_quantile(value_of[m.name], m.winsorize or 100, dialect)} AS c{plan.metrics.index(m)}"
            for m in capped
        )
        look_group = "\n  GROUP BY look" if plan.looks else ""
        look_select = "look, " if plan.looks else ""
        ctes.append(f"caps AS (\n  SELECT {look_select}{cap_cols}\n  FROM per_unit{look_group}\n)")
        for m in capped:
            c = f"caps.c{plan.metrics.index(m)}"
            value_expr[m.name] = f"LEAST({value_of[m.name]}, {c})"
    aggregates: list[str] = ["COUNT(*) AS n"]
    for i, m in enumerate(plan.metrics):
        if m.kind == "ratio":
            num, den = event_col[m.events[0]], event_col[m.events[1]]
            aggregates += [
                f"SUM({num}) AS s{i}",
                f"SUM({num} * {num}) AS q{i}",
                f"SUM({den}) AS ds{i}",
                f"SUM({den} * {den}) AS dq{i}",
                f"SUM({num} * {den}) AS x{i}",
            ]
            continue
        v = value_expr[m.name]
        aggregates += [f"SUM({v}) AS s{i}", f"SUM(({v}) * ({v})) AS q{i}"]
        if plan.cuped:
            p = pre_of[m.name]
            aggregates += [
                f"SUM({p}) AS ps{i}",
                f"SUM(({p}) * ({p})) AS pq{i}",
                f"SUM(({v}) * ({p})) AS px{i}",
            ]
        if m.winsorize is not None and m.kind == "mean":
            aggregates.append(f"MAX(caps.c{i}) AS c{i}")
    caps_join = ""
    if capped:
        caps_join = (
            "\n  JOIN caps ON caps.look = per_unit.look" if plan.looks else "\n  CROSS JOIN caps"
        )
    qualified = [f"per_unit.{c}" for c in group_cols]
    ctes.append(
        "stats AS (\n  SELECT "
        + ", ".join(f"{q} AS {c}" for q, c in zip(qualified, group_cols, strict=True))
        + ",\n    "
        + ",\n    ".join(aggregates)
        + f"\n  FROM per_unit{caps_join}\n  GROUP BY "
        + ", ".join(qualified)
        + "\n)"
    )

    def null(kind: str) -> str:
        return f"CAST(NULL AS {text if kind == 'text' else double})"

    def row(values: dict[str, str]) -> str:
        out = []
        for col in OUTPUT_COLUMNS:
            expr = values.get(col)
            if expr is None:
                expr = null("text" if col in _TEXT_COLUMNS else "double")
            elif col in _TEXT_COLUMNS:
                expr = f"CAST({expr} AS {text})"
            else:
                expr = f"CAST({expr} AS {double})"
            out.append(f"{expr} AS {col}")
        return "SELECT " + ", ".join(out)

    # Unpivot the one wide row per group into a row per metric, reading ``stats`` once.
    metric_rows = [(str(i), lit(m.name)) for i, m in enumerate(plan.metrics)]
    picks: dict[str, list[str]] = {c: [] for c in OUTPUT_COLUMNS}
    for i, m in enumerate(plan.metrics):
        cols = {"sum": f"s{i}", "sum_sq": f"q{i}"}
        if m.kind == "ratio":
            cols |= {"den_sum": f"ds{i}", "den_sum_sq": f"dq{i}", "num_den_sum": f"x{i}"}
        elif plan.cuped:
            cols |= {"pre_sum": f"ps{i}", "pre_sum_sq": f"pq{i}", "post_pre_sum": f"px{i}"}
        if m.winsorize is not None and m.kind == "mean":
            cols["cap"] = f"c{i}"
        for col, expr in cols.items():
            picks[col].append(f"WHEN {i} THEN s.{expr}")
    unpivot: dict[str, str] = {
        "kind": lit("metric"),
        "arm": "s.arm",
        "metric": "k.metric",
        "n": "s.n",
    }
    if slice_col:
        unpivot["slice"] = "s.slice"
    if plan.looks:
        unpivot["look"] = "s.look"
    for col, whens in picks.items():
        if whens:
            unpivot[col] = "CASE k.i " + " ".join(whens) + " END"
    metric_table = _table(metric_rows, ("i", "metric"), dialect)
    if dialect == "bigquery":
        metric_from = f"FROM stats s CROSS JOIN {metric_table} AS k"
    else:
        metric_from = f"FROM stats s CROSS JOIN {metric_table.replace(') AS t(', ') AS k(')}"
    parts = [row(unpivot) + "\n" + metric_from]
    for d in dims:
        parts.append(
            row(
                {
                    "kind": lit("dimension"),
                    "arm": "arm",
                    "slice": dim_cols[d],
                    "metric": lit(d),
                    "n": "COUNT(*)",
                }
            )
            + f"\nFROM enrolled\nGROUP BY arm, {dim_cols[d]}"
        )
    parts.append(
        row(
            {
                "kind": lit("excluded"),
                "metric": lit("multiple_arms"),
                "n": "SUM(CASE WHEN arm < last_arm THEN 1 ELSE 0 END)",
            }
        )
        + "\nFROM exposed"
    )
    parts.append(
        row(
            {
                "kind": lit("excluded"),
                "metric": lit("consent_refused"),
                "n": "SUM(CASE WHEN arm = last_arm AND refused = 1 THEN 1 ELSE 0 END)",
            }
        )
        + "\nFROM exposed"
    )
    parts.append(
        row(
            {
                "kind": lit("span"),
                "metric": lit("first_exposure"),
                "sum": "MIN(first_ts)",
                "sum_sq": "MAX(first_ts)",
                "n": "COUNT(*)",
            }
        )
        + "\nFROM enrolled"
    )
    return "WITH " + ",\n".join(ctes) + "\n" + "\nUNION ALL\n".join(parts)
