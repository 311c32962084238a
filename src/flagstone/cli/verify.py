from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from flagstone.cli.app import ExitCode, Format, command, err, out


@command
def verify(
    rev_range: Annotated[
        str | None,
        typer.Option("--range", help="Commits to check, BASE..HEAD (default: origin/main..HEAD)."),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """The policy gate: commits touching protected environments need allowed signers/authors and real promotions."""
    from rich.text import Text

    from flagstone.load import find_root
    from flagstone.policy import default_range, verify_range

    repo_root = find_root(root or Path.cwd())
    checked = rev_range or default_range(repo_root)
    violations = verify_range(repo_root, checked)
    if fmt is Format.json:
        sys.stdout.write(
            json.dumps(
                {
                    "ok": not violations,
                    "range": checked,
                    "violations": [
                        {
                            "commit": v.commit,
                            "subject": v.subject,
                            "author": v.author,
                            "env": v.env,
                            "rule": v.rule,
                            "reason": v.reason,
                        }
                        for v in violations
                    ],
                },
                sort_keys=True,
                indent=2,
            )
            + "\n"
        )
    elif fmt is Format.markdown:
        rows = [
            f"| `{v.commit[:12]}` | {v.author} | {v.env} | {v.rule} | {v.reason} |"
            for v in violations
        ]
        sys.stdout.write(
            (
                "**flagstone verify**: "
                + (
                    f"{len(violations)} violation(s)"
                    if violations
                    else "every commit follows the policy"
                )
            )
            + (
                "\n\n| commit | author | env | rule | reason |\n|---|---|---|---|---|\n"
                + "\n".join(rows)
                if rows
                else ""
            )
            + "\n"
        )
    else:
        for v in violations:
            out.print(
                Text.assemble(
                    (v.commit[:12], "yellow"),
                    f" {v.subject!r} by {v.author}: ",
                    (f"[{v.rule}]", "red"),
                    f" {v.reason}",
                )
            )
        err.print(
            Text.assemble(
                ("✗ " if violations else "✓ ", "bold red" if violations else "bold green"),
                f"{len(violations)} violation(s) in {checked}"
                if violations
                else f"every commit in {checked} follows the policy",
            )
        )
    raise typer.Exit(ExitCode.FINDINGS if violations else ExitCode.OK)
