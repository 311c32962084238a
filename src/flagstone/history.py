"""The audit trail from git: per-key history, rollback to a revision, semantic revert.

History walks the commits that touched ``environments/`` once (oldest first, with the
blob of every changed file), reads each distinct blob once through one ``cat-file``,
parses it once, and compares the key's value between consecutive versions — git's
line-based tools cannot tell one ``enabled:`` from another.
"""

from __future__ import annotations

import collections
import copy
import datetime as dt
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flagstone import gitio
from flagstone.diff import Change, diff_environments, object_changes
from flagstone.edit import (
    Document,
    DocumentSet,
    apply_files,
    check_write,
    delete_path,
    repository_lock,
    set_path,
)
from flagstone.errors import FlagstoneError, LoadError, Problem
from flagstone.load import (
    MAX_FILE_BYTES,
    UNREADABLE,
    environment_files,
    load_settings,
    parse_yaml,
    read_environment,
    refused_symlink,
    too_large,
)
from flagstone.model import (
    ENVIRONMENTS_DIR,
    KEYED_KINDS,
    SETTINGS_FILE,
    Environment,
    Repository,
    classify,
    env_of,
)
from flagstone.paths import MISSING, dotted_leaves, get_path
from flagstone.secrets import NO_SECRETS, SECRET, SECRET_CHANGED, Secrets, is_encrypted


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    commit: gitio.CommitInfo
    env: str
    kind: str  # flags, segments, experiments, config; "file", "environment", "settings"
    key: str  # the object key, the dotted config key, or the file for a file error
    action: str  # added, removed, changed; unreadable (a file error), missing, boundary
    changes: tuple[str, ...]
    old: Any
    new: Any
    problem: Problem | None = None  # the file error, for action "unreadable" and "missing"

    @property
    def is_file_error(self) -> bool:
        return self.problem is not None


@functools.lru_cache(maxsize=4096)
def _kind_of(rel: str, env: str) -> str | None:
    """The kind a repository-relative file belongs to in ``env``, or None."""
    found = classify(rel, env)
    return found[0] if found else None


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
    config key such as ``api.timeout_ms``), newest first, with the file errors that hid
    its value. A secret's values never leave here: its entries say ``<secret: changed>``."""
    return audit_log(root, envs=envs, since=since, author=author, secrets=secrets, key=key)


def audit_log(
    root: Path,
    *,
    envs: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    author: str | None = None,
    secrets: Secrets = NO_SECRETS,
    key: str | None = None,
) -> list[HistoryEntry]:
    """The audit log, newest first: for every commit that changed flagstone's files, the
    semantic change of each key it touched (or only of ``key``), the file errors it
    committed, and changes to flagstone.yaml. Each commit is compared with its real first
    parent, whatever that parent touched; signatures are checked against the policy's
    allowed-signers files."""
    walk = _Walk(root, envs, secrets, key)
    out = walk.run()
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


def policy_signers(root: Path, rev: str = "HEAD") -> bytes:
    """Every allowed-signers file the policy names at ``rev``, concatenated."""
    data = gitio.show(root, rev, SETTINGS_FILE) if gitio.head_sha(root) else None
    if data is None:
        return b""
    try:
        settings = load_settings(data)
    except LoadError:
        return b""
    out = b""
    for rel in sorted(
        {p.allowed_signers for p in settings.protected.values() if p.allowed_signers}
    ):
        signers = gitio.show(root, rev, rel)
        if signers:
            out += signers if signers.endswith(b"\n") else signers + b"\n"
    return out


State = dict[str, tuple[str, str]]  # path -> (blob sha, mode): the last readable version
BLOB_CACHE = 512  # parsed blobs kept: a file's previous version is usually a few commits back
PREFETCH = 256  # commits whose new blobs are read in one cat-file call
_ABSENT: Any = object()


