from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flagstone.cli.app import TextJson, command, finish


@command
def init(
    directory: Annotated[
        Path, typer.Argument(help="Where to create the repository (default: here).")
    ] = Path(),
    project: Annotated[
        str | None,
        typer.Option("--project", help="The application's name (default: the folder name)."),
    ] = None,
    environments: Annotated[
        str,
        typer.Option("--environments", help="Environments in promotion order, comma-separated."),
    ] = "dev,staging,prod",
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files that already exist.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the files init would write; write nothing.")
    ] = False,
    fmt: Annotated[TextJson, typer.Option("--format", "-f")] = TextJson.text,
) -> None:
    """Scaffold a flagstone repository: settings, schemas, environments, a spec, CI and pre-commit."""
    from flagstone.report import InitReport
    from flagstone.scaffold import init_repository

    envs = [e.strip() for e in environments.split(",")]
    result = init_repository(
        directory, project=project, environments=envs, force=force, dry_run=dry_run
    )
    where = "" if directory == Path() else f"cd {directory} && "
    next_steps = (
        f"{where}flagstone validate && flagstone test && "
        "git add -A && git commit -m 'flagstone configuration'"
    )
    finish(InitReport(result, next_steps), fmt)
