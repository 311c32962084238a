from __future__ import annotations

import json
import os
import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flagstone.cli.app import ExitCode, ValidateFormat, command, err, out
from flagstone.errors import FlagstoneError


class BundleFormat(StrEnum):
    flagstone = "flagstone"
    flagd = "flagd"


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file in the same directory, then rename: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@command
def build(
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="Environments to build (repeatable; default: all)."),
    ] = None,
    all_envs: Annotated[
        bool, typer.Option("--all", help="Build every environment (the default).")
    ] = False,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("dist"),
    fmt: Annotated[
        BundleFormat,
        typer.Option("--format", "-f", help="flagstone bundle, or a flagd flag-definition file."),
    ] = BundleFormat.flagstone,
    sign: Annotated[
        Path | None,
        typer.Option("--sign", help="Ed25519 private key (PEM) to sign the bundle with."),
    ] = None,
    include_secrets: Annotated[
        bool,
        typer.Option(
            "--include-secrets", help="Keep encrypted config values (server-side bundles only)."
        ),
    ] = False,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Write one deterministic JSON bundle per environment (dist/<env>.json)."""
    from flagstone import gitio
    from flagstone.bundle import build_bundle_bytes, dump_bundle, sign_bundle
    from flagstone.cli.output import emit_problems
    from flagstone.load import find_root, load_repository
    from flagstone.validate import validate_loaded

    if all_envs and env:
        raise FlagstoneError("pass --env or --all, not both")
    repo_root = find_root(root or Path.cwd())
    repo, load_problems = load_repository(repo_root)
    names = env or list(repo.settings.environments)
    for name in names:
        repo.env(name)
    problems = validate_loaded(repo, load_problems, envs=names)
    errors = [p for p in problems if p.is_error]
    if errors:
        emit_problems(errors, ValidateFormat.text)
        err.print(f"refusing to build: fix the {len(errors)} error(s) above (flagstone validate)")
        raise typer.Exit(ExitCode.FINDINGS)
    key = sign.read_bytes() if sign is not None else None
    target = out_dir if out_dir.is_absolute() else Path.cwd() / out_dir
    revisions = gitio.revisions(
        repo_root, {n: [repo.settings.file, f"environments/{n}"] for n in names}
    )
    for name in names:
        revision = revisions[name]
        if fmt is BundleFormat.flagd:
            from flagstone.flagd import export_environment

            document, warnings = export_environment(repo, name)
            emit_problems(warnings, ValidateFormat.text) if warnings else None
            data = (
                json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False).encode() + b"\n"
            )
            path = target / f"{name}.flagd.json"
            write_atomically(path, data)
            out.print(f"wrote {path} (flagd)")
            continue
        bundle, data = build_bundle_bytes(
            repo, name, commit=revision.sha, dirty=revision.dirty, include_secrets=include_secrets
        )
        if key is not None:
            bundle = sign_bundle(bundle, key)
            data = dump_bundle(bundle)
        path = target / f"{name}.json"
        write_atomically(path, data)
        note = " from uncommitted changes" if revision.dirty else ""
        out.print(
            f"wrote {path}  {bundle['hash'][:19]}  {len(bundle['flags'])} flags{note}"
            + ("  signed" if key is not None else "")
        )
    sys.stdout.flush()