class _Blob:
    """One blob's text, split into top-level blocks when the layout allows, parsed block
    by block on demand: a commit that changes one flag of fifty parses that one flag."""

    def __init__(self, text: str | None, problem: Problem | None) -> None:
        self.text = text
        self.problem = problem
        self._blocks: Any = _ABSENT
        self._whole: Any = _ABSENT
        self._values: dict[str, Any] = {}
        self._block: dict[str, str | None] = {}

    @property
    def blocks(self) -> dict[str, str] | None:
        if self._blocks is _ABSENT:
            plain = self.text is not None and self.problem is None
            self._blocks = _blocks(self.text or "") if plain else None
        return self._blocks  # type: ignore[no-any-return]

    def block(self, key: str) -> str | Any | None:
        """One key's block text, "" when the key is not a plain top-level key here, or
        _ABSENT when the file cannot be split (then values come from a whole parse);
        cheaper than ``blocks`` when one key is wanted."""
        if self._blocks is not _ABSENT:
            return _ABSENT if self._blocks is None else self._blocks.get(key, "")
        if key not in self._block:
            self._block[key] = _key_block(self.text, key) if self.problem is None else None
        found = self._block[key]
        return _ABSENT if found is None else found

    def top_keys(self) -> list[str]:
        if self.blocks is not None:
            return list(self.blocks)
        whole = self.whole()
        return list(whole) if isinstance(whole, Mapping) else []

    def whole(self) -> Any:
        """The parsed document, or a Problem."""
        if self._whole is _ABSENT:
            if self.problem is not None:
                self._whole = self.problem
            else:
                try:
                    data = parse_yaml(self.text or "", self.rel)
                    self._whole = {} if data is None else data
                except LoadError as e:
                    self._whole = e.problem
                if not isinstance(self._whole, (Mapping, Problem)):
                    self._whole = Problem(
                        self.rel, 1, 1, "expected a mapping by key", "not-a-mapping"
                    )
        return self._whole

    rel = ""

    def value(self, key: str) -> Any:
        """The key's value, MISSING, or the Problem that stops the file being read."""
        if key in self._values:
            return self._values[key]
        found: Any = MISSING
        block = self.block(key)
        if block is not _ABSENT and block:
            try:
                data = parse_yaml(block, self.rel)
            except LoadError:
                data = None
            if isinstance(data, Mapping) and list(data) == [key]:
                found = data[key]
            else:  # the block does not stand alone: the whole file says why
                whole = self.whole()
                found = whole if isinstance(whole, Problem) else whole.get(key, MISSING)
        elif block is _ABSENT:
            whole = self.whole()
            found = whole if isinstance(whole, Problem) else whole.get(key, MISSING)
        self._values[key] = found
        return found


_BLOCK_START = re.compile(r"^[^\s#]", re.M)
_SPLIT_BLOCKS = re.compile(r"^(?=[^\s#])", re.M)
# A plain (unquoted) top-level key at the start of a line: the only layout split here.
_PLAIN_KEY = re.compile(r"""^([^\s#'"{\[\]}&*!|>%@`-][^:#\n]*?)[ \t]*:(?=[ \t\r\n]|$)""", re.M)


def _key_block(text: str | None, key: str) -> str | None:
    """``key``'s top-level block: its text, "" when the key is not a plain top-level key
    of the file, or None when the file is not laid out plainly enough to tell."""
    if text is None or "&" in text or "*" in text or "\t" in text:
        return None
    if f'"{key}"' in text or f"'{key}'" in text:
        return None  # perhaps a quoted key: let the parser decide
    matches = list(re.finditer(rf"^{re.escape(key)}[ \t]*:(?=[ \t\r\n]|$)", text, re.M))
    if len(matches) > 1:
        return None  # a duplicate key: the parser reports it
    if not matches:
        return ""
    end = _BLOCK_START.search(text, matches[0].end())
    return text[matches[0].start() : end.start() if end else len(text)]


def _blocks(text: str) -> dict[str, str] | None:
    """Top-level key -> its lines, or None when the file is not plain block style
    (anchors, flow style, several documents, quoted or duplicate keys): then it is
    parsed whole."""
    if "&" in text or "*" in text or "\t" in text:
        return None
    prefix, *parts = _SPLIT_BLOCKS.split(text)
    keys = _PLAIN_KEY.findall(text)
    if not parts or len(keys) != len(parts):
        return None  # a top-level line that is not a plain key
    if any(line.strip() and not line.lstrip().startswith("#") for line in prefix.splitlines()):
        return None
    blocks = dict(zip(keys, parts, strict=True))
    return blocks if len(blocks) == len(keys) else None


