from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flagstone.cli.app import ExitCode, TextJson, command, err, finish


class Language(StrEnum):
    ts = "ts"
    python = "python"


@command
def codegen(
    lang: Annotated[Language, typer.Option("--lang", "-l", help="ts or python.")],
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="Only flags of these environments (default: all)."),
    ] = None,
    fmt: Annotated[
        TextJson,
        typer.Option("--format", "-f", help="text: the code itself; json: a report with it."),
    ] = TextJson.text,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="With --out: print the code instead; write nothing."),
    ] = False,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Typed accessors for every flag, variant, experiment arm and config key."""
    from flagstone.cli.building import write_atomically
    from flagstone.cli.output import render_problem
    from flagstone.codegen import CodegenResult, codegen_model, render_python, render_ts
    from flagstone.load import find_root, load_repository
    from flagstone.model import check_environments
    from flagstone.validate import validate_loaded

    repo, load_problems = load_repository(find_root(root or Path.cwd()))
    names = env or list(repo.settings.environments)
    check_environments(names, repo.settings.environments)
    errors = [p for p in validate_loaded(repo, load_problems, envs=names) if p.is_error]
    if errors:
        if fmt is TextJson.json:
            finish(CodegenResult(lang=lang.value, problems=errors), fmt)
        for problem in errors:  # stderr: stdout is for the generated code
            err.print(render_problem(problem))
        err.print(f"refusing to generate code: fix the {len(errors)} error(s) above")
        raise typer.Exit(ExitCode.FINDINGS)
    model = codegen_model(repo, names)
    text = render_ts(model) if lang is Language.ts else render_python(model)
    if dry_run and out_file is not None:
        err.print(f"dry run: {out_file} not written; the code it would hold follows")
        out_file = None
    if out_file is not None:
        write_atomically(out_file, text.encode())
    if fmt is TextJson.json:
        written = str(out_file) if out_file is not None else None
        code = None if out_file is not None else text
        finish(CodegenResult(lang.value, written, code, model), fmt)
    if out_file is None:
        sys.stdout.write(text)
        return
    err.print(
        f"wrote {out_file}: {len(model.flags)} flags, {len(model.experiments)} experiments,"
        f" {len(model.config)} config keys"
    )
