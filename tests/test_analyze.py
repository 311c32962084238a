"""`flagstone analyze` over real files: ingestion rules, the printed SQL, formats, errors."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import duckdb
import pytest

from flagstone.analysis.ingest import rows_to_aggregates
from flagstone.analysis.sql import DIALECTS, MetricQuery, QueryPlan, aggregation_sql
from flagstone.stats import cap_at_percentile
from tests.analyze_data import START, make_repo, simulate, write_jsonl
from tests.cli_schemas import check_output

AT = "2026-02-01T00:00:00Z"
METRIC_COLUMNS = "{unit: 'VARCHAR', metric: 'VARCHAR', value: 'DOUBLE', ts: 'DOUBLE'}"


# Session-wide: slow tests run first (conftest.py), so this module's tests do not run together.
@pytest.fixture(scope="session")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A repository and 6,000 simulated users: short converts 10% → 13%."""
    base = tmp_path_factory.mktemp("planted")
    repo = make_repo(base / "repo")
    exposures, events = simulate(6000, rates={"classic": 0.10, "short": 0.13})
    return (
        repo,
        write_jsonl(base / "data" / "exposures.jsonl", exposures),
        write_jsonl(base / "data" / "metrics.jsonl", events),
    )


def analyze_json(cli, repo: Path, *args: str) -> dict:
    result = cli(
        ["analyze", "onboarding-length", "--env", "prod", "--at", AT, *args, "-f", "json"], cwd=repo
    )
    assert result.exit_code in (0, 1), result.stdout + result.stderr
    return check_output("analyze", result.stdout)


@pytest.mark.slow
def test_analyze__planted_effect__is_found_with_a_clean_srm(cli, planted) -> None:
    repo, exposures, metrics = planted
    doc = analyze_json(cli, repo, "--exposures", str(exposures), "--metrics", str(metrics))
    assert doc["ok"] and doc["trustworthy"]
    primary = doc["result"]["metrics"][0]
    assert primary["name"] == "converted"
    (comparison,) = primary["comparisons"]
    assert comparison["verdict"] == "better"
    assert comparison["p_adjusted"] < 0.01
    assert 0.01 < comparison["estimate"]["value"] < 0.05
    assert doc["result"]["srm"]["p_value"] > 0.001
    assert sum(doc["units"].values()) == 6000  # repeat exposures count once
    assert doc["excluded"] == {"multiple_arms": 0, "consent_refused": 0, "consent_not_given": None}
    balance = doc["result"]["balance"][0]
    assert balance["dimension"] == "country" and set(balance["counts"]) == {"DE", "FR", "US"}


@pytest.mark.slow
def test_analyze__text_and_markdown__show_each_metric_and_its_verdict(cli, planted) -> None:
    repo, exposures, metrics = planted
    args = ["analyze", "onboarding-length", "-e", "prod", "--at", AT]
    args += ["--exposures", str(exposures), "--metrics", str(metrics)]
    text = cli(args, cwd=repo)
    assert text.exit_code == 0, text.stderr
    for word in ("converted", "revenue", "crashed", "better", "not-harmed", "━"):
        assert word in text.stdout
    md = cli([*args, "--format", "markdown"], cwd=repo)
    assert md.exit_code == 0
    assert "#### converted (proportion, primary)" in md.stdout
    assert "| short |" in md.stdout


def _run_script(script: str) -> list[dict]:
    """The printed text as it is, in a fresh DuckDB (which runs every statement, in order)."""
    cursor = duckdb.connect().execute(script)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_analyze__printed_sql_run_by_duckdb__agrees_with_the_built_in_path(
    cli, planted, tmp_path
) -> None:
    repo, exposures, metrics = planted
    data = ["--exposures", str(exposures), "--metrics", str(metrics)]
    printed = cli(
        ["analyze", "onboarding-length", "-e", "prod", "--at", AT, "--print-sql", *data], cwd=repo
    )
    assert printed.exit_code == 0, printed.stderr
    assert "read_json(" in printed.stdout and "WITH exposed AS (" in printed.stdout
    rows = _run_script(printed.stdout)
    stats_file = tmp_path / "stats.csv"
    with stats_file.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    built_in = analyze_json(cli, repo, *data)
    from_sql = analyze_json(cli, repo, "--stats", str(stats_file))
    assert_close(from_sql["result"], built_in["result"])
    assert_close(from_sql["statistics"], built_in["statistics"])


def _relations(
    con: duckdb.DuckDBPyConnection, folder: Path, exposures: list[dict], events: list[dict]
) -> None:
    """The two relations the query reads, as a warehouse would have them (plain tables)."""
    rows = [
        {
            **{k: e.get(k) for k in ("experiment", "unit", "arm", "ts", "environment", "consent")},
            "country": e["dimensions"]["country"],
        }
        for e in exposures
    ]
    for name, records, columns in (
        (
            "exposures",
            rows,
            "{experiment: 'VARCHAR', unit: 'VARCHAR', arm: 'VARCHAR', ts: 'DOUBLE', "
            "environment: 'VARCHAR', consent: 'BOOLEAN', country: 'VARCHAR'}",
        ),
        (
            "metric_events",
            events,
            "{unit: 'VARCHAR', metric: 'VARCHAR', value: 'DOUBLE', ts: 'DOUBLE'}",
        ),
    ):
        file = write_jsonl(folder / f"{name}.jsonl", records)
        con.execute(
            f"CREATE TABLE {name} AS SELECT * FROM read_json('{file}', format = 'newline_delimited', "
            f"columns = {columns})"
        )


