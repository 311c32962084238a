from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flagstone.cli.app import ExitCode, Format, command, out
from flagstone.errors import FlagstoneError

if TYPE_CHECKING:
    from flagstone.diff import Change


def render_changes(
    changes: Sequence[Change], fmt: Format, env_order: Sequence[str], title: str
) -> None:
    from flagstone.report_diff import changes_json, changes_markdown, summary_line

    if fmt is Format.json:
        sys.stdout.write(changes_json(changes))
        return
    if fmt is Format.markdown:
        sys.stdout.write(changes_markdown(changes, env_order, title))
        return
    from itertools import groupby

    from rich.text import Text
    from rich.tree import Tree

    tree = Tree(Text.assemble((title, "bold"), f"  ({summary_line(changes)})"))
    colours = {"added": "green", "removed": "red", "changed": "yellow"}
    for env, env_changes in groupby(changes, key=lambda c: c.env):
        branch = tree.add(Text(env, style="bold cyan"))
        for (kind, key), group in groupby(env_changes, key=lambda c: (c.kind, c.key)):
            items = list(group)
            label = f"{kind[:-1]} {key}" if kind != "config" else f"config {key}"
            node = branch.add(Text.assemble((label, colours[items[0].action])))
            for c in items:
                node.add(Text(c.summary))
    out.print(tree)


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

    repo_root = find_root(root or Path.cwd())
    repo, _ = load_repository(repo_root)
    secrets = repo.secrets
    if rev is not None:
        if envs:
            raise FlagstoneError("pass two environments or --rev R1..R2, not both")
        if ".." not in rev:
            raise FlagstoneError(
                "--rev takes a range such as main..HEAD (or main.. for the working tree)"
            )
        old_rev, new_rev = rev.split("..", 1)
        names = env or list(repo.settings.environments)
        for name in names:
            repo.env(name)
        changes = diff_revisions(repo_root, old_rev or "HEAD", new_rev or None, names, secrets)
        title = f"flagstone diff {rev}"
    else:
        if not envs or len(envs) != 2:
            raise FlagstoneError(
                "name two environments (flagstone diff dev staging) or use --rev R1..R2"
            )
        a, b = repo.env(envs[0]), repo.env(envs[1])
        changes = diff_environments(a, b, f"{a.name} → {b.name}", secrets)
        title = f"flagstone diff {a.name} {b.name}"
    render_changes(changes, fmt, repo.settings.environments, title)
    raise typer.Exit(ExitCode.FINDINGS if exit_code and changes else ExitCode.OK)
