from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from flagstone.cli.app import TextJson, command, finish
from flagstone.errors import FlagstoneError, Problem, UsageError


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


def write_bundles(files: Sequence[tuple[Path, bytes]]) -> None:
    """Write every bundle or none: on a failure the ones already written are put back."""
    done: list[tuple[Path, bytes | None]] = []
    try:
        for path, data in files:
            if path.is_dir():
                raise FlagstoneError(f"cannot write {path}: a directory is in the way")
            before = path.read_bytes() if path.is_file() else None
            write_atomically(path, data)
            done.append((path, before))
    except OSError as e:
        for path, before in reversed(done):
            if before is None:
                path.unlink(missing_ok=True)
            else:
                write_atomically(path, before)
        raise FlagstoneError(_write_failure(e)) from None


def _write_failure(e: OSError) -> str:
    where = e.filename or "the output directory"
    if e.errno == errno.ENOSPC:
        return f"cannot write {where}: no space left on the device; free some space or pass --out elsewhere; nothing was written"
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"cannot write into {where}: a file is in the way; pass --out a directory; nothing was written"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {where}: permission denied; pass --out a writable directory; nothing was written"
    return f"cannot write {where}: {e.strerror or e}; nothing was written"


def read_signing_key(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FlagstoneError(
            f"--sign {path}: no such key file; create one with "
            "`openssl genpkey -algorithm ed25519 -out signing.pem`"
        ) from None
    except IsADirectoryError:
        raise FlagstoneError(f"--sign {path}: is a directory, not a PEM key file") from None
    except OSError as e:
        raise FlagstoneError(f"--sign {path}: {e.strerror}") from None


@command
def build(
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="Environments to build (repeatable; default: all)."),
    ] = None,
    all_envs: Annotated[
        bool, typer.Option("--all", help="Build every environment (the default).")
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output directory (default: dist/ at the repository root)."
        ),
    ] = None,
    bundle_format: Annotated[
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
            "--include-secrets",
            help="Seal the secrets into the bundle for --recipient (server bundles only).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and compute the bundles; write nothing.")
    ] = False,
    recipients: Annotated[
        list[str] | None,
        typer.Option(
            "--recipient",
            help="With --include-secrets: the service's age public key (repeatable).",
        ),
    ] = None,
    fmt: Annotated[
        TextJson,
        typer.Option("--output-format", help="How to report what was written: text or json."),
    ] = TextJson.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Write one deterministic JSON bundle per environment (dist/<env>.json)."""
    from flagstone import gitio
    from flagstone.bundle import CompileMemo, build_bundle_bytes, dump_bundle, sign_bundle
    from flagstone.load import find_root, load_repository
    from flagstone.model import check_environments
    from flagstone.report import BuildResult, BuiltBundle
    from flagstone.validate import validate_loaded

    if all_envs and env:
        raise UsageError("pass --env or --all, not both")
    if recipients and not include_secrets:
        raise UsageError("--recipient seals secrets into the bundle: pass --include-secrets too")
    if include_secrets and not recipients:
        raise UsageError(
            "--include-secrets needs the service's age public key: pass --recipient age1… "
            "(the bundle carries the secrets encrypted to it, never in plain text)"
        )
    repo_root = find_root(root or Path.cwd())
    repo, load_problems = load_repository(repo_root)
    names = env or list(repo.settings.environments)
    check_environments(names, repo.settings.environments)
    problems = validate_loaded(repo, load_problems, envs=names)
    errors = [p for p in problems if p.is_error]
    if errors:
        finish(BuildResult(problems=errors), fmt)
    key = read_signing_key(sign) if sign is not None else None
    target = repo_root / "dist" if out_dir is None else Path.cwd() / out_dir
    revisions = gitio.revisions(
        repo_root, {n: [repo.settings.file, f"environments/{n}"] for n in names}
    )
    files: list[tuple[Path, bytes]] = []
    built: list[BuiltBundle] = []
    memo: CompileMemo = {}  # an object identical across environments compiles once
    warnings: list[Problem] = []
    for name in names:
        revision = revisions[name]
        if bundle_format is BundleFormat.flagd:
            from flagstone.flagd import dump_export, export_environment

            document, found = export_environment(repo, name)
            warnings += found
            data = dump_export(document)
            path = target / f"{name}.flagd.json"
            files.append((path, data))
            built.append(BuiltBundle(name, str(path), "flagd"))
            continue
        sealed = _sealed_secrets(repo, name, recipients or []) if include_secrets else None
        bundle, data = build_bundle_bytes(
            repo, name, commit=revision.sha, dirty=revision.dirty, sealed_secrets=sealed, memo=memo
        )
        if key is not None:
            bundle = sign_bundle(bundle, key)
            data = dump_bundle(bundle)
        path = target / f"{name}.json"
        files.append((path, data))
        built.append(
            BuiltBundle(
                name,
                str(path),
                "flagstone",
                hash=bundle["hash"],
                flags=len(bundle["flags"]),
                dirty=revision.dirty,
                signed=key is not None,
            )
        )
    if not dry_run:
        write_bundles(files)
    finish(BuildResult(built, warnings, dry_run=dry_run), fmt)


def _sealed_secrets(repo: Any, env: str, recipients: list[str]) -> dict[str, Any] | None:
    """``env``'s secrets decrypted with the user's identity and sealed for the service."""
    from flagstone.cli.app import ExitCode, report_error
    from flagstone.paths import leaves
    from flagstone.secrets import remember
    from flagstone.sops import TamperedError, find_identities, open_env, seal_for_bundle

    try:
        opened = open_env(repo.root, env, find_identities(repo.root))
    except TamperedError as e:  # a file that fails to verify is a finding, as in `secret`
        report_error(e)
        raise typer.Exit(ExitCode.FINDINGS) from None
    if opened is None:
        return None
    # never into a message
    remember(
        str(v)
        for _, v in leaves(opened.plain)
        if isinstance(v, str | int | float) and not isinstance(v, bool)
    )
    return seal_for_bundle(opened.plain, recipients, opened.key)