def assert_close(a: object, b: object, where: str = "") -> None:
    """Equal, floats to 1e-9: DuckDB sums doubles on several threads, in no fixed order."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), where
    else:
        assert a == b, where


PLAN = QueryPlan(
    "onboarding-length",
    (
        MetricQuery("converted", "proportion"),
        MetricQuery("revenue", "mean", winsorize=99),
        MetricQuery("rps", "ratio", numerator="revenue", denominator="converted"),
    ),
    environment="prod",
    window=3600.0,
    cuped=True,
    dimensions=("country",),
)


def test_sql__postgres_dialect__gives_the_same_rows_as_duckdb(tmp_path) -> None:
    exposures, events = simulate(1000, seed=3)
    con = duckdb.connect()
    _relations(con, tmp_path, exposures, events)

    def rows(dialect: str) -> list[tuple]:
        return sorted(
            con.execute(aggregation_sql(PLAN, dialect)).fetchall(),  # type: ignore[arg-type]
            key=lambda r: tuple(str(x) for x in r),
        )

    duck, postgres = rows("duckdb"), rows("postgres")
    assert len(duck) == len(postgres) > 6
    for a, b in zip(duck, postgres, strict=True):
        assert a[:5] == b[:5]
        nan = float("nan")
        numbers = [[nan if x is None else x for x in r[5:]] for r in (a, b)]
        assert numbers[0] == pytest.approx(numbers[1], rel=1e-9, nan_ok=True)


def test_sql__consent_counts__one_excluded_row_of_this_experiment_and_environment(
    tmp_path,
) -> None:
    exposures, events = simulate(200, seed=5)
    con = duckdb.connect()
    _relations(con, tmp_path, exposures, events)
    con.execute(
        "CREATE TABLE consent_counts (experiment VARCHAR, environment VARCHAR, units BIGINT)"
    )
    con.execute(
        "INSERT INTO consent_counts VALUES ('onboarding-length', 'prod', 7), "
        "('onboarding-length', NULL, 2), ('onboarding-length', 'dev', 100), ('other', 'prod', 50)"
    )
    plan = dataclasses.replace(PLAN, consent_counts=True)
    for dialect in ("duckdb", "postgres"):
        cursor = con.execute(aggregation_sql(plan, dialect))  # type: ignore[arg-type]
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        (row,) = [r for r in rows if r["metric"] == "consent_not_given"]
        assert (row["kind"], row["n"], row["arm"]) == ("excluded", 9.0, None), dialect
        agg = rows_to_aggregates(rows, plan.metrics, cuped=True)
        assert agg.consent_not_given == 9 and sum(agg.units.values()) > 0, dialect
        without = con.execute(aggregation_sql(PLAN, dialect)).fetchall()  # type: ignore[arg-type]
        assert len(without) == len(rows) - 1, dialect
    con.execute("DELETE FROM consent_counts")
    (row,) = [
        r for r in con.execute(aggregation_sql(plan)).fetchall() if r[4] == "consent_not_given"
    ]
    assert row[5] == 0.0  # a source without records: none left out, not unknown
    for dialect in DIALECTS:
        assert aggregation_sql(plan, dialect).count("FROM consent_counts") == 1, dialect


def _parquet(con: duckdb.DuckDBPyConnection, path: Path, records: list[dict], columns: str) -> Path:
    source = write_jsonl(path.with_suffix(".jsonl"), records)
    con.execute(
        f"COPY (SELECT * FROM read_json('{source}', format = 'newline_delimited', "
        f"columns = {columns})) TO '{path}' (FORMAT parquet)"
    )
    return path


def _plan_shapes(tmp_path: Path) -> tuple[tuple, list[QueryPlan]]:
    """Parquet files with every structure (two arms, consent refused, events before
    exposure, a dimension, a second experiment, consent counts) and plans across shapes."""
    from flagstone.analysis.sources import resolve

    exposures, events = simulate(3000, seed=9)
    other, _ = simulate(3000, seed=4, experiment="second", arms=("a", "b"))
    rows = [
        {**{k: e.get(k) for k in ("type", "experiment", "unit", "arm", "ts", "environment")},
         "consent": None, "country": e["dimensions"]["country"], "units": None}
        for e in exposures + other
    ]  # fmt: skip
    assert rows[0]["unit"] == rows[1]["unit"]  # its repeat exposure, now in the other arm
    rows[0]["arm"], rows[1]["arm"] = "classic", "short"
    rows[7]["consent"] = False
    rows.append({"type": "consent_not_given", "experiment": "onboarding-length",
                 "environment": "prod", "units": 11})  # fmt: skip
    con = duckdb.connect()
    exposure_file = _parquet(
        con,
        tmp_path / "exposures.parquet",
        rows,
        "{type: 'VARCHAR', experiment: 'VARCHAR', unit: 'VARCHAR', arm: 'VARCHAR', ts: 'DOUBLE', "
        "environment: 'VARCHAR', consent: 'BOOLEAN', country: 'VARCHAR', units: 'BIGINT'}",
    )
    metric_file = _parquet(
        con,
        tmp_path / "metrics.parquet",
        [*events, *({**m, "ts": m["ts"] - 7200} for m in events[::5])],  # some before exposure
        "{unit: 'VARCHAR', metric: 'VARCHAR', value: 'DOUBLE', ts: 'DOUBLE'}",
    )
    sources = resolve(str(exposure_file), "exposures"), resolve(str(metric_file), "metrics")
    metrics = (
        MetricQuery("converted", "proportion"),
        MetricQuery("revenue", "mean"),
        MetricQuery("rps", "ratio", numerator="revenue", denominator="converted"),
    )
    plans = [
        QueryPlan(
            "onboarding-length",
            metrics,
            environment="prod",
            window=86400.0,
            cuped=True,
            dimensions=("country",),
            looks=(START + 8000, START + 20000, START + 1e6),
            consent_counts=True,
        ),
        QueryPlan("onboarding-length", metrics[:2], environment="prod", interaction="second"),
        QueryPlan("onboarding-length", metrics[:1], by="country"),
    ]
    return sources, plans


def test_aggregate__in_parts__gives_the_numbers_of_one_query(tmp_path) -> None:
    """Over more units than DuckDB's memory holds, the query runs once per hash part of
    the units: exclusions, balance, looks, CUPED and the consent count add up the same."""
    from flagstone.analysis.ingest import aggregate

    sources, plans = _plan_shapes(tmp_path)
    for plan in plans:
        whole, _ = aggregate(plan, *sources, parts=1)
        split, _ = aggregate(plan, *sources, parts=3)
        assert whole.multiple_arms == 1, plan
        assert_close(_plain(split), _plain(whole), repr(plan))
    assert whole.slices and whole.units  # the --by slices were compared, not two empties
    first, _ = aggregate(plans[0], *sources, parts=1)
    assert (first.consent_refused, first.consent_not_given) == (1, 11)
    assert len(first.looks) == 2 and first.dimensions["country"]


def test_aggregate__keyed_by_hash__gives_the_numbers_keyed_by_the_unit_strings(tmp_path) -> None:
    """Units keyed by hash(unit): every plan shape (two arms, consent, dimensions, looks,
    windows, CUPED, interactions, --by, winsorize), whole and in parts, as the strings."""
    from flagstone.analysis.ingest import aggregate

    sources, plans = _plan_shapes(tmp_path)
    capped = QueryPlan(
        "onboarding-length", (MetricQuery("revenue", "mean", winsorize=95),), environment="prod"
    )
    for plan in [*plans, capped]:
        exact, _ = aggregate(plan, *sources, parts=1, unit_keys="text")
        hashed, _ = aggregate(plan, *sources, parts=1)
        assert hashed.exact_reruns == 0 and exact.units, plan
        assert_close(_plain(hashed), _plain(exact), repr(plan))
        if plan is not capped:
            split, _ = aggregate(plan, *sources, parts=3)
            assert_close(_plain(split), _plain(exact), repr(plan))


def test_aggregate__units_sharing_a_hash_key__rerun_keyed_by_the_strings(tmp_path) -> None:
    """A deliberately weak key (key_bits=0: every unit shares key 0) makes two exposed
    units share a key in every plan shape: the hashed query sees it and the numbers are
    those of the string-keyed query, rerun once."""
    from flagstone.analysis.ingest import aggregate

    sources, plans = _plan_shapes(tmp_path)
    for plan in plans:
        exact, _ = aggregate(plan, *sources, parts=1, unit_keys="text")
        for parts in (1, 3):
            weak, _ = aggregate(dataclasses.replace(plan, key_bits=0), *sources, parts=parts)
            assert weak.exact_reruns == 1, plan
            assert_close(
                _plain(weak), _plain(dataclasses.replace(exact, exact_reruns=1)), repr(plan)
            )


def test_aggregate__events_of_an_unexposed_unit_sharing_the_key__are_left_out(tmp_path) -> None:
    """One exposed unit, events of many others, every key the same (key_bits=0): the
    second fingerprint keeps the other units' events out of the join, with no rerun; in
    an interaction, the other experiment's key holding this unit and another is seen."""
    from flagstone.analysis.ingest import aggregate
    from flagstone.analysis.sources import resolve

    exposures, events = simulate(200, seed=3)
    first = exposures[0]
    mine = [e for e in exposures if e["unit"] == first["unit"]]
    assert any(m["unit"] == first["unit"] for m in events)
    metrics = resolve(str(write_jsonl(tmp_path / "m.jsonl", events)), "metrics")
    plan = QueryPlan(
        "onboarding-length",
        (MetricQuery("converted", "proportion"), MetricQuery("revenue", "mean")),
        environment="prod",
    )
    alone = resolve(str(write_jsonl(tmp_path / "alone.jsonl", mine)), "exposures")
    exact, _ = aggregate(plan, alone, metrics, unit_keys="text")
    weak, _ = aggregate(dataclasses.replace(plan, key_bits=0), alone, metrics)
    assert weak.exact_reruns == 0 and sum(exact.units.values()) == 1
    assert_close(_plain(weak), _plain(exact))
    assert weak.data["revenue"][first["arm"]].sum == exact.data["revenue"][first["arm"]].sum > 0

    other = {**first, "experiment": "second", "arm": "b"}
    stranger = {**other, "unit": exposures[-1]["unit"]}
    assert stranger["unit"] != first["unit"]
    paired = dataclasses.replace(plan, interaction="second")
    for extra, reruns in (([other, stranger], 1), ([stranger], 0)):
        both = resolve(
            str(write_jsonl(tmp_path / f"both{reruns}.jsonl", mine + extra)), "exposures"
        )
        exact, _ = aggregate(paired, both, metrics, unit_keys="text")
        weak, _ = aggregate(dataclasses.replace(paired, key_bits=0), both, metrics)
        assert weak.exact_reruns == reruns, extra
        assert_close(
            _plain(weak), _plain(dataclasses.replace(exact, exact_reruns=reruns)), repr(extra)
        )
    assert exact.slices == {} and weak.slices == {}  # the stranger alone: not in both


