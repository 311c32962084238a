"""What ``flagstone build`` does once its options are read, without typer or rich: the
Typer command (cli/build.py) and the console script's quick path (cli/entry.py) both
run ``build`` here, so the two cannot drift apart."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flagstone.cli.entry import ends_with_os_exit, exits_after_command, keep_until_exit
from flagstone.errors import FlagstoneError, Problem, UsageError

if TYPE_CHECKING:
    from flagstone.model import Repository
    from flagstone.report_build import BuildResult


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file in the same directory, then rename: readers see the old or the new file."""
    import tempfile

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


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """What a command line asked ``flagstone build`` for (defaults: the command's own)."""

    envs: list[str] | None = None
    all_envs: bool = False
    out_dir: Path | None = None
    bundle_format: str = "flagstone"  # or "flagd"
    sign: Path | None = None
    include_secrets: bool = False
    dry_run: bool = False
    recipients: list[str] | None = None
    output_format: str = "text"  # or "json"
    root: Path | None = None


def build(options: BuildOptions) -> BuildResult:
    """Validate, compile and write the bundles ``options`` ask for; a result with the
    errors when the repository is invalid (nothing written)."""
    from flagstone.load import assemble_worktree, find_root, read_worktree
    from flagstone.model import check_environments

    if options.all_envs and options.envs:
        raise UsageError("pass --env or --all, not both")
    recipients, include_secrets = options.recipients, options.include_secrets
    if recipients and not include_secrets:
        raise UsageError("--recipient seals secrets into the bundle: pass --include-secrets too")
    if include_secrets and not recipients:
        raise UsageError(
            "--include-secrets needs the service's age public key: pass --recipient age1… "
            "(the bundle carries the secrets encrypted to it, never in plain text)"
        )
    # What a build reads lives until it is written: the collector would only walk it.
    with _collector_paused():
        repo_root = find_root(options.root or Path.cwd())
        worktree = read_worktree(repo_root)
        names = options.envs or list(worktree.settings.environments)
        check_environments(names, worktree.settings.environments)
        flagstone_bundles = options.bundle_format == "flagstone"
        repo, load_problems = assemble_worktree(worktree)
        # A forked copy validates what this process parsed while this one compiles; not
        # when sealing secrets, which decrypts only once the repository is valid. What
        # both use is imported before the fork, once for both (jsonschema-rs ~20 ms);
        # what only this process needs (bundle, report), after it.
        beside = flagstone_bundles and not include_secrets
        if beside:
            _import_shared()
        checking = validation_beside(repo, load_problems, names) if beside else None
        from flagstone.bundle import dump_bundle, sign_bundle
        from flagstone.report_build import BuildResult, BuiltBundle

        compiled: dict[str, tuple[dict[str, Any], bytes, bool]] = {}
        if checking is None:
            from flagstone.validate import validate_loaded

            errors = _errors(validate_loaded(repo, load_problems, envs=names))
            if errors:
                return BuildResult(problems=errors)
            key = read_signing_key(options.sign) if options.sign is not None else None
            if flagstone_bundles:
                compiled = _compile_bundles(repo, names, recipients if include_secrets else None)
        else:
            failure: Exception | None = None
            try:
                compiled = _compile_bundles(repo, names)
            except Exception as e:  # invalid input: validation's findings come first
                failure = e
            except BaseException:
                checking.cancel()
                raise
            errors = _errors(checking.result(repo, load_problems))
            if errors:
                return BuildResult(problems=errors)
            key = read_signing_key(options.sign) if options.sign is not None else None
            if failure is not None:
                raise failure
        target = repo_root / "dist" if options.out_dir is None else Path.cwd() / options.out_dir
        files: list[tuple[Path, bytes]] = []
        built: list[BuiltBundle] = []
        warnings: list[Problem] = []
        if not flagstone_bundles:
            from flagstone.flagd import dump_export, export_environment

            for name in names:
                document, found = export_environment(repo, name)
                warnings += found
                path = target / f"{name}.flagd.json"
                files.append((path, dump_export(document)))
                built.append(BuiltBundle(name, str(path), "flagd"))
        for name, (bundle, data, dirty) in compiled.items():
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
                    dirty=dirty,
                    signed=key is not None,
                )
            )
        if not options.dry_run:
            write_bundles(files)
        keep_until_exit(repo, compiled, files)
        return BuildResult(built, warnings, dry_run=options.dry_run)


def _import_shared() -> None:
    with contextlib.suppress(ImportError):  # the process that needs one reports it
        import jsonschema_rs  # noqa: F401

        import flagstone.conditions
        import flagstone.privacy  # noqa: F401


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # A run that ends with os._exit frees nothing: the collector, enabled again, would
        # only walk everything the build read once more (60 ms of 1.04 s CPU at load ~2).
        if enabled and not ends_with_os_exit():
            gc.enable()


