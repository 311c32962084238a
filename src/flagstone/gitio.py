"""The only module that talks to git (through GitPython).

Callers get answers in flagstone's terms and never see ``git.Repo``; a git failure
becomes a ``GitError`` saying what to do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

if TYPE_CHECKING:
    import git
else:

    class _LazyGit:
        """GitPython, imported on first use: it costs ~0.1 s, which build and validate
        would pay for two plain questions (``revisions``, ``last_changed``) answered by
        running git directly."""

        def __getattr__(self, name: str) -> Any:
            import git as module

            globals()["git"] = module
            return getattr(module, name)

    git = _LazyGit()

from flagstone.errors import GitError, Problem
from flagstone.load import MAX_FILE_BYTES, refused_folder_link, refused_symlink, too_large
from flagstone.model import ENVIRONMENTS_DIR


@dataclass(frozen=True, slots=True)
class Revision:
    sha: str | None  # None outside a git repository or before the first commit
    dirty: bool  # uncommitted changes under the paths asked about


F = TypeVar("F", bound=Callable[..., Any])


def _one_sentence(what: str) -> Callable[[F], F]:
    """Turn GitPython's ``Cmd(...)`` dump into one sentence and git's own words below it."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except git.GitCommandError as e:
                stderr = str(e.stderr or "").strip().removeprefix("stderr:").strip().strip("'")
                first = stderr.splitlines()[0] if stderr else f"exit status {e.status}"
                raise GitError(f"git {what} failed: {first}", details=stderr or None) from None

        return wrapper  # type: ignore[return-value]

    return wrap


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


def _plain_git(root: Path, *args: str) -> str | None:
    """Run one git command in ``root`` without GitPython; None when it fails."""
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


def _toplevel_prefix(root: Path) -> str | None:
    """The flagstone root relative to the git top level ('' or 'config/'); None outside git."""
    top = _plain_git(root, "rev-parse", "--show-toplevel")
    if top is None:
        return None
    rel = root.resolve().relative_to(Path(top.strip()).resolve()).as_posix()
    return "" if rel == "." else rel + "/"


def revisions(root: Path, groups: dict[str, Sequence[str]]) -> dict[str, Revision]:
    """``current_revision`` for several groups of paths with one `git status`."""
    prefix = _toplevel_prefix(root)
    head = _plain_git(root, "rev-parse", "--verify", "-q", "HEAD") if prefix is not None else None
    if prefix is None or head is None:
        return {name: Revision(None, True) for name in groups}
    sha = head.strip()
    every = sorted({p for paths in groups.values() for p in paths})
    status = _plain_git(
        root,
        "status",
        "--porcelain",
        "--untracked-files=all",
        "-z",
        "--",
        *(prefix + p for p in every),
    )
    if status is None:
        raise GitError("git status failed; run `git status` to see why")
    changed = [entry[3:][len(prefix) :] for entry in status.split("\0") if len(entry) > 3]
    return {
        name: Revision(
            sha, any(c == p or c.startswith(p.rstrip("/") + "/") for c in changed for p in paths)
        )
        for name, paths in groups.items()
    }


@_one_sentence("status")
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
    prefix = _toplevel_prefix(root) if paths else None
    if prefix is None:
        return None
    scoped = [prefix + p for p in paths]
    status = _plain_git(root, "status", "--porcelain", "--untracked-files=all", "--", *scoped)
    if status is None or status.strip():
        return None
    stamp = _plain_git(root, "log", "-1", "--format=%ct", "--", *scoped)
    if stamp is None or not stamp.strip():
        return None
    return dt.datetime.fromtimestamp(int(stamp), dt.UTC)


def init_repo(root: Path) -> bool:
    """``git init`` ``root`` unless it is already inside a repository; True when it ran."""
    if _repo(root) is not None:
        return False
    try:
        git.Repo.init(root, initial_branch="main")
    except git.GitCommandError as e:
        raise GitError(f"git init failed in {root}: {e.stderr.strip() or e}") from None
    return True


