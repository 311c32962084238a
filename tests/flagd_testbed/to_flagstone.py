"""Translate flagd flag definitions (JsonLogic targeting) into flagstone bundle flags.

The translation keeps flagd's meaning where flagstone can express it: ``if`` chains become
rules (a ``null`` branch serves the default variant), ``==``/``in``/``starts_with``/
``ends_with``/``sem_ver``/``and``/``or``/``!`` become conditions, ``$ref`` a segment, and a
``fractional`` a rollout. The targeting key is the bundle's default unit, ``targetingKey``.
flagd's operator errors (a non-string operand, an unparsable version, an unknown
``sem_ver`` operator) answer null, which no rule matches: they become a condition that
never holds. Anything else raises ``NotConvertible`` naming what flagstone lacks.

A ``fractional`` hashes ``salt + "/" + unit`` in flagstone. When flagd's bucket-by value
is another string (``cat(flagKey, user.name)``, a bare ``var``), no bundle reproduces it;
``HashCheck`` then carries the exact key so the runtime's own bucketing
(``flagstone.runtime.hashing``) can be checked against the case instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flagstone.runtime.format import BUCKETS

UNIT = "targetingKey"
NEVER = {"all": [{"attr": "$never", "op": "exists", "value": True}, {"attr": "$never", "op": "exists", "value": False}]}  # fmt: skip
_PARTIAL = re.compile(
    r"^[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?((?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)$"
)
_STRICT = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


class NotConvertible(Exception):
    """flagstone has no equivalent; the message says what."""


@dataclass(frozen=True)
class HashCheck:
    """A top-level fractional whose bucket-by string flagstone's salts cannot produce."""

    key_parts: list[Any]  # literal strings and {"var": name} to join
    arms: list[tuple[str, int]]  # (variant, cumulative end in BUCKETS)
    default_variant: str | None = None
    variants: dict[str, Any] | None = None


