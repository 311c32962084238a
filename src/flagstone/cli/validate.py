from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from flagstone.cli.app import ValidateFormat, command, finish


@command
def validate(
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Only these environments (repeatable).")
    ] = None,
    fmt: Annotated[
        ValidateFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="text, json, markdown or github (default: github inside GitHub Actions, else text).",
        ),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
    rev: Annotated[
        str | None,
        typer.Option(
            "--rev",
            metavar="REV",
            help="Check a git revision as committed (its own settings and config schema).",
        ),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            metavar="REV",
            help="Also refuse changes since REV to an experiment running there "
            "(weights, arms, metrics...).",
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root", help="Repository root (default: walk up from the current directory)."
        ),
    ] = None,
) -> None:
    """Check every file against its schema and the semantic rules."""
    from flagstone.cli.output import default_validate_format
    from flagstone.load import find_root
    from flagstone.report import Validation
    from flagstone.validate import validate_repository

    repo_root = find_root(root or Path.cwd())

    changed_at: dict[tuple[str, ...], datetime | None] = {}

    def last_changed(files: Sequence[str]) -> datetime | None:
        from flagstone import gitio  # GitPython costs ~30 ms: only for stale-flag candidates

        # Candidates in one flags.yaml share the answer: ask git once per set of files,
        # not twice per candidate flag (200 candidates were 400 git processes, seconds).
        key = tuple(sorted(files))
        if key not in changed_at:
            changed_at[key] = gitio.last_changed(repo_root, files)
        return changed_at[key]

    problems = validate_repository(
        repo_root, env, strict=strict, last_changed=last_changed, rev=rev, base=base
    )
    checked = ", ".join(env) if env else "every environment"
    if rev is not None:
        checked += f" at {rev}"
    if base is not None:
        checked += f" against {base}"
    finish(Validation(problems, strict=strict, checked=checked), fmt or default_validate_format())
