"""Comment-preserving YAML edits (ruamel.yaml round trip) and atomic writes.

Loading keeps comments, key order, quoting and flow/block style; dumping uses the
indentation detected in the original text, so an unchanged document dumps to the same
bytes and an edited one differs only where it was edited.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import itertools
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from flagstone.errors import ConflictError, DocPath, FlagstoneError, Problem, format_path
from flagstone.model import Environment, Repository

_SEQUENCE_ITEM = re.compile(r"^( *)- ")
_MAPPING_KEY = re.compile(r"^( *)[^\s#-][^:]*:(\s|$)")
_OPENS_BLOCK = re.compile(
    r"^( *)[^\s#-][^:#]*:\s*(#.*)?$"
)  # "key:" with nothing after but a comment


@dataclass(frozen=True, slots=True)
class Indentation:
    mapping: int = 2
    sequence: int = 2
    offset: int = 0  # where "- " sits inside the sequence indentation


def detect_indentation(text: str) -> Indentation:
    """The file's own block indentation: mapping step, and where sequence dashes sit."""
    # Comments and blank lines do not show the structure: pair only content lines.
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    mapping = 0
    for previous, line in itertools.pairwise(lines):
        a, b = _OPENS_BLOCK.match(previous), _MAPPING_KEY.match(line)
        if a and b and len(b.group(1)) > len(a.group(1)):
            mapping = len(b.group(1)) - len(a.group(1))
            break
    mapping = mapping or 2
    offset = 0
    for previous, line in itertools.pairwise(lines):
        parent, item = _OPENS_BLOCK.match(previous), _SEQUENCE_ITEM.match(line)
        if parent and item:
            offset = max(0, len(item.group(1)) - len(parent.group(1)))
            break
    return Indentation(mapping=mapping, sequence=offset + 2, offset=offset)


@functools.lru_cache(maxsize=16)
def _yaml(indent: Indentation) -> YAML:
    # Building a YAML instance costs more than loading a small file; one per style is
    # reused (load and dump run one at a time: the CLI is single-threaded).
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    yaml.indent(mapping=indent.mapping, sequence=indent.sequence, offset=indent.offset)
    return yaml


BOM = "\ufeff"