class _Walk:
    def __init__(
        self, root: Path, envs: Sequence[str] | None, secrets: Secrets, key: str | None
    ) -> None:
        self.root = root
        self.envs = envs
        self.secrets = secrets
        self.key = key
        self.config_path = (
            tuple(key.removeprefix("config.").split("."))
            if key is not None and ("." in key or key.startswith("config."))
            else None
        )
        self.blobs: collections.OrderedDict[str, _Blob] = collections.OrderedDict()
        self.prefetched: dict[str, bytes | int] = {}
        self.states: dict[str, State] = {}
        self.settings_blob: dict[str, str | None] = {}

    # --- the walk ----------------------------------------------------------------------

    def run(self) -> list[HistoryEntry]:
        root = self.root
        entries = gitio.log(
            root,
            paths=[ENVIRONMENTS_DIR, SETTINGS_FILE],
            reverse=True,
            raw=True,
            allowed_signers=policy_signers(root),
        )
        listed = {info.sha for info, _ in entries}
        missing = sorted({p for info, _ in entries for p in info.parents[:2] if p not in listed})
        env_trees = gitio.tree_ids(root, [*listed, *missing], ENVIRONMENTS_DIR)
        settings_ids = gitio.tree_ids(root, missing, SETTINGS_FILE, kind="blob")
        by_tree: dict[str | None, State] = {None: {}}
        boundary = gitio.shallow_boundary(root)
        out: list[HistoryEntry] = []

        def state_of(commit: str) -> State:
            if commit not in self.states:
                tree = env_trees.get(commit)
                if tree not in by_tree:
                    by_tree[tree] = gitio.list_tree(root, commit, ENVIRONMENTS_DIR)
                self.states[commit] = by_tree[tree]
                self.settings_blob[commit] = settings_ids.get(commit)
            return self.states[commit]

        for number, (info, files) in enumerate(entries):
            if number % PREFETCH == 0:
                self._prefetch(entries[number : number + PREFETCH])
            parent = info.parents[0] if info.parents else None
            is_boundary = parent is None and info.sha in boundary
            before = state_of(parent) if parent else {}
            settings_before = self.settings_blob.get(parent) if parent else None
            state = dict(before)
            touched: dict[str, set[str]] = {}  # env -> changed paths
            settings_after = settings_before
            for change in files:
                if change.path == SETTINGS_FILE:
                    settings_after = None if change.status == "D" else change.blob
                    continue
                env = env_of(change.path)
                if env is None:
                    continue
                if change.status == "D":
                    state.pop(change.path, None)
                else:
                    state[change.path] = (change.blob, change.mode)
                touched.setdefault(env, set()).add(change.path)
            self.settings_blob[info.sha] = settings_after
            commit_entries: list[HistoryEntry] = []
            if settings_after != settings_before and self.key is None and not is_boundary:
                commit_entries += self._settings_entries(info, settings_before, settings_after)
            for env in sorted(touched):
                if self.envs is not None and env not in self.envs:
                    continue
                if is_boundary:
                    commit_entries += self._boundary_entries(info, env, state)
                    continue
                commit_entries += self._env_entries(info, env, before, state, touched[env])
            if len(info.parents) > 1:
                side = state_of(info.parents[1])
                commit_entries = [
                    e for e in commit_entries if not self._merged_in(e, env_state=side)
                ]
            self.states[info.sha] = state
            by_tree.setdefault(env_trees.get(info.sha), state)
            out += commit_entries
        return out

    def _prefetch(self, entries: Sequence[tuple[gitio.CommitInfo, list[gitio.FileChange]]]) -> None:
        """Read the next commits' new blobs in one round trip."""
        wanted = [
            change.blob
            for _, files in entries
            for change in files
            if change.status != "D"
            and (env := env_of(change.path)) is not None
            and (self.envs is None or env in self.envs)
            and _kind_of(change.path, env) is not None
        ]
        self.prefetched = gitio.read_blobs(self.root, wanted, MAX_FILE_BYTES)

    # --- one commit, one environment ---------------------------------------------------

    def _env_entries(
        self, info: gitio.CommitInfo, env: str, before: State, state: State, paths: set[str]
    ) -> list[HistoryEntry]:
        out: list[HistoryEntry] = []
        kinds = {k for p in paths if (k := _kind_of(p, env))}
        if self.key is not None:
            kinds &= {"config"} if self.config_path else set(KEYED_KINDS)
        # A file that cannot be read now is reported, and its last readable version
        # stays in the state: it is never taken for "every key removed".
        for rel in sorted(paths):
            if rel not in state or _kind_of(rel, env) not in kinds:
                continue
            blob = self._blob(state, rel)
            problem = blob.problem
            if problem is None and self.key is None and blob.blocks is None:
                whole = blob.whole()
                problem = whole if isinstance(whole, Problem) else None
            if problem is None and self.key is None and blob.blocks is not None:
                # Only changed blocks can have broken the file: parse those.
                old_blocks = self._blob(before, rel).blocks if rel in before else None
                for top, text in blob.blocks.items():
                    if old_blocks is None or old_blocks.get(top) != text:
                        value = blob.value(top)
                        if isinstance(value, Problem):
                            problem = value
                            break
            if problem is not None:
                out.append(self._file_error(info, env, rel, problem))
                if rel in before:
                    state[rel] = before[rel]
                else:
                    del state[rel]
        vanished = not any(_kind_of(p, env) for p in state) and any(
            _kind_of(p, env) for p in before
        )
        if vanished and self._lists_env(self.settings_blob.get(info.sha), env):
            problem = Problem(
                f"{ENVIRONMENTS_DIR}/{env}/",
                0,
                0,
                f"{ENVIRONMENTS_DIR}/{env}/ is missing, but flagstone.yaml lists {env}",
                "missing-environment",
            )
            for rel in before:
                if env_of(rel) == env:
                    state[rel] = before[rel]
            return [
                *out,
                HistoryEntry(
                    info,
                    env,
                    "environment",
                    env,
                    "missing",
                    (problem.message,),
                    None,
                    None,
                    problem,
                ),
            ]
        for kind in sorted(kinds):
            out += self._kind_entries(info, env, kind, before, state)
        return out

    def _kind_entries(
        self, info: gitio.CommitInfo, env: str, kind: str, before: State, state: State
    ) -> list[HistoryEntry]:
        old_files = {r: v for r, v in before.items() if _kind_of(r, env) == kind}
        new_files = {r: v for r, v in state.items() if _kind_of(r, env) == kind}
        changed = sorted(
            r for r in {*old_files, *new_files} if old_files.get(r) != new_files.get(r)
        )
        if not changed:
            return []
        if kind == "config":
            old_cfg = self._config(before, changed[0]) if changed[0] in old_files else MISSING
            new_cfg = self._config(state, changed[0]) if changed[0] in new_files else MISSING
            return self._config_entries(info, env, old_cfg, new_cfg)
        old_blobs = [self._blob(before, r) for r in changed if r in old_files]
        new_blobs = [self._blob(state, r) for r in changed if r in new_files]
        blobs = (*old_blobs, *new_blobs)
        keys: set[str]
        if self.key is not None:
            texts = [b.block(self.key) for b in blobs]
            if _ABSENT not in texts and [t for t in texts[: len(old_blobs)] if t] == [
                t for t in texts[len(old_blobs) :] if t
            ]:
                return []  # the key's block text did not change
            keys = {self.key}
        elif all(b.blocks is not None for b in blobs):
            # Block texts first: only keys whose text changed are parsed.
            old_text = {k: t for b in old_blobs for k, t in (b.blocks or {}).items()}
            new_text = {k: t for b in new_blobs for k, t in (b.blocks or {}).items()}
            keys = {k for k in {*old_text, *new_text} if old_text.get(k) != new_text.get(k)}
        else:
            keys = {k for b in blobs for k in b.top_keys()}
        out = []
        for key in sorted(keys):
            broken = [(b, v) for b in new_blobs if isinstance(v := b.value(key), Problem)]
            if broken:
                # The key's own block does not parse: a file error, not "removed"; the
                # last readable version stays for the next commit to compare with.
                blob, problem = broken[0]
                out.append(self._file_error(info, env, blob.rel, problem))
                if blob.rel in before:
                    state[blob.rel] = before[blob.rel]
                continue
            old = _first(b.value(key) for b in old_blobs)
            new = _first(b.value(key) for b in new_blobs)
            entry = self._entry(info, env, kind, key, old, new)
            if entry is not None:
                out.append(entry)
        return out

    def _entry(
        self, info: gitio.CommitInfo, env: str, kind: str, key: str, old: Any, new: Any
    ) -> HistoryEntry | None:
        if _same(old, new):
            return None
        noun = kind[:-1] if kind != "config" else "config key"
        summary: tuple[str, ...]
        if old is MISSING:
            action, summary = "added", (f"{noun} added",)
        elif new is MISSING:
            action, summary = "removed", (f"{noun} removed",)
        elif kind == "config" and _is_secret(self.secrets, tuple(key.split(".")), old, new):
            action, summary = "changed", (SECRET_CHANGED,)
        elif kind == "config" or not isinstance(old, Mapping) or not isinstance(new, Mapping):
            action, summary = "changed", (self.secrets.redact(f"{_short(old)} → {_short(new)}"),)
        else:
            action, summary = "changed", tuple(object_changes(kind, old, new)) or ("changed",)
        if kind == "config" and _is_secret(self.secrets, tuple(key.split(".")), old, new):
            old = SECRET if old is not MISSING else old
            new = SECRET if new is not MISSING else new
        return HistoryEntry(
            info,
            env,
            kind,
            key,
            action,
            summary,
            None if old is MISSING else old,
            None if new is MISSING else new,
        )

    def _config_entries(
        self, info: gitio.CommitInfo, env: str, old: Any, new: Any
    ) -> list[HistoryEntry]:
        if self.config_path is not None:
            dotted = ".".join(self.config_path)
            entry = self._entry(
                info,
                env,
                "config",
                dotted,
                get_path(old, self.config_path),
                get_path(new, self.config_path),
            )
            return [entry] if entry is not None else []
        old_leaves = dict(dotted_leaves(old)) if isinstance(old, Mapping) else {}
        new_leaves = dict(dotted_leaves(new)) if isinstance(new, Mapping) else {}
        out = []
        for dotted in sorted({*old_leaves, *new_leaves}):
            entry = self._entry(
                info,
                env,
                "config",
                dotted,
                old_leaves.get(dotted, MISSING),
                new_leaves.get(dotted, MISSING),
            )
            if entry is not None:
                out.append(entry)
        return out

    def _file_error(
        self, info: gitio.CommitInfo, env: str, rel: str, problem: Problem
    ) -> HistoryEntry:
        return HistoryEntry(
            info,
            env,
            "file",
            rel,
            "unreadable",
            (f"{rel} cannot be read: {problem.message}",),
            None,
            None,
            problem,
        )

    def _boundary_entries(
        self, info: gitio.CommitInfo, env: str, state: State
    ) -> list[HistoryEntry]:
        note = (
            f"shallow clone boundary: the history before {info.sha[:12]} is not in this "
            "clone (fetch it with `git fetch --unshallow`)"
        )
        if self.key is None:
            return [HistoryEntry(info, env, "environment", env, "boundary", (note,), None, None)]
        kind, value = self._value_in(state, env)
        if value is MISSING or isinstance(value, Problem):
            return []
        return [HistoryEntry(info, env, kind, self.key, "boundary", (note,), None, value)]

    def _settings_entries(
        self, info: gitio.CommitInfo, old: str | None, new: str | None
    ) -> list[HistoryEntry]:
        before = self._settings(old)
        after = self._settings(new)
        if isinstance(after, Problem):
            return [self._file_error(info, "", SETTINGS_FILE, after)]
        if not isinstance(before, Mapping):
            before = {}
        changes = tuple(
            _settings_change(top, before.get(top, MISSING), after.get(top, MISSING))
            for top in sorted({*before, *after})
            if not _same(before.get(top, MISSING), after.get(top, MISSING))
        )
        if not changes:
            return []
        return [HistoryEntry(info, "", "settings", SETTINGS_FILE, "changed", changes, None, None)]

    # --- reading ------------------------------------------------------------------------

    def _blob(self, state: State, rel: str) -> _Blob:
        sha, mode = state[rel]
        cache_key = f"{sha}:{rel}" if mode == gitio.SYMLINK_MODE else sha
        if cache_key in self.blobs:
            self.blobs.move_to_end(cache_key)
        else:
            self.blobs[cache_key] = self._read(state, rel, sha, mode)
            if len(self.blobs) > BLOB_CACHE:
                self.blobs.popitem(last=False)
        return self.blobs[cache_key]

    def _read(self, state: State, rel: str, sha: str, mode: str, depth: int = 0) -> _Blob:
        if mode == gitio.SYMLINK_MODE:
            link = self.prefetched.pop(sha, None) or gitio.read_blob(self.root, sha, 4096)
            target = link.decode("utf-8", errors="replace") if isinstance(link, bytes) else ""
            landing = gitio.resolve_link(rel, target)
            if landing is None or not landing.startswith(ENVIRONMENTS_DIR + "/"):
                return self._made(rel, None, refused_symlink(rel, target))
            if landing not in state or depth > 8:
                problem = Problem(rel, 1, 1, f"symlink to {target!r} points at no file", "symlink")
                return self._made(rel, None, problem)
            return self._read(state, landing, *state[landing], depth + 1)
        data = self.prefetched.pop(sha, None)
        if data is None:
            data = gitio.read_blob(self.root, sha, MAX_FILE_BYTES)
        if isinstance(data, int):
            return self._made(rel, None, too_large(rel, data))
        try:
            return self._made(rel, data.decode("utf-8").removeprefix("\ufeff"), None)
        except UnicodeDecodeError:
            try:
                parse_yaml(data, rel)
            except LoadError as e:
                return self._made(rel, None, e.problem)
            return self._made(rel, None, Problem(rel, 1, 1, "not UTF-8", "encoding"))

    @staticmethod
    def _made(rel: str, text: str | None, problem: Problem | None) -> _Blob:
        blob = _Blob(text, problem)
        blob.rel = rel
        return blob

    def _config(self, state: State, rel: str) -> Any:
        whole = self._blob(state, rel).whole()
        return MISSING if isinstance(whole, Problem) else whole

    def _settings(self, sha: str | None) -> Any:
        if sha is None:
            return {}
        if sha not in self.blobs:
            self.blobs[sha] = self._made(
                SETTINGS_FILE, gitio.blob(self.root, sha).decode("utf-8", errors="replace"), None
            )
        return self.blobs[sha].whole()

    def _lists_env(self, settings_sha: str | None, env: str) -> bool:
        settings = self._settings(settings_sha)
        listed = settings.get("environments") if isinstance(settings, Mapping) else None
        return isinstance(listed, list) and env in listed

    def _value_in(self, state: State, env: str) -> tuple[str, Any]:
        """The wanted key's (kind, value) in a state."""
        for rel in sorted(state):
            kind = _kind_of(rel, env)
            if kind is None or (self.config_path is not None) != (kind == "config"):
                continue
            if self.config_path is not None:
                return "config", get_path(self._config(state, rel), self.config_path)
            value = self._blob(state, rel).value(self.key or "")
            if value is not MISSING and not isinstance(value, Problem):
                return kind, value
        return ("config" if self.config_path else "flags"), MISSING

    def _merged_in(self, entry: HistoryEntry, env_state: State) -> bool:
        """A merge bringing in a change the side branch's own commit already reports."""
        if entry.kind in ("file", "environment", "settings"):
            return False
        if entry.kind == "config":
            rel = next((r for r in env_state if _kind_of(r, entry.env) == "config"), None)
            side = (
                get_path(self._config(env_state, rel), tuple(entry.key.split(".")))
                if rel
                else MISSING
            )
        else:
            side = _first(
                self._blob(env_state, r).value(entry.key)
                for r in sorted(env_state)
                if _kind_of(r, entry.env) == entry.kind
            )
        new = MISSING if entry.new is None and entry.action == "removed" else entry.new
        return _same(side, new) or (entry.new == SECRET and side is not MISSING)


