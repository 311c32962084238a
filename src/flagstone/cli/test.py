from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from flagstone.cli.app import ExitCode, Format, ValidateFormat, command, err, out


@command(name="test")
def test_(
    specs: Annotated[
        list[Path] | None, typer.Argument(help="Spec files (default: every file under specs/).")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Only these environments.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Run the assertion specs in specs/ against the bundles built from the working tree."""
    from rich.text import Text

    from flagstone.cli.output import emit_problems
    from flagstone.load import find_root
    from flagstone.spec import run_specs

    report = run_specs(find_root(root or Path.cwd()), specs or (), env)
    if fmt is Format.json:
        doc = {
            "ok": report.ok,
            "passed": sum(r.passed for r in report.results),
            "failed": len(report.failed),
            "results": [
                {
                    "file": r.file,
                    "line": r.line,
                    "column": r.col,
                    "case": r.index,
                    "env": r.env,
                    "name": r.name,
                    "passed": r.passed,
                    "failures": list(r.failures),
                    "trace": list(r.trace),
                }
                for r in report.results
            ],
            "problems": [
                {
                    "file": p.file,
                    "line": p.line,
                    "column": p.col,
                    "code": p.code,
                    "message": p.message,
                }
                for p in report.problems
            ],
        }
        sys.stdout.write(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    else:
        if report.problems:
            emit_problems(report.problems, ValidateFormat.text, checked="specs")
        for r in report.failed:
            out.print(
                Text.assemble(
                    (f"{r.file}:{r.line}:{r.col}", "bold"),
                    ": ",
                    ("FAIL", "bold red"),
                    f" [{r.env}] {r.name}",
                )
            )
            for failure in r.failures:
                out.print(Text(f"    {failure}"))
            for line in r.trace:
                out.print(Text(f"      {line}", style="dim"))
        passed = sum(r.passed for r in report.results)
        colour = "bold green" if report.ok else "bold red"
        err.print(
            Text.assemble(
                ("✓ " if report.ok else "✗ ", colour),
                f"{passed} passed, {len(report.failed)} failed"
                + (
                    f", {len(report.problems)} unreadable spec problem(s)"
                    if report.problems
                    else ""
                ),
            )
        )
    raise typer.Exit(ExitCode.OK if report.ok else ExitCode.FINDINGS)
