"""Input files as the two relations the aggregation query reads (``sql.py``).

``--exposures`` and ``--metrics`` take a file, a folder (every data file under it) or a
glob. JSON lines are read as the runtime writes them (``{"type": "exposure", ...}``;
other record types in the same file are skipped); CSV and Parquet need a unit, an arm
(exposures) or metric and value (metrics) and a time column, named as below. Times are
epoch seconds, or timestamps (converted). The views are plain SQL, printed by
``--print-sql`` with the query, so the printed text is exactly what runs.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from flagstone.analysis.sql import quote_ident, quote_literal
from flagstone.errors import FlagstoneError

if TYPE_CHECKING:
    import duckdb

FileFormat = Literal["json", "csv", "parquet"]
_SUFFIXES: dict[str, FileFormat] = {
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSED = (".gz", ".zst")

# Accepted column names, first match wins (CSV and Parquet inputs).
UNIT_COLUMNS = ("unit", "unit_id", "user_id")
ARM_COLUMNS = ("arm", "variant")
TIME_COLUMNS = ("ts", "time", "timestamp", "first_exposure", "exposed_at", "event_time")
METRIC_COLUMNS = ("metric", "name", "event")
VALUE_COLUMNS = ("value",)


class InputError(FlagstoneError):
    """Input data that cannot be read: missing files, columns or malformed records."""


@dataclass(frozen=True, slots=True)
class Source:
    spec: str  # what the user wrote
    files: tuple[str, ...]
    format: FileFormat


def file_format(path: str) -> FileFormat | None:
    name = path.lower()
    for suffix in _COMPRESSED:
        name = name.removesuffix(suffix)
    return _SUFFIXES.get(Path(name).suffix)


def resolve(spec: str, what: str) -> Source:
    """The files ``spec`` (file, folder or glob) names, and their one format."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and file_format(str(p)))
    elif path.is_file():
        files = [spec]
    else:
        files = sorted(p for p in glob.glob(spec, recursive=True) if Path(p).is_file())  # noqa: PTH207 (absolute patterns)
    if not files:
        raise InputError(
            f"--{what} {spec}: no such file, folder or matching files"
            + (" (a folder is read for .jsonl, .csv and .parquet files)" if path.is_dir() else "")
        )
    formats = {file_format(f) for f in files}
    if None in formats:
        unknown = next(f for f in files if file_format(f) is None)
        raise InputError(
            f"--{what}: {unknown} is not JSON lines (.jsonl), CSV (.csv) or Parquet (.parquet)"
        )
    if len(formats) > 1:
        raise InputError(
            f"--{what} {spec} mixes {', '.join(sorted(str(f) for f in formats))} files: "
            "point it at one format at a time"
        )
    fmt = formats.pop()
    assert fmt is not None
    return Source(spec, tuple(files), fmt)


def _file_list(files: Sequence[str]) -> str:
    return "[" + ", ".join(quote_literal(str(Path(f).resolve()), "duckdb") for f in files) + "]"


def _reader(source: Source, json_columns: str) -> str:
    files = _file_list(source.files)
    if source.format == "json":
        return f"read_json({files}, format = 'newline_delimited', columns = {json_columns})"
    if source.format == "csv":
        return f"read_csv({files}, header = true, union_by_name = true)"
    return f"read_parquet({files}, union_by_name = true)"


def _columns(con: duckdb.DuckDBPyConnection, reader: str, source: Source) -> dict[str, str]:
    import duckdb

    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
    except duckdb.Error as e:
        raise InputError(f"{source.spec}: {_first_line(e)}") from None
    return {str(r[0]).lower(): str(r[1]).upper() for r in rows}


def _pick(columns: dict[str, str], names: Sequence[str], source: Source, what: str) -> str:
    for name in names:
        if name in columns:
            return name
    raise InputError(
        f"{source.files[0]}: no {what} column; name it one of {', '.join(names)} "
        f"(it has {', '.join(columns) or 'none'})"
    )


def _epoch(column: str, kind: str) -> str:
    col = quote_ident(column, "duckdb")
    if kind.startswith("TIMESTAMP") or kind == "DATE":
        return f"epoch(CAST({col} AS TIMESTAMPTZ))"
    if kind in ("VARCHAR", "TEXT"):
        return f"COALESCE(TRY_CAST({col} AS DOUBLE), epoch(CAST({col} AS TIMESTAMPTZ)))"
    return f"CAST({col} AS DOUBLE)"


EXPOSURE_JSON_COLUMNS = (
    "{type: 'VARCHAR', experiment: 'VARCHAR', arm: 'VARCHAR', unit: 'VARCHAR', "
    "environment: 'VARCHAR', ts: 'DOUBLE', consent: 'BOOLEAN', dimensions: 'JSON'}"
)
METRIC_JSON_COLUMNS = "{unit: 'VARCHAR', metric: 'VARCHAR', value: 'DOUBLE', ts: 'DOUBLE'}"


