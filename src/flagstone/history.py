"""The audit trail from git: per-key history, rollback to a revision, semantic revert.

History walks the commits that touched ``environments/`` once (oldest first, with the
blob of every changed file), reads each distinct blob once through one ``cat-file``,
parses it once, and compares the key's value between consecutive versions — git's
line-based tools cannot tell one ``enabled:`` from another.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from flagstone import gitio
from flagstone.diff import Change, diff_environments, object_changes
from flagstone.edit import (
    MISSING,
    Document,
    DocumentSet,
    apply_files,
    check_write,
    delete_path,
    get_path,
    repository_lock,
    set_path,
)
from flagstone.errors import FlagstoneError, LoadError, Problem
from flagstone.load import environment_files, parse_yaml, read_environment
from flagstone.model import ENVIRONMENTS_DIR, KEYED_KINDS, Environment, Repository
from flagstone.secrets import NO_SECRETS, SECRET, SECRET_CHANGED, Secrets, is_encrypted


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    commit: gitio.CommitInfo
    env: str
    kind: str
    key: str
    action: str  # added, removed, changed
    changes: tuple[str, ...]
    old: Any
    new: Any


def _kind_of(rel: str, env: str) -> str | None:
    """The kind a repository-relative file belongs to in ``env``, or None."""
    base = f"{ENVIRONMENTS_DIR}/{env}/"
    if not rel.startswith(base) or not rel.endswith((".yaml", ".yml")):
        return None
    parts = PurePosixPath(rel[len(base) :]).parts
    name = PurePosixPath(parts[0]).stem if len(parts) == 1 else parts[0]
    return name if name in (*KEYED_KINDS, "config") and len(parts) <= 2 else None


def _env_of(rel: str) -> str | None:
    parts = rel.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == ENVIRONMENTS_DIR else None


def key_history(
    root: Path,
    key: str,
    *,
    envs: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    author: str | None = None,
    secrets: Secrets = NO_SECRETS,
) -> list[HistoryEntry]:
    """Every commit that changed ``key`` (a flag, segment or experiment key, or a dotted
    config key such as ``api.timeout_ms``), newest first. A secret's values never leave
    here: its entries say ``<secret: changed>``."""
    config_path = tuple(key.removeprefix("config.").split(".")) if "." in key else None
    wanted = {"config"} if config_path else set(KEYED_KINDS)
    entries = gitio.log(root, paths=[ENVIRONMENTS_DIR], reverse=True, raw=True)
    states: dict[str, dict[str, str]] = {}  # commit -> {path: blob sha} of environments/
    parsed: dict[tuple[str, str], Any] = {}  # (blob sha, top-level key) -> (found, value)
    values: dict[tuple[str, str], tuple[str, Any]] = {}  # (commit, env) -> (kind, value)
    out: list[HistoryEntry] = []

    def value(commit: str | None, env: str) -> tuple[str, Any]:
        if commit is None or commit not in states:
            return ("config" if config_path else "flags"), MISSING
        if (commit, env) not in values:
            values[(commit, env)] = _value_at(root, states[commit], parsed, env, key, config_path)
        return values[(commit, env)]

    for info, files in entries:
        parent = info.parents[0] if info.parents else None
        state = dict(states.get(parent, {})) if parent else {}
        touched: set[str] = set()
        for status, rel, sha in files:
            if status == "D":
                state.pop(rel, None)
            else:
                state[rel] = sha
            env = _env_of(rel)
            if env and _kind_of(rel, env) in wanted and (envs is None or env in envs):
                touched.add(env)
        states[info.sha] = state
        for env in sorted(touched):
            old_kind, old = value(parent, env)
            kind, new = value(info.sha, env)
            if new == old or (new is MISSING and old is MISSING):
                continue
            if len(info.parents) > 1 and value(info.parents[1], env)[1] == new:
                continue  # a merge bringing in a change: the branch's commit already has the entry
            summary: tuple[str, ...]
            if old is MISSING:
                action, summary = (
                    "added",
                    (f"{kind[:-1] if kind != 'config' else 'config key'} added",),
                )
            elif new is MISSING:
                action, summary = (
                    "removed",
                    (f"{old_kind[:-1] if old_kind != 'config' else 'config key'} removed",),
                )
            elif kind == "config" and _is_secret(secrets, config_path, old, new):
                action, summary = "changed", (SECRET_CHANGED,)
            elif kind == "config" or not isinstance(old, Mapping) or not isinstance(new, Mapping):
                action, summary = "changed", (secrets.redact(f"{_short(old)} → {_short(new)}"),)
            else:
                action, summary = "changed", tuple(object_changes(kind, old, new)) or ("changed",)
            if kind == "config" and _is_secret(secrets, config_path, old, new):
                old = SECRET if old is not MISSING else old
                new = SECRET if new is not MISSING else new
            out.append(
                HistoryEntry(
                    info,
                    env,
                    kind if new is not MISSING else old_kind,
                    key,
                    action,
                    summary,
                    None if old is MISSING else old,
                    None if new is MISSING else new,
                )
            )
    out.reverse()
    if since is not None:
        out = [e for e in out if e.commit.date >= since]
    if author is not None:
        needle = author.lower()
        out = [
            e
            for e in out
            if needle in e.commit.author_email.lower() or needle in e.commit.author_name.lower()
        ]
    return out


def _is_secret(secrets: Secrets, path: tuple[str, ...] | None, *values: Any) -> bool:
    if path is None:
        return False
    from flagstone.secrets import leaves

    if secrets.covers(path):
        return True
    return any(
        is_encrypted(v) or any(is_encrypted(x) for _, x in leaves(v))
        for v in values
        if v is not MISSING
    )


def _short(value: Any) -> str:
    import json

    if is_encrypted(value):
        return SECRET
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


_NEXT_TOP_LEVEL = re.compile(r"^[^\s#-]", re.M)


def _key_block(text: str, key: str) -> str | None:
    """The lines of one top-level key (``key:`` at column 0 up to the next top-level
    line), or None when the file is not laid out so (flow style, quoted keys, anchors)."""
    match = re.search(rf"^{re.escape(key)}:(?=[ \t\r\n])", text, re.M)
    if match is None or "&" in text or "*" in text:
        return None
    end = _NEXT_TOP_LEVEL.search(text, match.end())
    return text[match.start() : end.start() if end else len(text)]


def _value_at(
    root: Path,
    state: Mapping[str, str],
    parsed: dict[tuple[str, str], Any],
    env: str,
    key: str,
    config_path: tuple[str, ...] | None,
) -> tuple[str, Any]:
    top = config_path[0] if config_path else key
    for rel, sha in state.items():
        kind = _kind_of(rel, env)
        if kind is None or (config_path is None) == (kind == "config"):
            continue
        if (sha, top) not in parsed:
            parsed[(sha, top)] = _read_top_level(root, sha, rel, top)
        found, value = parsed[(sha, top)]
        if not found:
            continue
        if config_path is not None:
            node: Any = value
            for part in config_path[1:]:
                if not isinstance(node, Mapping) or part not in node:
                    return "config", MISSING
                node = node[part]
            return "config", node
        return kind, value
    return "config" if config_path else "flags", MISSING


def _read_top_level(root: Path, sha: str, rel: str, top: str) -> tuple[bool, Any]:
    """(found, value) of one top-level key in a blob, parsing only that key's block
    when the layout allows: ~1/50 of the work for a 50-flag file."""
    text = gitio.blob(root, sha).decode("utf-8", errors="replace")
    if top not in text:
        return False, None  # other files of a folder kind: nothing to parse
    block = _key_block(text, top)
    try:
        data = parse_yaml(block if block is not None else text, rel)
    except LoadError:
        if block is None:
            return False, None
        try:
            data = parse_yaml(text, rel)
        except LoadError:
            return False, None
    if not isinstance(data, Mapping) or top not in data:
        return False, None
    return True, data[top]


# --- rollback and revert --------------------------------------------------------------------


@dataclass
class Restoration:
    env: str
    files: dict[str, str | None]  # repository-relative path -> new text, None to delete
    changes: list[Change]
    message: str
    trailers: dict[str, str]
    basis: dict[str, bytes | None] = field(default_factory=dict)  # the bytes the plan read
    existing: list[Problem] = field(default_factory=list)  # errors it did not cause


class RestorationInvalid(FlagstoneError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(
            f"the result would be invalid ({len(problems)} error(s)); nothing was written"
        )
        self.problems = problems


def _env_at(root: Path, rev: str, env: str) -> tuple[Environment | None, dict[str, bytes]]:
    files = gitio.tree_files(root, rev, f"{ENVIRONMENTS_DIR}/{env}")
    return (read_environment(env, files)[0] if files else None), files


def plan_rollback(repo: Repository, env: str, rev: str, only: Sequence[str] = ()) -> Restoration:
    """Restore ``env`` (or only some keys of it) as it was at ``rev``."""
    current = repo.env(env)
    sha = gitio.resolve(repo.root, rev)
    old_env, old_files = _env_at(repo.root, sha, env)
    if old_env is None:
        raise FlagstoneError(f"{env} did not exist at {rev}; pick a later revision")
    files: dict[str, str | None]
    now = environment_files(repo.root, env)
    if only:
        files, basis = _restore_keys(repo, current, old_env, only, old_files)
    else:
        files = {
            rel: data.decode("utf-8")
            for rel, data in old_files.items()
            if _kind_of(rel, env) and now.get(rel) != data
        }
        files.update({rel: None for rel in now if rel not in old_files and _kind_of(rel, env)})
        basis = {rel: now.get(rel) for rel in files}
    checked = check_write(repo, env, files)
    if not checked.allowed:
        raise RestorationInvalid(checked.new)
    changes = diff_environments(current, checked.after, env, repo.secrets)
    scope = ", ".join(only) if only else "every key"
    message = f"Roll back {env} to {sha[:12]} ({scope})\n\n" + "\n".join(
        f"- {c.kind[:-1] if c.kind != 'config' else 'config'} {c.key}: {c.summary}" for c in changes
    )
    return Restoration(
        env,
        files,
        changes,
        message,
        {"Flagstone-Rollback": f"{env} to {sha}"},
        basis,
        checked.existing,
    )


def _restore_keys(
    repo: Repository,
    current: Environment,
    old: Environment,
    keys: Sequence[str],
    old_files: Mapping[str, bytes],
) -> tuple[dict[str, str | None], dict[str, bytes | None]]:
    """Set each key as it was in ``old`` (or delete it), in the current files. An object
    comes back as its old round-trip node, with its own comments and layout; returns the
    files and the bytes read."""
    docs = DocumentSet(repo.root)
    for name in keys:
        if "." in name:
            _restore_config(
                docs[current.file_for("config")],
                old,
                tuple(name.removeprefix("config.").split(".")),
            )
            continue
        kinds = [k for k in KEYED_KINDS if name in old.objects(k) or name in current.objects(k)]
        if not kinds:
            raise FlagstoneError(f"{name!r} is neither in {current.name} now nor at that revision")
        for kind in kinds:
            before = old.objects(kind).get(name)
            target = docs[current.file_for(kind, name)]
            if before is None:
                target.data.pop(name, None)
            elif before.file in old_files:
                old_doc = Document.parse_bytes(old_files[before.file], before.file)
                target.data[name] = copy.deepcopy(old_doc.data[name])
            else:
                target.data[name] = copy.deepcopy(dict(before.raw))
    return dict(docs.texts()), dict(docs.basis)


def _restore_config(doc: Document, old: Environment, path: tuple[str, ...]) -> None:
    value = get_path(old.config.values, path) if old.config else MISSING
    if value is MISSING:
        delete_path(doc.data, path)
    else:
        set_path(doc.data, path, copy.deepcopy(value), create=True)


def plan_revert(repo: Repository, rev: str, envs: Sequence[str] | None = None) -> list[Restoration]:
    """Undo one commit's changes to flagstone objects, key by key: later changes to other
    keys of the same files stay; a key that changed again since is a conflict."""
    root = repo.root
    sha = gitio.resolve(root, rev)
    info, files = gitio.log(root, f"{sha}^!", raw=True)[0]
    if not info.parents:
        raise FlagstoneError(
            f"{sha[:12]} is the first commit: there is nothing before it to return to"
        )
    parent = info.parents[0]
    touched = sorted(
        {e for _, rel, _ in files if (e := _env_of(rel)) and (envs is None or e in envs)}
    )
    if not touched:
        raise FlagstoneError(
            f"{sha[:12]} changed no flagstone environment"
            + (f" in {', '.join(envs)}" if envs else "")
        )
    plans = []
    for env in touched:
        before, before_files = _env_at(root, parent, env)
        after, _ = _env_at(root, sha, env)
        current = repo.env(env)
        undo: list[str] = []
        conflicts: list[str] = []
        for change in diff_environments(before, after, env):
            name = f"config.{change.key}" if change.kind == "config" else change.key
            if name in undo or name in conflicts:
                continue
            then = _lookup(after, change.kind, change.key)
            now = _lookup(current, change.kind, change.key)
            if now == _lookup(before, change.kind, change.key):
                continue  # already back where it was
            if now != then:
                conflicts.append(name)
            else:
                undo.append(name)
        if conflicts:
            raise FlagstoneError(
                f"cannot revert {sha[:12]} in {env}: {', '.join(conflicts)} changed again since; "
                f"use `flagstone rollback {env} --to {parent[:12]} --only KEY` for the keys you mean"
            )
        if not undo:
            continue
        files_out, basis = _restore_keys(
            repo, current, before or read_environment(env, {})[0], undo, before_files
        )
        checked = check_write(repo, env, files_out)
        if not checked.allowed:
            raise RestorationInvalid(checked.new)
        changes = diff_environments(current, checked.after, env, repo.secrets)
        message = (
            f'Revert "{info.subject}" in {env}\n\nThis undoes {sha[:12]} for: {", ".join(undo)}'
        )
        plans.append(
            Restoration(
                env,
                files_out,
                changes,
                message,
                {"Flagstone-Revert": sha},
                basis,
                checked.existing,
            )
        )
    if not plans:
        raise FlagstoneError(f"{sha[:12]}'s changes are already undone")
    return plans


def _lookup(env: Environment | None, kind: str, key: str) -> Any:
    if env is None:
        return MISSING
    if kind == "config":
        node: Any = env.config.values if env.config else {}
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return MISSING
            node = node[part]
        return node
    obj = env.objects(kind).get(key)  # type: ignore[arg-type]
    return obj.raw if obj is not None else MISSING


def apply_restoration(root: Path, plan: Restoration, *, commit: bool = True) -> str | None:
    """Write (and commit) the restoration all or nothing, under the write lock."""
    env_dir = f"{ENVIRONMENTS_DIR}/{plan.env}"
    with repository_lock(root):
        if commit and not gitio.is_clean(root, [env_dir]):
            raise FlagstoneError(f"{env_dir}/ has uncommitted changes: commit or stash them first")
        return apply_files(
            root,
            plan.files,
            commit=plan.message if commit else None,
            trailers=plan.trailers,
            basis=plan.basis,
        )