def set_config(root: Path, values: dict[str, str]) -> None:
    """Set repository-local git config (``git config key value`` for each)."""
    try:
        # Not the cached Repo: `init` calls this right after creating the repository.
        repo = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise GitError(f"{root} is not in a git repository") from None
    try:
        with repo.config_writer("repository") as writer:
            for key, value in values.items():
                section, _, option = key.rpartition(".")
                head, _, sub = section.partition(".")
                writer.set_value(f'{head} "{sub}"' if sub else head, option, value)
    except (git.GitCommandError, OSError) as e:
        raise GitError(f"cannot write the git config of {root}: {e}") from None


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


@_one_sentence("rev-list")
def rev_before(root: Path, when: str) -> str:
    """The last commit on HEAD at or before ``when`` (ISO date or time)."""
    repo = ensure_repo(root)
    sha = repo.git.rev_list("-1", f"--before={when}", "HEAD").strip()
    if not sha:
        raise GitError(f"no commit at or before {when}; the history starts later")
    return str(sha)


def tree_files(root: Path, rev: str, prefix: str) -> dict[str, bytes | Problem]:
    """Every file under ``prefix`` (relative to the flagstone root) at ``rev``: its bytes,
    or the Problem that stops it being read. As the working-tree reader does, a symlink
    is followed while it stays inside the repository and refused when it leaves it, and
    a file over the size limit is not read at all."""
    repo = ensure_repo(root)
    sha = resolve(root, rev)
    base = _prefix(repo, root)
    commit_tree = repo.commit(sha).tree
    try:
        tree = commit_tree / (base + prefix).rstrip("/")
    except KeyError:
        return {}
    if not isinstance(tree, git.Tree):  # a folder symlink: git stores only the link
        return {prefix.rstrip("/") + "/": refused_folder_link(prefix.rstrip("/") + "/")}
    out: dict[str, bytes | Problem] = {}
    for item in tree.traverse():
        if isinstance(item, git.Blob):
            rel = str(item.path)[len(base) :]
            content = _read_item(commit_tree, base, rel, item)
            if isinstance(content, Problem) and content.file.endswith("/"):
                rel = content.file  # a folder link: reported as the folder
            out[rel] = content
    return out


def _read_item(
    tree: git.Tree, base: str, rel: str, item: git.Blob, depth: int = 0
) -> bytes | Problem:
    if item.mode == 0o120000:
        target = bytes(item.data_stream.read()).decode("utf-8", errors="replace")
        landing = resolve_link(rel, target)
        if landing is None or not landing.startswith(ENVIRONMENTS_DIR + "/"):
            return refused_symlink(rel, target)
        try:
            pointed = tree / (base + landing)
        except KeyError:
            return Problem(rel, 1, 1, f"symlink to {target!r} points at nothing", "symlink")
        if isinstance(pointed, git.Tree):
            return refused_folder_link(rel + "/")
        if not isinstance(pointed, git.Blob) or depth > 8:
            return Problem(rel, 1, 1, f"symlink to {target!r} is not a file", "symlink")
        return _read_item(tree, base, landing, pointed, depth + 1)
    if item.size > MAX_FILE_BYTES:
        return too_large(rel, item.size)
    return bytes(item.data_stream.read())


def show(root: Path, rev: str, path: str) -> bytes | None:
    """A file's bytes at ``rev``, or None if it did not exist there."""
    repo = ensure_repo(root)
    try:
        return bytes(
            repo.commit(resolve(root, rev)).tree[_prefix(repo, root) + path].data_stream.read()
        )
    except KeyError:
        return None


def format_message(message: str, trailers: Mapping[str, str] | None = None) -> str:
    """A commit message with trailers in git's format (a blank line, then ``Key: value``)."""
    body = message.rstrip() + "\n"
    if trailers:
        body += "\n" + "".join(f"{k}: {v}\n" for k, v in trailers.items())
    return body


