from __future__ import annotations

import contextlib
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flagstone.cli.app import ExitCode, Format, command, finish
from flagstone.errors import FlagstoneError
from flagstone.model import check_environments


class SecretsMode(StrEnum):
    keep = "keep"
    reencrypt = "reencrypt"


@command
def promote(
    src: Annotated[str, typer.Argument(help="Environment to copy from.")],
    dst: Annotated[str, typer.Argument(help="Environment to copy into.")],
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Only these keys (flag, segment, experiment, or config.some.key); repeatable.",
        ),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help="Only these kinds: flags, segments, experiments, config."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; write nothing.")
    ] = False,
    no_deps: Annotated[
        bool,
        typer.Option("--no-deps", help="Refuse instead of bringing missing dependencies along."),
    ] = False,
    skip_order: Annotated[
        str | None,
        typer.Option("--skip-order", help="Promote out of order; the reason goes into the commit."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    commit: Annotated[
        bool, typer.Option("--commit", help="Commit the promotion (with Flagstone-* trailers).")
    ] = False,
    branch: Annotated[
        str | None, typer.Option("--branch", help="Create this branch first (for a pull request).")
    ] = None,
    expect_target_rev: Annotated[
        str | None,
        typer.Option(
            "--expect-target-rev", help="Refuse if the target changed since this revision."
        ),
    ] = None,
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Commit message (default: what moved).")
    ] = None,
    secrets: Annotated[
        SecretsMode,
        typer.Option(
            "--secrets",
            help="keep: secrets stay as the target has them (pinned); reencrypt: copy them, "
            "encrypted for the target's recipients (needs your identity).",
        ),
    ] = SecretsMode.keep,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Copy objects forward (dev → staging → prod), keeping the target's pinned values."""
    from flagstone.edit import repository_lock
    from flagstone.load import find_root, load_repository, load_settings
    from flagstone.model import SETTINGS_FILE
    from flagstone.promote import PromotionInvalid, apply_promotion, plan_promotion
    from flagstone.report import PromotionResult

    repo_root = find_root(root or Path.cwd())
    settings = load_settings((repo_root / SETTINGS_FILE).read_bytes())
    check_environments([src, dst], settings.environments)
    # Only what the promotion reads: the two environments and the one before the target
    # (its promotion-order check); a third environment of 3,000 flags costs a tenth of a second.
    # With --yes nothing waits for a person: plan and write under one hold of the
    # repository's write lock, so the plan is made from what is written. A confirmed plan
    # is checked against what it read instead (apply_promotion refuses if that changed).
    with repository_lock(repo_root) if yes else contextlib.nullcontext():
        previous = settings.previous(dst)
        repo, _ = load_repository(
            repo_root, [e for e in settings.environments if e in (src, dst, previous)]
        )
        order = repo.settings.environments
        try:
            plan = plan_promotion(
                repo,
                src,
                dst,
                only=only or (),
                kinds=kind or (),
                include_deps=not no_deps,
                skip_order_reason=skip_order,
                reencrypt_secrets=secrets is SecretsMode.reencrypt,
            )
        except PromotionInvalid as e:
            finish(
                PromotionResult(
                    src, dst, None, order, dry_run, problems=e.problems, refusal=str(e)
                ),
                fmt,
            )
        preview = PromotionResult(src, dst, plan, order, dry_run=dry_run)
        if plan.empty or dry_run:
            finish(preview, fmt)
        if not yes:
            if not sys.stdin.isatty():
                raise FlagstoneError(
                    "not promoting without confirmation: stdin is not a terminal; pass --yes "
                    "(or --dry-run to preview)"
                )
            from flagstone.cli.output import emit

            emit(preview, Format.text)
            if not typer.confirm(f"Promote {src} → {dst}?", default=False):
                raise typer.Exit(ExitCode.FINDINGS)
        sha = apply_promotion(
            repo_root,
            plan,
            commit=commit,
            branch=branch,
            expect_target_rev=expect_target_rev,
            message=message,
        )
    done = PromotionResult(src, dst, plan, order, written=True, commit=sha)
    if not yes and fmt is Format.text:
        from flagstone.cli.app import err

        err.print(f"promoted {src} → {dst}" + (f"; committed {sha[:12]}" if sha else ""))
        raise typer.Exit(ExitCode.OK)
    finish(done, fmt)


@command
def drift(
    earlier: Annotated[str, typer.Argument(help="The earlier environment (e.g. staging).")],
    later: Annotated[str, typer.Argument(help="The later environment (e.g. prod).")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """What differs between two environments beyond pinned values: unpromoted work and hot fixes."""
    from flagstone.load import find_root, load_repository
    from flagstone.promote import drift as compute_drift
    from flagstone.report import DriftResult

    repo, _ = load_repository(find_root(root or Path.cwd()))
    check_environments([earlier, later], repo.settings.environments)
    finish(DriftResult(earlier, later, compute_drift(repo, earlier, later)), fmt)