@dataclass
class Document:
    """A round-trip YAML document and the style to write it back in: indentation, the
    final newline, line endings (CRLF kept, per line in a mixed file) and a BOM."""

    data: Any
    indentation: Indentation
    ends_with_newline: bool = True
    newline: str = "\n"
    bom: bool = False
    original: str | None = None  # the text as read, when its line endings are mixed

    @classmethod
    def parse(cls, text: str) -> Document:
        bom = text.startswith(BOM)
        text = text.removeprefix(BOM)
        crlf = text.count("\r\n")
        newline = "\r\n" if crlf and crlf == text.count("\n") else "\n"
        mixed = bool(crlf) and newline == "\n"
        original = text if mixed else None
        text = text.replace("\r\n", "\n") if crlf else text
        indentation = detect_indentation(text)
        data = _yaml(indentation).load(text)
        return cls(
            CommentedMap() if data is None else data,
            indentation,
            text.endswith("\n") or not text,
            newline,
            bom,
            original,
        )

    @classmethod
    def parse_bytes(cls, data: bytes, file: str = "") -> Document:
        try:
            return cls.parse(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise FlagstoneError(
                f"{file or 'the file'} is not UTF-8: save it as UTF-8 first"
            ) from None

    def dump(self) -> str:
        buffer = io.StringIO()
        _yaml(self.indentation).dump(self.data, buffer)
        text = buffer.getvalue()
        text = text if self.ends_with_newline else text.rstrip("\n")
        if self.original is not None:
            text = _keep_line_endings(self.original, text)
        elif self.newline != "\n":
            text = text.replace("\n", self.newline)
        return (BOM if self.bom else "") + text

    def dump_bytes(self) -> bytes:
        return self.dump().encode("utf-8")

    def get(self, path: DocPath) -> Any:
        node = self.data
        for part in path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                raise FlagstoneError(f"{format_path(path)} does not exist") from None
        return node

    def set(self, path: DocPath, value: Any) -> None:
        """Set (or add) the value at ``path``; the parent must exist."""
        parent = self.get(path[:-1]) if len(path) > 1 else self.data
        key = path[-1]
        if isinstance(parent, CommentedMap):
            parent[key] = value
        elif isinstance(parent, CommentedSeq) and isinstance(key, int) and 0 <= key <= len(parent):
            if key == len(parent):
                parent.append(value)
            else:
                parent[key] = value
        else:
            raise FlagstoneError(
                f"cannot set {format_path(path)}: its parent is not a mapping or list"
            )

    def delete(self, path: DocPath) -> None:
        parent = self.get(path[:-1]) if len(path) > 1 else self.data
        try:
            del parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            raise FlagstoneError(f"{format_path(path)} does not exist") from None


def _keep_line_endings(original: str, new: str) -> str:
    """``new`` (LF) with each line that is unchanged from ``original`` ending as it did
    there; changed lines take the file's most common ending."""
    import difflib

    old_lines = original.splitlines(keepends=True)
    crlf = sum(line.endswith("\r\n") for line in old_lines)
    default = "\r\n" if crlf * 2 > len(old_lines) else "\n"
    new_lines = new.splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(
        None,
        [line.rstrip("\r\n") for line in old_lines],
        [line.rstrip("\n") for line in new_lines],
        autojunk=False,
    )
    out: list[str] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for old_line, new_line in zip(old_lines[i1:i2], new_lines[j1:j2], strict=True):
                ending = old_line[len(old_line.rstrip("\r\n")) :]
                out.append(new_line.rstrip("\n") + (ending if new_line.endswith("\n") else ""))
        else:
            out += [
                line[:-1] + default if line.endswith("\n") else line for line in new_lines[j1:j2]
            ]
    return "".join(out)


def atomic_write(path: Path, text: str) -> None:
    """Write through a temp file in the same directory, then rename (keeps the file mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))


# --- all-or-nothing writes -------------------------------------------------------------------

FileContent = str | bytes | None  # None: delete the file
PAUSE_VARIABLE = "FLAGSTONE_PAUSE_AT"  # tests: pause a writer at a named step (see _checkpoint)
STEPS = ("snapshot", "written", "staged", "committed")


class WriteInterrupted(FlagstoneError):
    """A signal stopped a write; every file (and the index) is as it was, or the commit
    is complete. The command exits 128 + ``signum``, as a shell reports a stopped job."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


@dataclass(frozen=True, slots=True)
class _Original:
    content: bytes | None
    mode: int | None


_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class _Interruptions:
    """While a write runs, SIGINT/SIGTERM/SIGHUP are recorded instead of raising at an
    arbitrary line: the writer stops at its next step and restores, and a running git is
    asked to stop so that it cannot commit after the restore."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interruptions:
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        from flagstone import gitio

        if self.received is None:
            self.received = signum
        gitio.stop_running()

    def check(self) -> None:
        if self.received is not None:
            name = signal.Signals(self.received).name
            raise WriteInterrupted(f"interrupted by {name}", self.received)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _checkpoint(step: str, interruptions: _Interruptions) -> None:
    """Stop here if a signal came; tests also pause here (FLAGSTONE_PAUSE_AT=step) until
    they send one, after printing a marker on stderr."""
    interruptions.check()
    if os.environ.get(PAUSE_VARIABLE) == step:
        sys.stderr.write(f"flagstone: paused at {step}\n")
        sys.stderr.flush()
        deadline = time.monotonic() + 30
        while interruptions.received is None and time.monotonic() < deadline:
            time.sleep(0.01)
        interruptions.check()


_LOCKS_GUARD = threading.Lock()
_LOCKS: dict[str, _RepositoryLock] = {}


class _RepositoryLock:
    """One writer per repository at a time, across processes (an OS file lock, released
    even if the process dies) and threads; re-entrant within a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.handle: Any = None

    def acquire(self, timeout: float) -> None:
        if not self.thread_lock.acquire(timeout=timeout):
            raise self._busy()
        if self.depth == 0:
            try:
                self.handle = _lock_file(self.path, timeout)
            except BaseException:
                self.thread_lock.release()
                raise
            if self.handle is None:
                self.thread_lock.release()
                raise self._busy()
        self.depth += 1

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            _unlock_file(self.handle)
            self.handle = None
        self.thread_lock.release()

    def _busy(self) -> ConflictError:
        return ConflictError(
            f"another flagstone command is writing to this repository (lock {self.path}); "
            "try again when it has finished"
        )


def _lock_file(path: Path, timeout: float) -> Any:
    handle = path.open("a+b")
    deadline = time.monotonic() + timeout
    while True:
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except OSError:
            if time.monotonic() >= deadline:
                handle.close()
                return None
            time.sleep(0.02)


def _unlock_file(handle: Any) -> None:
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    handle.close()


def _lock_path(root: Path) -> Path:
    from flagstone import gitio

    git_dir = gitio.git_dir(root)
    if git_dir is not None:
        return git_dir / "flagstone.lock"
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"flagstone-{digest}.lock"


@contextlib.contextmanager
def repository_lock(root: Path, *, timeout: float = 60.0) -> Iterator[None]:
    """Hold the repository's write lock. Writers read what they change *under* it, so two
    edits at once both land (one waits for the other) instead of one overwriting the other."""
    path = _lock_path(root)
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(str(path), _RepositoryLock(path))
    lock.acquire(timeout)
    try:
        yield
    finally:
        lock.release()


def apply_files(
    root: Path,
    files: Mapping[str, FileContent],
    *,
    commit: str | None = None,
    trailers: Mapping[str, str] | None = None,
    basis: Mapping[str, bytes | None] | None = None,
) -> str | None:
    """Write (text or bytes) and delete (None) repository-relative files, and with
    ``commit`` commit exactly them with that message; returns the new commit's sha.

    All or nothing: on any failure or signal (SIGINT, SIGTERM, SIGHUP) every file is
    restored byte for byte (mode included, created folders removed) and the index entries
    of these paths are put back, unless the commit completed. ``basis`` is what the caller
    read when it planned the change: if a file differs now, another writer got there
    first and nothing is written. Runs under ``repository_lock``.
    """
    from flagstone import gitio

    real = {_inside(root, rel): content for rel, content in files.items()}
    with repository_lock(root), _Interruptions() as interruptions:
        for rel, expected in (basis or {}).items():
            path = root / _inside(root, rel)
            if (path.read_bytes() if path.is_file() else None) != expected:
                raise ConflictError(
                    f"{rel} changed since it was read (another edit?): nothing was written; "
                    "run the command again"
                )
        originals = {rel: _original(root / rel) for rel in real}
        paths = sorted(
            rel
            for rel, content in real.items()
            if content is not None or originals[rel].content is not None
        )
        head = index = None
        if commit is not None:
            if not gitio.is_clean(root, paths):
                raise ConflictError(
                    f"{_names(paths)} ha{'s' if len(paths) == 1 else 've'} uncommitted changes: "
                    "commit or stash them first"
                )
            head = gitio.head_sha(root)
            index = gitio.index_snapshot(root, paths)
        created: list[Path] = []
        staged: dict[str, Path] = {}  # temp files not yet renamed into place
        try:
            _checkpoint("snapshot", interruptions)
            for rel, content in real.items():
                if content is None:
                    continue
                created += _make_parents(root / rel, root)
                data = content.encode("utf-8") if isinstance(content, str) else content
                staged[rel] = _write_temp(root / rel, data, originals[rel].mode)
            _sync(list(staged.values()))
            for rel, content in real.items():
                interruptions.check()
                if content is None:
                    (root / rel).unlink(missing_ok=True)
                else:
                    staged[rel].replace(root / rel)
                    del staged[rel]
            _checkpoint("written", interruptions)
            if commit is None:
                return None
            gitio.stage(root, paths)
            _checkpoint("staged", interruptions)
            sha = gitio.commit_staged(root, paths, commit, dict(trailers or {}))
            _checkpoint("committed", interruptions)
            return sha
        except BaseException as error:
            for tmp in staged.values():
                tmp.unlink(missing_ok=True)
            committed = commit is not None and gitio.head_sha(root) != head
            if not committed:
                _restore(root, originals, created)
                if index is not None:
                    gitio.restore_index(root, index)
            if interruptions.received is not None or isinstance(error, WriteInterrupted):
                signum = interruptions.received or signal.SIGINT
                raise WriteInterrupted(
                    f"interrupted by {signal.Signals(signum).name}: "
                    + (
                        "the commit was already complete"
                        if committed
                        else "nothing was written, every file is as it was"
                    ),
                    signum,
                ) from None
            raise


def _names(paths: Sequence[str]) -> str:
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _inside(root: Path, rel: str) -> str:
    """``rel`` as the repository-relative path that is really written: refuses paths that
    leave the repository (``..``, absolute, a symlink pointing elsewhere); a symlink
    inside the repository is followed, so the file it points to is written (and committed)."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise FlagstoneError(f"refusing to write {rel!r}: it is not a path inside the repository")
    real_root = root.resolve()
    real = root.joinpath(*pure.parts).resolve()
    if not real.is_relative_to(real_root) or real == real_root:
        raise FlagstoneError(
            f"refusing to write {rel}: it is a symlink (or inside one) that leaves the repository"
        )
    return real.relative_to(real_root).as_posix()


def _original(path: Path) -> _Original:
    if not path.is_file():
        return _Original(None, None)
    return _Original(path.read_bytes(), path.stat().st_mode & 0o7777)


def _make_parents(path: Path, root: Path) -> list[Path]:
    missing = []
    parent = path.parent
    while parent != root and not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        folder.mkdir()
    return missing


def _restore(root: Path, originals: Mapping[str, _Original], created: list[Path]) -> None:
    """Put every file back; one that cannot be restored does not stop the others."""
    failed: list[str] = []
    for rel, before in originals.items():
        path = root / rel
        try:
            if before.content is None:
                if path.is_symlink() or path.is_file():
                    path.unlink()
                continue
            now = path.read_bytes() if path.is_file() else None
            if now != before.content or (
                before.mode is not None and path.stat().st_mode & 0o7777 != before.mode
            ):
                atomic_write_bytes(path, before.content, before.mode)
        except OSError:
            failed.append(rel)
    for folder in sorted(created, key=lambda f: len(f.parts), reverse=True):  # innermost first
        with contextlib.suppress(OSError):
            folder.rmdir()
    if failed:
        raise FlagstoneError(
            f"the write failed and {_names(failed)} could not be restored: "
            "check them with `git status` and `git diff`"
        )


def atomic_write_bytes(path: Path, content: bytes, mode: int | None = None) -> None:
    """Write through a temp file in the same folder, fsync, then rename over ``path``."""
    tmp = _write_temp(path, content, mode)
    try:
        _sync([tmp])
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_temp(path: Path, content: bytes, mode: int | None) -> Path:
    """``content`` in a new temp file beside ``path``, with ``path``'s mode (or the umask's)."""
    if mode is None:
        mode = path.stat().st_mode & 0o7777 if path.is_file() else 0o666 & ~_umask()
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        tmp.chmod(mode)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _sync(paths: Sequence[Path]) -> None:
    """Make the new contents durable before they replace the old: one fsync per file for a
    few files; for many, one ``sync`` (3,000 fsyncs cost seconds)."""
    if len(paths) > 32 and hasattr(os, "sync"):
        os.sync()
        return
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@functools.cache
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def set_path(node: Any, path: Sequence[str], value: Any, create: bool = False) -> None:
    """Set a nested mapping value; with ``create``, missing parents become mappings."""
    for part in path[:-1]:
        if part not in node or not isinstance(node[part], Mapping):
            if not create:
                return
            node[part] = CommentedMap()
        node = node[part]
    node[path[-1]] = value


def delete_path(node: Any, path: Sequence[str]) -> None:
    """Delete a nested key and any mapping the deletion leaves empty."""
    parents = []
    for part in path[:-1]:
        if not isinstance(node, Mapping) or part not in node:
            return
        parents.append((node, part))
        node = node[part]
    if isinstance(node, MutableMapping) and path[-1] in node:
        del node[path[-1]]
    for parent, part in reversed(parents):
        if (
            isinstance(parent, MutableMapping)
            and isinstance(parent[part], Mapping)
            and not parent[part]
        ):
            del parent[part]


def merge_into(parent: Any, key: Any, new: Any) -> None:
    """Make ``parent[key]`` equal to ``new`` by changing only what differs, in place: the
    old node keeps its comments, quoting and flow/block style wherever its value stays."""
    if key in parent:
        parent[key] = _merged(parent[key], new)
    else:
        parent[key] = new


def _merged(old: Any, new: Any) -> Any:
    if canonical(old) == canonical(new):
        return old
    if isinstance(old, CommentedMap) and isinstance(new, Mapping):
        for gone in [k for k in old if k not in new]:
            del old[gone]
        previous = -1
        for k, value in new.items():
            if k in old:
                old[k] = _merged(old[k], value)
                previous = list(old).index(k)
            else:
                previous += 1
                old.insert(previous, k, value)
        return old
    if isinstance(old, CommentedSeq) and isinstance(new, Sequence) and not isinstance(new, str):
        import difflib

        matcher = difflib.SequenceMatcher(
            None, [canonical(x) for x in old], [canonical(x) for x in new], autojunk=False
        )
        for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
            if tag == "equal":
                continue
            paired = min(i2 - i1, j2 - j1)
            for offset in range(paired):
                old[i1 + offset] = _merged(old[i1 + offset], new[j1 + offset])
            for index in reversed(range(i1 + paired, i2)):
                del old[index]
            for offset, value in enumerate(new[j1 + paired : j2]):
                old.insert(i1 + paired + offset, value)
        return old
    return new


def canonical(value: Any) -> Any:
    """A hashable form that tells apart what YAML tells apart (true vs 1, 1 vs 1.0)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, float):
        return ("float", float(value))
    if isinstance(value, str):
        return ("str", str(value))
    if value is None:
        return ("null",)
    if isinstance(value, Mapping):
        return ("map", frozenset((canonical(k), canonical(v)) for k, v in value.items()))
    if isinstance(value, Sequence):
        return ("seq", tuple(canonical(x) for x in value))
    return ("other", str(value))


