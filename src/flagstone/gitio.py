"""The only module that talks to git (through GitPython).

Callers get answers in flagstone's terms and never see ``git.Repo``; a git failure
becomes a ``GitError`` saying what to do.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import git

from flagstone.errors import GitError


@dataclass(frozen=True, slots=True)
class Revision:
    sha: str | None  # None outside a git repository or before the first commit
    dirty: bool  # uncommitted changes under the paths asked about


def _repo(root: Path) -> git.Repo | None:
    return _open(str(root.resolve()))


@functools.lru_cache(maxsize=8)
def _open(root: str) -> git.Repo | None:
    # One Repo per root for the process: its persistent `git cat-file --batch` is what
    # makes reading thousands of blobs cheap.
    try:
        return git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def ensure_repo(root: Path) -> git.Repo:
    repo = _repo(root)
    if repo is None:
        raise GitError(
            f"{root} is not in a git repository; run `git init` and commit the configuration first"
        )
    return repo


def current_revision(root: Path, paths: Sequence[str] = ()) -> Revision:
    """HEAD's sha and whether ``paths`` (repository-relative) have uncommitted changes."""
    repo = _repo(root)
    if repo is None:
        return Revision(None, True)
    try:
        sha = repo.head.commit.hexsha
    except ValueError:  # no commit yet
        return Revision(None, True)
    try:
        dirty = _is_dirty(repo, root, paths)
    except git.GitCommandError as e:
        raise GitError(f"git status failed: {e.stderr.strip() or e}") from None
    return Revision(sha, dirty)


def revisions(root: Path, groups: dict[str, Sequence[str]]) -> dict[str, Revision]:
    """``current_revision`` for several groups of paths with one `git status`."""
    repo = _repo(root)
    if repo is None:
        return {name: Revision(None, True) for name in groups}
    try:
        sha = repo.head.commit.hexsha
    except ValueError:
        return {name: Revision(None, True) for name in groups}
    prefix = _prefix(repo, root)
    every = sorted({p for paths in groups.values() for p in paths})
    status = repo.git.status(
        "--porcelain", "--untracked-files=all", "-z", "--", *(prefix + p for p in every)
    )
    changed = [entry[3:][len(prefix) :] for entry in status.split("\0") if len(entry) > 3]
    return {
        name: Revision(
            sha, any(c == p or c.startswith(p.rstrip("/") + "/") for c in changed for p in paths)
        )
        for name, paths in groups.items()
    }


def _is_dirty(repo: git.Repo, root: Path, paths: Sequence[str]) -> bool:
    prefix = _prefix(repo, root)
    scoped = [prefix + p for p in paths] or [prefix or "."]
    return bool(repo.git.status("--porcelain", "--untracked-files=all", "--", *scoped).strip())


def _prefix(repo: git.Repo, root: Path) -> str:
    """The flagstone root relative to the git top level ('' or 'config/')."""
    rel = root.resolve().relative_to(Path(repo.working_tree_dir or root).resolve()).as_posix()
    return "" if rel == "." else rel + "/"


def last_changed(root: Path, paths: Sequence[str]) -> dt.datetime | None:
    """When any of ``paths`` last changed in a commit (None if never committed or dirty)."""
    repo = _repo(root)
    if repo is None or not paths:
        return None
    prefix = _prefix(repo, root)
    try:
        if _is_dirty(repo, root, paths):
            return None
        stamp = repo.git.log("-1", "--format=%ct", "--", *(prefix + p for p in paths))
    except (git.GitCommandError, ValueError):
        return None
    return dt.datetime.fromtimestamp(int(stamp), dt.UTC) if stamp.strip() else None


def init_repo(root: Path) -> bool:
    """``git init`` ``root`` unless it is already inside a repository; True when it ran."""
    if _repo(root) is not None:
        return False
    try:
        git.Repo.init(root, initial_branch="main")
    except git.GitCommandError as e:
        raise GitError(f"git init failed in {root}: {e.stderr.strip() or e}") from None
    return True


# --- reading revisions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommitInfo:
    sha: str
    author_name: str
    author_email: str
    date: dt.datetime
    subject: str
    message: str
    signature: str  # git's %G?: G good, U good but unknown validity, N none, B bad, ...
    trailers: dict[str, str]
    parents: tuple[str, ...]


def resolve(root: Path, rev: str) -> str:
    repo = ensure_repo(root)
    try:
        return str(repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}"))
    except git.GitCommandError:
        raise GitError(
            f"unknown revision {rev!r}: give a commit, branch, tag or an expression like HEAD~2"
        ) from None


def rev_before(root: Path, when: str) -> str:
    """The last commit on HEAD at or before ``when`` (ISO date or time)."""
    repo = ensure_repo(root)
    sha = repo.git.rev_list("-1", f"--before={when}", "HEAD").strip()
    if not sha:
        raise GitError(f"no commit at or before {when}; the history starts later")
    return str(sha)


