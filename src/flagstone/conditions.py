"""The condition grammar: the one reading of ``when:`` and ``audience:`` in the source.

A condition is a mapping whose keys are ANDed: ``all``/``any`` (a list of conditions),
``not`` (a condition), ``segment`` (a segment key), or a context attribute matched by a
value (``plan: pro``, the shorthand for ``eq``) or by operators (``age: {gte: 18}``).
``terms`` reads one level of that grammar; validate, bundle, references, promote and
the diff's words all walk conditions through it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from flagstone.ecmascript import ecmascript_regex
from flagstone.errors import DocPath
from flagstone.runtime.format import ECMASCRIPT_REGEX

COMBINATORS = ("all", "any")
STRUCTURAL = frozenset((*COMBINATORS, "not", "segment"))

# (attribute, operator, operand): the operator is "all", "any", "not" or "segment" for the
# structural keys (their attribute is the same word), else a matching operator.
Term = tuple[str, str, Any]


def terms(condition: Mapping[str, Any]) -> Iterator[Term]:
    """The terms of one level of a condition, in the order written."""
    for attribute, matcher in condition.items():
        if attribute in STRUCTURAL and (
            attribute in ("not", "segment") or isinstance(matcher, list)
        ):
            yield attribute, attribute, matcher
        elif isinstance(matcher, Mapping):
            for op, operand in matcher.items():
                yield attribute, op, operand
        else:
            yield attribute, "eq", matcher


def iter_condition(condition: Any, path: DocPath = ()) -> Iterator[tuple[str, Any, DocPath]]:
    """Every leaf of a condition, nested ones included: (operator, operand, document path)
    for each segment reference (operator "segment") and each attribute operator."""
    if not isinstance(condition, Mapping):
        return
    for attribute, op, operand in terms(condition):
        if op in COMBINATORS:
            for i, sub in enumerate(operand):
                yield from iter_condition(sub, (*path, attribute, i))
        elif op == "not":
            yield from iter_condition(operand, (*path, "not"))
        elif op == "segment":
            yield "segment", operand, (*path, "segment")
        elif isinstance(condition[attribute], Mapping):
            yield op, operand, (*path, attribute, op)
        else:
            yield op, operand, (*path, attribute)


def segments_in(condition: Any) -> set[str]:
    """The segment keys a condition names, at any depth."""
    return {str(operand) for op, operand, _ in iter_condition(condition) if op == "segment"}


def compile_condition(condition: Mapping[str, Any]) -> dict[str, Any]:
    """Normalize a source condition to the bundle's tree.

    Node shapes: ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": node}``,
    ``{"segment": key}`` and ``{"attr": name, "op": operator, "value": operand}``.
    """
    parts: list[dict[str, Any]] = []
    for attribute, op, operand in terms(condition):
        if op in COMBINATORS:
            parts.append({op: [compile_condition(c) for c in operand]})
        elif op == "not":
            parts.append({"not": compile_condition(operand)})
        elif op == "segment":
            parts.append({"segment": operand})
        else:
            leaf: dict[str, Any] = {"attr": attribute, "op": op, "value": operand}
            if op == "matches" and isinstance(operand, str):
                # Derived, for runtimes without Python's `re` (the TypeScript one).
                leaf[ECMASCRIPT_REGEX] = ecmascript_regex(operand)
            parts.append(leaf)
    return parts[0] if len(parts) == 1 else {"all": parts}
