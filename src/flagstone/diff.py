"""Semantic diff: what changed, in the domain's words ("rollout on 20% → 50%").

Objects are compared by key, never by file, so moving a flag between files of a folder
kind is no change at all. Secret config values (``flagstone.secrets`` decides which) are
reported as changed, never shown.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from flagstone.conditions import COMBINATORS, terms
from flagstone.errors import FlagstoneError, Problem
from flagstone.load import read_environment
from flagstone.model import (
    ENVIRONMENTS_DIR,
    KEYED_KINDS,
    SETTINGS_FILE,
    Environment,
    classify,
    enabled_of,
    prerequisite_variants,
    traffic_of,
)
from flagstone.paths import dotted_leaves
from flagstone.secrets import NO_SECRETS, SECRET, SECRET_CHANGED, Secrets, is_encrypted

Action = Literal["added", "removed", "changed"]
SecretsLike = Secrets | frozenset[str]


@dataclass(frozen=True, slots=True)
class Quoted:
    """A value from the repository inside a summary (a key, a variant, a number): markdown
    shows it as code, so no value can add headings, HTML, mentions or a second marker."""

    text: str


Words = tuple[str | Quoted, ...]


def plain(words: Words) -> str:
    return "".join(w.text if isinstance(w, Quoted) else w for w in words)


@dataclass(frozen=True, slots=True)
class Change:
    env: str
    kind: str  # flags, segments, experiments, config
    key: str  # object key, or dotted config key
    action: Action
    field: str | None  # what changed inside the object ("rollout", "rules[2]", "targets.on", ...)
    summary: str  # the change in words
    old: Any = None
    new: Any = None
    words: Words = ()  # the summary with its values marked; empty: all of it is a value

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "kind": self.kind,
            "key": self.key,
            "action": self.action,
            "field": self.field,
            "summary": self.summary,
            "old": json_safe(self.old),
            "new": json_safe(self.new),
        }


def _change(
    env: str,
    kind: str,
    key: str,
    action: Action,
    field: str | None,
    words: Words,
    old: Any,
    new: Any,
) -> Change:
    return Change(env, kind, key, action, field, plain(words), old, new, words)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities (YAML's .nan, .inf) spelled as in YAML: a diff of
    an invalid revision must still be standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def is_secret_value(value: Any) -> bool:
    return is_encrypted(value)


def _as_secrets(secrets: SecretsLike) -> Secrets:
    return secrets if isinstance(secrets, Secrets) else Secrets(frozenset(secrets))


def diff_environments(
    old: Environment | None,
    new: Environment | None,
    label: str | None = None,
    secrets: SecretsLike = NO_SECRETS,
) -> list[Change]:
    """Changes that turn ``old`` into ``new`` (either may be missing)."""
    env = label or (new or old).name  # type: ignore[union-attr]
    changes: list[Change] = []
    for kind in KEYED_KINDS:
        before = {k: o.raw for k, o in old.objects(kind).items()} if old else {}
        after = {k: o.raw for k, o in new.objects(kind).items()} if new else {}
        for key in sorted(set(before) | set(after)):
            if key not in before:
                changes.append(
                    _change(
                        env, kind, key, "added", None, (f"{_noun(kind)} added",), None, after[key]
                    )
                )
            elif key not in after:
                gone: Words = (f"{_noun(kind)} removed",)
                changes.append(_change(env, kind, key, "removed", None, gone, before[key], None))
            elif before[key] != after[key]:
                compare = {"flags": _flag_changes, "experiments": _experiment_changes}.get(
                    kind, _generic_changes
                )
                for field, words, o, n in compare(before[key], after[key]):
                    changes.append(_change(env, kind, key, "changed", field, words, o, n))
    old_config = dict(old.config.values) if old and old.config else {}
    new_config = dict(new.config.values) if new and new.config else {}
    changes += config_changes(env, old_config, new_config, secrets)
    return changes


def object_changes(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The changes between two versions of one object, in words."""
    compare = {"flags": _flag_changes, "experiments": _experiment_changes}.get(
        kind, _generic_changes
    )
    return [plain(words) for _, words, _, _ in compare(old, new)]


def _noun(kind: str) -> str:
    return kind[:-1]


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(json_safe(value), sort_keys=True, separators=(", ", ": "), allow_nan=False)


