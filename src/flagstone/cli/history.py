from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flagstone.cli.app import Format, TextJson, command, finish
from flagstone.errors import FlagstoneError
from flagstone.model import check_environments

if TYPE_CHECKING:
    from flagstone.history import Restoration


@command
def history(
    key: Annotated[
        str | None,
        typer.Argument(
            help="A flag, segment or experiment key, or a dotted config key (api.timeout_ms); "
            "without one, the audit log of every key."
        ),
    ] = None,
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
    """Every commit that changed a key (or, without one, any key: the audit log), newest
    first: when, who, signature, promotion, and old → new."""
    from flagstone.history import audit_log
    from flagstone.load import find_root, load_repository
    from flagstone.report import HistoryResult

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
    check_environments(env or (), repo.settings.environments)
    entries = audit_log(
        repo_root, envs=env, since=since_at, author=author, secrets=repo.secrets, key=key
    )
    finish(HistoryResult(key, entries, env or ()), fmt)


def _apply(
    root: Path,
    plans: Sequence[Restoration],
    yes: bool,
    dry_run: bool,
    commit: bool,
    fmt: str,
) -> None:
    from flagstone.cli.output import emit
    from flagstone.history import apply_restoration
    from flagstone.report import RestorationResult

    preview = RestorationResult(plans, dry_run=dry_run)
    if dry_run or not any(p.changes for p in plans):
        finish(preview, fmt)
    if not yes:
        if not sys.stdin.isatty():
            raise FlagstoneError(
                "not writing without confirmation: stdin is not a terminal; pass --yes "
                "(or --dry-run to preview)"
            )
        emit(preview, Format.text)
        if not typer.confirm("Apply?", default=False):
            finish(RestorationResult(plans, declined=True), fmt)
    commits = {plan.env: apply_restoration(root, plan, commit=commit) for plan in plans}
    finish(RestorationResult(plans, written=True, commits=commits), fmt)


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
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Change a started experiment's weights, arms, metrics, traffic or status anyway.",
        ),
    ] = False,
    fmt: Annotated[TextJson, typer.Option("--format", "-f")] = TextJson.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Restore an environment (or some keys) as it was at a revision, as a new commit."""
    from flagstone import gitio
    from flagstone.history import RestorationInvalid, plan_rollback
    from flagstone.load import find_root, load_repository
    from flagstone.report import RestorationResult

    if (to is None) == (to_date is None):
        raise FlagstoneError("give exactly one of --to REV or --to-date TIME")
    repo_root = find_root(root or Path.cwd())
    repo, _ = load_repository(repo_root)
    rev = to if to is not None else gitio.rev_before(repo_root, to_date or "")
    try:
        plan = plan_rollback(repo, env, rev, only or (), force=force)
    except RestorationInvalid as e:
        finish(RestorationResult((), problems=e.problems, refusal=str(e)), fmt)
    _apply(repo_root, [plan], yes, dry_run, not no_commit, fmt)


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
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Change a started experiment's weights, arms, metrics, traffic or status anyway.",
        ),
    ] = False,
    fmt: Annotated[TextJson, typer.Option("--format", "-f")] = TextJson.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Undo one commit's changes key by key, keeping later changes to other keys."""
    from flagstone.history import RestorationInvalid, plan_revert
    from flagstone.load import find_root, load_repository
    from flagstone.report import RestorationResult

    repo_root = find_root(root or Path.cwd())
    repo, _ = load_repository(repo_root)
    check_environments(env or (), repo.settings.environments)
    try:
        plans = plan_revert(repo, rev, env, force=force)
    except RestorationInvalid as e:
        finish(RestorationResult((), problems=e.problems, refusal=str(e)), fmt)
    _apply(repo_root, plans, yes, dry_run, not no_commit, fmt)
