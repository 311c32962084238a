"""``experiment create|start|stop|conclude|ramp|status``: the lifecycle and its monitoring.

Every step edits the YAML in round trip (comments kept), validates the environment as it
would be, and writes all of it or nothing (``--commit`` commits it; ``--dry-run`` shows
the diff). The rules of each step are in ``flagstone.experiments``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from flagstone.cli.app import Format, TextJson, command, finish
from flagstone.cli.edit_commands import Commit, DryRun, Env, Fmt, Message, Root
from flagstone.cli.groups import experiment_app
from flagstone.errors import FlagstoneError, UsageError

if TYPE_CHECKING:
    from flagstone.edit import DocumentSet
    from flagstone.model import Environment

Key = Annotated[str, typer.Argument(help="The experiment's key.")]
At = Annotated[
    str | None, typer.Option("--at", help="The time to record (ISO 8601; default: now, UTC).")
]
Force = Annotated[bool, typer.Option("--force", help="Override the check that refuses the step.")]

Change = Callable[["DocumentSet", "Environment"], str]


def now_iso(at: str | None) -> str:
    from flagstone.analysis.run import iso, parse_time

    if at is not None:
        return iso(parse_time(at))
    return iso(dt.datetime.now(dt.UTC).timestamp())


def lifecycle_edit(
    root: Path | None,
    env: str,
    change: Change,
    *,
    commit: bool,
    message: str | None,
    dry_run: bool,
    fmt: str,
) -> NoReturn:
    """Under the write lock: plan the change on round-trip documents, refuse it if it adds a
    validation error, then write every changed file or none (and maybe commit)."""
    from flagstone.cli.app import err
    from flagstone.cli.edit_commands import unified_diff
    from flagstone.cli.output import render_problem
    from flagstone.edit import DocumentSet, apply_files, check_write, repository_lock
    from flagstone.load import find_root, load_repository
    from flagstone.report import EditResult

    repo_root = find_root(root or Path.cwd())
    with repository_lock(repo_root):
        repo, _ = load_repository(repo_root, [env])
        environment = repo.env(env)
        docs = DocumentSet(repo_root)
        description = change(docs, environment)
        texts = docs.texts(under=f"{environment.directory}/")
        files = sorted(texts)
        if not texts:
            finish(EditResult(env, description, files, changed=False, dry_run=dry_run), fmt)
        diff = "".join(
            unified_diff(rel, (docs.basis.get(rel) or b"").decode("utf-8"), text)
            for rel, text in sorted(texts.items())
        )
        checked = check_write(repo, env, dict(texts))
        if not checked.allowed:
            finish(
                EditResult(
                    env, description, files, dry_run=dry_run, diff=diff, problems=checked.new
                ),
                fmt,
            )
        for problem in checked.existing:
            err.print(render_problem(problem))
        if dry_run:
            finish(EditResult(env, description, files, dry_run=True, diff=diff), fmt)
        sha = apply_files(
            repo_root,
            dict(texts),
            commit=(message or f"{env}: {description}") if commit else None,
            basis={rel: docs.basis.get(rel) for rel in texts},
        )
    finish(EditResult(env, description, files, commit=sha, diff=diff), fmt)


def experiment_node(docs: DocumentSet, environment: Environment, key: str) -> Any:
    from flagstone.analysis.run import find_experiment

    experiment = find_experiment(environment, key)
    data = docs[experiment.file].data
    return data[key]


def _note(text: str) -> None:
    from rich.text import Text

    from flagstone.cli.app import err

    err.print(Text(text, style="dim"))


@command(name="create", group=experiment_app)
def create(
    key: Key,
    flag: Annotated[str, typer.Option("--flag", help="The flag whose variants are the arms.")],
    metric: Annotated[
        list[str],
        typer.Option(
            "--metric",
            help="ROLE:NAME:KIND[:key=value…], repeatable: primary:d7_retention:proportion, "
            "guardrail:crash_rate:proportion:worse=increase, secondary:revenue:mean:winsorize=99.",
        ),
    ],
    env: Env = "dev",
    weights: Annotated[
        str | None,
        typer.Option("--weights", help="arm=percent pairs (default: an equal split)."),
    ] = None,
    traffic: Annotated[
        float | None, typer.Option("--traffic", help="Percent of eligible units enrolled.")
    ] = None,
    control: Annotated[
        str | None, typer.Option("--control", help="The control arm (default: the first).")
    ] = None,
    hypothesis: Annotated[str | None, typer.Option("--hypothesis")] = None,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    unit: Annotated[
        str | None, typer.Option("--unit", help="Context attribute of the randomisation unit.")
    ] = None,
    layer: Annotated[
        str | None, typer.Option("--layer", help="Experiments in one layer never share a unit.")
    ] = None,
    consent: Annotated[
        bool, typer.Option("--consent", help="Enroll and log only units that consented.")
    ] = False,
    dimension: Annotated[
        list[str] | None,
        typer.Option(
            "--dimension", help="Non-PII attribute logged with exposures (repeatable): country."
        ),
    ] = None,
    method: Annotated[
        str | None, typer.Option("--method", help="frequentist, bayesian or sequential.")
    ] = None,
    mde: Annotated[
        float | None, typer.Option("--mde", help="Minimum detectable effect (absolute).")
    ] = None,
    relative: Annotated[bool, typer.Option("--relative", help="--mde is relative.")] = False,
    alpha: Annotated[float | None, typer.Option("--alpha")] = None,
    power: Annotated[float | None, typer.Option("--power")] = None,
    correction: Annotated[
        str | None, typer.Option("--correction", help="holm, bh, bonferroni or none.")
    ] = None,
    cuped: Annotated[
        bool, typer.Option("--cuped", help="Adjust for the pre-exposure period (CUPED).")
    ] = False,
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Create a draft experiment on a flag; `experiment start` runs it."""
    from flagstone.experiments import create_experiment, parse_metric, parse_weights

    metrics = [parse_metric(m) for m in metric]
    parsed_weights = parse_weights(weights) if weights else None
    analysis: dict[str, Any] = {}
    for name, value in (
        ("method", method),
        ("alpha", alpha),
        ("power", power),
        ("mde", mde),
        ("correction", correction),
    ):
        if value is not None:
            analysis[name] = value
    if relative:
        analysis["relative"] = True
    if cuped:
        analysis["cuped"] = True

    def change(docs: DocumentSet, environment: Environment) -> str:
        if key in environment.experiments:
            raise UsageError(f"experiment {key!r} already exists in {environment.name}")
        target = environment.flags.get(flag)
        if target is None:
            raise UsageError(
                f"no flag {flag!r} in {environment.name}: create it first (flagstone flag create)"
            )
        data = docs[environment.file_for("experiments", key)].data
        return create_experiment(
            data,
            key,
            flag=flag,
            variants=list(target.variants),
            metrics=metrics,
            weights=parsed_weights,
            traffic=traffic,
            control=control,
            hypothesis=hypothesis,
            owner=owner,
            unit=unit,
            layer=layer,
            consent=consent,
            dimensions=dimension or (),
            analysis=analysis or None,
        )

    lifecycle_edit(
        root, env, change, commit=commit, message=message, dry_run=dry_run, fmt=fmt.value
    )