def _q(value: Any) -> Quoted:
    return Quoted(_show(value))


def _pct(value: float) -> str:
    return f"{value:g}%"


Field = tuple[str | None, Words, Any, Any]


def _serve_words(serve: Any) -> Words:
    if isinstance(serve, str):
        return (Quoted(serve),)
    if isinstance(serve, Mapping) and isinstance(serve.get("rollout"), Mapping):
        words: list[str | Quoted] = ["rollout "]
        for i, (v, w) in enumerate(serve["rollout"].items()):
            words += [", " if i else "", Quoted(str(v)), f" {_pct(w)}"]
        if serve.get("by"):
            words += [" by ", _q(serve["by"])]
        return tuple(words)
    return (_q(serve),)


def _serve_changes(where: str, old: Any, new: Any) -> Iterator[Field]:
    if old == new:
        return
    if (
        isinstance(old, Mapping)
        and isinstance(new, Mapping)
        and "rollout" in old
        and "rollout" in new
    ):
        a, b = old["rollout"], new["rollout"]
        moved: list[str | Quoted] = []
        for v in dict.fromkeys([*a, *b]):
            if a.get(v, 0) != b.get(v, 0):
                moved += [", " if moved else "", Quoted(str(v))]
                moved.append(f" {_pct(a.get(v, 0))} → {_pct(b.get(v, 0))}")
        if moved:
            yield f"{where}.rollout", (f"{where} rollout ", *moved), a, b
        if old.get("by") != new.get("by"):
            yield (
                f"{where}.by",
                (
                    f"{where} rollout by ",
                    _q(old.get("by") or "unit"),
                    " → ",
                    _q(new.get("by") or "unit"),
                ),
                old.get("by"),
                new.get("by"),
            )
        return
    yield where, (f"{where} ", *_serve_words(old), " → ", *_serve_words(new)), old, new


def _flag_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Field]:
    if enabled_of(old) != enabled_of(new):
        on = enabled_of(new)
        yield (
            "enabled",
            ("enabled (kill switch released)" if on else "disabled (kill switch pulled)",),
            enabled_of(old),
            on,
        )
    yield from _serve_changes("default", old.get("default"), new.get("default"))
    yield from _rules_changes(old.get("rules", []), new.get("rules", []))
    yield from _targets_changes(old.get("targets", {}), new.get("targets", {}))
    variants_old, variants_new = old.get("variants", {}), new.get("variants", {})
    for variant in dict.fromkeys([*variants_old, *variants_new]):
        name = Quoted(str(variant))
        if variant not in variants_old:
            yield (
                f"variants.{variant}",
                ("variant ", name, " added (", _q(variants_new[variant]), ")"),
                None,
                variants_new[variant],
            )
        elif variant not in variants_new:
            yield f"variants.{variant}", ("variant ", name, " removed"), variants_old[variant], None
        elif variants_old[variant] != variants_new[variant]:
            yield (
                f"variants.{variant}",
                (
                    "variant ",
                    name,
                    " value ",
                    _q(variants_old[variant]),
                    " → ",
                    _q(variants_new[variant]),
                ),
                variants_old[variant],
                variants_new[variant],
            )
    handled = {"enabled", "default", "rules", "targets", "variants"}
    yield from _generic_changes(old, new, skip=handled)