def _plain(agg: object) -> object:
    return json.loads(json.dumps(dataclasses.asdict(agg)))  # type: ignore[call-overload]


def test_parts_needed__only_for_parquet_over_the_memory_limit_without_winsorize(tmp_path) -> None:
    from flagstone.analysis.ingest import connect, parts_needed, statements
    from flagstone.analysis.sources import resolve

    exposures, events = simulate(2000)
    con = duckdb.connect()
    columns = "{experiment: 'VARCHAR', unit: 'VARCHAR', arm: 'VARCHAR', ts: 'DOUBLE'}"
    parquet = (
        resolve(str(_parquet(con, tmp_path / "e.parquet", exposures, columns)), "exposures"),
        resolve(str(_parquet(con, tmp_path / "m.parquet", events, str(METRIC_COLUMNS))), "metrics"),
    )
    jsonl = (
        resolve(str(tmp_path / "e.jsonl"), "exposures"),
        resolve(str(tmp_path / "m.jsonl"), "metrics"),
    )
    plain = QueryPlan("onboarding-length", (MetricQuery("converted", "proportion"),))
    capped = QueryPlan("onboarding-length", (MetricQuery("revenue", "mean", winsorize=99),))

    def parts(plan: QueryPlan, sources: tuple, limit: str) -> int:
        with connect() as c:  # the limit the parts are sized for, not this connection's
            for view in statements(c, plan, *sources).views:
                c.execute(view)
            return parts_needed(c, plan, *sources, limit)

    # 2,000 units at ~330 bytes each: 0.66 MB, so parts of 0.2 MB (of a 0.3 MB limit)
    assert 2 < parts(plain, parquet, "0.3MB") <= 8
    assert parts(plain, parquet, "700MB") == 1
    assert parts(capped, parquet, "0.3MB") == 1
    assert parts(plain, jsonl, "0.3MB") == 1
    with pytest.raises(ValueError, match="DuckDB's"):
        aggregation_sql(dataclasses.replace(plain, partition=(0, 2)), "postgres")
    with pytest.raises(ValueError, match="winsorize"):
        aggregation_sql(dataclasses.replace(capped, partition=(0, 2)))


