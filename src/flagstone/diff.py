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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flagstone.load import read_environment
from flagstone.model import ENVIRONMENTS_DIR, KEYED_KINDS, Environment
from flagstone.secrets import NO_SECRETS, SECRET, SECRET_CHANGED, Secrets, is_encrypted

Action = Literal["added", "removed", "changed"]
SecretsLike = Secrets | frozenset[str]


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
                    Change(env, kind, key, "added", None, f"{_noun(kind)} added", None, after[key])
                )
            elif key not in after:
                changes.append(
                    Change(
                        env, kind, key, "removed", None, f"{_noun(kind)} removed", before[key], None
                    )
                )
            elif before[key] != after[key]:
                compare = {"flags": _flag_changes, "experiments": _experiment_changes}.get(
                    kind, _generic_changes
                )
                for field, summary, o, n in compare(before[key], after[key]):
                    changes.append(Change(env, kind, key, "changed", field, summary, o, n))
    old_config = dict(old.config.values) if old and old.config else {}
    new_config = dict(new.config.values) if new and new.config else {}
    changes += config_changes(env, old_config, new_config, secrets)
    return changes


def object_changes(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The changes between two versions of one object, in words."""
    compare = {"flags": _flag_changes, "experiments": _experiment_changes}.get(
        kind, _generic_changes
    )
    return [summary for _, summary, _, _ in compare(old, new)]


def _noun(kind: str) -> str:
    return kind[:-1]


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(json_safe(value), sort_keys=True, separators=(", ", ": "), allow_nan=False)


def _pct(value: float) -> str:
    return f"{value:g}%"


Field = tuple[str | None, str, Any, Any]


def _serve_text(serve: Any) -> str:
    if isinstance(serve, str):
        return serve
    if isinstance(serve, Mapping) and "rollout" in serve:
        return "rollout " + ", ".join(f"{v} {_pct(w)}" for v, w in serve["rollout"].items())
    return _show(serve)


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
        moved = [
            f"{v} {_pct(a.get(v, 0))} → {_pct(b.get(v, 0))}"
            for v in dict.fromkeys([*a, *b])
            if a.get(v, 0) != b.get(v, 0)
        ]
        if moved:
            yield f"{where}.rollout", f"{where} rollout {', '.join(moved)}", a, b
        if old.get("by") != new.get("by"):
            yield (
                f"{where}.by",
                f"{where} rollout by {old.get('by') or 'unit'} → {new.get('by') or 'unit'}",
                old.get("by"),
                new.get("by"),
            )
        return
    yield where, f"{where} {_serve_text(old)} → {_serve_text(new)}", old, new


def _flag_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Field]:
    if old.get("enabled", True) != new.get("enabled", True):
        on = new.get("enabled", True)
        yield (
            "enabled",
            "enabled (kill switch released)" if on else "disabled (kill switch pulled)",
            old.get("enabled", True),
            on,
        )
    yield from _serve_changes("default", old.get("default"), new.get("default"))
    yield from _rules_changes(old.get("rules", []), new.get("rules", []))
    yield from _targets_changes(old.get("targets", {}), new.get("targets", {}))
    variants_old, variants_new = old.get("variants", {}), new.get("variants", {})
    for variant in dict.fromkeys([*variants_old, *variants_new]):
        if variant not in variants_old:
            yield (
                f"variants.{variant}",
                f"variant {variant} added ({_show(variants_new[variant])})",
                None,
                variants_new[variant],
            )
        elif variant not in variants_new:
            yield f"variants.{variant}", f"variant {variant} removed", variants_old[variant], None
        elif variants_old[variant] != variants_new[variant]:
            yield (
                f"variants.{variant}",
                f"variant {variant} value {_show(variants_old[variant])} → {_show(variants_new[variant])}",
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
            yield f"rules[{i}]", f"rule {i + 1} removed ({_rule_text(old[i])})", old[i], None
        for j in range(j1, j2):
            yield (
                f"rules[{j}]",
                f"rule added at position {j + 1} ({_rule_text(new[j])})",
                None,
                new[j],
            )


def _rule_text(rule: Mapping[str, Any]) -> str:
    who = rule.get("name") or (f"segment {rule['segment']}" if "segment" in rule else "")
    if "when" in rule:
        who = (who + " and " if who else "") + f"when {_show(rule['when'])}"
    return f"{who} → {_serve_text(rule.get('serve'))}"


def _rule_changes(index: int, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Field]:
    where = f"rule {index + 1}"
    for _, summary, o, n in _serve_changes(where, old.get("serve"), new.get("serve")):
        yield f"rules[{index}].serve", summary, o, n
    for part in ("segment", "when", "name"):
        if old.get(part) != new.get(part):
            yield (
                f"rules[{index}].{part}",
                f"{where} {part} {_show(old.get(part, '-'))} → {_show(new.get(part, '-'))}",
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
            yield f"targets.{variant}", f"targets {variant} {' '.join(parts)}", sorted(a), sorted(b)


def _experiment_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Field]:
    if old.get("status") != new.get("status"):
        yield (
            "status",
            f"status {old.get('status')} → {new.get('status')}",
            old.get("status"),
            new.get("status"),
        )
    if old.get("traffic", 100) != new.get("traffic", 100):
        yield (
            "traffic",
            f"traffic {_pct(old.get('traffic', 100))} → {_pct(new.get('traffic', 100))}",
            old.get("traffic", 100),
            new.get("traffic", 100),
        )
    yield from _generic_changes(old, new, skip={"status", "traffic"})


def _generic_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], skip: set[str] | None = None
) -> Iterator[Field]:
    for field in dict.fromkeys([*old, *new]):
        if (skip and field in skip) or old.get(field) == new.get(field):
            continue
        if field not in old:
            yield field, f"{field} set to {_show(new[field])}", None, new[field]
        elif field not in new:
            yield field, f"{field} removed (was {_show(old[field])})", old[field], None
        else:
            yield (
                field,
                f"{field} {_show(old[field])} → {_show(new[field])}",
                old[field],
                new[field],
            )


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node


def config_changes(
    env: str,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    secrets: SecretsLike = NO_SECRETS,
) -> list[Change]:
    policy = _as_secrets(secrets)
    a, b = dict(_leaves(old)), dict(_leaves(new))
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
        if key not in a:
            summary = "secret added" if secret else policy.redact(f"set to {_show(b[key])}")
            out.append(Change(env, "config", key, "added", None, summary, None, new_value))
        elif key not in b:
            out.append(
                Change(
                    env,
                    "config",
                    key,
                    "removed",
                    None,
                    "secret removed" if secret else "removed",
                    old_value,
                    None,
                )
            )
        else:
            summary = (
                SECRET_CHANGED if secret else policy.redact(f"{_show(a[key])} → {_show(b[key])}")
            )
            out.append(Change(env, "config", key, "changed", None, summary, old_value, new_value))
    return out


_ABSENT: Any = object()


def diff_revisions(
    root: Path,
    old_rev: str,
    new_rev: str | None,
    envs: Sequence[str],
    secrets: SecretsLike = NO_SECRETS,
) -> list[Change]:
    """Changes per environment between two revisions (``new_rev`` None: the working tree),
    read straight from git objects, nothing checked out."""
    from flagstone import gitio
    from flagstone.load import environment_files

    changes = []
    for env in envs:
        prefix = f"{ENVIRONMENTS_DIR}/{env}"
        old_files = gitio.tree_files(root, old_rev, prefix)
        new_files = (
            gitio.tree_files(root, new_rev, prefix) if new_rev else environment_files(root, env)
        )
        old_env = read_environment(env, old_files)[0] if old_files else None
        new_env = read_environment(env, new_files)[0] if new_files else None
        if old_env is None and new_env is None:
            continue
        changes += diff_environments(old_env, new_env, env, secrets)
    return changes


def count(changes: Sequence[Change]) -> dict[str, int]:
    by: dict[str, int] = {"added": 0, "removed": 0, "changed": 0}
    seen: set[tuple[str, str, str]] = set()
    for c in changes:
        ident = (c.env, c.kind, c.key)
        if ident not in seen:
            seen.add(ident)
            by[c.action] += 1
    return by