def _pathspec(repo: git.Repo, root: Path, paths: Sequence[str]) -> bytes:
    prefix = _prefix(repo, root)
    return b"".join((prefix + p).encode() + b"\0" for p in paths)


def stage(root: Path, paths: Sequence[str]) -> None:
    """``git add -A`` exactly ``paths`` (new, changed or deleted files)."""
    repo = ensure_repo(root)
    code, output = run_git(
        repo.working_tree_dir or str(root),
        ["add", "-A", "--pathspec-from-file=-", "--pathspec-file-nul"],
        input=_pathspec(repo, root, paths),
    )
    if code != 0:
        raise GitError("git add failed: nothing was committed; git's output below", details=output)


def commit_staged(
    root: Path, paths: Sequence[str], message: str, trailers: Mapping[str, str] | None = None
) -> str:
    """Commit only ``paths`` (staged by ``stage``), whatever else is staged; the sha."""
    repo = ensure_repo(root)
    with tempfile.NamedTemporaryFile("wb", prefix="flagstone-message-", delete=False) as handle:
        handle.write(format_message(message, trailers).encode())
    try:
        code, output = run_git(
            repo.working_tree_dir or str(root),
            [
                "commit",
                "--quiet",
                "--cleanup=whitespace",
                f"--file={handle.name}",
                "--only",
                "--pathspec-from-file=-",
                "--pathspec-file-nul",
            ],
            input=_pathspec(repo, root, paths),
        )
    finally:
        Path(handle.name).unlink(missing_ok=True)
    if code != 0:
        raise GitError(
            f"git commit failed: {_commit_failure(repo, output)}; git's output below",
            details=output,
        )
    return head_sha(root) or ""


def _commit_failure(repo: git.Repo, output: str) -> str:
    """Why ``git commit`` failed, in one clause."""
    lowered = output.lower()
    signing = "failed to sign" in lowered or (
        "failed to write commit object" in lowered and _config_true(repo, "commit.gpgsign")
    )
    if signing:
        return (
            "signing the commit failed (check user.signingkey, gpg.format and gpg.program "
            "or gpg.ssh.program)"
        )
    if "please tell me who you are" in lowered or "empty ident" in lowered:
        return "git does not know who you are: set user.name and user.email"
    hooks = [name for name in ("pre-commit", "commit-msg") if _hook_exists(repo, name)]
    if hooks:
        return f"the {' or '.join(hooks)} hook rejected it"
    return "see git's output"


def _config_true(repo: git.Repo, key: str) -> bool:
    try:
        return str(repo.git.config("--bool", "--get", key)).strip() == "true"
    except git.GitCommandError:
        return False


def _hook_exists(repo: git.Repo, name: str) -> bool:
    try:
        path = repo.git.rev_parse("--git-path", f"hooks/{name}")
    except git.GitCommandError:
        return False
    hooks_path = repo.config_reader().get_value("core", "hooksPath", "")
    candidate = Path(str(hooks_path), name) if hooks_path else Path(path)
    if not candidate.is_absolute():
        candidate = Path(repo.working_tree_dir or ".", candidate)
    return candidate.is_file() and os.access(candidate, os.X_OK)


# Git processes running on behalf of a writer: an interrupted writer stops them before it
# restores files, so a commit cannot land after the restore.
_RUNNING: set[subprocess.Popen[bytes]] = set()


def run_git(
    cwd: str | os.PathLike[str], args: Sequence[str], *, input: bytes | None = None
) -> tuple[int, str]:
    """Run git with output (hooks' included) captured to a file; returns (exit code, output).

    Output goes to a file rather than a pipe: a hook that leaves a child running (a
    blocked ``sleep``) must not keep us waiting once git itself is gone.
    """
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            ["git", "--literal-pathspecs", *args],
            cwd=cwd,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        _RUNNING.add(process)
        try:
            if input is not None and process.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.write(input)
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.close()
            code = process.wait()
        finally:
            _RUNNING.discard(process)
            if process.poll() is None:
                _stop(process)
        output.seek(0)
        text = output.read().decode("utf-8", errors="replace")
    return code, text


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()  # git removes its lock files on SIGTERM
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_running() -> None:
    """Ask every git process a writer started to stop (from a signal handler)."""
    for process in list(_RUNNING):
        with contextlib.suppress(OSError):
            process.terminate()


