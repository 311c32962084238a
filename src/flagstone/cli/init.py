from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flagstone.cli.app import command, out


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
) -> None:
    """Scaffold a flagstone repository: settings, schemas, environments, a spec, CI and pre-commit."""
    from rich.text import Text

    from flagstone.scaffold import init_repository

    envs = [e.strip() for e in environments.split(",") if e.strip()]
    result = init_repository(directory, project=project, environments=envs, force=force)
    out.print(
        Text.assemble(
            ("Created a flagstone repository", "bold green"), f" in {result.root.resolve()}:"
        )
    )
    for rel in result.written:
        out.print(f"  {rel}")
    if result.git_initialized:
        out.print("Initialized a git repository (git init).")
    where = "" if directory == Path() else f"cd {directory} && "
    out.print(
        Text.assemble(
            ("\nNext: ", "bold"),
            f"{where}flagstone validate && flagstone test && "
            "git add -A && git commit -m 'flagstone configuration'",
        )
    )