def _settings_change(top: str, old: Any, new: Any) -> str:
    if old is MISSING or new is MISSING:
        return f"{top} {'added' if old is MISSING else 'removed'}"
    if top == "environments" and isinstance(old, list) and isinstance(new, list):
        # Which environments came and went: a renamed folder reads as one of each.
        gone = [str(e) for e in old if e not in new]
        came = [str(e) for e in new if e not in old]
        words = [f"{e} added" for e in came] + [f"{e} removed" for e in gone]
        if not words:
            words = ["reordered"]
        return f"environments {', '.join(words)} ({', '.join(map(str, new))})"
    return f"{top} changed"


def _first(values: Any) -> Any:
    """The first value that is found (not MISSING, not a file error)."""
    for value in values:
        if value is not MISSING and not isinstance(value, Problem):
            return value
    return MISSING


def _same(a: Any, b: Any) -> bool:
    """Equal as YAML values: ``true`` is not ``1`` here, as it is in Python."""
    from flagstone.edit import canonical

    if a is MISSING or b is MISSING:
        return a is b
    return a == b and bool(canonical(a) == canonical(b))


def _is_secret(secrets: Secrets, path: tuple[str, ...] | None, *values: Any) -> bool:
    if path is None:
        return False
    from flagstone.paths import leaves

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
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


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
    def __init__(self, problems: list[Problem], message: str | None = None) -> None:
        super().__init__(
            message
            or f"the result would be invalid ({len(problems)} error(s)); nothing was written"
        )
        self.problems = problems


