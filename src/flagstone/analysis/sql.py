"""The one aggregation query: raw exposures and metric events in, sufficient statistics out.

``aggregation_sql(plan, dialect)`` writes the query that DuckDB runs locally and that
``analyze --print-sql`` prints for a warehouse, so the two paths cannot drift. It reads two
relations with fixed columns (locally they are views over the files, see ``sources.py``):

    exposures(experiment, unit, arm, ts, environment, consent, <dimension>…)
    metric_events(unit, metric, value, ts)          ts: epoch seconds (DOUBLE)
    consent_counts(experiment, environment, units)  only with ``consent_counts``

``consent_counts`` holds the runtime's ``consent_not_given`` records: units it left out
for lacking consent, counted without ids (an experiment with ``consent: required``).

and returns long rows, one per (kind, arm, slice, look, metric):

- ``metric``: n, sum, sum_sq of the per-unit values (proportions: 0/1 per unit); ratio
  metrics add den_sum, den_sum_sq, num_den_sum; CUPED adds pre_sum, pre_sum_sq,
  post_pre_sum; ``cap`` is the winsorization cap applied (pooled over arms);
- ``dimension``: units per arm and value of one declared dimension (balance checks);
- ``excluded``: units seen in more than one arm (``metric = 'multiple_arms'``) and units
  whose exposure says consent was refused (``metric = 'consent_refused'``), in ``n``;
  with ``consent_counts``, one more row: the sum of the runtime's counts of units never
  enrolled for lacking consent (``metric = 'consent_not_given'``);
- ``span``: the earliest (``sum``) and latest (``sum_sq``) first exposure of ``n`` units.

Balance, excluded and span counts may come in several rows (one per arm and slice); a
reader adds them up (the span: the earliest and the latest).

A local DuckDB run keys units by a 64-bit hash (``key_bits``) instead of the string,
so its groupings and join hold integers, and it may run the query once per
``partition`` of the units (``hash(unit) % parts``) and add the rows up; the printed
query is the whole, keyed by the string. A second, independent fingerprint of each unit
(``hash(reverse(unit))``) makes the hashed query exact or say it is not: the join
matches both, and a key whose exposures carry two fingerprints (two units shared the
hash) is counted as ``excluded`` ``unit_hash_collisions``; a reader that sees any runs
the string-keyed query instead (``ingest.aggregate``).

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
    consent_counts: bool = False  # also sum consent_counts' units (consent: required)
    # (p, of): only the units with hash(unit) % of = p. DuckDB only: a local run over more
    # units than its memory holds at once runs the query once per part (``ingest.py``).
    partition: tuple[int, int] | None = None
    # DuckDB only: key each unit by the low ``key_bits`` bits of hash(unit) instead of the
    # string (64 locally; fewer only to make units share keys in tests). None: the string.
    key_bits: int | None = None


UNIT_CHECK = "hash(reverse({}))"  # the second fingerprint: not a function of hash(unit)


def unit_key(column: str, bits: int) -> str:
    """The integer key of a unit under ``key_bits``."""
    if bits >= 64:
        return f"hash({column})"
    return f"(hash({column}) % {2**bits})"


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
    """The query (one statement, no trailing semicolon) for ``plan`` in ``dialect``.

    One pass: the exposures grouped by unit, joined once with the metric events, grouped by
    unit again, then by arm into ``stats``, which the output reads once. Units that are
    excluded (two arms, consent refused; with ``interaction``, not in the other experiment)
    travel with the enrolled ones, told apart by ``status``, so counting them costs no
    second pass over the units.
    """

    def lit(text: str) -> str:
        return quote_literal(text, dialect)

    def ident(name: str) -> str:
        return quote_ident(name, dialect)

    double, text = _double(dialect), _text(dialect)
    # Each unit has one row before the join, so any value of its group is the value.
    any_value = "MIN" if dialect == "postgres" else "ANY_VALUE"  # PostgreSQL has it from 16 on
    dims = list(dict.fromkeys([*plan.dimensions, *([plan.by] if plan.by else [])]))
    dim_cols = {d: f"d{i}" for i, d in enumerate(dims)}

    where = [f"experiment = {lit(plan.experiment)}"]
    if plan.environment is not None:
        where.append(f"(environment IS NULL OR environment = {lit(plan.environment)})")
    hashed = plan.key_bits is not None
    if hashed and dialect != "duckdb":
        raise ValueError("a query keyed by hash(unit) is DuckDB's")
    bits = 64 if plan.key_bits is None else plan.key_bits

    def key(column: str) -> str:
        return unit_key(column, bits) if hashed else column

    part = ""
    if plan.partition is not None:
        if dialect != "duckdb" or any(m.winsorize is not None for m in plan.metrics):
            # A percentile cap is over every unit; other engines hash differently.
            raise ValueError("a partitioned query is DuckDB's, for metrics without winsorize")
        index, parts = plan.partition
        part = f"% {int(parts)} = {int(index)}"
        where.append(f"hash(unit) {part}")
    dim_select = "".join(f",\n    MIN({ident(d)}) AS {dim_cols[d]}" for d in dims)
    # status: 0 enrolled, 1 exposed to more than one arm, 2 consent refused, 3 not in the
    # interaction's other experiment, 4 (hashed) a key two units shared (its exposures
    # carry two fingerprints); NULL without an arm (counted nowhere). A unit is in one arm
    # when its least and greatest arm agree: the same test as COUNT(DISTINCT arm) = 1
    # without a second grouping (by unit and arm).
    check = UNIT_CHECK.format("unit")
    exposed = (
        "exposed AS (\n"
        f"  SELECT {key('unit')} AS unit, MIN(ts) AS first_ts, MIN(arm) AS arm,\n"
        + (f"    MIN({check}) AS check_lo, MAX({check}) AS check_hi,\n" if hashed else "")
        + "    CASE "
        + (f"WHEN MIN({check}) < MAX({check}) THEN 4\n      " if hashed else "")
        + "WHEN MIN(arm) < MAX(arm) THEN 1\n"
        "      WHEN MIN(arm) = MAX(arm) THEN MAX(CASE WHEN consent = FALSE THEN 2 ELSE 0 END)\n"
        "    END AS status"
        + dim_select
        + "\n  FROM exposures\n  WHERE "
        + "\n    AND ".join(where)
        + f"\n  GROUP BY {key('unit')}\n)"
    )
    ctes = [exposed]
    units = "exposed"
    slice_col = dim_cols[plan.by] if plan.by else None
    carried = ["arm", "status", "first_ts", *dim_cols.values()]
    if plan.interaction is not None:
        # Each cell is (arm of A, arm of B); units of A alone are status 3.
        other_where = [f"experiment = {lit(plan.interaction)}", *where[1:]]
        paired_dims = "".join(f", x.{c}" for c in dim_cols.values())
        if not hashed:
            ctes.append(
                "other AS (\n  SELECT unit, MIN(arm) AS arm\n  FROM exposures\n  WHERE "
                + "\n    AND ".join(other_where)
                + "\n  GROUP BY unit\n  HAVING MIN(arm) = MAX(arm)\n)"
            )
            ctes.append(
                "paired AS (\n"
                "  SELECT x.unit, x.arm, x.first_ts,\n"
                "    CASE WHEN x.status = 0 AND o.unit IS NULL THEN 3 ELSE x.status END AS status"
                f"{paired_dims}, o.arm AS ix\n"
                "  FROM exposed x\n  LEFT JOIN other o ON o.unit = x.unit\n)"
            )
        else:
            # The other experiment's key may hold this unit and another one (status 4) or
            # only another one (its fingerprints leave this unit's out: not in it).
            ctes.append(
                f"other AS (\n  SELECT {key('unit')} AS unit, MIN(arm) AS arm,"
                f" MIN(arm) < MAX(arm) AS two_arms,\n"
                f"    MIN({check}) AS check_lo, MAX({check}) AS check_hi\n  FROM exposures\n  WHERE "
                + "\n    AND ".join(other_where)
                + f"\n  GROUP BY {key('unit')}\n)"
            )
            ctes.append(
                "paired AS (\n"
                "  SELECT x.unit, x.arm, x.first_ts, x.check_lo,\n"
                "    CASE WHEN x.status = 0 AND o.check_lo < o.check_hi THEN 4\n"
                "      WHEN x.status = 0 AND (o.unit IS NULL OR o.two_arms) THEN 3\n"
                "      ELSE x.status END AS status"
                f"{paired_dims}, o.arm AS ix\n"
                "  FROM exposed x\n  LEFT JOIN other o\n"
                "    ON o.unit = x.unit AND x.check_lo BETWEEN o.check_lo AND o.check_hi\n)"
            )
        units, slice_col = "paired", "ix"
        carried.append("ix")

    keys = ["e.unit"]
    source = f"{units} e"
    if plan.looks:
        looks = _table(
            [(str(i), _number(cut)) for i, cut in enumerate(plan.looks)], ("look", "cut"), dialect
        )
        source = (
            f"{units} e\n  JOIN {looks} ON e.first_ts <= t.cut"
            if dialect != "bigquery"
            else (f"{units} e\n  JOIN {looks} AS t ON e.first_ts <= t.cut")
        )
        keys.append("t.look")
    events = sorted({name for m in plan.metrics for name in m.events})
    join = (
        [f"{key('m.unit')} = e.unit", f"{UNIT_CHECK.format('m.unit')} = e.check_lo"]
        if hashed
        else ["m.unit = e.unit"]
    )
    if part:
        join.append(f"hash(m.unit) {part}")  # the other parts' events, dropped before the join
    if dialect != "duckdb":
        join.append("m.metric IN (" + ", ".join(lit(n) for n in events) + ")")
    # Not in DuckDB: it guesses an IN list keeps a few percent of the events and builds
    # its hash table on them instead of on the units (10M events overran its 700MB);
    # each column's CASE below leaves other metrics out all the same.
    if plan.window is not None and plan.cuped:
        join.append(f"m.ts >= e.first_ts - {_number(plan.window)}")
    if not plan.cuped:
        join.append("m.ts >= e.first_ts")
    if plan.window is not None:
        join.append(f"m.ts < e.first_ts + {_number(plan.window)}")
    if plan.looks:
        join.append("m.ts <= t.cut")
    post = "m.ts >= e.first_ts"
    columns: list[str] = [f"{any_value}(e.{c}) AS {c}" for c in carried]
    if slice_col:
        columns.append(f"{any_value}(e.{slice_col}) AS slice")
    if plan.looks:
        columns.append("t.look")
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
    ctes.append(
        "per_unit AS (\n"
        "  SELECT e.unit,\n    "
        + ",\n    ".join(columns)
        + f"\n  FROM {source}\n  LEFT JOIN metric_events m\n    ON "
        + "\n    AND ".join(join)
        + "\n  GROUP BY "
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
    group_cols = [
        "arm",
        "status",
        *(["slice"] if slice_col else []),
        *(["look"] if plan.looks else []),
    ]
    capped = [m for m in plan.metrics if m.winsorize is not None and m.kind == "mean"]
    value_expr = dict(value_of)
    if capped:
        cap_cols = ", ".join(
            f"{_quantile(value_of[m.name], m.winsorize or 100, dialect)} AS c{plan.metrics.index(m)}"
            for m in capped
        )
        look_group = "\n  GROUP BY look" if plan.looks else ""
        look_select = "look, " if plan.looks else ""
        ctes.append(
            f"caps AS (\n  SELECT {look_select}{cap_cols}\n  FROM per_unit\n  WHERE status = 0{look_group}\n)"
        )
        for m in capped:
            c = f"caps.c{plan.metrics.index(m)}"
            value_expr[m.name] = f"LEAST({value_of[m.name]}, {c})"
    aggregates: list[str] = [
        "COUNT(*) AS n",
        "MIN(per_unit.first_ts) AS first_ts",
        "MAX(per_unit.first_ts) AS last_ts",
    ]
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
    selected = [f"{q} AS {c}" for q, c in zip(qualified, group_cols, strict=True)]
    group_by = ", ".join(qualified)
    if dims:
        # Balance counts per dimension in the same grouping: one grouping set each, told
        # apart from the whole by GROUPING() (a dimension's value may itself be NULL).
        dim_sets = [[*qualified, f"per_unit.{c}"] for c in dim_cols.values()]
        group_by = (
            "GROUPING SETS ("
            + ", ".join("(" + ", ".join(s) + ")" for s in [qualified, *dim_sets])
            + ")"
        )
        selected += [f"per_unit.{c} AS {c}" for c in dim_cols.values()]
        selected += [f"GROUPING(per_unit.{c}) AS g{c}" for c in dim_cols.values()]
    ctes.append(
        "stats AS (\n  SELECT "
        + ", ".join(selected)
        + ",\n    "
        + ",\n    ".join(aggregates)
        + f"\n  FROM per_unit{caps_join}\n  GROUP BY {group_by}\n)"
    )

    # The output, one read of ``stats``: each of its rows (a group) joined with the kinds
    # of output row it makes. Excluded counts, the exposure span and balance counts may
    # come in several rows (one per arm, slice): readers add them up.
    outputs: list[tuple[str, str, str]] = [
        (str(i), lit("metric"), lit(m.name)) for i, m in enumerate(plan.metrics)
    ]
    outputs += [(str(j), lit("dimension"), lit(d)) for j, d in enumerate(dims)]
    outputs += [
        ("1", lit("excluded"), lit("multiple_arms")),
        ("2", lit("excluded"), lit("consent_refused")),
        ("0", lit("span"), lit("first_exposure")),
    ]
    if hashed:
        outputs.append(("4", lit("excluded"), lit("unit_hash_collisions")))
    whole = [f"s.g{c} = 1" for c in dim_cols.values()]  # not a balance grouping set
    # The last look is everything: units are counted once, there.
    latest = [f"s.look = {len(plan.looks) - 1}"] if plan.looks else []

    def both(*terms: str) -> str:
        return "(" + " AND ".join(terms) + ")"

    conditions = [
        both(f"k.kind = {lit('metric')}", "s.status = 0", *whole),
        both(f"k.kind IN ({lit('excluded')}, {lit('span')})", "s.status = k.i", *whole, *latest),
    ]
    if dims:
        in_set = (
            "CASE k.i "
            + " ".join(f"WHEN {j} THEN s.g{c}" for j, c in enumerate(dim_cols.values()))
            + " END"
        )
        conditions.append(
            both(f"k.kind = {lit('dimension')}", "s.status = 0", f"{in_set} = 0", *latest)
        )

    def metric_pick(col: str) -> str | None:
        whens = []
        for i, m in enumerate(plan.metrics):
            cols = {"sum": f"s{i}", "sum_sq": f"q{i}"}
            if m.kind == "ratio":
                cols |= {"den_sum": f"ds{i}", "den_sum_sq": f"dq{i}", "num_den_sum": f"x{i}"}
            elif plan.cuped:
                cols |= {"pre_sum": f"ps{i}", "pre_sum_sq": f"pq{i}", "post_pre_sum": f"px{i}"}
            if m.winsorize is not None and m.kind == "mean":
                cols["cap"] = f"c{i}"
            if col in cols:
                whens.append(f"WHEN {i} THEN s.{cols[col]}")
        return "CASE k.i " + " ".join(whens) + " END" if whens else None

    def by_kind(
        metric: str | None, dimension: str | None = None, span: str | None = None
    ) -> str | None:
        whens = [
            f"WHEN {lit(kind)} THEN {expr}"
            for kind, expr in (("metric", metric), ("dimension", dimension), ("span", span))
            if expr is not None
        ]
        return "CASE k.kind " + " ".join(whens) + " END" if whens else None

    dim_value = (
        "CASE k.i "
        + " ".join(f"WHEN {j} THEN s.{c}" for j, c in enumerate(dim_cols.values()))
        + " END"
        if dims
        else None
    )
    values: dict[str, str | None] = {
        "kind": "k.kind",
        "arm": by_kind("s.arm", "s.arm"),
        "slice": by_kind("s.slice" if slice_col else None, dim_value),
        "look": by_kind("s.look") if plan.looks else None,
        "metric": "k.metric",
        "n": "s.n",
        "sum": by_kind(metric_pick("sum"), span="s.first_ts"),
        "sum_sq": by_kind(metric_pick("sum_sq"), span="s.last_ts"),
    }
    for col in OUTPUT_COLUMNS[8:]:
        values[col] = by_kind(metric_pick(col))
    out = []
    for col in OUTPUT_COLUMNS:
        expr = values.get(col)
        cast = text if col in _TEXT_COLUMNS else double
        out.append(f"CAST({expr if expr is not None else 'NULL'} AS {cast}) AS {col}")
    table = _table(outputs, ("i", "kind", "metric"), dialect)
    if dialect == "bigquery":
        output_from = f"FROM stats s CROSS JOIN {table} AS k"
    else:
        output_from = f"FROM stats s CROSS JOIN {table.replace(') AS t(', ') AS k(')}"
    query = (
        "WITH "
        + ",\n".join(ctes)
        + "\nSELECT "
        + ",\n  ".join(out)
        + f"\n{output_from}\nWHERE "
        + "\n  OR ".join(conditions)
    )
    if plan.consent_counts:
        query += "\nUNION ALL\n" + _consent_rows(plan, dialect)
    return query


def _consent_rows(plan: QueryPlan, dialect: Dialect) -> str:
    """The one ``excluded`` row of units never enrolled for lacking consent: the sum of
    the runtime's counts (an empty relation sums to 0, a row all the same)."""
    double, text = _double(dialect), _text(dialect)
    where = [f"experiment = {quote_literal(plan.experiment, dialect)}"]
    if plan.environment is not None:
        env = quote_literal(plan.environment, dialect)
        where.append(f"(environment IS NULL OR environment = {env})")
    values = {
        "kind": quote_literal("excluded", dialect),
        "metric": quote_literal("consent_not_given", dialect),
        "n": "COALESCE(SUM(units), 0)",
    }
    columns = [
        f"CAST({values.get(col, 'NULL')} AS {text if col in _TEXT_COLUMNS else double}) AS {col}"
        for col in OUTPUT_COLUMNS
    ]
    return (
        "SELECT " + ",\n  ".join(columns) + "\nFROM consent_counts\nWHERE " + "\n  AND ".join(where)
    )
