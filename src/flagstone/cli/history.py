from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flagstone.cli.app import ExitCode, Format, ValidateFormat, command, err, out
from flagstone.errors import FlagstoneError

if TYPE_CHECKING:
    from flagstone.history import Restoration

SIGNATURES = {
    "G": "good signature",
    "U": "signed, unknown key",
    "N": "unsigned",
    "B": "bad signature",
    "X": "expired signature",
    "Y": "expired key",
    "R": "revoked key",
    "E": "signature not checked",
}


@command
def history(
    key: Annotated[
        str,
        typer.Argument(
            help="A flag, segment or experiment key, or a dotted config key (api.timeout_ms)."
        ),
    ],
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Only these environments.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only changes at or after this date (YYYY-MM-DD or ISO time)."
        ),
    ] = None,
    author: Annotated[
        str | None,
        typer.Option("--author", help="Only changes by this author (name or e-mail, substring)."),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Every commit that changed a key, newest first: when, who, signature, and old → new."""
    from rich.text import Text

    from flagstone.history import key_history
    from flagstone.load import find_root, load_repository

    since_at = None
    if since is not None:
        try:
            since_at = dt.datetime.fromisoformat(since)
        except ValueError:
            raise FlagstoneError(
                f"--since {since!r} is not a date; write 2026-11-01 or 2026-11-01T12:00"
            ) from None
        if since_at.tzinfo is None:
            since_at = since_at.replace(tzinfo=dt.UTC)
    repo_root = find_root(root or Path.cwd())
    repo, _ = load_repository(repo_root)
    entries = key_history(
        repo_root, key, envs=env, since=since_at, author=author, secrets=repo.secrets
    )
    if fmt is Format.json:
        doc = [
            {
                "commit": e.commit.sha,
                "date": e.commit.date.isoformat(),
                "author": e.commit.author_name,
                "email": e.commit.author_email,
                "signature": e.commit.signature,
                "subject": e.commit.subject,
                "env": e.env,
                "kind": e.kind,
                "key": e.key,
                "action": e.action,
                "changes": list(e.changes),
            }
            for e in entries
        ]
        sys.stdout.write(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    elif fmt is Format.markdown:
        rows = [
            f"| {e.commit.date:%Y-%m-%d %H:%M} | {e.commit.author_name} | `{e.commit.sha[:12]}` | "
            f"{SIGNATURES.get(e.commit.signature, e.commit.signature)} | {e.env} | {'; '.join(e.changes)} |"
            for e in entries
        ]
        sys.stdout.write(
            "\n".join(
                [
                    "| date | author | commit | signature | env | change |",
                    "|---|---|---|---|---|---|",
                    *rows,
                ]
            )
            + "\n"
        )
    else:
        for e in entries:
            out.print(
                Text.assemble(
                    (f"{e.commit.date:%Y-%m-%d %H:%M}", "bold"),
                    "  ",
                    (e.commit.sha[:12], "yellow"),
                    f"  {e.commit.author_name} <{e.commit.author_email}>  ",
                    (SIGNATURES.get(e.commit.signature, e.commit.signature), "dim"),
                    f"\n  {e.env}: {'; '.join(e.changes)}",
                    (f"   ({e.commit.subject})", "dim"),
                )
            )
        if not entries:
            err.print(f"no commit changed {key!r}" + (f" in {', '.join(env)}" if env else ""))


def _apply(
    root: Path, plans: Sequence[Restoration], yes: bool, dry_run: bool, commit: bool
) -> None:
    from flagstone.cli.diff import render_changes
    from flagstone.history import apply_restoration

    for plan in plans:
        render_changes(plan.changes, Format.text, [plan.env], plan.message.splitlines()[0])
    if dry_run or not any(p.changes for p in plans):
        if not any(p.changes for p in plans):
            err.print("nothing to change: the environment already matches")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise FlagstoneError(
                "not writing without confirmation: stdin is not a terminal; pass --yes"
            )
        if not typer.confirm("Apply?", default=False):
            raise typer.Exit(ExitCode.FINDINGS)
    for plan in plans:
        sha = apply_restoration(root, plan, commit=commit)
        err.print(
            f"{plan.message.splitlines()[0]}"
            + (f": committed {sha[:12]}" if sha else ": written, not committed")
        )


@command
def rollback(
    env: Annotated[str, typer.Argument(help="The environment to restore.")],
    to: Annotated[str | None, typer.Option("--to", help="A commit, tag, branch or HEAD~3.")] = None,
    to_date: Annotated[
        str | None,
        typer.Option(
            "--to-date", help="The last commit at or before this time (2026-11-01T12:00)."
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Only these keys (repeatable; config keys dotted)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change.")] = False,
    no_commit: Annotated[
        bool, typer.Option("--no-commit", help="Write the files but do not commit.")
    ] = False,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Restore an environment (or some keys) as it was at a revision, as a new commit."""
    from flagstone import gitio
    from flagstone.cli.output import emit_problems
    from flagstone.history import RestorationInvalid, plan_rollback
    from flagstone.load import find_root, load_repository

    if (to is None) == (to_date is None):
        raise FlagstoneError("give exactly one of --to REV or --to-date TIME")
    repo_root = find_root(root or Path.cwd())
    repo, _ = load_repository(repo_root)
    rev = to if to is not None else gitio.rev_before(repo_root, to_date or "")
    try:
        plan = plan_rollback(repo, env, rev, only or ())
    except RestorationInvalid as e:
        emit_problems(e.problems, ValidateFormat.text)
        err.print(f"error: {e}")
        raise typer.Exit(ExitCode.FINDINGS) from None
    _apply(repo_root, [plan], yes, dry_run, not no_commit)


@command
def revert(
    rev: Annotated[str, typer.Argument(help="The commit whose flagstone changes to undo.")],
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Only in these environments.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change.")] = False,
    no_commit: Annotated[
        bool, typer.Option("--no-commit", help="Write the files but do not commit.")
    ] = False,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Undo one commit's changes key by key, keeping later changes to other keys."""
    from flagstone.cli.output import emit_problems
    from flagstone.history import RestorationInvalid, plan_revert
    from flagstone.load import find_root, load_repository

    repo_root = find_root(root or Path.cwd())
    repo, _ = load_repository(repo_root)
    try:
        plans = plan_revert(repo, rev, env)
    except RestorationInvalid as e:
        emit_problems(e.problems, ValidateFormat.text)
        err.print(f"error: {e}")
        raise typer.Exit(ExitCode.FINDINGS) from None
    _apply(repo_root, plans, yes, dry_run, not no_commit)
