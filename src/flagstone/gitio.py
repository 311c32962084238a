"""The only module that talks to git (through GitPython).

Callers get answers in flagstone's terms and never see ``git.Repo``; a git failure
becomes a ``GitError`` saying what to do.
"""

from __future__ import annotations

import datetime as dt
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
    try:
        return git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def ensure_repo(root: Path) -> git.Repo:
    repo = _repo(root)
    if repo is None:
        raise GitError(f"{root} is not in a git repository; run `git init` and commit the configuration first")
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