def head_sha(root: Path) -> str | None:
    repo = _repo(root)
    if repo is None:
        return None
    try:
        return str(repo.git.rev_parse("--verify", "--quiet", "HEAD^{commit}")).strip() or None
    except git.GitCommandError:
        return None


def git_dir(root: Path) -> Path | None:
    """The repository's (per-worktree) git directory, or None outside git."""
    repo = _repo(root)
    return Path(repo.git_dir) if repo is not None else None


@dataclass(frozen=True, slots=True)
class IndexSnapshot:
    """The index entries of some paths, as ``git ls-files --stage`` prints them."""

    paths: tuple[str, ...]  # git-top-relative
    entries: tuple[str, ...]


def index_snapshot(root: Path, paths: Sequence[str]) -> IndexSnapshot:
    repo = ensure_repo(root)
    prefix = _prefix(repo, root)
    wanted = {prefix + p for p in paths}
    # Listing whole directories keeps the argument list short for thousands of files.
    folders = sorted({str(PurePosixPath(p).parent) for p in wanted})
    code, output = run_git(
        repo.working_tree_dir or str(root), ["ls-files", "--stage", "-z", "--", *_roots(folders)]
    )
    if code != 0:
        raise GitError("git ls-files failed; git's output below", details=output)
    entries = tuple(e for e in output.split("\0") if e and e.split("\t", 1)[1] in wanted)
    return IndexSnapshot(tuple(sorted(wanted)), entries)


def _roots(folders: Sequence[str]) -> list[str]:
    """The fewest folders that cover all of ``folders`` ("." for the top)."""
    out: list[str] = []
    for folder in sorted(folders):
        if not any(folder == o or folder.startswith(o + "/") or o == "." for o in out):
            out.append(folder)
    return out or ["."]


def restore_index(root: Path, snapshot: IndexSnapshot) -> None:
    """Put the index entries of the snapshot's paths back exactly (unstage what was added)."""
    repo = ensure_repo(root)
    top = repo.working_tree_dir or str(root)
    code, output = run_git(
        top,
        ["update-index", "--force-remove", "-z", "--stdin"],
        input=b"".join(p.encode() + b"\0" for p in snapshot.paths),
    )
    if code == 0 and snapshot.entries:
        code, output = run_git(
            top,
            ["update-index", "-z", "--index-info"],
            input=b"".join(e.encode() + b"\0" for e in snapshot.entries),
        )
    if code != 0:
        raise GitError(
            "could not restore the git index; run `git status` and `git restore --staged` "
            "on the files named below",
            details=output,
        )


@_one_sentence("diff")
def changed_since(root: Path, rev: str, paths: Sequence[str]) -> bool:
    """Whether ``paths`` differ between ``rev`` and the working tree."""
    repo = ensure_repo(root)
    prefix = _prefix(repo, root)
    out = repo.git.diff("--name-only", resolve(root, rev), "--", *(prefix + p for p in paths))
    return bool(out.strip()) or _is_dirty(repo, root, paths)


def is_clean(root: Path, paths: Sequence[str]) -> bool:
    repo = ensure_repo(root)
    return not _is_dirty(repo, root, paths)


def create_branch(root: Path, name: str) -> str:
    """Create branch ``name`` at HEAD and switch to it; returns what was checked out before
    (a branch name, or a sha when HEAD was detached), for ``leave_branch``."""
    repo = ensure_repo(root)
    try:
        previous = repo.git.symbolic_ref("--quiet", "--short", "HEAD").strip()
    except git.GitCommandError:
        previous = repo.head.commit.hexsha
    try:
        repo.git.checkout("-q", "-b", name)
    except git.GitCommandError as e:
        raise GitError(f"cannot create branch {name!r}: {(e.stderr or str(e)).strip()}") from None
    return str(previous)


