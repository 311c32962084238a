"""``flagstone analyze``: an experiment's statistics from raw data or a warehouse's aggregates."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flagstone.cli.app import Format, command, finish, out

if TYPE_CHECKING:
    from flagstone.analysis.render import AnalysisReport
    from flagstone.model import Environment


class DialectChoice(StrEnum):
    duckdb = "duckdb"
    bigquery = "bigquery"
    snowflake = "snowflake"
    postgres = "postgres"


Exposures = Annotated[
    str | None,
    typer.Option(
        "--exposures",
        help="Exposure records: a file, folder or glob of JSON lines (the runtime's), CSV or Parquet.",
    ),
]
Metrics = Annotated[
    str | None,
    typer.Option(
        "--metrics", help="Metric events (unit, metric, value, ts): a file, folder or glob."
    ),
]
Window = Annotated[
    str | None,
    typer.Option("--window", help="Attribution window after each unit's first exposure: 7d, 12h."),
]
At = Annotated[
    str | None,
    typer.Option(
        "--at", help="Analyse as of this ISO time (default: now); fixes the sequential looks."
    ),
]
Root = Annotated[Path | None, typer.Option("--root", help="Repository root.")]

SQL_HEADER = """\
-- flagstone analyze {key} ({dialect}): sufficient statistics per arm and metric.
-- Reads these relations; create them as views over your event tables:
--   exposures(experiment, unit, arm, ts, environment, consent{dims})
--   metric_events(unit, metric, value, ts)        -- ts in epoch seconds
{consent}-- Save the result as CSV or JSON and run:
--   flagstone analyze {key} --env {env} --stats result.csv
"""
CONSENT_HEADER = """\
--   consent_counts(experiment, environment, units) -- the runtime's consent_not_given
--     records (type = 'consent_not_given'): units never enrolled for lacking consent
"""


def load_env(root: Path | None, env: str) -> Environment:
    from flagstone.load import find_root, load_repository

    repo, _ = load_repository(find_root(root or Path.cwd()), [env])
    return repo.env(env)


@command(name="analyze")
def analyze(
    experiment: Annotated[str, typer.Argument(help="The experiment's key.")],
    env: Annotated[str, typer.Option("--env", "-e", help="The environment it ran in.")],
    exposures: Exposures = None,
    metrics: Metrics = None,
    stats: Annotated[
        Path | None,
        typer.Option(
            "--stats", help="Sufficient statistics (JSON or CSV rows of the --print-sql query)."
        ),
    ] = None,
    window: Window = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Results per value of this declared dimension.")
    ] = None,
    interaction: Annotated[
        str | None,
        typer.Option(
            "--interaction", help="Test the interaction with this experiment (same units)."
        ),
    ] = None,
    print_sql: Annotated[
        bool, typer.Option("--print-sql", help="Print the aggregation query and exit.")
    ] = False,
    dialect: Annotated[
        DialectChoice, typer.Option("--dialect", help="SQL dialect for --print-sql.")
    ] = DialectChoice.duckdb,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.")
    ] = None,
    at: At = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    root: Root = None,
) -> None:
    """Statistics for one experiment: every arm against control, every metric, every check."""
    from flagstone.analysis.run import Inputs, parse_time, parse_window
    from flagstone.analysis.run import analyze as run

    inputs = Inputs(exposures, metrics, stats, parse_window(window), by, interaction)
    now = parse_time(at) if at else None
    environment = load_env(root, env)
    if print_sql:
        sys.stdout.write(printed_sql(environment, experiment, inputs, dialect.value, now))
        return
    analysis = run(environment, experiment, inputs, now=now)
    from flagstone.analysis.render import AnalysisReport

    report = AnalysisReport(analysis)
    if html is not None:
        from flagstone.analysis.html import write_report

        write_report(html, analysis)
    register_renderer()
    finish(report, fmt.value)


def printed_sql(env: Environment, key: str, inputs: object, dialect: str, now: float | None) -> str:
    import datetime as dt

    from flagstone.analysis.ingest import connect, statements
    from flagstone.analysis.run import (
        Inputs,
        experiment_spec,
        find_experiment,
        look_cuts,
        query_plan,
    )
    from flagstone.analysis.sources import resolve
    from flagstone.analysis.sql import aggregation_sql

    assert isinstance(inputs, Inputs)
    experiment = find_experiment(env, key)
    spec = experiment_spec(env, experiment)
    now = dt.datetime.now(dt.UTC).timestamp() if now is None else now
    cuts = look_cuts(
        experiment.raw.get("started_at"), now, daily=spec.analysis.method == "sequential"
    )
    plan = query_plan(
        spec,
        env.name,
        inputs,
        () if inputs.by else cuts,
        by=inputs.by,
        consent_counts=experiment.consent_required,
    )
    dims = list(dict.fromkeys([*plan.dimensions, *([plan.by] if plan.by else [])]))
    header = SQL_HEADER.format(
        key=key,
        dialect=dialect,
        env=env.name,
        dims="".join(f", {d}" for d in dims),
        consent=CONSENT_HEADER if plan.consent_counts else "",
    )
    if dialect == "duckdb" and inputs.exposures and inputs.metrics:
        with connect() as con:
            stmts = statements(
                con,
                plan,
                resolve(inputs.exposures, "exposures"),
                resolve(inputs.metrics, "metrics"),
            )
        return header + stmts.script()
    return header + aggregation_sql(plan, dialect) + ";\n"  # type: ignore[arg-type]


def _render_text(report: AnalysisReport) -> None:
    from rich.table import Table
    from rich.text import Text

    from flagstone.analysis.render import headline, metric_rows, metric_title, warnings

    a = report.analysis
    r = a.result
    out.print(Text(headline(a), style="bold"))
    styles = {"error": "bold red", "warning": "yellow", "info": "dim"}
    for severity, message in warnings(a):
        out.print(Text.assemble((f"{severity}: ", styles.get(severity, "")), message))
    colours = {
        "better": "green",
        "worse": "red",
        "harmed": "bold red",
        "not-harmed": "green",
        "control": "dim",
    }
    for m in r.metrics:
        table = Table(title=metric_title(m), title_justify="left", title_style="bold")
        for name, justify in (
            ("arm", "left"),
            ("n", "right"),
            ("mean", "right"),
            ("lift [CI]", "right"),
            ("evidence", "right"),
            ("verdict", "left"),
            ("interval", "left"),
        ):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for row in metric_rows(m, r.method):
            table.add_row(
                row.arm,
                f"{row.n:,}",
                row.mean,
                row.lift,
                row.evidence,
                Text(row.verdict, style=colours.get(row.verdict.split()[0], "")),
                row.bar,
            )
        out.print(table)
    if a.by is not None:
        from flagstone.analysis.render import evidence_text, lift_text

        table = Table(
            title=f"by {a.by.dimension} ({a.by.correction} over {a.by.tests} tests)",
            title_justify="left",
            title_style="bold",
        )
        for name in (a.by.dimension, "metric", "arm", "n", "lift [CI]", "evidence", "verdict"):
            table.add_column(name)
        for s in a.by.slices:
            for m in s.result.metrics:
                arms = {x.arm: x.n for x in m.arms}
                for c in m.comparisons:
                    table.add_row(
                        s.value,
                        m.name,
                        c.arm,
                        f"{arms.get(c.arm, 0):,}",
                        lift_text(m, c),
                        evidence_text(c, r.method),
                        c.verdict,
                    )
        out.print(table)
    for name, ix in a.interactions.items():
        out.print(Text(f"interaction with {a.interaction_with} on {name}", style="bold"))
        for t in ix.terms:
            out.print(f"  {t.scale}: {t.test} = {t.statistic:.4g} (df {t.df}), p = {t.p_value:.3g}")
        out.print(f"  {ix.verdict}")


def register_renderer() -> None:
    """Give ``emit`` the rich renderer of an analysis (on use: rich loads only then)."""
    from flagstone.analysis.render import AnalysisReport
    from flagstone.cli.app import text_renderer

    text_renderer(AnalysisReport)(_render_text)
