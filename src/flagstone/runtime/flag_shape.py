"""A flag's shape as msgspec types: decoding a flag's text checks its shape in C.

The reload of a bundle whose every flag changed spent most of its time decoding each
flag into dicts and then walking them again with the schema check. Decoded into these
types instead, one C call per flag refuses wrong types, missing and unknown fields, an
unknown operator, a bucket end out of range and an empty rollout; ``flag_is_sound``
then makes, in the same Python pass as the cross-references, the checks of
``schemas/bundle.schema.json`` no type can express (one form per condition and serve,
the operand's type per operator).

This is a fast way to *accept* only: a flag these types or ``flag_is_sound`` do not
accept takes the schema check and the full cross-reference check
(``check_flag_sources``), which decide and name the field. So the two can only differ
in speed, never in what loads; ``tests/test_runtime_checks.py`` holds them to it.
Imported on the first load, with msgspec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from flagstone.runtime.check import check_flags, check_shape
from flagstone.runtime.format import BUCKETS

# format.OPERATORS spelled as a type, for msgspec to check in C; tests/test_runtime_format.py
# holds the two equal.
Operator = Literal[
    "eq",
    "neq",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
    "gt",
    "gte",
    "lt",
    "lte",
    "semver_eq",
    "semver_gt",
    "semver_gte",
    "semver_lt",
    "semver_lte",
    "before",
    "after",
    "exists",
]

# gc=False: decoded data is a tree (no cycles), and the collector is off during a load.


class Condition(Struct, forbid_unknown_fields=True, gc=False):
    """Any of the schema's condition forms; ``flag_is_sound`` accepts exactly one."""

    attr: str | UnsetType = UNSET
    op: Operator | UnsetType = UNSET
    value: Any = UNSET  # JSON null decodes to None, so UNSET means absent
    ecmascript: tuple[str, str] | UnsetType | None = UNSET
    all: list[Condition] | UnsetType = UNSET
    any: list[Condition] | UnsetType = UNSET
    not_: Union[Condition, UnsetType] = msgspec.field(default=UNSET, name="not")  # noqa: UP007
    segment: str | UnsetType = UNSET


class Arm(Struct, forbid_unknown_fields=True, gc=False):
    variant: str
    end: Annotated[int, Meta(ge=0, le=BUCKETS)]


class Serve(Struct, forbid_unknown_fields=True, gc=False):
    """``{variant}`` or ``{rollout, by?}``; ``flag_is_sound`` accepts exactly one."""

    variant: str | UnsetType = UNSET
    rollout: Annotated[list[Arm], Meta(min_length=1)] | UnsetType = UNSET
    by: str | UnsetType = UNSET


class Prerequisite(Struct, forbid_unknown_fields=True, gc=False):
    flag: str
    variants: list[str]


class Rule(Struct, forbid_unknown_fields=True, gc=False):
    when: Condition
    serve: Serve
    name: str | UnsetType = UNSET


class Flag(Struct, forbid_unknown_fields=True, gc=False):
    variants: Annotated[dict[str, Any], Meta(min_length=1)]
    enabled: bool
    unit: str
    salt: str
    prerequisites: list[Prerequisite]
    targets: dict[str, str]
    rules: list[Rule]
    default: Serve
    off_variant: str | UnsetType = UNSET
    experiment: str | UnsetType = UNSET


decode_flag: Callable[[bytes], Flag] = msgspec.json.Decoder(Flag).decode

# The operand types the schema allows per operator (exact types: JSON true is no number);
# an operator not listed takes any operand. ``matches`` is left to the full check, which
# compiles the pattern.
_NUMBER = frozenset({int, float})
_OPERAND_TYPES: dict[str, frozenset[type]] = {
    "in": frozenset({list}),
    "not_in": frozenset({list}),
    **{
        op: frozenset({str})
        for op in (
            "starts_with",
            "ends_with",
            "semver_eq",
            "semver_gt",
            "semver_gte",
            "semver_lt",
            "semver_lte",
        )
    },
    **dict.fromkeys(("gt", "gte", "lt", "lte"), _NUMBER),
    **dict.fromkeys(("before", "after"), _NUMBER | {str}),
    "exists": frozenset({bool}),
}


