"""`flagstone analyze` over 10 million exposure rows + 10 million metric rows.

Timed in the same run, each in a fresh process (start-up included), on the same files:
- `flagstone analyze … --format json`, the whole command (ingestion, statistics, output);
- the floor: the bare DuckDB aggregation a person would write by hand for the same
  join (first exposure per unit in one arm, events after it, per-unit sums, per-arm
  n/Σ/Σ²), with the one-arm test analyze uses (MIN(arm) = MAX(arm); COUNT(DISTINCT arm)
  = 1 would cost the floor a second grouping and flatter the ratio);
- the pandas code a data scientist would write for the same join and aggregation.
Peak memory is each process's maximum resident set (``wait4``). Inputs as Parquet and as
JSON lines (the runtime's format); written once into bench/.work by DuckDB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "analyze"
sys.path.insert(0, str(ROOT / "bench"))

from flagstone.analysis.ingest import DEFAULT_MEMORY_LIMIT  # noqa: E402

ARMS = ("control", "a", "b", "c")
EXPERIMENT = """
checkout-test:
  flag: checkout
  status: running
  weights: {control: 25, a: 25, b: 25, c: 25}
  metrics:
    primary: {name: converted, kind: proportion}
    secondary:
      - {name: revenue, kind: mean}
      - {name: pages, kind: mean}
    guardrails:
      - {name: errors, kind: proportion, worse: increase}
  analysis: {method: frequentist}
"""
FLAG = """
checkout:
  variants: {control: 0, a: 1, b: 2, c: 3}
  default: control
"""
METRICS = ("converted", "revenue", "pages", "errors")


def generate(rows: int) -> None:
    """Exposures: rows/2 units, each logged twice (as the runtime logs every assign call);
    metric events: ``rows`` events over the same units, a few before exposure."""
    import duckdb

    WORK.mkdir(parents=True, exist_ok=True)
    stamp = WORK / "data.rows"
    if stamp.exists() and stamp.read_text().strip() == str(rows):
        return
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    units = rows // 2
    exposures = f"""
        SELECT 'exposure' AS type, 'checkout-test' AS experiment,
               ['control', 'a', 'b', 'c'][1 + (hash(u) % 4)::INT] AS arm,
               printf('%032x', u) AS unit, 'checkout' AS flag, 'prod' AS environment,
               1.767e9 + u * 0.1 + r * 3600.0 AS ts
        FROM range({units}) t(u), range(2) s(r)
    """
    metrics = f"""
        SELECT printf('%032x', i % {units}) AS unit,
               ['converted', 'revenue', 'pages', 'errors'][1 + (i % 4)::INT] AS metric,
               CASE i % 4 WHEN 1 THEN (hash(i) % 10000) / 100.0 WHEN 2 THEN (hash(i) % 20)::DOUBLE
                    ELSE 1.0 END AS value,
               1.767e9 + (i % {units}) * 0.1 + (hash(i * 7) % 86400)::DOUBLE - 600 AS ts
        FROM range({rows}) t(i)
    """
    for name, query in (("exposures", exposures), ("metrics", metrics)):
        con.execute(f"COPY ({query}) TO '{WORK / (name + '.parquet')}' (FORMAT parquet)")
        con.execute(f"COPY ({query}) TO '{WORK / (name + '.jsonl')}' (FORMAT json)")
    stamp.write_text(f"{rows}\n")


def make_repo() -> Path:
    repo = WORK / "repo"
    if (repo / "flagstone.yaml").exists():
        return repo
    exe = Path(sys.executable).parent / "flagstone"
    subprocess.run([str(exe), "init", str(repo)], check=True, capture_output=True)
    with (repo / "environments" / "prod" / "flags.yaml").open("a") as f:
        f.write(textwrap.dedent(FLAG))
    (repo / "environments" / "prod" / "experiments.yaml").write_text(textwrap.dedent(EXPERIMENT))
    return repo


FLOOR = """
import duckdb, sys
ext, limit = sys.argv[1:]
read = (lambda f: f"read_parquet('{f}')") if ext == "parquet" else (
    lambda f: f"read_json('{f}', format = 'newline_delimited')")
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f"SET memory_limit = '{limit}'")  # the same budget analyze runs under
con.execute(f"SET temp_directory = '{WORK}/spill'")
rows = con.execute(f'''
WITH e AS (
  SELECT unit, MIN(ts) AS ts, MIN(arm) AS arm FROM {read(WORK + '/exposures.' + ext)}
  WHERE experiment = 'checkout-test' GROUP BY unit HAVING MIN(arm) = MAX(arm)),
u AS (
  SELECT e.arm, e.unit,
    COALESCE(SUM(CASE WHEN m.metric = 'converted' THEN m.value END), 0) AS c,
    COALESCE(SUM(CASE WHEN m.metric = 'revenue' THEN m.value END), 0) AS r,
    COALESCE(SUM(CASE WHEN m.metric = 'pages' THEN m.value END), 0) AS p,
    COALESCE(SUM(CASE WHEN m.metric = 'errors' THEN m.value END), 0) AS x
  FROM e LEFT JOIN {read(WORK + '/metrics.' + ext)} m ON m.unit = e.unit AND m.ts >= e.ts
  GROUP BY e.arm, e.unit)
SELECT arm, COUNT(*), SUM(CASE WHEN c > 0 THEN 1 ELSE 0 END), SUM(r), SUM(r * r), SUM(p), SUM(p * p),
       SUM(CASE WHEN x > 0 THEN 1 ELSE 0 END)
FROM u GROUP BY arm''').fetchall()
print(len(rows))
"""

PANDAS = """
import sys
import pandas as pd
ext, = sys.argv[1:]
if ext == "parquet":
    exp = pd.read_parquet(WORK + "/exposures.parquet", columns=["experiment", "unit", "arm", "ts"])
    met = pd.read_parquet(WORK + "/metrics.parquet")
