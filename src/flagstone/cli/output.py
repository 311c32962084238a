"""Rendering shared by commands: problems as rich text or as plain strings."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from rich.text import Text

from flagstone.cli.app import ValidateFormat, err, out
from flagstone.errors import Problem


def render_problem(p: Problem) -> Text:
    # Text.assemble, not markup: messages may contain "[...]".
    colour = "red" if p.is_error else "yellow"
    text = Text.assemble(
        (f"{p.file}:{p.line}:{p.col}", "bold"),
        ": ",
        (p.severity, colour),
        f": {p.message} ",
        (f"[{p.code}]", "dim"),
    )
    if p.hint:
        text.append(f"\n    hint: {p.hint}", style="dim")
    return text


def emit_problems(problems: Sequence[Problem], fmt: ValidateFormat, *, checked: str = "") -> None:
    from flagstone import report

    if fmt is ValidateFormat.json:
        sys.stdout.write(report.problems_json(problems))
    elif fmt is ValidateFormat.github:
        sys.stdout.write(report.problems_github(problems))
    elif fmt is ValidateFormat.markdown:
        sys.stdout.write(report.problems_markdown(problems))
    else:
        for p in problems:
            out.print(render_problem(p))
        errors = sum(1 for p in problems if p.is_error)
        warnings = len(problems) - errors
        summary = Text.assemble(
            ("✗ " if errors else "✓ ", "bold red" if errors else "bold green"),
            f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}",
            f" in {checked}" if checked else "",
        )
        err.print(summary)


def default_validate_format() -> ValidateFormat:
    """Inside GitHub Actions, annotations are what a reviewer sees (as yamllint does)."""
    return (
        ValidateFormat.github if os.environ.get("GITHUB_ACTIONS") == "true" else ValidateFormat.text
    )