def _env_at(root: Path, rev: str, env: str) -> tuple[Environment | None, dict[str, bytes]]:
    """An environment as it was at ``rev`` (None if it did not exist); refuses a revision
    where one of its files cannot be read, rather than take the file for empty."""
    files = gitio.tree_files(root, rev, f"{ENVIRONMENTS_DIR}/{env}")
    if not files:
        return None, {}
    found, problems = read_environment(env, files)
    unreadable = [p for p in problems if p.code in UNREADABLE]
    if unreadable:
        raise RestorationInvalid(
            unreadable,
            f"{env} cannot be read at {rev[:12]} ({len(unreadable)} file error(s)); "
            "nothing was written: pick another revision",
        )
    return found, {rel: data for rel, data in files.items() if isinstance(data, bytes)}


def plan_rollback(
    repo: Repository, env: str, rev: str, only: Sequence[str] = (), *, force: bool = False
) -> Restoration:
    """Restore ``env`` (or only some keys of it) as it was at ``rev``; refuses to change a
    started experiment's frozen fields or status unless ``force``."""
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
        basis = {rel: data if isinstance(data := now.get(rel), bytes) else None for rel in files}
    checked = check_write(repo, env, files)
    if not checked.allowed:
        raise RestorationInvalid(checked.new)
    if not force:
        _refuse_frozen(repo, current, checked.after, files, "the rollback")
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