def _rules_changes(old: Sequence[Any], new: Sequence[Any]) -> Iterator[Field]:
    if list(old) == list(new):
        return
    encode = (
        [json.dumps(json_safe(r), sort_keys=True) for r in old],
        [json.dumps(json_safe(r), sort_keys=True) for r in new],
    )
    matcher = difflib.SequenceMatcher(a=encode[0], b=encode[1], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if op == "replace" and i2 - i1 == j2 - j1:
            for offset in range(i2 - i1):
                yield from _rule_changes(j1 + offset, old[i1 + offset], new[j1 + offset])
            continue
        for i in range(i1, i2):
            yield (
                f"rules[{i}]",
                (f"rule {i + 1} removed (", *_rule_words(old[i]), ")"),
                old[i],
                None,
            )
        for j in range(j1, j2):
            yield (
                f"rules[{j}]",
                (f"rule added at position {j + 1} (", *_rule_words(new[j]), ")"),
                None,
                new[j],
            )


def _rule_words(rule: Mapping[str, Any]) -> Words:
    who: list[str | Quoted] = []
    if rule.get("name"):
        who.append(_q(rule["name"]))
    if "segment" in rule:
        who += [" " if who else "", "segment ", _q(rule["segment"])]
    if "when" in rule:
        who += [" and " if who else "", "when ", *condition_words(rule["when"])]
    return (*who, " → ", *_serve_words(rule.get("serve")))


OPERATOR_WORDS = {
    "eq": "=",
    "neq": "≠",
    "in": "in",
    "not_in": "not in",
    "contains": "contains",
    "starts_with": "starts with",
    "ends_with": "ends with",
    "matches": "matches",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
    "semver_eq": "= version",
    "semver_gt": "> version",
    "semver_gte": "≥ version",
    "semver_lt": "< version",
    "semver_lte": "≤ version",
    "before": "before",
    "after": "at or after",
}


def condition_words(condition: Any) -> Words:
    """A condition in words: ``country in DE, FR and plan = pro``."""
    if not isinstance(condition, Mapping):
        return (_q(condition),)
    parts: list[Words] = []
    for attribute, op, operand in terms(condition):
        if op in COMBINATORS:
            joiner = " and " if op == "all" else " or "
            subs = [condition_words(c) for c in operand]
            inner: list[str | Quoted] = []
            for i, sub in enumerate(subs):
                inner += [joiner if i else "", *sub]
            parts.append(("(", *inner, ")") if len(subs) > 1 else tuple(inner))
        elif op == "not":
            parts.append(("not (", *condition_words(operand), ")"))
        elif op == "segment":
            parts.append(("in segment ", _q(operand)))
        elif op == "exists":
            parts.append((_q(attribute), " is set" if operand else " is not set"))
        else:
            shown = ", ".join(_show(o) for o in operand) if isinstance(operand, list) else operand
            parts.append((_q(attribute), f" {OPERATOR_WORDS.get(op, op)} ", _q(shown)))
    out: list[str | Quoted] = []
    for i, part in enumerate(parts):
        out += [" and " if i else "", *part]
    return tuple(out)


def _rule_changes(index: int, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Field]:
    where = f"rule {index + 1}"
    for _, words, o, n in _serve_changes(where, old.get("serve"), new.get("serve")):
        yield f"rules[{index}].serve", words, o, n
    for part in ("segment", "when", "name"):
        if old.get(part) != new.get(part):
            yield (
                f"rules[{index}].{part}",
                (f"{where} {part} ", _q(old.get(part, "-")), " → ", _q(new.get(part, "-"))),
                old.get(part),
                new.get(part),
            )


def _targets_changes(
    old: Mapping[str, Sequence[Any]], new: Mapping[str, Sequence[Any]]
) -> Iterator[Field]:
    for variant in dict.fromkeys([*old, *new]):
        a, b = set(map(str, old.get(variant, []))), set(map(str, new.get(variant, [])))
        if a != b:
            added, removed = sorted(b - a), sorted(a - b)
            parts = ([f"+{len(added)}"] if added else []) + (
                [f"−{len(removed)}"] if removed else []
            )
            words = ("targets ", Quoted(str(variant)), f" {' '.join(parts)}")
            yield f"targets.{variant}", words, sorted(a), sorted(b)


def _experiment_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Field]:
    if old.get("status") != new.get("status"):
        yield (
            "status",
            ("status ", _q(old.get("status")), " → ", _q(new.get("status"))),
            old.get("status"),
            new.get("status"),
        )
    if traffic_of(old) != traffic_of(new):
        yield (
            "traffic",
            (f"traffic {_pct(old.get('traffic', 100))} → {_pct(new.get('traffic', 100))}",),
            traffic_of(old),
            traffic_of(new),
        )
    yield from _generic_changes(old, new, skip={"status", "traffic"})


def _generic_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], skip: set[str] | None = None
) -> Iterator[Field]:
    for field in dict.fromkeys([*old, *new]):
        if (skip and field in skip) or old.get(field) == new.get(field):
            continue
        name = Quoted(str(field))
        if field not in old:
            yield field, (name, " set to ", _q(new[field])), None, new[field]
        elif field not in new:
            yield field, (name, " removed (was ", _q(old[field]), ")"), old[field], None
        else:
            yield field, (name, " ", _q(old[field]), " → ", _q(new[field])), old[field], new[field]


