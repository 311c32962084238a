from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from flagstone.cli.app import ExitCode, Format, ValidateFormat, command, err, out
from flagstone.errors import FlagstoneError


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
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Copy objects forward (dev → staging → prod), keeping the target's pinned values."""
    from flagstone.cli.diff import render_changes
    from flagstone.cli.output import emit_problems
    from flagstone.load import find_root, load_repository
    from flagstone.promote import PromotionInvalid, apply_promotion, plan_promotion

    repo_root = find_root(root or Path.cwd())
    repo, _ = load_repository(repo_root)
    try:
        plan = plan_promotion(
            repo,
            src,
            dst,
            only=only or (),
            kinds=kind or (),
            include_deps=not no_deps,
            skip_order_reason=skip_order,
        )
    except PromotionInvalid as e:
        emit_problems(e.problems, ValidateFormat.text)
        err.print(f"error: {e}")
        raise typer.Exit(ExitCode.FINDINGS) from None
    if fmt is Format.json:
        doc = {
            "src": src,
            "dst": dst,
            "moves": [{"kind": m.kind, "key": m.key, "reason": m.reason} for m in plan.moves],
            "kept": plan.kept,
            "changes": [c.as_dict() for c in plan.changes],
            "files": sorted(plan.files),
            "dry_run": dry_run,
        }
        sys.stdout.write(json.dumps(doc, sort_keys=True, indent=2, default=str) + "\n")
    else:
        render_changes(plan.changes, fmt, repo.settings.environments, f"promote {src} → {dst}")
        for move in plan.moves:
            if move.reason != "selected":
                out.print(f"also promoting {move.kind[:-1]} {move.key}: {move.reason}")
        if plan.kept:
            out.print(f"kept in {dst}: {', '.join(plan.kept)}")
    if plan.empty:
        err.print(f"{dst} already matches {src} for this selection: nothing to promote")
        return
    if dry_run:
        return
    if not yes:
        if not sys.stdin.isatty():
            raise FlagstoneError(
                "not promoting without confirmation: stdin is not a terminal; pass --yes"
            )
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
    written = ", ".join(sorted(plan.files))
    err.print(
        f"promoted {src} → {dst}: wrote {written}" + (f"; committed {sha[:12]}" if sha else "")
    )


@command
def drift(
    earlier: Annotated[str, typer.Argument(help="The earlier environment (e.g. staging).")],
    later: Annotated[str, typer.Argument(help="The later environment (e.g. prod).")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """What differs between two environments beyond pinned values: unpromoted work and hot fixes."""
    from rich.text import Text

    from flagstone.load import find_root, load_repository
    from flagstone.promote import drift as compute_drift

    repo, _ = load_repository(find_root(root or Path.cwd()))
    found = compute_drift(repo, earlier, later)
    if fmt is Format.json:
        sys.stdout.write(
            json.dumps(
                [
                    {"kind": d.kind, "key": d.key, "state": d.state, "changes": list(d.changes)}
                    for d in found
                ],
                sort_keys=True,
                indent=2,
            )
            + "\n"
        )
    elif fmt is Format.markdown:
        lines = [
            f"| {d.kind[:-1] if d.kind != 'config' else 'config'} | `{d.key}` | {d.state} | {'; '.join(d.changes)} |"
            for d in found
        ]
        sys.stdout.write(
            "\n".join(["| kind | key | state | changes |", "|---|---|---|---|", *lines]) + "\n"
        )
    else:
        for d in found:
            out.print(
                Text.assemble(
                    (f"{d.kind[:-1] if d.kind != 'config' else 'config'} {d.key}", "bold"),
                    f": {d.state}",
                    (f" ({'; '.join(d.changes)})", "dim"),
                )
            )
        err.print(
            f"{len(found)} difference(s) between {earlier} and {later}"
            if found
            else f"{later} matches {earlier} (pinned values aside)"
        )
    raise typer.Exit(ExitCode.FINDINGS if found else ExitCode.OK)