def test_sql__each_dialect__uses_its_own_quantile_and_inline_table() -> None:
    texts = {d: aggregation_sql(PLAN, d) for d in DIALECTS}
    assert "quantile_cont(" in texts["duckdb"]
    assert "PERCENTILE_CONT(0.99) WITHIN GROUP" in texts["postgres"]
    assert "PERCENTILE_CONT(0.99) WITHIN GROUP" in texts["snowflake"]
    assert "APPROX_QUANTILES(" in texts["bigquery"] and "UNNEST([STRUCT(" in texts["bigquery"]
    assert "MATERIALIZED" not in texts["snowflake"] + texts["bigquery"]
    assert "FLOAT64" in texts["bigquery"] and "DOUBLE PRECISION" in texts["postgres"]


def test_sql__unit_rules__first_exposure_wins_two_arm_units_and_early_events_are_left_out(
    tmp_path,
) -> None:
    def exposure(unit: str, arm: str, ts: float, env: str = "prod", **extra) -> dict:
        return {
            "experiment": "e",
            "unit": unit,
            "arm": arm,
            "ts": ts,
            "environment": env,
            "dimensions": {"country": "DE"},
            **extra,
        }

    exposures = [
        exposure("a", "c", 100),
        exposure("a", "c", 50),  # its first exposure: events from 50 on count
        exposure("b", "c", 100),  # no events: counts with value 0
        exposure("c", "t", 100),
        exposure("d", "t", 100),
        exposure("d", "c", 200),  # two arms: excluded and counted
        exposure("e", "t", 100, env="dev"),  # another environment
        exposure("f", "t", 100, consent=False),
    ]
    events = [
        {"unit": "a", "metric": "v", "value": 2.0, "ts": 60},
        {"unit": "a", "metric": "v", "value": 5.0, "ts": 40},  # before exposure: pre-period
        {"unit": "c", "metric": "v", "value": 3.0, "ts": 150},
        {"unit": "c", "metric": "v", "value": 7.0, "ts": 100 + 7200},  # outside the window
        {"unit": "d", "metric": "v", "value": 9.0, "ts": 150},
        {"unit": "e", "metric": "v", "value": 9.0, "ts": 150},
    ]
    con = duckdb.connect()
    _relations(con, tmp_path, exposures, events)
    plan = QueryPlan("e", (MetricQuery("v", "mean"),), environment="prod", window=3600, cuped=True)
    cursor = con.execute(aggregation_sql(plan))
    names = [d[0] for d in cursor.description]
    agg = rows_to_aggregates(
        [dict(zip(names, r, strict=True)) for r in cursor.fetchall()], plan.metrics, cuped=True
    )
    c, t = agg.data["v"]["c"], agg.data["v"]["t"]
    assert (c.post.n, c.post.sum, c.post.sum_sq) == (2, 2.0, 4.0)  # type: ignore[union-attr]
    assert (c.pre.sum, c.post_pre_sum) == (5.0, 10.0)  # type: ignore[union-attr]  # the pre-period
    assert (t.post.n, t.post.sum) == (1, 3.0)  # type: ignore[union-attr]
    assert agg.multiple_arms == 1
    assert agg.consent_refused == 1
    assert agg.units == {"c": 2, "t": 1}


