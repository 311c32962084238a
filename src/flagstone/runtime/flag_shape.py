"""A flag's shape as msgspec types: decoding a flag's text checks its shape in C.

The reload of a bundle whose every flag changed spent most of its time decoding each
flag into dicts and then walking them again with the schema check. Decoded into these
types instead, C calls refuse wrong types, missing and unknown fields, an unknown
operator, a bucket end out of range and an empty rollout; ``References`` then makes
the checks of ``schemas/bundle.schema.json`` no type can express (one form per
condition and serve, the operand's type per operator) with the cross-references.
A flag's variants, rules and default stay raw JSON in the first decode: flags repeat
them, and each distinct text is decoded and judged once per load.

This is a fast way to *accept* only: a flag these types or ``References`` do not
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
    """Any of the schema's condition forms; ``References`` accepts exactly one."""

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
    """``{variant}`` or ``{rollout, by?}``; ``References`` accepts exactly one."""

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
    """A flag's members, the ones flags repeat (variants, rules, default) kept as raw
    JSON for ``References`` to decode and judge once per distinct text."""

    variants: msgspec.Raw
    enabled: bool
    unit: str
    salt: str
    prerequisites: list[Prerequisite]
    targets: dict[str, str]
    rules: msgspec.Raw
    default: msgspec.Raw
    off_variant: str | UnsetType = UNSET
    experiment: str | UnsetType = UNSET


decode_flag: Callable[[bytes], Flag] = msgspec.json.Decoder(Flag).decode

Variants = Annotated[dict[str, msgspec.Raw], Meta(min_length=1)]
_NOT_JUDGED = msgspec.ValidationError, msgspec.DecodeError

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
    for child in children:  # noqa: SIM110 - a loop: all() over a generator costs a frame more
        if not _condition_is_sound(child, segments, depth + 1):
            return False
    return True


def _serve_names(serve: Serve) -> tuple[str, ...] | None:
    """The variants a serve of one form (and a rollout of ordered ends up to ``BUCKETS``)
    names, for the flag to hold; None when the full check must look."""
    rollout = serve.rollout
    if serve.variant is not UNSET:
        return (serve.variant,) if rollout is UNSET and serve.by is UNSET else None
    if rollout is UNSET:
        return None
    end = 0
    for arm in rollout:
        if arm.end < end:
            return None
        end = arm.end
    return tuple(arm.variant for arm in rollout) if end == BUCKETS else None


class _Part:
    """One kind of flag part (variants, rules, serve): how to decode its texts, many in
    one C call, and what a decoded one is worth to ``References`` (the variant names it
    has or serves; False when the full check must look)."""

    __slots__ = ("_decode_many", "_decode_one", "judge")

    def __init__(self, part: Any, judge: Callable[[Any], frozenset[str] | bool]) -> None:
        self._decode_one = msgspec.json.Decoder(part).decode
        self._decode_many = msgspec.json.Decoder(list[part]).decode
        self.judge = judge

    def judge_into(self, verdicts: dict[bytes, frozenset[str] | bool], texts: list[bytes]) -> None:
        """Judge each of ``texts`` not in ``verdicts`` yet, storing the verdicts there."""
        new = list(set(texts).difference(verdicts))
        if not new:
            return
        judge = self.judge
        try:
            # One C call over a synthesized array: a call per text costs more than its text.
            decoded = self._decode_many(b"[" + b",".join(new) + b"]")
        except _NOT_JUDGED:
            for text in new:  # some text is not of the type: find which, one call each
                try:
                    verdicts[text] = judge(self._decode_one(text))
                except _NOT_JUDGED:
                    verdicts[text] = False
            return
        verdicts.update(zip(new, map(judge, decoded), strict=True))


def _rules_served(rules: list[Rule], segments: Mapping[str, Any]) -> frozenset[str] | bool:
    served: set[str] = set()
    for rule in rules:
        serve = rule.serve
        if serve.rollout is UNSET and serve.by is UNSET and serve.variant is not UNSET:
            served.add(serve.variant)  # the common form, inline
        else:
            names = _serve_names(serve)
            if names is None:
                return False
            served.update(names)
        if not _condition_is_sound(rule.when, segments, 0):
            return False
    return frozenset(served)


def _serve_served(serve: Serve) -> frozenset[str] | bool:
    names = _serve_names(serve)
    return False if names is None else frozenset(names)


_VARIANTS = _Part(Variants, frozenset)
_SERVE = _Part(Serve, _serve_served)