def convert_flag(key: str, flag: dict[str, Any]) -> dict[str, Any] | HashCheck:
    """A bundle flag for the flagd flag, or a HashCheck for a bare string-keyed fractional."""
    variants = flag["variants"]
    default = flag.get("defaultVariant")
    if flag.get("state") == "DISABLED":
        raise NotConvertible("a disabled flag without an off variant is not targeting")
    if default is not None and default not in variants:
        raise NotConvertible("a default variant that is not a variant")
    targeting = flag.get("targeting") or {}
    out: dict[str, Any] = {
        "variants": variants,
        "enabled": True,
        "unit": UNIT,
        "salt": key,
        "prerequisites": [],
        "targets": {},
        "rules": [],
    }
    if default is None:
        raise NotConvertible("no default variant (flagd answers the caller's default)")
    out["default"] = {"variant": default}
    if not targeting:
        return out
    if "fractional" in targeting:
        serve = _fractional(key, targeting["fractional"])
        if isinstance(serve, HashCheck):
            return HashCheck(serve.key_parts, serve.arms, default, variants)
        out["rules"] = [{"when": _present(serve["by"]), "serve": serve}]
        return out
    if "if" not in targeting:
        # A boolean operator as the whole targeting: true serves "true", null the default.
        out["rules"] = [{"when": condition(targeting), "serve": _variant("true", variants)}]
        return out
    # flagd answers TARGETING_MATCH for a variant the targeting returns, DEFAULT for null:
    # a null branch stops the chain, so every later rule holds only where it did not match.
    node: Any = targeting
    stopped: list[dict[str, Any]] = []

    def add(when: dict[str, Any], serve: dict[str, Any]) -> None:
        out["rules"].append(
            {
                "when": {"all": [*({"not": s} for s in stopped), when]} if stopped else when,
                "serve": serve,
            }
        )

    while isinstance(node, dict) and "if" in node:
        branches = node["if"]
        pairs, rest = branches[: len(branches) // 2 * 2], branches[len(branches) // 2 * 2 :]
        for test, result in zip(pairs[::2], pairs[1::2], strict=True):
            when = condition(test)
            if when is NEVER:
                continue  # flagd never reaches this branch's result
            if result is None:
                stopped.append(when)
            else:
                add(when, _result(key, result, variants))
        node = rest[0] if rest else None
    if isinstance(node, dict) and "fractional" in node:
        serve = _fractional(key, node["fractional"])
        if isinstance(serve, HashCheck):
            raise NotConvertible("a fractional whose bucket key flagstone's salts cannot produce")
        add(_present(serve["by"]), serve)
    elif node is not None:
        add({"not": NEVER}, _result(key, node, variants))
    return out


def _variant(name: Any, variants: dict[str, Any]) -> dict[str, str]:
    name = str(name).lower() if isinstance(name, bool) else name
    if not isinstance(name, str):
        raise NotConvertible(f"a computed variant ({name!r})")
    if name not in variants:
        raise NotConvertible(f"the variant {name!r} is not defined (flagd answers an error)")
    return {"variant": name}


def _result(key: str, result: Any, variants: dict[str, Any]) -> dict[str, Any]:
    if isinstance(result, dict) and "fractional" in result:
        serve = _fractional(key, result["fractional"])
        if isinstance(serve, HashCheck):
            raise NotConvertible("a fractional whose bucket key flagstone's salts cannot produce")
        return serve
    if isinstance(result, dict):
        raise NotConvertible(f"a computed variant ({next(iter(result))!r})")
    return _variant(result, variants)


def _present(attribute: str) -> dict[str, Any]:
    return {"attr": attribute, "op": "exists", "value": True}


def _fractional(key: str, args: list[Any]) -> dict[str, Any] | HashCheck:
    if not args or isinstance(args[0], list):
        raise NotConvertible(
            "the shorthand fractional hashes the CBOR array [flagKey, targetingKey]"
        )
    bucket_by, *entries = args
    arms = _arms(entries)
    if isinstance(bucket_by, dict) and set(bucket_by) == {"var"}:
        name = _var_name(bucket_by)
        return HashCheck([{"var": name}], arms, None)  # v3 hashes the value itself, no salt
    if isinstance(bucket_by, dict) and set(bucket_by) == {"cat"}:
        parts = [
            key
            if p == {"var": "$flagd.flagKey"}
            else p
            if isinstance(p, str)
            else {"var": _var_name(p)}
            for p in bucket_by["cat"]
        ]
        if len(parts) == 2 and isinstance(parts[0], str) and isinstance(parts[1], dict):
            prefix, unit = parts[0], parts[1]["var"]
            if prefix.endswith("/"):
                return {
                    "rollout": [{"variant": v, "end": e} for v, e in arms],
                    "by": unit,
                    "salt": prefix[:-1],
                }
        if all(isinstance(p, str) or set(p) == {"var"} for p in parts):
            return HashCheck(parts, arms, None)
    raise NotConvertible(f"a fractional bucketed by {bucket_by!r}")


def _arms(entries: list[Any]) -> list[tuple[str, int]]:
    weights: list[tuple[str, int]] = []
    for entry in entries:
        if not isinstance(entry, list) or not 1 <= len(entry) <= 2 or not isinstance(entry[0], str):
            raise NotConvertible("a computed fractional variant or weight")
        weight = entry[1] if len(entry) == 2 else 1
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise NotConvertible("a computed fractional weight")
        weights.append((entry[0], max(0, weight)))  # flagd clamps a negative weight to 0
    total = sum(w for _, w in weights)
    if total <= 0 or BUCKETS % total:
        raise NotConvertible(f"fractional weights summing to {total} (flagstone: 0.01 % steps)")
    arms, end = [], 0
    for variant, weight in weights:
        end += weight * (BUCKETS // total)
        arms.append((variant, end))
    return arms


def _var_name(node: Any) -> str:
    if not isinstance(node, dict) or set(node) != {"var"}:
        raise NotConvertible(f"a computed operand ({node!r})")
    name = node["var"][0] if isinstance(node["var"], list) else node["var"]
    if not isinstance(name, str):
        raise NotConvertible(f"a var of {name!r}")
    if name.startswith("$flagd."):
        raise NotConvertible(f"flagd's evaluation-time {name!r} (flagstone has no such attribute)")
    return name


def condition(node: Any) -> dict[str, Any]:
    """A JsonLogic test as a flagstone condition with flagd's answer (null is false)."""
    if node is True:
        return {"not": NEVER}
    if node is False or node is None:
        return NEVER
    if not isinstance(node, dict) or len(node) != 1:
        raise NotConvertible(f"a test {node!r}")
    op, args = next(iter(node.items()))
    args = args if isinstance(args, list) else [args]
    if op == "and":
        return {"all": [condition(a) for a in args]}
    if op == "or":
        return {"any": [condition(a) for a in args]}
    if op == "!":
        return {"not": condition(args[0])}
    if op == "$ref":
        return {"segment": args[0]}
    if op == "==":
        a, b = args
        var, literal = (a, b) if isinstance(a, dict) else (b, a)
        return {"attr": _var_name(var), "op": "eq", "value": literal}
    if op == "in":
        var, literal = args
        if not isinstance(literal, list):
            raise NotConvertible("`in` over a string")
        return {"attr": _var_name(var), "op": "in", "value": literal}
    if op in ("starts_with", "ends_with"):
        if len(args) != 2 or not isinstance(args[1], str):
            return NEVER  # flagd: null for a non-string operand or a wrong argument count
        return {"attr": _var_name(args[0]), "op": op, "value": args[1]}
    if op == "sem_ver":
        return _sem_ver(args)
    if op in ("<", ">", "<=", ">="):
        names = {"<": "lt", ">": "gt", "<=": "lte", ">=": "gte"}
        var, literal = args
        return {"attr": _var_name(var), "op": names[op], "value": literal}
    raise NotConvertible(f"the operator {op!r}")


def _version(text: Any) -> tuple[int, int, str] | None:
    """flagd-core's normalize_version: strip v/V, pad a partial core, then strict semver.
    Returns (major, minor, normalized text)."""
    m = _PARTIAL.match(str(text))
    if m is None:
        return None
    normalized = f"{m[1]}.{m[2] or '0'}.{m[3] or '0'}{m[4]}"
    if not _STRICT.match(normalized):
        return None
    return int(m[1]), int(m[2] or 0), normalized


def _sem_ver(args: list[Any]) -> dict[str, Any]:
    if len(args) != 3:
        return NEVER
    var, op, literal = args
    version = _version(literal)
    if version is None:
        return NEVER  # flagd: null for an unparsable operand
    major, minor, text = version
    attr = _var_name(var)
    simple = {
        "=": "semver_eq",
        ">": "semver_gt",
        ">=": "semver_gte",
        "<": "semver_lt",
        "<=": "semver_lte",
    }
    if op in simple:
        return {"attr": attr, "op": simple[op], "value": text}
    if op == "!=":
        return {
            "all": [
                {"attr": attr, "op": "semver_gte", "value": "0.0.0-0"},
                {"not": {"attr": attr, "op": "semver_eq", "value": text}},
            ]
        }
    if op in ("^", "~"):  # same major (^), same major and minor (~): a half-open range
        low = f"{major}.{minor if op == '~' else 0}.0-0"
        high = f"{major}.{minor + 1}.0-0" if op == "~" else f"{major + 1}.0.0-0"
        return {
            "all": [
                {"attr": attr, "op": "semver_gte", "value": low},
                {"attr": attr, "op": "semver_lt", "value": high},
            ]
        }
    return NEVER  # flagd: null for an unknown sem_ver operator


def bundle(flags: dict[str, dict[str, Any]], evaluators: dict[str, Any]) -> dict[str, Any]:
    """A flagstone bundle of already-converted flags, with the evaluators as segments."""
    segments = {}
    for name, logic in evaluators.items():
        try:
            segments[name] = {"when": condition(logic)}
        except NotConvertible:
            continue
    for flag in flags.values():
        for rule in flag["rules"]:
            salt = rule["serve"].pop("salt", None)
            if salt is not None:
                flag["salt"] = salt
    return {
        "format": "flagstone-bundle",
        "version": 1,
        "environment": "flagd-testbed",
        "source": {"commit": None, "dirty": False},
        "default_unit": UNIT,
        "flags": flags,
        "segments": segments,
        "experiments": {},
        "config": {},
    }