def test_sql__each_dialect__reads_the_units_once_and_makes_one_pass() -> None:
    """Exclusions, span and balance come out of the one grouping by arm, not another read."""
    for dialect in DIALECTS:
        text = aggregation_sql(PLAN, dialect)  # type: ignore[arg-type]
        assert text.count("FROM exposures") == 1, dialect
        assert text.count("metric_events") == 1, dialect
        assert text.count("FROM per_unit") == 2, dialect  # the winsorization cap, the sums
        assert text.count("FROM stats") == 1, dialect


def test_stats_rows__split_over_arms__add_up() -> None:
    """A warehouse may return the balance, exclusion and span rows one per arm."""
    rows = [
        {"kind": "metric", "arm": arm, "metric": "v", "n": n, "sum": 1, "sum_sq": 1}
        for arm, n in (("c", 3), ("t", 2))
    ]
    rows += [
        {"kind": "dimension", "arm": "c", "slice": "DE", "metric": "country", "n": 1},
        {"kind": "dimension", "arm": "c", "slice": "DE", "metric": "country", "n": 2},
        {"kind": "dimension", "arm": "t", "slice": None, "metric": "country", "n": 2},
        {"kind": "excluded", "metric": "multiple_arms", "n": 4},
        {"kind": "excluded", "metric": "multiple_arms", "n": 1},
        {"kind": "excluded", "metric": "consent_refused", "n": 2},
        {"kind": "span", "metric": "first_exposure", "n": 3, "sum": 50.0, "sum_sq": 90.0},
        {"kind": "span", "metric": "first_exposure", "n": 2, "sum": 20.0, "sum_sq": 70.0},
        {"kind": "span", "metric": "first_exposure", "n": 0, "sum": None, "sum_sq": None},
    ]
    agg = rows_to_aggregates(rows, (MetricQuery("v", "mean"),))
    assert agg.dimensions == {"country": {"DE": {"c": 3}, "(none)": {"t": 2}}}
    assert (agg.multiple_arms, agg.consent_refused) == (5, 2)
    assert (agg.first_exposure, agg.last_exposure) == (20.0, 90.0)
    assert agg.units == {"c": 3, "t": 2}


def test_sql__pre_exposure_events__are_the_cuped_covariate(tmp_path) -> None:
    exposures = [
        {
            "experiment": "e",
            "unit": u,
            "arm": arm,
            "ts": 1000.0,
            "environment": None,
            "dimensions": {"country": "x"},
        }
        for u, arm in (("a", "c"), ("b", "c"), ("c", "t"))
    ]
    events = [
        {"unit": "a", "metric": "v", "value": 4.0, "ts": 900},
        {"unit": "a", "metric": "v", "value": 1.0, "ts": 1100},
        {"unit": "b", "metric": "v", "value": 2.0, "ts": 999},
        {"unit": "c", "metric": "v", "value": 3.0, "ts": 1001},
    ]
    con = duckdb.connect()
    _relations(con, tmp_path, exposures, events)
    plan = QueryPlan("e", (MetricQuery("v", "mean"),), cuped=True)
    cursor = con.execute(aggregation_sql(plan))
    names = [d[0] for d in cursor.description]
    agg = rows_to_aggregates(
        [dict(zip(names, r, strict=True)) for r in cursor.fetchall()], plan.metrics, cuped=True
    )
    c = agg.data["v"]["c"]
    assert (c.post.sum, c.pre.sum, c.pre.sum_sq, c.post_pre_sum) == (1.0, 6.0, 20.0, 4.0)  # type: ignore[union-attr]