def leave_branch(root: Path, name: str, previous: str) -> None:
    """Undo ``create_branch``: back to ``previous``, and the new branch deleted."""
    repo = ensure_repo(root)
    try:
        repo.git.checkout("-q", previous)
        repo.git.branch("-q", "-D", name)
    except git.GitCommandError as e:
        raise GitError(
            f"could not return to {previous} from branch {name!r}: {(e.stderr or str(e)).strip()}"
        ) from None


_FIELDS = ("%H", "%an", "%ae", "%aI", "%G?", "%P", "%B")
_RECORD = "\x1e"
SYMLINK_MODE = "120000"


class FileChange(NamedTuple):
    status: str  # A, M, D, T (type change)
    path: str  # relative to the flagstone root
    blob: str  # the new blob's sha (zeros when deleted)
    mode: str  # the new mode: 100644, 100755, 120000 (symlink), 000000 (deleted)


def log(
    root: Path,
    rev_range: str | None = None,
    paths: Sequence[str] = (),
    *,
    reverse: bool = False,
    raw: bool = False,
    merges: bool = True,
    config: Sequence[str] = (),
    allowed_signers: bytes | None = None,
) -> list[tuple[CommitInfo, list[FileChange]]]:
    """Commits (newest first unless ``reverse``) touching ``paths``; with ``raw``, each
    commit's changed files against its first parent, renames split into D + A.

    Signatures are checked against ``allowed_signers`` (an SSH allowed-signers file's
    bytes): without one, git reports every SSH-signed commit as unsigned.
    """
    repo = ensure_repo(root)
    prefix = _prefix(repo, root)
    with tempfile.TemporaryDirectory(prefix="flagstone-log-") as tmp:
        signers = Path(tmp) / "allowed_signers"
        signers.write_bytes(allowed_signers or b"")
        args = [item for c in config for item in ("-c", c)]
        args += ["-c", f"gpg.ssh.allowedSignersFile={signers}"]
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
        files: list[FileChange] = []
        for line in parts[7].splitlines() if len(parts) > 7 else ():
            if line.startswith(":"):
                meta, path = line.split("\t", 1)
                fields = meta.split()
                if path.startswith(prefix):
                    files.append(FileChange(fields[4], path[len(prefix) :], fields[3], fields[1]))
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


def is_ancestor(root: Path, ancestor: str, commit: str) -> bool:
    """Whether ``ancestor`` is ``commit`` or reachable from it."""
    repo = ensure_repo(root)
    code, _ = run_git(
        repo.working_tree_dir or str(root), ["merge-base", "--is-ancestor", ancestor, commit]
    )
    return code == 0


@_one_sentence("rev-parse")
def shallow_boundary(root: Path) -> frozenset[str]:
    """The commits a shallow clone was cut at (their parents are not here); empty when
    the clone is complete."""
    repo = ensure_repo(root)
    path = Path(repo.git.rev_parse("--git-path", "shallow"))
    if not path.is_absolute():
        path = Path(repo.working_tree_dir or root) / path
    try:
        return frozenset(path.read_text().split())
    except OSError:
        return frozenset()


def tree_ids(
    root: Path, commits: Sequence[str], folder: str, *, kind: str = "tree"
) -> dict[str, str | None]:
    """The id of the ``kind`` object (tree, or blob) at ``folder`` in each commit (None
    where there is none), in one ``git cat-file --batch-check``."""
    repo = ensure_repo(root)
    prefix = _prefix(repo, root)
    if not commits:
        return {}
    code, output = run_git(
        repo.working_tree_dir or str(root),
        ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
        input="".join(f"{c}:{prefix}{folder}\n" for c in commits).encode(),
    )
    if code != 0:
        raise GitError("git cat-file failed; git's output below", details=output)
    out: dict[str, str | None] = {}
    for commit, line in zip(commits, output.splitlines(), strict=True):
        sha, _, found = line.partition(" ")
        out[commit] = sha if found == kind else None
    return out


