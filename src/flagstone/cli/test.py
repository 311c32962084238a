from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flagstone.cli.app import Format, command, finish


@command(name="test")
def test_(
    specs: Annotated[
        list[Path] | None, typer.Argument(help="Spec files (default: every file under specs/).")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Only these environments.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Run the assertion specs in specs/ against the bundles built from the working tree."""
    from flagstone.load import find_root, load_settings
    from flagstone.model import SETTINGS_FILE, check_environments
    from flagstone.report import SpecRun
    from flagstone.spec import run_specs

    repo_root = find_root(root or Path.cwd())
    if env:
        settings = load_settings((repo_root / SETTINGS_FILE).read_bytes())
        check_environments(env, settings.environments)
    finish(SpecRun(run_specs(repo_root, specs or (), env)), fmt)