def plain_output(result: BuildResult, fmt: str) -> str | None:
    """What stdout gets for ``result`` in ``fmt`` when no problem needs rich to show it
    (cli/output.py renders the rest): the JSON envelope, or the lines of what was built."""
    if fmt == "json":
        from flagstone import report  # every result type: 10-25 ms a text build does not need

        return report.dumps(report.document(result))
    return None if result.problems else result.built_lines()


def _errors(problems: Sequence[Problem]) -> list[Problem]:
    return [p for p in problems if p.is_error]


def _compile_bundles(
    repo: Repository, names: Sequence[str], recipients: list[str] | None = None
) -> dict[str, tuple[dict[str, Any], bytes, bool]]:
    """Each environment's bundle, its canonical bytes and whether its files are uncommitted;
    ``recipients``: seal the secrets for them."""
    from flagstone import gitio
    from flagstone.bundle import CompileMemo, build_bundle, encode_bundle

    # git status runs beside the compiling (the source commit is filled in before encoding)
    revisions: dict[str, gitio.Revision] = {}
    failure: list[BaseException] = []

    def read_revisions() -> None:
        try:
            revisions.update(
                gitio.revisions(
                    repo.root, {n: [repo.settings.file, f"environments/{n}"] for n in names}
                )
            )
        except BaseException as e:  # re-raised in the compiling thread
            failure.append(e)

    git_status = threading.Thread(target=read_revisions, daemon=True)
    git_status.start()
    memo = CompileMemo()  # an object identical across environments compiles once
    bundles = {}
    for name in names:
        sealed = _sealed_secrets(repo, name, recipients) if recipients is not None else None
        bundles[name] = build_bundle(repo, name, sealed_secrets=sealed, hashed=False, memo=memo)
    git_status.join()
    if failure:
        raise failure[0]
    out = {}
    for name, bundle in bundles.items():
        revision = revisions[name]
        bundle["source"] = {"commit": revision.sha, "dirty": revision.dirty}
        out[name] = (bundle, encode_bundle(bundle), revision.dirty)
    return out


class ValidationBeside:
    """A forked copy of this process validating the repository it parsed: ``result``
    waits for its problems, or validates here when the copy died (killed, out of memory)."""

    def __init__(self, pid: int, fd: int, names: Sequence[str]) -> None:
        self.pid: int | None = pid
        self.fd = fd
        self.names = names

    def result(self, repo: Repository, load_problems: list[Problem]) -> list[Problem]:
        """The problems of ``validate_loaded`` on ``repo`` and ``load_problems``."""
        import pickle

        chunks = []
        try:
            while chunk := os.read(self.fd, 1 << 20):
                chunks.append(chunk)
        except BaseException:
            self.cancel()
            raise
        finally:
            os.close(self.fd)
        try:  # a copy that died before it wrote them all sent no complete pickle
            problems: list[Problem] = pickle.loads(b"".join(chunks))
        except Exception:
            self._reap()
        else:
            # The copy closed the pipe before exiting: waiting while the kernel frees its
            # memory took 15-50 ms. A process that ends after this command leaves the
            # exit to init (it inherits the copy when this process ends).
            self._reap(wait=not exits_after_command())
            return problems
        from flagstone.validate import validate_loaded

        return validate_loaded(repo, load_problems, envs=self.names)

    def cancel(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._reap()

    def _reap(self, *, wait: bool = True) -> None:
        assert self.pid is not None
        os.waitpid(self.pid, 0 if wait else os.WNOHANG)
        self.pid = None


def validation_beside(
    repo: Repository, load_problems: list[Problem], names: Sequence[str]
) -> ValidationBeside | None:
    """Start validating ``repo`` in a forked child, or None where that would not help:
    one usable core, no fork (Windows), other threads running (a fork copies only this
    one), or ``FLAGSTONE_JOBS=1``. The child shares the parsed repository with this
    process (copy-on-write, the collector paused) instead of parsing the files again:
    a second parse cost as much CPU as the checks, which a loaded machine pays for."""
    if (
        not hasattr(os, "fork")
        or os.environ.get("FLAGSTONE_JOBS") == "1"
        or _usable_cores() < 2
        or threading.active_count() > 1
    ):
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: validate, send the problems, exit without cleanup of its own
        status = 1
        try:
            os.close(read_fd)
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent reports it
            # imported here: the parent only compiles, unless this child fails
            import pickle

            from flagstone.validate import validate_loaded

            problems = validate_loaded(repo, load_problems, envs=names)
            data = memoryview(pickle.dumps(problems))
            while data:
                data = data[os.write(write_fd, data) :]
            os.close(write_fd)  # the parent reads to the end now, not once this exits
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    return ValidationBeside(pid, read_fd, names)


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _sealed_secrets(repo: Any, env: str, recipients: list[str]) -> dict[str, Any] | None:
    """``env``'s secrets decrypted with the user's identity and sealed for the service."""
    import typer

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
