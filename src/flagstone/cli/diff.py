from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flagstone.cli.app import Format, command, finish
from flagstone.errors import UsageError

if TYPE_CHECKING:
    from flagstone.diff import Change


def render_changes(
    changes: Sequence[Change], fmt: Format, env_order: Sequence[str], title: str
) -> None:
    from flagstone.cli.output import emit
    from flagstone.report import DiffResult

    emit(DiffResult(changes, env_order, title), fmt)


@command
def diff(
    envs: Annotated[
        list[str] | None,
        typer.Argument(help="Two environments to compare (A B: how B differs from A)."),
    ] = None,
    rev: Annotated[
        str | None,
        typer.Option(
            "--rev", help="Compare revisions R1..R2 (R1.. compares with the working tree)."
        ),
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="With --rev: only these environments.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when there are differences.")
    ] = False,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Semantic diff between two environments, or between two git revisions."""
    from flagstone.diff import diff_environments, diff_revisions
    from flagstone.load import find_root, load_repository
    from flagstone.model import check_environments
    from flagstone.report import DiffResult

    repo_root = find_root(root or Path.cwd())
    repo, _ = load_repository(repo_root)
    secrets = repo.secrets
    if rev is not None:
        if envs:
            raise UsageError("pass two environments or --rev R1..R2, not both")
        if ".." not in rev:
            raise UsageError(
                "--rev takes a range such as main..HEAD (or main.. for the working tree)"
            )
        old_rev, new_rev = rev.split("..", 1)
        check_environments(env or (), repo.settings.environments)
        changes, problems = diff_revisions(
            repo_root, old_rev or "HEAD", new_rev or None, env or None, secrets
        )
        title = f"flagstone diff {rev}"
    else:
        if not envs or len(envs) != 2:
            raise UsageError(
                "name two environments (flagstone diff dev staging) or use --rev R1..R2"
            )
        a, b = repo.env(envs[0]), repo.env(envs[1])
        changes = diff_environments(a, b, f"{a.name} → {b.name}", secrets)
        problems = []
        title = f"flagstone diff {a.name} {b.name}"
    finish(
        DiffResult(
            changes, repo.settings.environments, title, fail_on_changes=exit_code, problems=problems
        ),
        fmt,
    )
