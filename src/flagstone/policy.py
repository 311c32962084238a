"""`flagstone verify`: commits that touch a protected environment must follow the policy.

The policy and the allowed-signers file are read from the *base* of the range, never
from the commits being verified, so a pull request cannot authorize itself. The gate
holds against the ways around it that have been tried (each has a test):

- a promotion commit must change only keys its ``Flagstone-Keys`` trailer lists, each
  equal to the source environment's value at ``Flagstone-Source`` (pinned and secret
  values excepted): an amended or forged promotion fails;
- ``Flagstone-Source`` must be an ancestor of the promotion, and when it lies inside the
  range, the source environment's commits up to it must pass these same rules;
- a commit inside the range that changes the policy (flagstone.yaml's ``policy`` or
  ``pinned``) or an allowed-signers file must meet every protected environment's
  signature and author rules;
- a merge may only bring in what one of its parents has: a value of a protected key
  that no parent has is a change of its own, and is refused.

In every environment, protected or not, a commit may not change the frozen fields of an
experiment that is running before it (``experiments.FROZEN_FIELDS``: weights, arms,
metrics...), even if it also stops the experiment: the lifecycle commands refuse that
edit, and a hand edit or a rollback must not get it past review.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flagstone import gitio
from flagstone.errors import FlagstoneError, LoadError, Problem
from flagstone.load import UNREADABLE, load_settings, parse_yaml, read_environment
from flagstone.model import (
    ENVIRONMENTS_DIR,
    KEYED_KINDS,
    SETTINGS_FILE,
    Environment,
    Protection,
    Settings,
    env_of,
)
from flagstone.paths import dotted_leaves


@dataclass(frozen=True, slots=True)
class Violation:
    commit: str
    subject: str
    author: str
    env: str
    rule: str  # signature, author, promotion, merge, policy, file, frozen
    reason: str


SIGNATURE_PROBLEMS = {
    "N": "is not signed",
    "U": "is signed by a key that is not an allowed signer",
    "B": "has a bad signature",
    "E": "has a signature that cannot be checked",
    "X": "has an expired signature",
    "Y": "is signed by an expired key",
    "R": "is signed by a revoked key",
}


def default_range(root: Path) -> str:
    gitio.ensure_repo(root)
    for base in ("origin/main", "origin/master"):
        try:
            gitio.resolve(root, base)
        except FlagstoneError:
            continue
        return f"{base}..HEAD"
    raise FlagstoneError(
        "no origin/main to compare with: pass --range BASE..HEAD (in CI, the pull request's base)"
    )


def verify_range(root: Path, rev_range: str) -> list[Violation]:
    if ".." not in rev_range or "..." in rev_range:
        raise FlagstoneError("--range takes BASE..HEAD")
    base, head = rev_range.split("..", 1)
    base_sha = gitio.resolve(root, base)
    head_sha = gitio.resolve(root, head or "HEAD")
    settings = _settings_at(root, base_sha, base)
    signers = _signers(root, base_sha, base, settings) if settings.protected else None
    entries = gitio.log(root, f"{base_sha}..{head_sha}", raw=True, allowed_signers=signers)
    return _Gate(root, settings, entries).run()


def _settings_at(root: Path, sha: str, name: str) -> Settings:
    data = gitio.show(root, sha, SETTINGS_FILE)
    if data is None:
        raise FlagstoneError(
            f"{SETTINGS_FILE} does not exist at {name}: the policy is read from the base of the range"
        )
    try:
        return load_settings(data)
    except LoadError as e:
        raise FlagstoneError(f"{SETTINGS_FILE} at {name} cannot be read: {e}") from None


def _signers(root: Path, base_sha: str, base: str, settings: Settings) -> bytes:
    out = b""  # one file: every protected environment's signers
    for env, protection in settings.protected.items():
        if not protection.require_signature:
            continue
        rel = protection.allowed_signers
        if rel is None:
            raise FlagstoneError(
                f"policy for {env} requires signatures but names no allowed_signers file"
            )
        data = gitio.show(root, base_sha, rel)
        if data is None:
            raise FlagstoneError(f"the allowed signers file {rel} does not exist at {base}")
        out += data if data.endswith(b"\n") else data + b"\n"
    return out


Values = dict[str, Any]  # "flags.new-checkout" or "config.api.timeout_ms" -> value


@dataclass
class _Gate:
    root: Path
    settings: Settings
    entries: list[tuple[gitio.CommitInfo, list[gitio.FileChange]]]
    violations: list[Violation] = field(default_factory=list)
    failed: dict[str, set[str]] = field(default_factory=dict)  # env -> commits that failed
    _envs: dict[tuple[str, str], tuple[Environment | None, list[str]]] = field(default_factory=dict)

    def run(self) -> list[Violation]:
        protected = self.settings.protected
        policy_files = {SETTINGS_FILE} | {
            p.allowed_signers for p in protected.values() if p.allowed_signers
        }
        # Oldest first: a promotion's source inside the range is judged before it.
        for info, files in reversed(self.entries):
            paths = {f.path for f in files}
            if paths & policy_files and self._changes_policy(info, paths & policy_files):
                for env, protection in sorted(protected.items()):
                    self._identity(info, env, protection, "policy")
            touched = sorted({e for p in paths if (e := env_of(p)) is not None})
            for env in touched:
                self._frozen(info, env)
            for env in (e for e in touched if e in protected):
                if len(info.parents) > 1:
                    self._merge(info, env)
                else:
                    self._commit(info, env, protected[env])
        return self.violations

    # --- rules ---------------------------------------------------------------------------

    def _add(self, info: gitio.CommitInfo, env: str, rule: str, reason: str) -> None:
        self.violations.append(
            Violation(
                info.sha,
                info.subject,
                f"{info.author_name} <{info.author_email}>",
                env,
                rule,
                reason,
            )
        )
        self.failed.setdefault(env, set()).add(info.sha)

    def _identity(
        self, info: gitio.CommitInfo, env: str, protection: Protection, what: str = "changes"
    ) -> None:
        doing = f"changes {env}" if what == "changes" else f"changes the policy protecting {env}"
        if protection.require_signature and info.signature != "G":
            problem = SIGNATURE_PROBLEMS.get(
                info.signature, f"has signature status {info.signature}"
            )
            self._add(
                info, env, "signature" if what == "changes" else "policy", f"{doing} but {problem}"
            )
        if protection.allowed_authors is not None and info.author_email.lower() not in {
            a.lower() for a in protection.allowed_authors
        }:
            self._add(
                info,
                env,
                "author" if what == "changes" else "policy",
                f"{info.author_email} may not change {env}"
                + ("" if what == "changes" else "'s policy"),
            )

    def _commit(self, info: gitio.CommitInfo, env: str, protection: Protection) -> None:
        after, unreadable = self._env(info.sha, env)
        if unreadable:
            self._add(info, env, "file", f"leaves {', '.join(unreadable)} unreadable in {env}")
            return
        self._identity(info, env, protection)
        if protection.promote_from is not None:
            reason = self._promotion_problem(info, env, protection.promote_from, after)
            if reason:
                self._add(info, env, "promotion", reason)

    def _promotion_problem(
        self, info: gitio.CommitInfo, env: str, source_env: str, after: Environment | None
    ) -> str | None:
        expected = f"{source_env} -> {env}"
        if info.trailers.get("Flagstone-Promote") != expected:
            return f"changes {env} directly; changes must arrive by promotion ({expected})"
        source = info.trailers.get("Flagstone-Source")
        if not source:
            return "has no Flagstone-Source trailer naming the promoted revision"
        try:
            source_sha = gitio.resolve(self.root, source)
        except FlagstoneError:
            return f"names Flagstone-Source {source}, which is not in this repository"
        if not gitio.is_ancestor(self.root, source_sha, info.sha):
            return (
                f"names Flagstone-Source {source_sha[:12]}, which is not an ancestor of the "
                "promotion: a source must be on the line the promotion was made from"
            )
        tainted = [
            c
            for c in sorted(self.failed.get(source_env, ()))
            if gitio.is_ancestor(self.root, c, source_sha)
        ]
        if tainted:
            return (
                f"promotes {source_env}@{source_sha[:12]}, whose {source_env} includes "
                f"{tainted[0][:12]}, which fails this policy"
            )
        source_env_at, unreadable = self._env(source_sha, source_env)
        if unreadable:
            return f"promotes {source_env}@{source_sha[:12]}, where {', '.join(unreadable)} cannot be read"
        listed = [
            k.strip() for k in info.trailers.get("Flagstone-Keys", "").split(",") if k.strip()
        ]
        for label in listed:
            if label.split(".")[0] not in (*KEYED_KINDS, "config"):
                return f"Flagstone-Keys names {label!r}, which is not a flag, segment, experiment or config key"
        before, _ = self._env(info.parents[0], env) if info.parents else (None, [])
        old, new, theirs = _values(before), _values(after), _values(source_env_at)
        for label in sorted({*old, *new}):
            if _same(old.get(label, _ABSENT), new.get(label, _ABSENT)) or self._excepted(
                label, old, new
            ):
                continue
            if not _covered(label, listed):
                return (
                    f"changes {label}, which its Flagstone-Keys does not list: a promotion "
                    "commit may change only what it promotes"
                )
            if not _same(new.get(label, _ABSENT), theirs.get(label, _ABSENT)):
                return (
                    f"claims to promote {_owner(label)} from {source_env}@{source_sha[:12]}, "
                    f"but {env}'s {label} differs from it"
                )
        return None

    def _merge(self, info: gitio.CommitInfo, env: str) -> None:
        """A merge's value of each protected key must be one its parents already had."""
        after, unreadable = self._env(info.sha, env)
        if unreadable:
            self._add(info, env, "file", f"leaves {', '.join(unreadable)} unreadable in {env}")
            return
        new = _values(after)
        parents = [_values(self._env(p, env)[0]) for p in info.parents]
        for label in sorted({*new, *(k for p in parents for k in p)}):
            value = new.get(label, _ABSENT)
            if not any(_same(value, p.get(label, _ABSENT)) for p in parents):
                self._add(
                    info,
                    env,
                    "merge",
                    f"sets {env}'s {label} to a value none of its parents has: a merge may only "
                    "bring in what its branches changed, each change checked on its own",
                )
                return

    def _frozen(self, info: gitio.CommitInfo, env: str) -> None:
        """A started experiment's frozen fields or status changed against the parent (for a merge,
        against every parent: bringing in a branch's commit is that commit's finding)."""
        from flagstone.experiments import frozen_problems
        from flagstone.load import attach_positions

        after, _ = self._env(info.sha, env)
        found: dict[tuple[str, ...], Problem] = {}
        for n, parent in enumerate(info.parents):
            problems = frozen_problems(self._env(parent, env)[0], after, "this commit")
            keyed = {(p.file, *map(str, p.path[:1])): p for p in problems}
            found = keyed if n == 0 else {k: p for k, p in found.items() if k in keyed}
        if not found:
            return

        def text(rel: str) -> str | None:
            data = gitio.show(self.root, info.sha, rel)
            return data.decode("utf-8", "replace") if data is not None else None

        for p in attach_positions(found.values(), text):
            self._add(info, env, "frozen", f"{p.file}:{p.line}:{p.col}: {p.message}; {p.hint}")

    def _changes_policy(self, info: gitio.CommitInfo, paths: set[str]) -> bool:
        """Whether the commit changes the policy or a signers file; a merge only when the
        result differs from every parent (bringing in a branch's change is not one)."""
        for rel in paths:
            new = _policy_part(rel, gitio.show(self.root, info.sha, rel))
            parents = [_policy_part(rel, gitio.show(self.root, p, rel)) for p in info.parents]
            if not any(_same(new, old) for old in parents or [_policy_part(rel, None)]):
                return True
        return False

    def _excepted(self, label: str, *values: Values) -> bool:
        """Pinned values stay the target's, and secrets are never copied: neither is
        compared with the source."""
        dotted = label.removeprefix("config.") if label.startswith("config.") else None
        if any(label == p or label.startswith(p + ".") for p in self.settings.pinned):
            return True
        return dotted is not None and any(_encrypted(v.get(label)) for v in values)

    # --- reading -------------------------------------------------------------------------

    def _env(self, sha: str, env: str) -> tuple[Environment | None, list[str]]:
        """The environment at a commit and the files that cannot be read there."""
        if (sha, env) not in self._envs:
            files = gitio.tree_files(self.root, sha, f"{ENVIRONMENTS_DIR}/{env}")
            if not files:
                self._envs[(sha, env)] = (None, [])
            else:
                found, problems = read_environment(env, files)
                unreadable = sorted({p.file for p in problems if p.code in UNREADABLE})
                self._envs[(sha, env)] = (found, unreadable)
        return self._envs[(sha, env)]