def test_sql__winsorization_cap__is_the_pooled_percentile_of_per_unit_values(tmp_path) -> None:
    exposures, events = simulate(800, seed=11)
    con = duckdb.connect()
    _relations(con, tmp_path, exposures, events)
    plan = QueryPlan("onboarding-length", (MetricQuery("revenue", "mean", winsorize=95),))
    cursor = con.execute(aggregation_sql(plan))
    names = [d[0] for d in cursor.description]
    agg = rows_to_aggregates(
        [dict(zip(names, r, strict=True)) for r in cursor.fetchall()], plan.metrics
    )
    per_unit: dict[str, float] = {e["unit"]: 0.0 for e in exposures}
    for m in events:
        if m["metric"] == "revenue":
            per_unit[m["unit"]] += m["value"]
    cap = cap_at_percentile(list(per_unit.values()), 95)
    assert agg.caps["revenue"] == pytest.approx(cap, rel=1e-12)
    total = sum(min(v, cap) for v in per_unit.values())
    assert sum(s.sum for s in agg.data["revenue"].values()) == pytest.approx(total, rel=1e-12)  # type: ignore[union-attr]


def test_analyze__winsorized_metric__reports_its_cap_in_every_format(
    cli, planted, tmp_path
) -> None:
    from tests.analyze_data import EXPERIMENT

    _, exposures, metrics = planted
    repo = make_repo(
        tmp_path / "repo",
        EXPERIMENT.replace(
            "{name: revenue, kind: mean}", "{name: revenue, kind: mean, winsorize: 95}"
        ),
    )
    doc = analyze_json(cli, repo, "--exposures", str(exposures), "--metrics", str(metrics))
    (revenue,) = [m for m in doc["result"]["metrics"] if m["name"] == "revenue"]
    first: dict[str, float] = {}
    for line in exposures.read_text().splitlines():
        e = json.loads(line)
        first[e["unit"]] = min(e["ts"], first.get(e["unit"], e["ts"]))
    per_unit = dict.fromkeys(first, 0.0)
    for line in metrics.read_text().splitlines():
        m = json.loads(line)
        if m["metric"] == "revenue" and m["ts"] >= first[m["unit"]]:
            per_unit[m["unit"]] += m["value"]
    cap = cap_at_percentile(list(per_unit.values()), 95)
    assert revenue["winsorized_at"] == pytest.approx(cap, rel=1e-12)
    assert max(per_unit.values()) > cap  # the cap is doing something here
    args = ["analyze", "onboarding-length", "-e", "prod", "--at", AT]
    args += ["--exposures", str(exposures), "--metrics", str(metrics)]
    for fmt in ("text", "markdown"):
        shown = cli([*args, "--format", fmt], cwd=repo)
        assert f"winsorized at {cap:.4g}" in shown.stdout, (fmt, shown.stdout)


def test_analyze__csv_and_parquet_inputs__give_the_json_lines_statistics(
    cli, planted, tmp_path
) -> None:
    repo, exposures, metrics = planted
    con = duckdb.connect()
    for name, src in (("exposures", exposures), ("metrics", metrics)):
        for fmt in ("csv", "parquet"):
            if name == "exposures":
                select = (
                    f"SELECT unit, arm, to_timestamp(ts) AS first_exposure, environment, "
                    f"json_extract_string(dimensions, '$.country') AS country FROM read_json('{src}') "
                    "WHERE type = 'exposure'"
                )
            else:
                select = f"SELECT unit, metric, value, ts FROM read_json('{src}')"
            con.execute(f"COPY ({select}) TO '{tmp_path / f'{name}.{fmt}'}' (FORMAT {fmt})")
    reference = analyze_json(cli, repo, "--exposures", str(exposures), "--metrics", str(metrics))
    for fmt in ("csv", "parquet"):
        doc = analyze_json(
            cli,
            repo,
            "--exposures",
            str(tmp_path / f"exposures.{fmt}"),
            "--metrics",
            str(tmp_path / f"metrics.{fmt}"),
        )
        assert_close(doc["statistics"], reference["statistics"])
        assert_close(doc["result"]["balance"], reference["result"]["balance"])


def test_analyze__a_folder_or_glob__reads_every_file(cli, planted, tmp_path) -> None:
    repo, exposures, metrics = planted
    lines = exposures.read_text().splitlines(keepends=True)
    half = len(lines) // 2
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "part-1.jsonl").write_text("".join(lines[:half]))
    (tmp_path / "exp" / "part-2.jsonl").write_text("".join(lines[half:]))
    whole = analyze_json(cli, repo, "--exposures", str(exposures), "--metrics", str(metrics))
    folder = analyze_json(
        cli, repo, "--exposures", str(tmp_path / "exp"), "--metrics", str(metrics)
    )
    glob = analyze_json(
        cli, repo, "--exposures", str(tmp_path / "exp" / "*.jsonl"), "--metrics", str(metrics)
    )
    assert_close(folder["statistics"], whole["statistics"])
    assert_close(glob["statistics"], whole["statistics"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"type": "exposure", "unit": "a"\n', "reading"),
        ("", "no units exposed"),
    ],
)
def test_analyze__bad_or_empty_data__is_one_line_and_exit_2(
    cli, planted, tmp_path, content, expected
) -> None:
    repo, _, metrics = planted
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    args = [
        "analyze",
        "onboarding-length",
        "-e",
        "prod",
        "--exposures",
        str(bad),
        "--metrics",
        str(metrics),
    ]
    result = cli(args, cwd=repo)
    assert result.exit_code == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    as_json = cli([*args, "--format", "json"], cwd=repo)
    assert as_json.exit_code == 2
    assert check_output("analyze", as_json.stdout)["ok"] is False