def exposures_view(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    experiments: Sequence[str],
    dimensions: Sequence[str],
) -> str:
    """``CREATE TEMP VIEW exposures`` over ``source`` (one column per dimension)."""
    reader = _reader(source, EXPOSURE_JSON_COLUMNS)
    if source.format == "json":
        dims = "".join(
            f",\n  json_extract_string(dimensions, {quote_literal('$.' + _json_key(d), 'duckdb')}) AS {ident(d)}"
            for d in dimensions
        )
        return (
            "CREATE OR REPLACE TEMP VIEW exposures AS\nSELECT experiment, unit, arm, ts, environment, "
            f"consent{dims}\nFROM {reader}\nWHERE type = 'exposure' OR type IS NULL"
        )
    columns = _columns(con, reader, source)
    unit = _pick(columns, UNIT_COLUMNS, source, "unit")
    arm = _pick(columns, ARM_COLUMNS, source, "arm")
    ts = _pick(columns, TIME_COLUMNS, source, "first exposure time")
    experiment = (
        f"CAST({ident('experiment')} AS VARCHAR)"
        if "experiment" in columns
        else quote_literal(experiments[0], "duckdb")
    )
    environment = (
        f"CAST({ident('environment')} AS VARCHAR)"
        if "environment" in columns
        else "CAST(NULL AS VARCHAR)"
    )
    consent = (
        f"CAST({ident('consent')} AS BOOLEAN)" if "consent" in columns else "CAST(NULL AS BOOLEAN)"
    )
    dims = ""
    for d in dimensions:
        if d.lower() in columns:
            dims += f",\n  CAST({ident(d.lower())} AS VARCHAR) AS {ident(d)}"
        elif "dimensions" in columns:
            dims += f",\n  json_extract_string(CAST(dimensions AS JSON), {quote_literal('$.' + _json_key(d), 'duckdb')}) AS {ident(d)}"
        else:
            dims += f",\n  CAST(NULL AS VARCHAR) AS {ident(d)}"
    return (
        f"CREATE OR REPLACE TEMP VIEW exposures AS\nSELECT {experiment} AS experiment, "
        f"CAST({ident(unit)} AS VARCHAR) AS unit, CAST({ident(arm)} AS VARCHAR) AS arm, "
        f"{_epoch(ts, columns[ts])} AS ts, {environment} AS environment, {consent} AS consent{dims}\n"
        f"FROM {reader}"
    )


COUNT_JSON_COLUMNS = (
    "{type: 'VARCHAR', experiment: 'VARCHAR', environment: 'VARCHAR', units: 'BIGINT'}"
)


def consent_view(con: duckdb.DuckDBPyConnection, source: Source) -> str | None:
    """``CREATE TEMP VIEW consent_counts`` over the runtime's ``consent_not_given`` count
    records (units left out for lacking consent; they carry no unit) in the exposures
    ``source``. None when the source cannot hold them (CSV or Parquet without ``type``,
    ``experiment`` and ``units`` columns)."""
    reader = _reader(source, COUNT_JSON_COLUMNS)
    environment = "environment"
    if source.format != "json":
        columns = _columns(con, reader, source)
        if not {"type", "experiment", "units"} <= columns.keys():
            return None
        if "environment" not in columns:
            environment = "NULL"
    return (
        "CREATE OR REPLACE TEMP VIEW consent_counts AS\nSELECT CAST(experiment AS VARCHAR) AS experiment, "
        f"CAST({environment} AS VARCHAR) AS environment, CAST(units AS BIGINT) AS units\n"
        f"FROM {reader}\nWHERE CAST(type AS VARCHAR) = 'consent_not_given'"
    )


def metrics_view(con: duckdb.DuckDBPyConnection, source: Source) -> str:
    """``CREATE TEMP VIEW metric_events`` over ``source``."""
    reader = _reader(source, METRIC_JSON_COLUMNS)
    if source.format == "json":
        return f"CREATE OR REPLACE TEMP VIEW metric_events AS\nSELECT unit, metric, value, ts\nFROM {reader}"
    columns = _columns(con, reader, source)
    unit = _pick(columns, UNIT_COLUMNS, source, "unit")
    metric = _pick(columns, METRIC_COLUMNS, source, "metric name")
    value = _pick(columns, VALUE_COLUMNS, source, "value")
    ts = _pick(columns, TIME_COLUMNS, source, "time")
    return (
        f"CREATE OR REPLACE TEMP VIEW metric_events AS\nSELECT CAST({ident(unit)} AS VARCHAR) AS unit, "
        f"CAST({ident(metric)} AS VARCHAR) AS metric, CAST({ident(value)} AS DOUBLE) AS value, "
        f"{_epoch(ts, columns[ts])} AS ts\nFROM {reader}"
    )


def ident(name: str) -> str:
    return quote_ident(name, "duckdb")


def _json_key(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
