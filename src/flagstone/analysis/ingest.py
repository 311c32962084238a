"""Raw data or a warehouse's GROUP BY → the sufficient statistics ``flagstone.stats`` reads.

``aggregate`` runs ``sql.aggregation_sql`` in an embedded DuckDB over the input files
(out of core, all cores) and ``read_stats_file`` reads the same rows from a JSON or CSV
file a warehouse produced with the printed query; both end in ``rows_to_aggregates``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flagstone.analysis.sources import (
    InputError,
    Source,
    consent_view,
    exposures_view,
    metrics_view,
)
from flagstone.analysis.sql import (
    OUTPUT_COLUMNS,
    MetricQuery,
    QueryPlan,
    aggregation_sql,
    quote_literal,
)

if TYPE_CHECKING:
    from flagstone.stats.summaries import Mean, Proportion, Summary

# flagstone.stats (numpy, scipy) is imported where the rows become summaries, not here:
# ``run.gather`` imports it on another thread while DuckDB runs the query.
Data = dict[str, dict[str, "Summary"]]


@dataclass
class Aggregates:
    """Everything the analysis needs, per arm: summaries, units, balance, exclusions."""

    data: Data = field(default_factory=dict)  # the latest (or only) look, everyone
    looks: list[tuple[float, Data]] = field(default_factory=list)  # earlier cuts, oldest first
    slices: dict[str, Data] = field(default_factory=dict)  # --by / --interaction cells
    units: dict[str, int] = field(default_factory=dict)
    slice_units: dict[str, dict[str, int]] = field(default_factory=dict)
    dimensions: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    caps: dict[str, float] = field(default_factory=dict)
    multiple_arms: int = 0
    consent_refused: int = 0  # units whose exposure rows say consent: false
    consent_not_given: int | None = (
        None  # the runtime's counts of units it left out; None: no source
    )
    first_exposure: float | None = None
    last_exposure: float | None = None
    # Runs of the string-keyed query because two units shared a hash key (``aggregate``).
    exact_reruns: int = 0


@dataclass(frozen=True, slots=True)
class Statements:
    """What runs, in order: the views (exposures, metric events and, for an experiment
    with ``consent: required``, the consent counts), then the query (``--print-sql``
    prints them)."""

    views: tuple[str, ...]
    query: str
    plan: QueryPlan  # the query's (consent counts off when the exposures cannot hold them)

    def script(self) -> str:
        return "".join(f"{v};\n\n" for v in self.views) + self.query + ";\n"


DEFAULT_MEMORY_LIMIT = "700MB"  # DuckDB's share: the whole command stays under 1 GB
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT])(i?)B", re.IGNORECASE)


def memory_limit_setting(memory_limit: str | None = None) -> str:
    limit = (
        memory_limit or os.environ.get("FLAGSTONE_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT
    ).strip()
    if not _SIZE.fullmatch(limit):
        raise InputError(f"FLAGSTONE_MEMORY_LIMIT {limit!r}: write a size such as 700MB or 4GB")
    return limit


def _bytes(limit: str) -> float:
    match = _SIZE.fullmatch(limit)
    assert match is not None
    base = 1024.0 if match.group(3) else 1000.0
    return float(match.group(1)) * base ** ("KMGT".index(match.group(2).upper()) + 1)


@contextlib.contextmanager
def connect(memory_limit: str | None = None) -> Iterator[Any]:
    """An in-memory DuckDB that spills to a private temp folder (never into the user's
    working directory, DuckDB's default) and is removed with it."""
    import duckdb

    spill = tempfile.mkdtemp(prefix="flagstone-duckdb-")
    con = duckdb.connect(":memory:")
    try:
        # A progress bar on a terminal would corrupt the command's output.
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET temp_directory = '{spill}'")
        con.execute(f"SET memory_limit = '{memory_limit_setting(memory_limit)}'")
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def statements(con: Any, plan: QueryPlan, exposures: Source, metrics: Source) -> Statements:
    experiments = [plan.experiment, *([plan.interaction] if plan.interaction else [])]
    dims = list(dict.fromkeys([*plan.dimensions, *([plan.by] if plan.by else [])]))
    views = [exposures_view(con, exposures, experiments, dims), metrics_view(con, metrics)]
    if plan.consent_counts:
        consent = consent_view(con, exposures)
        if consent is None:  # exposures that cannot hold the counts: none reported, not 0
            plan = dataclasses.replace(plan, consent_counts=False)
        else:
            views.append(consent)
    return Statements(tuple(views), aggregation_sql(plan, "duckdb"), plan)


# DuckDB's grouping by unit (after the join) holds about this much per unit, and per
# event column summed (measured, Parquet, 4 metrics, DuckDB 2.0: 2.1 GB for 5M units keyed
# by the unit string; keyed by hash(unit), 1.67M units in a part peaked at 634 MB RSS
# under a 700MB limit without spilling, 2.5M spilled). A part may use this share of it.
BYTES_PER_UNIT = 300
BYTES_PER_HASHED_UNIT = 200
BYTES_PER_EVENT_COLUMN = 30
PART_SHARE_OF_LIMIT = 0.85
MAX_PARTS = 8


def parts_needed(
    con: Any, plan: QueryPlan, exposures: Source, metrics: Source, memory_limit: str
) -> int:
    """How many parts (by ``hash(unit)``) the query needs so that each part's grouping by
    unit fits in DuckDB's memory limit instead of spilling to disk, which costs more than
    the extra reads: only for Parquet inputs (a read of JSON or CSV costs more than a spill)
    and metrics without winsorize (a cap is the percentile over every unit). 1: no parts."""
    if exposures.format != "parquet" or metrics.format != "parquet":
        return 1
    if any(m.winsorize is not None for m in plan.metrics):
        return 1
    columns = len({name for m in plan.metrics for name in m.events}) * (2 if plan.cuped else 1)
    base = BYTES_PER_UNIT if plan.key_bits is None else BYTES_PER_HASHED_UNIT
    per_unit = (base + BYTES_PER_EVENT_COLUMN * columns) * max(1, len(plan.looks))
    budget = PART_SHARE_OF_LIMIT * _bytes(memory_limit)
    files = "[" + ", ".join(quote_literal(f, "duckdb") for f in exposures.files) + "]"
    rows = con.execute(f"SELECT SUM(num_rows) FROM parquet_file_metadata({files})").fetchone()[0]
    if not rows or rows * per_unit <= budget:  # rows: at least the units, often more
        return 1
    units = int(
        con.execute(
            "SELECT approx_count_distinct(unit) FROM exposures WHERE experiment = "
            + quote_literal(plan.experiment, "duckdb")
        ).fetchone()[0]
    )
    return max(1, min(MAX_PARTS, math.ceil(units * per_unit / budget)))


def merge_parts(parts: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The rows of one query from the rows of its parts: each part holds other units, so
    counts and sums add up; the exposure span is the earliest and the latest."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rows in parts:
        for row in rows:
            key = tuple(row.get(c) for c in OUTPUT_COLUMNS[:5])
            into = merged.get(key)
            if into is None:
                merged[key] = dict(row)
                continue
            for col in OUTPUT_COLUMNS[5:]:
                a, b = into.get(col), row.get(col)
                if a is None or b is None:
                    into[col] = a if b is None else b
                elif row.get("kind") == "span" and col in ("sum", "sum_sq"):
                    into[col] = min(a, b) if col == "sum" else max(a, b)
                else:
                    into[col] = a + b
    return list(merged.values())


def aggregate(
    plan: QueryPlan,
    exposures: Source,
    metrics: Source,
    memory_limit: str | None = None,
    *,
    parts: int | None = None,
    unit_keys: Literal["hash", "text"] = "hash",
) -> tuple[Aggregates, Statements]:
    """The sufficient statistics of ``plan`` over the files, and the statements that made
    them. With ``plan.consent_counts`` the query also sums the runtime's
    ``consent_not_given`` records: one more read of the exposures, so only for
    experiments that can have them. ``parts``: run the query once per part of the units
    (default: ``parts_needed``); the numbers are the same. ``unit_keys``: the query keys
    units by hash(unit) (``plan.key_bits`` bits, default 64), smaller and faster to group
    and join than the strings, and runs again keyed by the strings if two units shared a
    key; ``text``: by the strings at once. The numbers are the same."""
    import duckdb

    limit = memory_limit_setting(memory_limit)
    with connect(limit) as con:
        stmts = statements(con, plan, exposures, metrics)

        def fetch(query: str) -> list[dict[str, Any]]:
            cursor = con.execute(query)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

        def run(query_plan: QueryPlan) -> list[dict[str, Any]]:
            count = parts
            if count is None:
                count = parts_needed(con, query_plan, exposures, metrics, limit)
            if count <= 1:
                return fetch(aggregation_sql(query_plan))
            return merge_parts(
                [
                    fetch(
                        aggregation_sql(
                            dataclasses.replace(
                                query_plan,
                                partition=(i, count),
                                # the counts carry no unit: the first part has them all
                                consent_counts=query_plan.consent_counts and i == 0,
                            )
                        )
                    )
                    for i in range(count)
                ]
            )

        reruns = 0
        try:
            for view in stmts.views:
                con.execute(view)
            if unit_keys == "text":
                rows = run(dataclasses.replace(stmts.plan, key_bits=None))
            else:
                bits = 64 if stmts.plan.key_bits is None else stmts.plan.key_bits
                rows = run(dataclasses.replace(stmts.plan, key_bits=bits))
                if _shared_keys(rows):
                    rows = run(dataclasses.replace(stmts.plan, key_bits=None))
                    reruns = 1
        except duckdb.Error as e:
            raise InputError(_duckdb_message(e, exposures, metrics)) from None
    agg = rows_to_aggregates(rows, plan.metrics, plan.looks, cuped=plan.cuped)
    agg.exact_reruns = reruns
    return agg, stmts


def _shared_keys(rows: Iterable[Mapping[str, Any]]) -> int:
    """Keys that two units shared in a hash-keyed query's rows."""
    return sum(
        round(_num(r.get("n")))
        for r in rows
        if r.get("kind") == "excluded" and r.get("metric") == "unit_hash_collisions"
    )


def _duckdb_message(error: BaseException, *sources: Source) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    hint = ""
    if "Out of Memory" in text:
        hint = (
            f"; DuckDB ran out of its memory limit: raise it with FLAGSTONE_MEMORY_LIMIT "
            f"(default {DEFAULT_MEMORY_LIMIT}, e.g. FLAGSTONE_MEMORY_LIMIT=4GB)"
        )
    elif "Malformed JSON" in text or "JSON" in text:
        hint = "; every line must be one JSON object (the runtime's exposure records, or unit/metric/value/ts)"
    elif "Could not convert" in text or "Conversion Error" in text:
        hint = "; check that times are epoch seconds or timestamps and values are numbers"
    where = ", ".join(s.spec for s in sources)
    return f"reading {where}: {text}{hint}"


def _num(value: Any) -> float:
    if value is None or value == "":
        return 0.0
    number = float(value)
    return number if math.isfinite(number) else 0.0


def summary_of(metric: MetricQuery, row: Mapping[str, Any], cuped: bool) -> Summary:
    from flagstone.stats.summaries import Cuped, Mean, Proportion, Ratio

    n = round(_num(row.get("n")))
    total, total_sq = _num(row.get("sum")), _num(row.get("sum_sq"))
    if metric.kind == "ratio":
        return Ratio(
            n,
            total,
            total_sq,
            _num(row.get("den_sum")),
            _num(row.get("den_sum_sq")),
            _num(row.get("num_den_sum")),
        )
    post: Mean | Proportion
    post = Proportion(n, round(total)) if metric.kind == "proportion" else Mean(n, total, total_sq)
    has_pre = row.get("pre_sum") not in (None, "")
    if not (cuped and has_pre):
        return post
    pre_total, pre_sq = _num(row.get("pre_sum")), _num(row.get("pre_sum_sq"))
    pre: Mean | Proportion = (
        Proportion(n, round(pre_total))
        if metric.kind == "proportion"
        else Mean(n, pre_total, pre_sq)
    )
    return Cuped(post, pre, _num(row.get("post_pre_sum")))


def rows_to_aggregates(
    rows: Iterable[Mapping[str, Any]],
    metrics: Sequence[MetricQuery],
    looks: Sequence[float] = (),
    *,
    cuped: bool = False,
) -> Aggregates:
    from flagstone.stats.summaries import SummaryError

    by_name = {m.name: m for m in metrics}
    out = Aggregates()
    per_look: dict[int, Data] = {}
    last_look = len(looks) - 1
    for row in rows:
        kind = str(row.get("kind") or "metric")
        name = str(row.get("metric") or "")
        arm = row.get("arm")
        slice_value = row.get("slice")
        if kind == "excluded":
            count = round(_num(row.get("n")))
            if name == "multiple_arms":
                out.multiple_arms += count
            elif name == "consent_refused":
                out.consent_refused += count
            elif name == "consent_not_given":
                out.consent_not_given = (out.consent_not_given or 0) + count
            continue
        if kind == "span":  # one row per arm and slice: the earliest and the latest
            if _num(row.get("n")) > 0:
                first, last = _num(row.get("sum")), _num(row.get("sum_sq"))
                if out.first_exposure is None or first < out.first_exposure:
                    out.first_exposure = first
                if out.last_exposure is None or last > out.last_exposure:
                    out.last_exposure = last
            continue
        if kind == "dimension":  # one row per arm, value (and slice): added up
            value = "(none)" if slice_value in (None, "") else str(slice_value)
            counts = out.dimensions.setdefault(name, {}).setdefault(value, {})
            counts[str(arm)] = counts.get(str(arm), 0) + round(_num(row.get("n")))
            continue
        if kind != "metric" or name not in by_name or arm in (None, ""):
            continue
        try:
            summary = summary_of(by_name[name], row, cuped)
        except SummaryError as e:
            raise InputError(f"statistics for {name} / {arm}: {e}") from None
        arm = str(arm)
        look = row.get("look")
        look_index = round(_num(look)) if look not in (None, "") else last_look
        if look_index != last_look:
            per_look.setdefault(look_index, {}).setdefault(name, {})[arm] = summary
            continue
        if slice_value not in (None, ""):
            value = str(slice_value)
            _put(out.slices.setdefault(value, {}), name, arm, summary)
            units = out.slice_units.setdefault(value, {})
            units[arm] = max(units.get(arm, 0), summary.n)
        else:
            _put(out.data, name, arm, summary)
            out.units[arm] = max(out.units.get(arm, 0), summary.n)
        cap = row.get("cap")
        if cap not in (None, ""):
            out.caps[name] = _num(cap)
    if out.slices and not out.data:
        # Sliced rows only (--by): the whole is the sum of its slices.
        for data in out.slices.values():
            for name, arms in data.items():
                for arm, summary in arms.items():
                    _put(out.data, name, arm, summary, add=True)
        for units in out.slice_units.values():
            for arm, n in units.items():
                out.units[arm] = out.units.get(arm, 0) + n
    out.looks = [(looks[i], per_look[i]) for i in sorted(per_look) if 0 <= i < len(looks)]
    return out


def _put(data: Data, name: str, arm: str, summary: Summary, *, add: bool = False) -> None:
    arms = data.setdefault(name, {})
    if add and arm in arms:
        arms[arm] = arms[arm] + summary  # type: ignore[operator]
    else:
        arms[arm] = summary


def read_stats_file(path: Path) -> list[dict[str, Any]]:
    """Rows of sufficient statistics from a JSON (array, ``{"rows": [...]}`` or JSON lines)
    or CSV file with the query's columns (``kind`` defaults to ``metric``)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"--stats {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"--stats {path}: not a UTF-8 text file (JSON or CSV)") from None
    rows: list[dict[str, Any]]
    if path.suffix.lower() == ".csv":
        rows = [dict(r) for r in csv.DictReader(text.splitlines())]
        if rows and not {"arm", "metric", "n"} <= set(rows[0]):
            raise InputError(
                f"{path}:1:1: the header needs at least arm, metric, n (and sum, sum_sq, …); "
                f"it has {', '.join(rows[0])}"
            )
    else:
        rows = _json_rows(text, path)
    for i, row in enumerate(rows, start=1):
        unknown = set(row) - set(OUTPUT_COLUMNS)
        if unknown:
            raise InputError(
                f"{path}: row {i} has unknown column(s) {', '.join(sorted(unknown))}; "
                f"columns are {', '.join(OUTPUT_COLUMNS)}"
            )
        for col in OUTPUT_COLUMNS[5:]:
            value = row.get(col)
            if value in (None, ""):
                continue
            try:
                float(value)
            except (TypeError, ValueError):
                raise InputError(f"{path}: row {i}: {col} is {value!r}, not a number") from None
    return rows


def _json_rows(text: str, path: Path) -> list[dict[str, Any]]:
    stripped = text.strip()
    try:
        doc = json.loads(stripped) if stripped.startswith(("[", "{")) else None
    except json.JSONDecodeError as e:
        if stripped.startswith("{") and "\n" in stripped:
            doc = None  # JSON lines
        else:
            raise InputError(f"{path}:{e.lineno}:{e.colno}: {e.msg}") from None
    if isinstance(doc, dict):
        doc = doc.get("rows", [doc])
    if doc is None:
        doc = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                doc.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{number}:{e.colno}: {e.msg}") from None
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise InputError(f"{path}:1:1: expected a list of row objects (arm, metric, n, sum, …)")
    return doc