@command(name="start", group=experiment_app)
def start(
    key: Key,
    env: Env = "dev",
    baseline: Annotated[
        float | None,
        typer.Option(
            "--baseline", help="The primary metric's control rate (or mean, with --baseline-sd)."
        ),
    ] = None,
    baseline_sd: Annotated[float | None, typer.Option("--baseline-sd")] = None,
    daily_units: Annotated[
        float | None, typer.Option("--daily-units", help="Eligible units per day.")
    ] = None,
    max_days: Annotated[
        float, typer.Option("--max-days", help="The longest the experiment may run.")
    ] = 28,
    force: Force = False,
    at: At = None,
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Start a draft: records started_at; refuses a plan that cannot reach the MDE (--force)."""
    from flagstone.experiments import check_power, check_transition, start_experiment

    when = now_iso(at)

    def change(docs: DocumentSet, environment: Environment) -> str:
        node = experiment_node(docs, environment, key)
        check_transition(key, str(node.get("status")), "start")
        raw = environment.experiments[key].raw
        analysis = raw.get("analysis") or {}
        tuning = None
        if analysis.get("mde") is None:
            _note(f"{key} declares no analysis.mde: its power is not checked")
        elif baseline is None or daily_units is None:
            if not force:
                raise FlagstoneError(
                    f"experiment {key!r} declares an MDE of {analysis['mde']:g}: give --baseline "
                    "(and --baseline-sd for a mean) and --daily-units so start can check the plan "
                    "reaches it, or --force to start unchecked"
                )
            _note("power not checked (--force)")
        else:
            flag = environment.flags.get(str(raw.get("flag")))
            arms = len(raw.get("weights") or (flag.variants if flag else ())) or 2
            checked = check_power(
                raw,
                arms=arms,
                baseline=baseline,
                baseline_sd=baseline_sd,
                daily_units=daily_units,
                max_days=max_days,
            )
            if not checked.is_reachable and not force:
                raise FlagstoneError(
                    f"experiment {key!r} is under-powered: {checked.message}; raise traffic or "
                    "the MDE, allow more --max-days, or --force"
                )
            _note(checked.message + (" (--force)" if not checked.is_reachable else ""))
            if checked.plan is not None and analysis.get("method") == "sequential":
                tuning = checked.plan.total_units
        return start_experiment(node, key, when, tuning=tuning)

    lifecycle_edit(
        root, env, change, commit=commit, message=message, dry_run=dry_run, fmt=fmt.value
    )


@command(name="stop", group=experiment_app)
def stop(
    key: Key,
    env: Env = "dev",
    at: At = None,
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Stop enrolling: records stopped_at; the flag serves as it did before the experiment."""
    from flagstone.experiments import stop_experiment

    when = now_iso(at)

    def change(docs: DocumentSet, environment: Environment) -> str:
        return stop_experiment(experiment_node(docs, environment, key), key, when)

    lifecycle_edit(
        root, env, change, commit=commit, message=message, dry_run=dry_run, fmt=fmt.value
    )


@command(name="ramp", group=experiment_app)
def ramp(
    key: Key,
    traffic: Annotated[float, typer.Option("--traffic", help="The new percent of units enrolled.")],
    env: Env = "dev",
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Change the traffic share; while running only upward (enrolled units stay enrolled)."""
    from flagstone.experiments import ramp_traffic

    def change(docs: DocumentSet, environment: Environment) -> str:
        return ramp_traffic(experiment_node(docs, environment, key), key, traffic)

    lifecycle_edit(
        root, env, change, commit=commit, message=message, dry_run=dry_run, fmt=fmt.value
    )


@command(name="conclude", group=experiment_app)
def conclude(
    key: Key,
    winner: Annotated[str, typer.Option("--winner", help="The arm chosen, or 'none'.")],
    reason: Annotated[str, typer.Option("--reason", help="Why: the decision record.")],
    env: Env = "dev",
    exposures: Annotated[
        str | None, typer.Option("--exposures", help="Exposure records (file, folder, glob).")
    ] = None,
    metrics: Annotated[
        str | None, typer.Option("--metrics", help="Metric events (file, folder, glob).")
    ] = None,
    stats: Annotated[
        Path | None, typer.Option("--stats", help="Sufficient statistics (JSON or CSV).")
    ] = None,
    window: Annotated[str | None, typer.Option("--window", help="Attribution window: 7d.")] = None,
    rollout: Annotated[
        bool, typer.Option("--rollout", help="Also serve the winner as the flag's default.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Conclude despite a sample ratio mismatch.")
    ] = False,
    at: At = None,
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Write the decision and the results it rests on into the YAML (and maybe roll out)."""
    from flagstone.analysis.run import Inputs, analyze, parse_time, parse_window
    from flagstone.experiments import (
        check_transition,
        conclude_experiment,
        results_block,
        roll_out_winner,
    )

    when = now_iso(at)
    inputs = Inputs(exposures, metrics, stats, parse_window(window))

    def change(docs: DocumentSet, environment: Environment) -> str:
        node = experiment_node(docs, environment, key)
        check_transition(key, str(node.get("status")), "conclude")
        if rollout and winner == "none":
            raise UsageError("--rollout needs a --winner arm to serve")
        analysis = analyze(environment, key, inputs, now=parse_time(when))
        result = analysis.result
        if result.srm.is_mismatch:
            if not force:
                raise FlagstoneError(
                    f"sample ratio mismatch (χ² p = {result.srm.p_value:.2g} < "
                    f"{result.srm.threshold:g}): units per arm "
                    + ", ".join(f"{a} {n:,}" for a, n in result.srm.observed.items())
                    + " do not match the weights, so no result can be trusted; fix the "
                    "assignment or logging, or --force to record the decision anyway"
                )
            _note("concluding despite a sample ratio mismatch (--force)")
        for arm_metric in result.harmed_guardrails:
            _note(f"guardrail harmed: {arm_metric}")
        words = conclude_experiment(
            node, key, winner=winner, reason=reason, at=when, results=results_block(result, when)
        )
        if rollout:
            flag = str(node["flag"])
            if flag not in environment.flags:
                raise UsageError(f"--rollout: flag {flag!r} is not in {environment.name}")
            flag_doc = docs[environment.flags[flag].file].data
            words += "; " + roll_out_winner(flag_doc[flag], flag, winner)
        return words

    lifecycle_edit(
        root, env, change, commit=commit, message=message, dry_run=dry_run, fmt=fmt.value
    )


@command(name="status", group=experiment_app)
def status(
    exposures: Annotated[
        str | None, typer.Option("--exposures", help="Exposure records (file, folder, glob).")
    ] = None,
    metrics: Annotated[
        str | None, typer.Option("--metrics", help="Metric events (file, folder, glob).")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Only these environments.")
    ] = None,
    window: Annotated[str | None, typer.Option("--window", help="Attribution window: 7d.")] = None,
    at: At = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    root: Root = None,
) -> None:
    """Every running experiment: days, units against the plan, SRM, guardrails, decision so far.

    Exits 1 on a sample ratio mismatch or a harmed guardrail, so a scheduled job can alert."""
    from flagstone.analysis.run import Inputs, parse_time, parse_window
    from flagstone.analysis.status import running_status
    from flagstone.load import find_root, load_repository

    if not (exposures and metrics):
        raise UsageError("pass --exposures and --metrics: the data the running experiments log")
    repo, _ = load_repository(find_root(root or Path.cwd()), env or None)
    envs = [repo.env(e) for e in env] if env else list(repo)
    now = parse_time(at) if at else dt.datetime.now(dt.UTC).timestamp()
    report = running_status(envs, Inputs(exposures, metrics, None, parse_window(window)), now)
    register_status_renderer()
    finish(report, fmt.value)


def register_status_renderer() -> None:
    from flagstone.analysis.status import StatusReport
    from flagstone.cli.app import text_renderer

    text_renderer(StatusReport)(_render_status)


def _render_status(report: Any) -> None:
    from rich.table import Table
    from rich.text import Text

    from flagstone.analysis.status import STATUS_HEADER, status_cells
    from flagstone.cli.app import err, out
    from flagstone.cli.output import summary

    if not report.experiments:
        err.print("no running experiment")
        return
    table = Table()
    for name in STATUS_HEADER:
        table.add_column(name)
    for e in report.experiments:
        cells = status_cells(e)
        style = "red" if e.alerting else ("yellow" if e.problem else "")
        table.add_row(*(Text(c, style=style) for c in cells))
    out.print(table)
    alerts = sum(e.alerting for e in report.experiments)
    err.print(
        summary(
            report.ok,
            f"{len(report.experiments)} running experiment(s), {alerts} alerting"
            if alerts
            else f"{len(report.experiments)} running experiment(s), none alerting",
        )
    )
