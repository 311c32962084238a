"""Operator semantics, shared by the compiled evaluator and the ``--explain`` interpreter.

Context values follow JSON: ``true`` never equals ``1``, ``1`` equals ``1.0``, and a
missing attribute (or ``None``) makes every operator false except ``neq``, ``not_in`` and
``exists: false``.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from flagstone.runtime import format
from flagstone.runtime.format import MAX_REGEX_INPUT
from flagstone.runtime.regex import RegexError, compile_regex, regex_problem

__all__ = ["OPERATORS", "RegexError", "apply", "compile_regex", "lookup", "regex_problem"]

_SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$",
    re.ASCII,  # semver digits are ASCII: "1" + ARABIC-INDIC ONE is not version 11 in any runtime
)


def lookup(context: Mapping[str, Any], attribute: str) -> Any:
    """The attribute's value, or None. A dotted name is first a literal key, then a path."""
    value = context.get(attribute)
    if value is not None or "." not in attribute:
        return value
    node: Any = context
    for part in attribute.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def is_number(value: Any) -> bool:
    t = type(value)
    return t is int or t is float


def json_equal(a: Any, b: Any) -> bool:
    if type(a) is bool or type(b) is bool:
        return a is b
    return bool(a == b)


def semver_key(text: Any) -> tuple[Any, ...] | None:
    if type(text) is not str:
        return None
    return _semver_key(text)


@functools.lru_cache(maxsize=4096)
def _semver_key(text: str) -> tuple[Any, ...] | None:
    m = _SEMVER.match(text.strip())
    if m is None:
        return None
    major, minor, patch, pre = m.groups()
    if pre is None:
        # A release sorts after every pre-release of the same version (semver.org §11).
        return (int(major), int(minor), int(patch), 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (int(major), int(minor), int(patch), 0, ids)


def to_instant(value: Any) -> float | None:
    """Epoch seconds from a number or an ISO 8601 date/datetime (naive means UTC)."""
    if is_number(value):
        return float(value)
    if type(value) is not str:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _contains(value: Any, operand: Any) -> bool:
    if type(value) is str:
        return type(operand) is str and operand in value
    if isinstance(value, list):
        return any(json_equal(item, operand) for item in value)
    return False


def _compare(pred: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    return lambda value, operand: is_number(value) and pred(value, operand)


def _semver(pred: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def check(value: Any, operand: Any) -> bool:
        a, b = semver_key(value), semver_key(operand)
        return a is not None and b is not None and pred(a, b)

    return check


def _instant(pred: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    def check(value: Any, operand: Any) -> bool:
        a, b = to_instant(value), to_instant(operand)
        return a is not None and b is not None and pred(a, b)

    return check


def _matches(value: Any, operand: Any) -> bool:
    return (
        type(value) is str
        and len(value) <= MAX_REGEX_INPUT
        and compile_regex(operand)(value) is not None
    )


# value is never None here: missing attributes are decided by `apply` before these run.
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": json_equal,
    "neq": lambda v, o: not json_equal(v, o),
    "in": lambda v, o: any(json_equal(v, x) for x in o),
    "not_in": lambda v, o: not any(json_equal(v, x) for x in o),
    "contains": _contains,
    "starts_with": lambda v, o: type(v) is str and v.startswith(o),
    "ends_with": lambda v, o: type(v) is str and v.endswith(o),
    "matches": _matches,
    "gt": _compare(lambda a, b: a > b),
    "gte": _compare(lambda a, b: a >= b),
    "lt": _compare(lambda a, b: a < b),
    "lte": _compare(lambda a, b: a <= b),
    "semver_eq": _semver(lambda a, b: a == b),
    "semver_gt": _semver(lambda a, b: a > b),
    "semver_gte": _semver(lambda a, b: a >= b),
    "semver_lt": _semver(lambda a, b: a < b),
    "semver_lte": _semver(lambda a, b: a <= b),
    "before": _instant(lambda a, b: a < b),
    "after": _instant(lambda a, b: a >= b),
}
TRUE_WHEN_MISSING = frozenset(format.TRUE_WHEN_MISSING)


def apply(op: str, value: Any, operand: Any) -> bool:
    """One operator on one (possibly missing) attribute value."""
    if op == "exists":
        return (value is not None) is bool(operand)
    if value is None:
        return op in TRUE_WHEN_MISSING
    return OPERATORS[op](value, operand)