# --- what an added object is, in words (markdown diffs, promotion previews) ---------------


def describe(kind: str, obj: Mapping[str, Any]) -> list[Words]:
    """What a reviewer needs to know about an object that is being added: for a flag what
    it serves — variants, prerequisites, targets, each rule, the default, the kill switch."""
    if kind == "flags":
        return list(_describe_flag(obj))
    if kind == "segments" and "when" in obj:
        return [("matches when ", *condition_words(obj["when"]))]
    if kind == "experiments":
        lines: list[Words] = [
            ("on flag ", _q(obj.get("flag")), ", status ", _q(obj.get("status", "draft"))),
            (f"traffic {_pct(obj.get('traffic', 100))}",),
        ]
        if isinstance(obj.get("weights"), Mapping):
            arms: list[str | Quoted] = ["arms "]
            for i, (arm, weight) in enumerate(obj["weights"].items()):
                arms += [", " if i else "", Quoted(str(arm)), f" {_pct(weight)}"]
            lines.append(tuple(arms))
        return lines
    return []


def _describe_flag(flag: Mapping[str, Any]) -> Iterator[Words]:
    if flag.get("description"):
        yield ("description ", _q(flag["description"]))
    variants = flag.get("variants")
    if isinstance(variants, Mapping):
        words: list[str | Quoted] = ["variants "]
        for i, (name, value) in enumerate(variants.items()):
            words += [", " if i else "", Quoted(str(name)), " = ", _q(value)]
        yield tuple(words)
    if not enabled_of(flag):
        off = flag.get("off_variant")
        if off is not None:
            yield ("disabled (kill switch pulled): everyone gets ", Quoted(str(off)))
        else:
            yield ("disabled (kill switch pulled): apps get their coded default",)
    for prerequisite in flag.get("prerequisites", ()) or ():
        if isinstance(prerequisite, Mapping):
            allowed = prerequisite_variants(prerequisite)
            yield (
                "requires ",
                _q(prerequisite.get("flag")),
                " to serve ",
                Quoted(" or ".join(map(str, allowed))),
            )
    targets = flag.get("targets")
    if isinstance(targets, Mapping):
        for variant, units in targets.items():
            count = len(units) if isinstance(units, list) else 0
            yield ("targets ", Quoted(str(variant)), f": {count} unit{'s' * (count != 1)}")
    for index, rule in enumerate(flag.get("rules", ()) or ()):
        if isinstance(rule, Mapping):
            yield (f"rule {index + 1}: ", *_rule_words(rule))
    if "default" in flag:
        yield ("default ", *_serve_words(flag["default"]))


# --- what a reviewer must not miss ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReviewWarning:
    """A change that is easy to approve without noticing what it does."""

    env: str
    kind: str
    key: str
    words: Words

    @property
    def message(self) -> str:
        return plain(self.words)


def review_warnings(changes: Sequence[Change]) -> list[ReviewWarning]:
    """A flag whose kill switch was pulled in an environment and that this change turns
    back on (a promotion copies ``enabled: true`` over it, silently until now)."""
    out = []
    for c in changes:
        if c.kind == "flags" and c.field == "enabled" and c.old is False and c.new is not False:
            words = (
                "flag ",
                Quoted(c.key),
                " is disabled in ",
                Quoted(c.env),
                " (kill switch pulled) and this change enables it again",
            )
            out.append(ReviewWarning(c.env, c.kind, c.key, words))
    return out