def tree_files(root: Path, rev: str, prefix: str) -> dict[str, bytes]:
    """Every blob under ``prefix`` (repository-relative to the flagstone root) at ``rev``."""
    repo = ensure_repo(root)
    sha = resolve(root, rev)
    base = _prefix(repo, root)
    try:
        tree = repo.commit(sha).tree / (base + prefix).rstrip("/")
    except KeyError:
        return {}
    out: dict[str, bytes] = {}
    for item in tree.traverse():
        if isinstance(item, git.Blob):
            out[str(item.path)[len(base) :]] = item.data_stream.read()
    return out


def show(root: Path, rev: str, path: str) -> bytes | None:
    """A file's bytes at ``rev``, or None if it did not exist there."""
    repo = ensure_repo(root)
    try:
        return bytes(
            repo.commit(resolve(root, rev)).tree[_prefix(repo, root) + path].data_stream.read()
        )
    except KeyError:
        return None


def commit(
    root: Path, paths: Sequence[str], message: str, trailers: dict[str, str] | None = None
) -> str:
    """Commit exactly ``paths`` (added, changed or deleted) with trailers; returns the sha."""
    repo = ensure_repo(root)
    prefix = _prefix(repo, root)
    body = message.rstrip() + "\n"
    if trailers:
        body += "\n" + "".join(f"{k}: {v}\n" for k, v in trailers.items())
    try:
        repo.git.add("-A", "--", *(prefix + p for p in paths))
        repo.git.commit("-m", body, "--", *(prefix + p for p in paths))
    except git.GitCommandError as e:
        raise GitError(f"git commit failed: {(e.stderr or str(e)).strip()}") from None
    return str(repo.head.commit.hexsha)


def changed_since(root: Path, rev: str, paths: Sequence[str]) -> bool:
    """Whether ``paths`` differ between ``rev`` and the working tree."""
    repo = ensure_repo(root)
    prefix = _prefix(repo, root)
    out = repo.git.diff("--name-only", resolve(root, rev), "--", *(prefix + p for p in paths))
    return bool(out.strip()) or _is_dirty(repo, root, paths)


def is_clean(root: Path, paths: Sequence[str]) -> bool:
    repo = ensure_repo(root)
    return not _is_dirty(repo, root, paths)


def create_branch(root: Path, name: str) -> None:
    repo = ensure_repo(root)
    try:
        repo.git.checkout("-b", name)
    except git.GitCommandError as e:
        raise GitError(f"cannot create branch {name!r}: {(e.stderr or str(e)).strip()}") from None


_FIELDS = ("%H", "%an", "%ae", "%aI", "%G?", "%P", "%B")
_RECORD = "\x1e"


def log(
    root: Path,
    rev_range: str | None = None,
    paths: Sequence[str] = (),
    *,
    reverse: bool = False,
    raw: bool = False,
    merges: bool = True,
    config: Sequence[str] = (),
) -> list[tuple[CommitInfo, list[tuple[str, str, str]]]]:
    """Commits (newest first unless ``reverse``) touching ``paths``; with ``raw``, each
    commit's changed files as (status, path, new blob sha), renames split into D + A."""
    repo = ensure_repo(root)
    prefix = _prefix(repo, root)
    args = [item for c in config for item in ("-c", c)]
    fmt = _RECORD + "%x00".join(_FIELDS) + "%x00"
    log_args = ["log", f"--format={fmt}"]
    if reverse:
        log_args += ["--reverse", "--topo-order"]  # parents before children
    if raw:
        # A merge's files are its changes against its first parent.
        log_args += ["--raw", "--no-abbrev", "--no-renames", "--diff-merges=first-parent"]
    if not merges:
        log_args.append("--no-merges")
    if rev_range:
        log_args.append(rev_range)
    log_args += ["--", *(prefix + p for p in paths)] if paths else []
    try:
        output = repo.git.execute(["git", *args, *log_args], with_extended_output=False)
    except git.GitCommandError as e:
        raise GitError(f"git log failed: {(e.stderr or str(e)).strip()}") from None
    entries = []
    for record in str(output).split(_RECORD)[1:]:
        parts = record.split("\x00")
        sha, name, email, date, signature, parents, message = parts[:7]
        files: list[tuple[str, str, str]] = []
        for line in parts[7].splitlines() if len(parts) > 7 else ():
            if line.startswith(":"):
                meta, path = line.split("\t", 1)
                fields = meta.split()
                if path.startswith(prefix):
                    files.append((fields[4], path[len(prefix) :], fields[3]))
        info = CommitInfo(
            sha,
            name,
            email,
            dt.datetime.fromisoformat(date),
            message.split("\n", 1)[0],
            message,
            signature,
            _trailers(message),
            tuple(parents.split()),
        )
        entries.append((info, files))
    return entries


def _trailers(message: str) -> dict[str, str]:
    out = {}
    for line in message.strip().splitlines()[::-1]:
        if not line.strip():
            break
        key, sep, value = line.partition(": ")
        if sep and key and " " not in key:
            out[key] = value.strip()
    return out


def blob(root: Path, sha: str) -> bytes:
    """A blob's bytes; GitPython's object database streams them through one cat-file."""
    repo = ensure_repo(root)
    return bytes(repo.odb.stream(bytes.fromhex(sha)).read())