def test_analyze__csv_without_a_unit_column__names_the_column(cli, planted, tmp_path) -> None:
    repo, _, metrics = planted
    bad = tmp_path / "exposures.csv"
    bad.write_text("who,arm,ts\nu1,classic,1\n")
    result = cli(
        [
            "analyze",
            "onboarding-length",
            "-e",
            "prod",
            "--exposures",
            str(bad),
            "--metrics",
            str(metrics),
        ],
        cwd=repo,
    )
    assert result.exit_code == 2
    assert "no unit column" in result.stderr and "unit, unit_id, user_id" in result.stderr


def test_analyze__usage_errors__say_what_to_pass(cli, planted) -> None:
    repo, exposures, metrics = planted
    cases = [
        (["--exposures", str(exposures)], "--metrics"),
        (["--exposures", str(exposures), "--metrics", str(metrics), "--window", "7x"], "--window"),
        (["--exposures", str(exposures), "--metrics", str(metrics), "--by", "plan"], "declares"),
    ]
    for extra, words in cases:
        result = cli(["analyze", "onboarding-length", "-e", "prod", *extra], cwd=repo)
        assert result.exit_code == 2 and words in result.stderr, result.stderr
    unknown = cli(["analyze", "onboarding-lenght", "-e", "prod", "--stats", "x.csv"], cwd=repo)
    assert unknown.exit_code == 2 and "did you mean 'onboarding-length'" in unknown.stderr


def test_analyze__window__drops_events_after_it(cli, planted) -> None:
    repo, exposures, metrics = planted
    # Conversions come 60 s after exposure: a 30 s window sees none of them.
    doc = analyze_json(
        cli, repo, "--exposures", str(exposures), "--metrics", str(metrics), "--window", "30s"
    )
    arms = doc["statistics"]["converted"]
    assert all(s["successes"] == 0 for s in arms.values())
    assert all(s["n"] > 2000 for s in arms.values())


def test_analyze__by_dimension__slices_and_corrects_over_them(cli, planted) -> None:
    repo, exposures, metrics = planted
    doc = analyze_json(
        cli, repo, "--exposures", str(exposures), "--metrics", str(metrics), "--by", "country"
    )
    by = doc["by"]
    assert by["dimension"] == "country"
    assert [s["value"] for s in by["slices"]] == ["DE", "FR", "US"]
    assert by["tests"] == 3 * 2  # slices times (primary + secondary); guardrails are not corrected
    total = sum(arm["n"] for s in by["slices"] for arm in s["result"]["metrics"][0]["arms"])
    assert total == sum(doc["units"].values())


def test_analyze__interaction__of_two_experiments_on_the_same_units(tmp_path, cli) -> None:
    experiments = """
    onboarding-length:
      flag: onboarding-flow
      status: running
      weights: {classic: 50, short: 50}
      metrics:
        primary: {name: converted, kind: proportion}
    second:
      flag: second-flow
      status: running
      weights: {a: 50, b: 50}
      metrics:
        primary: {name: converted, kind: proportion}
    """
    repo = make_repo(tmp_path / "repo", experiments)
    first, events = simulate(4000, seed=5, rates={"classic": 0.1, "short": 0.1})
    second, _ = simulate(4000, seed=6, experiment="second", arms=("a", "b"))
    exposures = write_jsonl(tmp_path / "exp.jsonl", first + second)
    metrics = write_jsonl(tmp_path / "met.jsonl", events)
    result = cli(
        [
            "analyze",
            "onboarding-length",
            "-e",
            "prod",
            "--exposures",
            str(exposures),
            "--metrics",
            str(metrics),
            "--interaction",
            "second",
            "-f",
            "json",
        ],
        cwd=repo,
    )
    doc = check_output("analyze", result.stdout)
    ix = doc["interaction"]["metrics"]["converted"]
    assert ix["kind"] == "proportion"
    assert {t["scale"] for t in ix["terms"]} == {"additive", "log-odds"}
    assert sum(c["n"] for c in ix["cells"]) == 4000
    assert ix["verdict"]