_ABSENT: Any = object()


def _values(env: Environment | None) -> Values:
    """Every object by kind and key, and every config leaf by its dotted path."""
    if env is None:
        return {}
    out: Values = {}
    for kind in KEYED_KINDS:
        for key, obj in env.objects(kind).items():
            out[f"{kind}.{key}"] = obj.raw
    if env.config is not None:
        out.update((f"config.{k}", v) for k, v in dotted_leaves(env.config.values))
    return out


def _covered(label: str, listed: list[str]) -> bool:
    """Whether the trailer names the key, or (for config) the whole config or a prefix."""
    return any(
        label == item
        or (label.startswith("config.") and (item == "config" or label.startswith(item + ".")))
        for item in listed
    )


def _owner(label: str) -> str:
    return "config" if label.startswith("config.") else label


def _same(a: Any, b: Any) -> bool:
    from flagstone.edit import canonical

    if a is _ABSENT or b is _ABSENT:
        return a is b
    return a == b and bool(canonical(a) == canonical(b))


def _encrypted(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("ENC[")


def _policy_part(rel: str, data: bytes | None) -> Any:
    """What of a file the policy depends on: flagstone.yaml's ``policy`` and ``pinned``,
    or a signers file's bytes."""
    if rel != SETTINGS_FILE:
        return data
    if data is None:
        return None
    try:
        raw = parse_yaml(data, SETTINGS_FILE)
    except LoadError:
        return "<unreadable>"
    if not isinstance(raw, Mapping):
        return "<unreadable>"
    return {"policy": raw.get("policy"), "pinned": raw.get("pinned")}