def _condition_is_sound(node: Condition, segments: Mapping[str, Any], depth: int) -> bool:
    """One form, its operand of the operator's type, its segment known, shallow, no regex."""
    if node.attr is not UNSET:
        op = node.op
        if (
            op is UNSET
            or op == "matches"
            or node.value is UNSET
            or node.all is not UNSET
            or node.any is not UNSET
            or node.not_ is not UNSET
            or node.segment is not UNSET
        ):
            return False
        allowed = _OPERAND_TYPES.get(op)
        return allowed is None or type(node.value) in allowed
    if (
        node.op is not UNSET
        or node.value is not UNSET
        or node.ecmascript is not UNSET
        or depth >= 8  # deep: the full check measures it
    ):
        return False
    segment, children, inner = node.segment, node.all, node.not_
    if segment is not UNSET:
        return children is UNSET and node.any is UNSET and inner is UNSET and segment in segments
    if inner is not UNSET:
        return (
            children is UNSET
            and node.any is UNSET
            and _condition_is_sound(inner, segments, depth + 1)
        )
    if children is UNSET:
        children = node.any
        if children is UNSET:
            return False
    elif node.any is not UNSET:
        return False
    return all(_condition_is_sound(child, segments, depth + 1) for child in children)


def _serve_is_sound(serve: Serve, variants: Mapping[str, Any]) -> bool:
    rollout = serve.rollout
    if serve.variant is not UNSET:
        return rollout is UNSET and serve.by is UNSET and serve.variant in variants
    if rollout is UNSET:
        return False
    end = 0
    for arm in rollout:
        if arm.end < end or arm.variant not in variants:
            return False
        end = arm.end
    return end == BUCKETS


def flag_is_sound(
    flag: Flag,
    key: str,
    flag_keys: Any,
    segments: Mapping[str, Any],
    experiments: Mapping[str, Any],
) -> bool:
    """True when the schema and the full cross-reference check would find nothing."""
    variants = flag.variants
    off_variant = flag.off_variant
    if off_variant is not UNSET and off_variant not in variants:
        return False
    targets = flag.targets
    if targets and not variants.keys() >= set(targets.values()):
        return False
    if not _serve_is_sound(flag.default, variants):
        return False
    for rule in flag.rules:
        if not _serve_is_sound(rule.serve, variants):
            return False
        if not _condition_is_sound(rule.when, segments, 0):
            return False
    for prerequisite in flag.prerequisites:
        if prerequisite.flag not in flag_keys:
            return False
    experiment = flag.experiment
    return experiment is UNSET or (
        experiment in experiments and experiments[experiment]["flag"] == key
    )


def check_flag_sources(
    bundle: Mapping[str, Any],
    flags: Mapping[str, Flag | Mapping[str, Any]],
    sources: Mapping[str, Any],
    parse: Callable[[Any], Mapping[str, Any]],
) -> None:
    """``check_flags`` over flags decoded to ``Flag`` (or, where that refused, to dicts,
    already through the schema check): a ``Flag`` that is not plainly sound is parsed
    again from its source with ``parse`` for the schema check and the full check to
    decide, naming the field."""
    segments: Mapping[str, Any] = bundle["segments"]
    experiments: Mapping[str, Any] = bundle["experiments"]
    closer: dict[str, Mapping[str, Any]] = {}
    for key, flag in flags.items():
        if isinstance(flag, Flag):
            if flag_is_sound(flag, key, sources, segments, experiments):
                continue
            parsed = parse(sources[key])
            check_shape({**bundle, "flags": {key: parsed}})
            closer[key] = parsed
        else:
            closer[key] = flag
    if closer:
        check_flags(bundle, closer, sources)


def variants_of(flag: Flag | Mapping[str, Any]) -> Mapping[str, Any]:
    return flag.variants if isinstance(flag, Flag) else flag["variants"]