def mapping(items: Any = (), *, flow: bool = False) -> CommentedMap:
    """A new round-trip mapping; ``flow`` writes it inline ({a: 1})."""
    node = CommentedMap(items)
    if flow:
        node.fa.set_flow_style()
    return node


def sequence(items: Any = (), *, flow: bool = False) -> CommentedSeq:
    node = CommentedSeq(items)
    if flow:
        node.fa.set_flow_style()
    return node


class DocumentSet:
    """Round-trip documents of one repository, each file read once; a missing file
    starts as an empty mapping. ``basis`` keeps the bytes each document was read from,
    for ``apply_files`` to check that nobody changed them in between."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.documents: dict[str, Document] = {}
        self.basis: dict[str, bytes | None] = {}

    def __getitem__(self, rel: str) -> Document:
        if rel not in self.documents:
            path = self.root / rel
            data = path.read_bytes() if path.is_file() else None
            self.basis[rel] = data
            self.documents[rel] = Document.parse_bytes(data or b"", rel)
        return self.documents[rel]

    def texts(self, under: str = "") -> dict[str, str]:
        """The dumped text of every document under a folder (repository-relative) that
        changed: an untouched document is not rewritten."""
        out = {}
        for rel, doc in self.documents.items():
            if not rel.startswith(under):
                continue
            text = doc.dump()
            if self.basis.get(rel) is None or text.encode("utf-8") != self.basis[rel]:
                out[rel] = text
        return out


# --- checking a planned write -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteCheck:
    """What a planned write does to an environment's findings."""

    after: Environment
    new: list[Problem]  # errors the write introduces: it is refused
    existing: list[Problem]  # errors that were there before: listed, never blocking

    @property
    def allowed(self) -> bool:
        return not self.new


def check_write(repo: Repository, env: str, files: Mapping[str, str | None]) -> WriteCheck:
    """Validate ``env`` as it would be with ``files`` written, against how it is now.

    Incidents first: the kill switch or a rollback must not wait for an unrelated fix,
    so only errors the write *adds* refuse it. An error is the same one before and after
    when its file, code, document path and message agree (its line may have moved).
    """
    from flagstone.validate import validate_with_files

    after, problems = validate_with_files(repo, env, files)
    errors = [p for p in problems if p.is_error]
    if not errors:  # nothing to tell apart: skip validating the environment as it was
        return WriteCheck(after, [], [])
    _, before = validate_with_files(repo, env, {})
    seen = {_identity(p) for p in before if p.is_error}
    return WriteCheck(
        after,
        [p for p in errors if _identity(p) not in seen],
        [p for p in errors if _identity(p) in seen],
    )


def _identity(problem: Problem) -> tuple[str, str, DocPath, str]:
    return (problem.file, problem.code, problem.path, problem.message)