def _refuse_frozen(
    repo: Repository,
    current: Environment,
    after: Environment,
    files: Mapping[str, str | None],
    change: str,
) -> None:
    from flagstone.experiments import STOP_FIRST, frozen_problems
    from flagstone.load import attach_positions, read_worktree_text

    problems = frozen_problems(current, after, change, STOP_FIRST + "; or pass --force")
    if problems:
        on_disk = read_worktree_text(repo.root)
        raise RestorationInvalid(
            attach_positions(problems, lambda rel: files.get(rel) or on_disk(rel)),
            f"{change} would change a started experiment's design or status; nothing was written",
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


def plan_revert(
    repo: Repository, rev: str, envs: Sequence[str] | None = None, *, force: bool = False
) -> list[Restoration]:
    """Undo one commit's changes to flagstone objects, key by key: later changes to other
    keys of the same files stay; a key that changed again since is a conflict. Refuses to
    change a started experiment's frozen fields or status unless ``force``."""
    root = repo.root
    sha = gitio.resolve(root, rev)
    info, files = gitio.log(root, f"{sha}^!", raw=True)[0]
    if not info.parents:
        raise FlagstoneError(
            f"{sha[:12]} is the first commit: there is nothing before it to return to"
        )
    parent = info.parents[0]
    touched = sorted({e for f in files if (e := env_of(f.path)) and (envs is None or e in envs)})
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
        if not force:
            _refuse_frozen(repo, current, checked.after, files_out, "the revert")
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
        return get_path(env.config.values if env.config else {}, key)
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