class References:
    """Decides, for one load, which typed flags plainly pass the schema and the full
    cross-reference check, given the bundle's segments, experiments and flag keys.

    Flags repeat their parts (the same variants, segment, country list or rollout), and
    with every flag changed, building and walking each copy was most of a reload's time.
    So each distinct text of a flag's variants, rules or default is decoded (the new
    ones of a batch of flags in one C call per kind) and judged once per load, keyed by
    its bytes; a flag then costs a few lookups and set comparisons. Threads sharing a
    load share the verdicts (one computed twice is the same verdict).
    """

    __slots__ = ("_rules", "_rules_part", "_serves", "_variants", "experiments", "flag_keys")

    def __init__(
        self, segments: Mapping[str, Any], experiments: Mapping[str, Any], flag_keys: Any
    ) -> None:
        self.experiments = experiments
        self.flag_keys = flag_keys
        self._rules_part = _Part(list[Rule], lambda rules: _rules_served(rules, segments))
        # text -> the variant names it has or serves, or False: the full check must look
        self._variants: dict[bytes, frozenset[str] | bool] = {}
        self._rules: dict[bytes, frozenset[str] | bool] = {}
        self._serves: dict[bytes, frozenset[str] | bool] = {}

    def sound(self, flags: list[tuple[str, Flag]]) -> list[bool]:
        """For each (key, flag): True when the schema and the full cross-reference check
        would find nothing."""
        # b"" + raw copies a Raw's bytes at half the cost of bytes(raw).
        variants_texts = [b"" + flag.variants for _, flag in flags]
        rules_texts = [b"" + flag.rules for _, flag in flags]
        default_texts = [b"" + flag.default for _, flag in flags]
        _VARIANTS.judge_into(self._variants, variants_texts)
        self._rules_part.judge_into(self._rules, rules_texts)
        _SERVE.judge_into(self._serves, default_texts)
        flag_keys, experiments = self.flag_keys, self.experiments
        out = []
        for (key, flag), variants, served, default in zip(
            flags,
            map(self._variants.__getitem__, variants_texts),
            map(self._rules.__getitem__, rules_texts),
            map(self._serves.__getitem__, default_texts),
            strict=True,
        ):
            out.append(
                variants is not False
                and served is not False
                and default is not False
                and served <= variants  # type: ignore[operator]
                and default <= variants  # type: ignore[operator]
                and (flag.off_variant is UNSET or flag.off_variant in variants)  # type: ignore[operator]
                and (not flag.targets or variants >= set(flag.targets.values()))  # type: ignore[operator]
                and (not flag.prerequisites or all(p.flag in flag_keys for p in flag.prerequisites))
                and (
                    flag.experiment is UNSET
                    or (
                        flag.experiment in experiments
                        and experiments[flag.experiment]["flag"] == key
                    )
                )
            )
        return out


def check_flag_sources(
    bundle: Mapping[str, Any],
    flags: Mapping[str, Flag | Mapping[str, Any]],
    sources: Mapping[str, Any],
    parse: Callable[[Any], Mapping[str, Any]],
    references: References | None = None,
) -> None:
    """Check changed flags decoded to ``Flag`` or, where that refused, to dicts, against
    a bundle whose shape without flags was checked: a ``Flag`` plainly sound passes; the
    dicts, and any ``Flag`` not plainly sound (parsed again from its source with
    ``parse``), take the schema check and ``check_flags``, which decide and name the
    field. ``references``: the load's verdicts so far (one is made when not given)."""
    if references is None:
        references = References(bundle["segments"], bundle["experiments"], sources)
    typed = [(key, flag) for key, flag in flags.items() if type(flag) is Flag]
    closer: dict[str, Mapping[str, Any]] = {}
    if len(typed) < len(flags):
        closer = {k: f for k, f in flags.items() if not isinstance(f, Flag)}
    if typed:
        for (key, _flag), sound in zip(typed, references.sound(typed), strict=True):
            if not sound:
                closer[key] = parse(sources[key])
    if closer:
        ordered = {k: closer[k] for k in flags if k in closer}
        check_shape({**bundle, "flags": ordered})
        check_flags(bundle, ordered, sources)


def variants_of(flag: Flag | Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A flag's variants; None when a typed flag's are not an object of at least one."""
    if not isinstance(flag, Flag):
        variants: Mapping[str, Any] = flag["variants"]
        return variants
    try:
        return _VARIANTS._decode_one(flag.variants)  # type: ignore[no-any-return]
    except _NOT_JUDGED:
        return None