@pytest.mark.slow
def test_analyze__sequential__reports_the_running_looks(tmp_path, cli) -> None:
    experiments = """
    onboarding-length:
      flag: onboarding-flow
      status: running
      weights: {classic: 50, short: 50}
      metrics:
        primary: {name: converted, kind: proportion}
      analysis: {method: sequential, sequential_tuning: 4000}
      started_at: "2026-01-01T00:00:00Z"
    """
    repo = make_repo(tmp_path / "repo", experiments)
    exposures, events = simulate(9000, rates={"classic": 0.1, "short": 0.14})  # 10 s apart: ~1 day
    for i, e in enumerate(exposures):
        e["ts"] = START + (i % 9000) * 40.0  # spread over ~4 days
    exp = write_jsonl(tmp_path / "exp.jsonl", exposures)
    met = write_jsonl(
        tmp_path / "met.jsonl", [{**m, "ts": m["ts"] * 0 + START + 5 * 86400} for m in events]
    )
    html = tmp_path / "report.html"
    result = cli(
        [
            "analyze",
            "onboarding-length",
            "-e",
            "prod",
            "--at",
            "2026-01-06T00:00:00Z",
            "--exposures",
            str(exp),
            "--metrics",
            str(met),
            "--html",
            str(html),
            "-f",
            "json",
        ],
        cwd=repo,
    )
    doc = check_output("analyze", result.stdout)
    assert doc["result"]["looks"] == 6  # 5 daily cuts and the latest
    (c,) = doc["result"]["metrics"][0]["comparisons"]
    looks = c["sequential"]["looks"]
    assert [x["n"] for x in looks] == sorted(x["n"] for x in looks)
    assert c["p_value"] == min(x["p_value"] for x in looks)
    page = html.read_text()
    assert (
        page.count("<svg") == 2
    )  # the metric's CI chart and its confidence sequence over the looks
    stated = "sequential (asymptotic confidence sequences, Waudby-Smith et al. 2024, tuned at 4,000 units; 6 looks)"
    assert stated in page
    args = ["analyze", "onboarding-length", "-e", "prod", "--at", "2026-01-06T00:00:00Z"]
    text = cli([*args, "--exposures", str(exp), "--metrics", str(met)], cwd=repo)
    assert stated in " ".join(text.stdout.split())  # the method and its tuning, stated
    assert "fill" in page and "look" in page


def test_analyze__statistics_file__json_rows_work_like_csv(cli, planted, tmp_path) -> None:
    repo, _, _ = planted
    rows = [
        {"arm": "classic", "metric": "converted", "n": 5000, "sum": 500, "sum_sq": 500},
        {"arm": "short", "metric": "converted", "n": 5000, "sum": 600, "sum_sq": 600},
    ]
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(rows))
    doc = analyze_json(cli, repo, "--stats", str(path))
    (c,) = doc["result"]["metrics"][0]["comparisons"]
    assert c["absolute"]["value"] == pytest.approx(0.02)
    assert doc["result"]["notices"]  # revenue and crashed have no data: said so
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"arm": "classic", "metric": "converted", "n": "many"}]))
    result = cli(["analyze", "onboarding-length", "-e", "prod", "--stats", str(bad)], cwd=repo)
    assert result.exit_code == 2 and "n is 'many', not a number" in result.stderr


def test_analyze__by_dimension_markdown__values_from_the_data_cannot_inject_markup(
    cli, tmp_path
) -> None:
    """Dimension values come from clients: in a PR or decision record they stay text."""
    hostile = "<img src=x onerror=alert(1)> @team **DE** | x"
    repo = make_repo(tmp_path / "repo")
    exposures, events = simulate(1200, countries=(hostile, "FR"))
    exp = write_jsonl(tmp_path / "e.jsonl", exposures)
    met = write_jsonl(tmp_path / "m.jsonl", events)
    args = ["analyze", "onboarding-length", "-e", "prod", "--by", "country"]
    result = cli(
        [*args, "--exposures", str(exp), "--metrics", str(met), "-f", "markdown"], cwd=repo
    )
    assert result.exit_code in (0, 1), result.stderr
    rows = [line for line in result.stdout.splitlines() if "img src" in line]
    assert rows, result.stdout
    for row in rows:
        for raw in ("<img", "@team", "**DE**"):
            assert raw not in row, (raw, row)
        assert "&lt;img src=x onerror=alert(1)&gt; @\u2060team \\*\\*DE\\*\\* \\| x" in row


def test_analysis_import__before_numpy__limits_blas_to_one_thread_unless_the_user_chose(
    tmp_path,
) -> None:
    import os
    import subprocess
    import sys

    probe = "import flagstone.analysis, os; print(os.environ.get('OPENBLAS_NUM_THREADS'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    default = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    chosen = subprocess.run(
        [sys.executable, "-c", probe],
        env=env | {"OPENBLAS_NUM_THREADS": "3"},
        capture_output=True,
        text=True,
    )
    assert (default.stdout.strip(), chosen.stdout.strip()) == ("1", "3")


def test_duckdb_out_of_memory__message_names_the_limit_to_raise(tmp_path) -> None:
    from flagstone.analysis.ingest import _duckdb_message
    from flagstone.analysis.sources import resolve

    con = duckdb.connect(config={"memory_limit": "10MB", "threads": 1})
    with pytest.raises(duckdb.Error) as raised:
        con.execute("select string_agg(range::varchar, ',') from range(3000000)").fetchall()
    exposures = tmp_path / "exposures.jsonl"
    exposures.write_text("{}\n")
    message = _duckdb_message(raised.value, resolve(str(exposures), "exposures"))
    assert "Out of Memory" in message
    assert "FLAGSTONE_MEMORY_LIMIT" in message and str(exposures) in message
