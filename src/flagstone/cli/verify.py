from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flagstone.cli.app import Format, command, finish


@command
def verify(
    rev_range: Annotated[
        str | None,
        typer.Option("--range", help="Commits to check, BASE..HEAD (default: origin/main..HEAD)."),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """The policy gate: commits touching protected environments need allowed signers/authors and real promotions; no commit may change a started experiment's weights, arms or metrics before it is concluded, lower a running one's traffic or set its status back."""
    from flagstone.load import find_root
    from flagstone.policy import default_range, verify_range
    from flagstone.report import VerifyResult

    repo_root = find_root(root or Path.cwd())
    checked = rev_range or default_range(repo_root)
    finish(VerifyResult(checked, verify_range(repo_root, checked)), fmt)