def config_changes(
    env: str,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    secrets: SecretsLike = NO_SECRETS,
) -> list[Change]:
    policy = _as_secrets(secrets)
    a, b = dict(dotted_leaves(old)), dict(dotted_leaves(new))
    a.pop("", None)
    b.pop("", None)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, _ABSENT) == b.get(key, _ABSENT):
            continue
        secret = policy.is_secret(key, a.get(key)) or policy.is_secret(key, b.get(key))
        if secret:
            old_value = SECRET if key in a else None
            new_value = SECRET if key in b else None
        else:
            old_value, new_value = a.get(key), b.get(key)

        def shown(value: Any) -> Quoted:
            return Quoted(policy.redact(_show(value)))

        if key not in a:
            words: Words = ("secret added",) if secret else ("set to ", shown(b[key]))
            out.append(_change(env, "config", key, "added", None, words, None, new_value))
        elif key not in b:
            words = ("secret removed",) if secret else ("removed",)
            out.append(_change(env, "config", key, "removed", None, words, old_value, None))
        else:
            words = (SECRET_CHANGED,) if secret else (shown(a[key]), " → ", shown(b[key]))
            out.append(_change(env, "config", key, "changed", None, words, old_value, new_value))
    return out


_ABSENT: Any = object()


def diff_revisions(
    root: Path,
    old_rev: str,
    new_rev: str | None,
    envs: Sequence[str] | None,
    secrets: SecretsLike = NO_SECRETS,
) -> tuple[list[Change], list[Problem]]:
    """Changes per environment between two revisions (``new_rev`` None: the working tree),
    read straight from git objects, nothing checked out, and the file errors that stop a
    side being read. A kind whose file cannot be read on either side (a YAML error, over
    the size limit, a symlink leaving the repository), or an environment folder missing
    where flagstone.yaml lists it, is reported as that error, never as keys removed.
    ``envs`` None: every environment either revision lists, so one removed or renamed in
    between shows what it held as removed, not nothing."""
    from flagstone import gitio
    from flagstone.load import UNREADABLE, environment_files, load_settings

    changes: list[Change] = []
    problems: list[Problem] = []
    listed: dict[str | None, list[str]] = {
        rev: _listed_envs(gitio.show(root, rev, SETTINGS_FILE), load_settings)
        for rev in (old_rev, new_rev)
        if rev is not None
    }
    if new_rev is None:
        settings = root / SETTINGS_FILE
        listed[None] = _listed_envs(
            settings.read_bytes() if settings.is_file() else None, load_settings
        )
    if envs is None:
        envs = list(dict.fromkeys([*listed[new_rev], *listed[old_rev]]))
    for env in envs:
        prefix = f"{ENVIRONMENTS_DIR}/{env}"
        sides = []
        for rev in (old_rev, new_rev):
            files = gitio.tree_files(root, rev, prefix) if rev else environment_files(root, env)
            where = rev or "the working tree"
            if not files and env in listed[rev]:
                problems.append(
                    Problem(
                        f"{prefix}/",
                        0,
                        0,
                        f"{prefix}/ does not exist at {where}, but flagstone.yaml lists {env}",
                        "missing-environment",
                    )
                )
            found, found_problems = read_environment(env, files) if files else (None, [])
            broken = [p for p in found_problems if p.code in UNREADABLE]
            problems += [
                replace(p, message=f"{p.message} (at {where})") if rev else p for p in broken
            ]
            sides.append((found, broken))
        (old_env, old_broken), (new_env, new_broken) = sides
        if any(p.code == "missing-environment" and _env_of_problem(p) == env for p in problems):
            continue
        if old_env is None and new_env is None:
            continue
        unreadable_kinds = {_kind_of_file(p.file, env) for p in (*old_broken, *new_broken)}
        changes += [
            c
            for c in diff_environments(old_env, new_env, env, secrets)
            if c.kind not in unreadable_kinds
        ]
    return changes, sorted(set(problems))


def _listed_envs(data: bytes | None, load: Any) -> list[str]:
    if data is None:
        return []
    try:
        return list(load(data).environments)
    except FlagstoneError:
        return []


def _env_of_problem(problem: Problem) -> str | None:
    parts = problem.file.split("/")
    return parts[1] if len(parts) > 1 and parts[0] == ENVIRONMENTS_DIR else None


def _kind_of_file(rel: str, env: str) -> str | None:
    found = classify(rel, env)
    return found[0] if found else None


def count(changes: Sequence[Change]) -> dict[str, int]:
    by: dict[str, int] = {"added": 0, "removed": 0, "changed": 0}
    seen: set[tuple[str, str, str]] = set()
    for c in changes:
        ident = (c.env, c.kind, c.key)
        if ident not in seen:
            seen.add(ident)
            by[c.action] += 1
    return by