else:
    exp = pd.read_json(WORK + "/exposures.jsonl", lines=True, dtype={"unit": str})
    met = pd.read_json(WORK + "/metrics.jsonl", lines=True, dtype={"unit": str})
exp = exp[exp.experiment == "checkout-test"]
first = exp.groupby("unit").agg(ts=("ts", "min"), arm=("arm", "min"), arms=("arm", "nunique"))
first = first[first.arms == 1].reset_index()
joined = first.merge(met, on="unit", how="left", suffixes=("", "_m"))
joined = joined[joined.ts_m.isna() | (joined.ts_m >= joined.ts)]
per_unit = joined.pivot_table(index=["unit", "arm"], columns="metric", values="value", aggfunc="sum", fill_value=0)
per_unit = per_unit.reindex(first.set_index(["unit", "arm"]).index, fill_value=0).reset_index()
out = per_unit.groupby("arm").agg(
    n=("unit", "size"), conv=("converted", lambda v: (v > 0).sum()), rev=("revenue", "sum"),
    rev2=("revenue", lambda v: (v * v).sum()), pages=("pages", "sum"),
    pages2=("pages", lambda v: (v * v).sum()), err=("errors", lambda v: (v > 0).sum()))
print(len(out))
"""


def timed(
    args: list[str], cwd: Path | None = None, ok: tuple[int, ...] = (0,)
) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MB, user + system CPU seconds) of one fresh process; a failed
    run stops the benchmark."""
    import tempfile

    with tempfile.TemporaryFile("w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code not in ok:
            stderr.seek(0)
            raise SystemExit(f"{' '.join(args[:3])[:80]} failed ({code}): {stderr.read()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def parts_of_analyze() -> int:
    """The parts analyze's hash-keyed query runs in over the Parquet files."""
    import dataclasses

    from flagstone.analysis.ingest import connect, parts_needed, statements
    from flagstone.analysis.sources import resolve
    from flagstone.analysis.sql import MetricQuery, QueryPlan

    kinds = {"converted": "proportion", "errors": "proportion"}
    plan = QueryPlan(
        "checkout-test",
        tuple(MetricQuery(m, kinds.get(m, "mean")) for m in METRICS),  # type: ignore[arg-type]
        environment="prod",
        key_bits=64,
    )
    sources = (
        resolve(str(WORK / "exposures.parquet"), "exposures"),
        resolve(str(WORK / "metrics.parquet"), "metrics"),
    )
    with connect() as con:
        for view in statements(con, dataclasses.replace(plan, key_bits=None), *sources).views:
            con.execute(view)
        return parts_needed(con, plan, *sources, DEFAULT_MEMORY_LIMIT)


def duckdb_version() -> str:
    import duckdb

    return str(duckdb.__version__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pandas", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    generate(args.rows)
    repo = make_repo()
    exe = str(Path(sys.executable).parent / "flagstone")
    python = sys.executable
    prelude = f"WORK = {str(WORK)!r}\n"
    results = {}
    loads = [os.getloadavg()[0]] if hasattr(os, "getloadavg") else []
    for ext in ("parquet", "jsonl"):
        command = [
            exe,
            "analyze",
            "checkout-test",
            "--env",
            "prod",
            "--exposures",
            str(WORK / f"exposures.{ext}"),
            "--metrics",
            str(WORK / f"metrics.{ext}"),
            "--format",
            "json",
        ]
        ours, floor = [], []
        for _ in range(args.repeats):  # interleaved: both see the same load on a shared machine
            # exit 1: findings (an SRM, a harmed guardrail), still a full run
            ours.append(timed(command, cwd=repo, ok=(0, 1)))
            floor.append(timed([python, "-c", prelude + FLOOR, ext, DEFAULT_MEMORY_LIMIT]))
            print(ext, "flagstone", ours[-1], "floor", floor[-1], flush=True)
        pandas = None if args.no_pandas else timed([python, "-c", prelude + PANDAS, ext])
        results[ext] = (min(ours), min(floor), pandas)
        print(ext, results[ext], flush=True)
    if hasattr(os, "getloadavg"):
        loads.append(os.getloadavg()[0])
    load = " to ".join(f"{x:.1f}" for x in loads) if loads else "unknown"
    today = dt.date.today().isoformat()
    lines = [
        "## Analyze",
        "",
        f"Command: `.venv/bin/python bench/analyze.py` (run by `make bench`). Measured {today} on "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, DuckDB {duckdb_version()}; best of {args.repeats} fresh "
        f"processes (start-up included, wall time; user + system CPU seconds of that run in brackets), each flagstone run followed by a floor run. Workload: {args.rows:,} exposure rows ({args.rows // 2:,} units "
        f"logged twice, 4 arms) + {args.rows:,} metric events (4 metrics), as Parquet and as JSON lines. "
        f"Floor: the bare DuckDB join and aggregation written by hand on the same files, under the same {DEFAULT_MEMORY_LIMIT} DuckDB memory limit, "
        "keeping units in one arm by MIN(arm) = MAX(arm) as analyze does (COUNT(DISTINCT arm) = 1 would cost DuckDB a second grouping by unit). pandas: the "
        "same join and aggregation in pandas (one run). "
        "analyze keys units by a 64-bit hash(unit), with a second fingerprint that makes it exact, and on Parquet runs its query once per hash part of the units, "
        f"{parts_of_analyze()} here, each within the memory limit, "
        "where the floor, one query keyed by the unit string, spills its grouping by unit (about 1.3 GB) to disk. "
        f"Load average {load} (start to end of the timed runs) on a shared machine.",
        "",
        "| input | `flagstone analyze` (CPU) | floor, bare DuckDB (CPU) | × floor (goal ≤ 1.3) | pandas | pandas ÷ flagstone (goal ≥ 5) | peak RSS flagstone / floor / pandas (goal < 1 GB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for ext, ((t, rss, cpu), (ft, frss, fcpu), pandas) in results.items():
        name = "Parquet" if ext == "parquet" else "JSON lines"
        pt = f"{pandas[0]:.1f} s" if pandas else "—"
        ratio = f"{pandas[0] / t:.1f}" if pandas else "—"
        prss = f"{pandas[1]:,.0f} MB" if pandas else "—"
        lines.append(
            f"| {name} | {t:.2f} s ({cpu:.1f} s) | {ft:.2f} s ({fcpu:.1f} s) | {t / ft:.2f} | {pt} | {ratio} | {rss:,.0f} MB / {frss:,.0f} MB / {prss} |"
        )
    missed = []
    for ext, ((t, rss, _), (ft, _, _), pandas) in results.items():
        name = "Parquet" if ext == "parquet" else "JSON lines"
        if t / ft > 1.3:
            missed.append(f"{name}: {t / ft:.2f}× the floor (goal ≤ 1.3)")
        if pandas and pandas[0] / t < 5:
            missed.append(f"{name}: pandas only {pandas[0] / t:.1f}× slower (goal ≥ 5)")
        if rss >= 1024:
            missed.append(f"{name}: peak RSS {rss:,.0f} MB (goal < 1 GB)")
    lines += [
        "",
        "Goals missed in this run: " + "; ".join(missed) + "."
        if missed
        else "Every goal met in this run.",
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        from runtime import write_section

        write_section(section)


if __name__ == "__main__":
    main()