def list_tree(root: Path, treeish: str, folder: str = "") -> dict[str, tuple[str, str]]:
    """``{path: (blob sha, mode)}`` of every file under ``treeish`` (a commit, or a tree id
    when ``folder`` is the path that tree sits at), paths relative to the flagstone root."""
    repo = ensure_repo(root)
    prefix = _prefix(repo, root)
    is_tree = folder and not _is_commit(repo, treeish)
    args = ["ls-tree", "-r", "-z", "--full-tree", treeish]
    if not is_tree:
        args += ["--", prefix + folder] if folder or prefix else []
    code, output = run_git(repo.working_tree_dir or str(root), args)
    if code != 0:
        raise GitError(f"git ls-tree {treeish} failed; git's output below", details=output)
    out = {}
    for entry in output.split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, kind, sha = meta.split()
        if kind != "blob":
            continue
        rel = f"{folder.rstrip('/')}/{path}" if is_tree else path[len(prefix) :]
        out[rel] = (sha, mode)
    return out


def _is_commit(repo: git.Repo, rev: str) -> bool:
    try:
        return str(repo.git.cat_file("-t", rev)).strip() == "commit"
    except git.GitCommandError:
        return False


def read_blob(root: Path, sha: str, limit: int) -> bytes | int:
    """A blob's bytes, or its size when it is over ``limit`` bytes (then it is not read)."""
    repo = ensure_repo(root)
    stream = repo.odb.stream(bytes.fromhex(sha))
    if stream.size > limit:
        del stream  # GitPython drains what is left
        return int(repo.odb.info(bytes.fromhex(sha)).size)
    return bytes(stream.read())


def read_blobs(root: Path, shas: Sequence[str], limit: int) -> dict[str, bytes | int]:
    """Many blobs in two ``git cat-file`` calls (sizes, then the contents of those within
    ``limit``): one round trip per batch instead of one per blob."""
    repo = ensure_repo(root)
    top = repo.working_tree_dir or str(root)
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return {}
    request = "".join(f"{sha}\n" for sha in wanted).encode()
    code, output = run_git(
        top, ["cat-file", "--batch-check=%(objectname) %(objectsize)"], input=request
    )
    if code != 0:
        raise GitError("git cat-file failed; git's output below", details=output)
    out: dict[str, bytes | int] = {}
    small = []
    for line in output.splitlines():
        sha, _, size = line.partition(" ")
        if size.isdigit() and int(size) > limit:
            out[sha] = int(size)
        elif size.isdigit():
            small.append(sha)
    if small:
        with tempfile.TemporaryFile() as data:
            process = subprocess.run(
                ["git", "cat-file", "--batch"],
                cwd=top,
                input="".join(f"{sha}\n" for sha in small).encode(),
                stdout=data,
                stderr=subprocess.PIPE,
                check=False,
            )
            if process.returncode != 0:
                raise GitError(
                    "git cat-file failed; git's output below",
                    details=process.stderr.decode(errors="replace"),
                )
            data.seek(0)
            raw = data.read()
        position = 0
        for sha in small:
            end = raw.index(b"\n", position)
            length = int(raw[position:end].split()[2])
            out[sha] = raw[end + 1 : end + 1 + length]
            position = end + 1 + length + 1
    return out


def resolve_link(link: str, target: str) -> str | None:
    """Where a symlink at ``link`` (repository-relative) pointing to ``target`` lands,
    repository-relative; None when it leaves the repository (or is absolute)."""
    if target.startswith("/") or "\0" in target:
        return None
    parts: list[str] = list(PurePosixPath(link).parent.parts)
    for part in PurePosixPath(target).parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts) or None


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
