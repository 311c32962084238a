"""Problems rendered as plain strings: json, github annotations, markdown (pure)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from flagstone.errors import Problem, format_path


def problem_dict(p: Problem) -> dict[str, object]:
    return {
        "file": p.file,
        "line": p.line,
        "column": p.col,
        "severity": p.severity,
        "code": p.code,
        "message": p.message,
        "path": list(p.path),
        "hint": p.hint,
    }


def problems_json(problems: Sequence[Problem]) -> str:
    errors = sum(1 for p in problems if p.is_error)
    doc = {
        "ok": errors == 0,
        "errors": errors,
        "warnings": len(problems) - errors,
        "problems": [problem_dict(p) for p in problems],
    }
    return json.dumps(doc, sort_keys=True, indent=2) + "\n"


def _escape_data(text: str) -> str:
    # GitHub workflow commands: https://docs.github.com/actions/reference/workflow-commands
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def problems_github(problems: Sequence[Problem]) -> str:
    lines = []
    for p in problems:
        level = "error" if p.is_error else "warning"
        message = p.message + (f" ({p.hint})" if p.hint else "")
        lines.append(
            f"::{level} file={_escape_property(p.file)},line={p.line},col={p.col},"
            f"title={_escape_property('flagstone ' + p.code)}::{_escape_data(message)}"
        )
    return "".join(line + "\n" for line in lines)


def problems_markdown(problems: Sequence[Problem]) -> str:
    errors = sum(1 for p in problems if p.is_error)
    warnings = len(problems) - errors
    if not problems:
        return "**flagstone validate**: no problems found.\n"
    out = [
        f"**flagstone validate**: {errors} error(s), {warnings} warning(s)",
        "",
        "| | location | problem | code |",
        "|---|---|---|---|",
    ]
    for p in problems:
        icon = "❌" if p.is_error else "⚠️"
        message = p.message.replace("|", "\\|")
        out.append(f"| {icon} | `{p.file}:{p.line}:{p.col}` | {message} | `{p.code}` |")
    return "\n".join(out) + "\n"


def problem_line(p: Problem) -> str:
    """The parsable one-line form: ``file:line:col: severity: message [code]``."""
    return str(p)


__all__ = [
    "format_path",
    "problem_dict",
    "problem_line",
    "problems_github",
    "problems_json",
    "problems_markdown",
]
