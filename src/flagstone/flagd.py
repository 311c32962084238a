"""Export an environment as a flagd flag-definition file (``flagstone build --format flagd``).

flagstone's bucketing is flagd's ``fractional`` as its v3 specification defines it (see
runtime/hashing.py), so a rollout exported as
``{"fractional": [{"cat": [salt + "/", {"var": unit}]}, [variant, weight], ...]}`` with
weights in 0.01 % steps puts every unit in the same bucket as flagstone does. The default
unit becomes flagd's ``targetingKey``.

flagd's JsonLogic is looser than flagstone's operators (``true == 1``, ``"1.9"`` read as
1.9.0, ``2.5`` as a version, any value as a unit), so every operator is exported with the
type guards that give flagstone's answer (``_Exporter.operator``). What flagd cannot express
is never dropped silently: the flag is left out with a ``flagd-unsupported`` warning
(prerequisites, ``matches``, ``before``/``after``). The few contexts that still answer
differently get a warning naming the flag and the case: ``flagd-dotted-attribute``,
``flagd-difference``. docs/flagd.md lists them all; tests/test_flagd_differential.py holds
the export to flagstone's answers on generated contexts of every type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flagstone.bundle import build_bundle
from flagstone.errors import FlagstoneError, Problem
from flagstone.model import Repository
from flagstone.runtime.format import (
    BUCKETS,
    DEFAULT_CONSENT_ATTRIBUTE,
    EXPERIMENT_SALT_PREFIX,
    LAYER_SALT_PREFIX,
    SALT_SEPARATOR,
    TRAFFIC_SALT_SUFFIX,
)

FLAGD_SCHEMA = "https://flagd.dev/schema/v0/flags.json"
FLAGD_VERSION_VERIFIED = "openfeature-provider-flagd 0.6.1 (flagd-core 2.0.0)"
UNSUPPORTED_OPERATORS = {
    "matches": "regular expressions (`matches`)",
    "before": "date comparisons (`before`)",
    "after": "date comparisons (`after`)",
}
SEMVER_OPS = {
    "semver_eq": "=",
    "semver_gt": ">",
    "semver_gte": ">=",
    "semver_lt": "<",
    "semver_lte": "<=",
}
NUMERIC_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
OTHER_OPS = ("eq", "neq", "in", "not_in", "contains", "starts_with", "ends_with", "exists")
EXPORTED_OPERATORS = frozenset((*SEMVER_OPS, *NUMERIC_OPS, *OTHER_OPS))
CONSENT_PATH = (
    DEFAULT_CONSENT_ATTRIBUTE  # read as a path by flagstone too: no dotted-key difference
)
NO_UNIT_VARIANT = "flagstone: no unit to bucket"  # never a variant: flagd answers ERROR
# How a boolean reads through JsonLogic's `cat`: "true" in Go and JavaScript, "True" in
# Python's flagd-core (its to_string tests int before bool).
BOOLEAN_SPELLINGS = {True: ["true", "True"], False: ["false", "False"]}
# flagd pads "1" and "1.9" to 1.0.0 and 1.9.0; flagstone requires major.minor.patch. JsonLogic
# cannot count dots, so the export looks for the second dot of the version core within
# its first characters: versions whose "major.minor." is longer than this do not match.
SEMVER_SECOND_DOT_WITHIN = 24


class Unsupported(Exception):
    """A construct with no flagd equivalent; the message names it."""


def export_environment(repo: Repository, env_name: str) -> tuple[dict[str, Any], list[Problem]]:
    """The flagd document for one environment, and its warnings: a flag left out, or a
    flag whose answer can still differ for some contexts (the message names them)."""
    bundle = build_bundle(repo, env_name)
    env = repo.env(env_name)
    exporter = _Exporter(bundle)
    flags: dict[str, Any] = {}
    warnings: list[Problem] = []

    def warn(key: str, message: str, code: str, hint: str) -> None:
        warnings.append(
            Problem(env.flags[key].file, 0, 0, message, code, "warning", path=(key,), hint=hint)
        )

    for key, flag in bundle["flags"].items():
        try:
            flags[key] = exporter.flag(key, flag)
        except Unsupported as e:
            warn(
                key,
                f"flag {key!r} is not in the flagd export: flagd cannot express {e}",
                "flagd-unsupported",
                "flagd serves its default for a missing flag; keep this flag on the flagstone runtime",
            )
            continue
        dotted = sorted(a for a in set().union(*_reads(flag, bundle)) if "." in a)
        if dotted:
            names = ", ".join(repr(a) for a in dotted)
            warn(
                key,
                f"flag {key!r} reads {names} as a nested path under flagd: a context with a "
                "literal dotted key matches in flagstone but not in flagd",
                "flagd-dotted-attribute",
                f"apps that evaluate through flagd must send nested objects: {_nested_example(dotted[0])}",
            )
        cases = exporter.differences(flag)
        if cases:
            warn(
                key,
                f"flag {key!r} can answer differently under flagd: "
                + "; ".join(case for case, _ in cases),
                "flagd-difference",
                "; ".join(fix for _, fix in cases) + ", or keep this flag on the flagstone runtime",
            )
    document: dict[str, Any] = {"$schema": FLAGD_SCHEMA, "flags": flags}
    evaluators = exporter.used_evaluators()
    if evaluators:
        document["$evaluators"] = evaluators
    if warnings:
        from flagstone.load import attach_positions, read_worktree_text

        warnings = attach_positions(warnings, read_worktree_text(repo.root))
    return document, warnings


def _nested_example(dotted: str) -> str:
    """``device.os`` -> ``{"device": {"os": ...}}``."""
    parts = dotted.split(".")
    return "".join(f'{{"{p}": ' for p in parts) + "..." + "}" * len(parts)


def _atoms(node: Mapping[str, Any], segments: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Every (attribute, operator) a bundle condition tests, through segments too."""
    if "attr" in node:
        return {(node["attr"], node["op"])}
    if "segment" in node:
        return _atoms(segments[node["segment"]]["when"], segments)
    if "not" in node:
        return _atoms(node["not"], segments)
    return set().union(*(_atoms(n, segments) for n in node.get("all", node.get("any", []))))


def _reads(flag: Mapping[str, Any], bundle: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """(attributes the flag's conditions test, attributes it buckets or targets by)."""
    conditions = [rule["when"] for rule in flag["rules"]]
    experiment = bundle["experiments"].get(flag.get("experiment") or "")
    if experiment is not None and "audience" in experiment:
        conditions.append(experiment["audience"])
    atoms = set().union(*(_atoms(c, bundle["segments"]) for c in conditions))
    units = {
        serve.get("by", flag["unit"])
        for serve in [flag["default"], *(rule["serve"] for rule in flag["rules"])]
        if "rollout" in serve
    }
    if flag["targets"]:
        units.add(flag["unit"])
    if experiment is not None:
        units.add(experiment["unit"])
    return {a for a, _ in atoms}, units


# --- JsonLogic building blocks: each is true in flagd exactly when flagstone's test is ---


def is_string(value: Any) -> dict[str, Any]:
    """A string: `cat` of anything else (7, true, [..], {..}) is a different value."""
    return {"===": [{"cat": [value]}, value]}


def is_boolean(value: Any) -> dict[str, Any]:
    """A boolean, or a list that reads like one: a negative guard next to `===` and `in`,
    which never match a list against a scalar anyway."""
    spellings = [*BOOLEAN_SPELLINGS[True], *BOOLEAN_SPELLINGS[False]]
    return {"and": [{"!": [is_string(value)]}, {"in": [{"cat": [value]}, spellings]}]}


def _length(value: dict[str, str]) -> dict[str, str]:
    """The `length` of a string or list attribute, null for any other value."""
    return {"var": value["var"] + ".length"}


def is_list(value: dict[str, str]) -> dict[str, Any]:
    """A list: it has a length and is not a string or an object (`cat` spells every object
    "[object Object]", in Python's flagd-core as in JavaScript)."""
    return {
        "and": [
            {"!==": [_length(value), None]},
            {"!": [is_string(value)]},
            {"!==": [{"cat": [value]}, "[object Object]"]},
        ]
    }


def is_number(value: dict[str, str]) -> dict[str, Any]:
    """A number, not a boolean. Strings, lists and objects are ruled out before `+` sees
    them (JavaScript's flagd-core raises on a NaN); `+` returns a number unchanged (and a
    boolean too, in Python)."""
    return {
        "and": [
            {"===": [_length(value), None]},
            {"!==": [{"cat": [value]}, "[object Object]"]},
            {"===": [{"+": [value]}, value]},
            {"!": [is_boolean(value)]},
        ]
    }


def is_unit(value: dict[str, str]) -> dict[str, Any]:
    """What runtime.evaluate.unit_string accepts: a string or an integer. JsonLogic cannot
    tell 7.0 from 7; it can tell -0.0 ("-0") and 1e+20 apart, which `cat` would spell
    differently from an integer."""
    spelled = {"cat": [value]}
    whole = {"===": [{"%": [value, 1]}, 0]}
    integer = {
        "and": [is_number(value), whole, {"!==": [spelled, "-0"]}, {"!": [{"in": ["e", spelled]}]}]
    }
    return {"or": [is_string(value), integer]}


def equals(value: Any, operand: Any) -> dict[str, Any]:
    """flagstone's json_equal: JSON equality, where true is never 1 and 1 is 1.0."""
    equal = {"===": [value, operand]}
    if isinstance(operand, bool):
        # Python's == makes 1 equal True; the string form tells them apart.
        return {"and": [equal, {"in": [{"cat": [value]}, BOOLEAN_SPELLINGS[operand]]}]}
    if isinstance(operand, int | float) and operand in (0, 1):
        return {"and": [equal, {"!": [is_boolean(value)]}]}
    return equal


def one_of(value: Any, operands: list[Any]) -> Any:
    """flagstone's `in`: equal to one of the operands, with JSON equality."""
    booleans = [o for o in operands if isinstance(o, bool)]
    others = [o for o in operands if not isinstance(o, bool)]
    ambiguous = any(isinstance(o, int | float) and o in (0, 1) for o in others)
    branches: list[Any] = []
    if others:
        inside = {"in": [value, others]}
        # `true in [1]` and `1 in [true]` hold in Python's JsonLogic.
        branches.append(
            {"and": [{"!": [is_boolean(value)]}, inside]} if booleans or ambiguous else inside
        )
    branches += [equals(value, b) for b in dict.fromkeys(booleans)]
    return branches[0] if len(branches) == 1 else {"or": branches}


def semver_core_complete(value: Any) -> dict[str, Any]:
    """The version core has major, minor and patch: a second dot before any '-' or '+'."""
    branches = []
    for second_dot in range(3, SEMVER_SECOND_DOT_WITHIN):
        head = {"substr": [value, 0, second_dot]}
        branches.append(
            {
                "and": [
                    {"===": [{"substr": [value, second_dot, 1]}, "."]},
                    {"in": [".", head]},
                    {"!": [{"in": ["-", head]}]},
                    {"!": [{"in": ["+", head]}]},
                ]
            }
        )
    return {"or": branches}


class _Exporter:
    def __init__(self, bundle: Mapping[str, Any]) -> None:
        self.bundle = bundle
        # One OpenFeature context has one targeting key: it carries the environment's
        # default unit for every flag and segment; other units are plain attributes.
        self.unit = str(bundle["default_unit"])
        self.flag_unit = self.unit
        self.used_segments: set[str] = set()
        # Guards the export repeats, written once in $evaluators; a name with ":" is never
        # a segment key.
        self.guards: dict[str, Any] = {}
        self.segments: dict[str, Any] = {}
        self._segment_errors: dict[str, str] = {}
        for name in bundle["segments"]:
            try:
                self.segments[name] = self.segment_logic(name)
            except Unsupported as e:
                self._segment_errors[name] = f"{e} in segment {name!r}"

    def segment_logic(self, name: str) -> Any:
        """A segment's logic with the segments it refers to written in place:
        flagd resolves ``$ref`` in a flag's targeting, not inside ``$evaluators``."""
        if name not in self.segments:
            self.segments[name] = self.condition(self.bundle["segments"][name]["when"], inline=True)
        return self.segments[name]

    def differences(self, flag: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(case, what the app can do) for each kind of context the exported flag still
        answers differently (docs/flagd.md, 'Exported, with a warning')."""
        cases = []
        conditions = [rule["when"] for rule in flag["rules"]]
        experiment = self.bundle["experiments"].get(flag.get("experiment") or "")
        if experiment is not None and "audience" in experiment:
            conditions.append(experiment["audience"])
        atoms = {atom for c in conditions for atom in _atoms(c, self.bundle["segments"])}
        versions = sorted({attr for attr, op in atoms if op in SEMVER_OPS})
        if versions:
            names = ", ".join(repr(a) for a in versions)
            cases.append(
                (
                    f"a version in {names} with surrounding whitespace (' 1.2.3') or a "
                    "pre-release or build that semver.org's grammar forbids ('1.2.3-01', "
                    "'1.2.3-a..b') matches in flagstone, never in flagd",
                    f"send {names} as trimmed semver.org versions ('1.2.3', '2.0.0-beta.1')",
                )
            )
        units = sorted(_reads(flag, self.bundle)[1] - {self.unit})
        if units:
            names = ", ".join(repr(u) for u in units)
            cases.append(
                (
                    f"{names} sent as a whole-number float (7.0) is the unit 7 to flagd, while "
                    "flagstone buckets and targets only strings and integers",
                    f"send {names} as a string or an integer",
                )
            )
        return cases

    def flag(self, key: str, flag: Mapping[str, Any]) -> dict[str, Any]:
        if flag["prerequisites"]:
            raise Unsupported("prerequisites")
        self.flag_unit = flag["unit"]
        off = flag.get("off_variant")
        if not flag["enabled"]:
            if off is None:
                return {
                    "state": "DISABLED",
                    "variants": flag["variants"],
                    "defaultVariant": next(iter(flag["variants"])),
                }
            # A disabled flag serves off_variant to everyone: a flag without targeting.
            return {"state": "ENABLED", "variants": flag["variants"], "defaultVariant": off}
        branches: list[Any] = []
        by_variant: dict[str, list[str]] = {}
        for unit_id, variant in flag["targets"].items():
            by_variant.setdefault(variant, []).append(unit_id)
        for variant, ids in by_variant.items():
            branches += [self.targeted(self.flag_unit, sorted(ids)), variant]
        if flag.get("experiment"):
            branches += self.experiment(flag["experiment"])
        for rule in flag["rules"]:
            condition = self.condition(rule["when"])
            serve = rule["serve"]
            if "rollout" in serve:
                # flagstone skips a rule it cannot bucket
                condition = {"and": [condition, self.usable_unit(serve.get("by", self.flag_unit))]}
            branches += [condition, self.serve(serve, flag["salt"])]
        default = flag["default"]
        out: dict[str, Any] = {"state": "ENABLED", "variants": flag["variants"]}
        if "variant" in default:
            out["defaultVariant"] = default["variant"]
            if branches:
                out["targeting"] = (
                    {"if": branches} if len(branches) > 2 else {"if": [*branches, None]}
                )
            return out
        out["defaultVariant"] = default["rollout"][0]["variant"]
        # flagstone answers ERROR (the caller's default) when the default rollout has no
        # unit to bucket; flagd does the same for a variant name it does not know.
        fallback = {
            "if": [
                self.usable_unit(default.get("by", self.flag_unit)),
                self.serve(default, flag["salt"]),
                NO_UNIT_VARIANT,
            ]
        }
        out["targeting"] = {"if": [*branches, fallback]} if branches else fallback
        return out

    def experiment(self, key: str) -> list[Any]:
        """A running experiment as if-branches: enrolment by one `fractional` over the
        traffic salt, the arm by another over the arm salt (runtime/hashing.py)."""
        experiment = self.bundle["experiments"][key]
        unit = self.var(experiment["unit"])
        start, arms = 0, []
        for arm in experiment["arms"]:
            arms.append([arm["variant"], arm["end"] - start])
            start = arm["end"]
        salt = EXPERIMENT_SALT_PREFIX + experiment["salt"]
        pick = {"fractional": [{"cat": [salt + SALT_SEPARATOR, unit]}, *arms]}
        conditions: list[Any] = [self.usable_unit(experiment["unit"])]
        if experiment.get("consent_required"):
            # runtime.evaluate.has_consent: the value at the path, or at a prefix of it, is true.
            parts = experiment.get("consent_attribute", CONSENT_PATH).split(".")
            conditions.append(
                {
                    "or": [
                        self.operator(".".join(parts[:n]), "eq", True)
                        for n in range(1, len(parts) + 1)
                    ]
                }
            )
        if "audience" in experiment:
            conditions.append(self.condition(experiment["audience"]))
        if "layer" in experiment:
            low, high = experiment["layer_range"]
            slices = [
                [name, width]
                for name, width in (("below", low), ("in", high - low), ("above", BUCKETS - high))
                if width > 0
            ]
            layer = LAYER_SALT_PREFIX + experiment["layer"]
            in_layer = {"fractional": [{"cat": [layer + SALT_SEPARATOR, unit]}, *slices]}
            conditions.append({"==": [in_layer, "in"]} if high > low else False)
        elif experiment["traffic"] < BUCKETS:
            enrolled = {
                "fractional": [
                    {"cat": [salt + TRAFFIC_SALT_SUFFIX + SALT_SEPARATOR, unit]},
                    ["in", experiment["traffic"]],
                    ["out", BUCKETS - experiment["traffic"]],
                ]
            }
            conditions.append({"==": [enrolled, "in"]})
        return [{"and": conditions} if len(conditions) > 1 else conditions[0], pick]

    def var(self, attribute: str) -> dict[str, str]:
        return {"var": "targetingKey" if attribute == self.unit else attribute}

    def present(self, attribute: str) -> dict[str, Any]:
        return {"!==": [self.var(attribute), None]}

    def usable_unit(self, attribute: str) -> dict[str, Any]:
        """The attribute can be bucketed: the targeting key is a string when present."""
        if attribute == self.unit:
            return self.present(attribute)
        return is_unit(self.var(attribute))

    def targeted(self, attribute: str, ids: list[str]) -> dict[str, Any]:
        """The unit is one of these ids; an integer unit matches its decimal form."""
        var = self.var(attribute)
        if attribute == self.unit:
            return {"in": [var, ids]}
        return {"and": [is_unit(var), {"in": [{"cat": [var]}, ids]}]}

    def serve(self, serve: Mapping[str, Any], salt: str) -> Any:
        if "variant" in serve:
            return serve["variant"]
        start, weights = 0, []
        for arm in serve["rollout"]:
            weights.append([arm["variant"], arm["end"] - start])
            start = arm["end"]
        by = serve.get("by", self.flag_unit)
        return {"fractional": [{"cat": [salt + SALT_SEPARATOR, self.var(by)]}, *weights]}

    def condition(self, node: Mapping[str, Any], inline: bool = False) -> Any:
        if "all" in node:
            return {"and": [self.condition(n, inline) for n in node["all"]]}
        if "any" in node:
            return {"or": [self.condition(n, inline) for n in node["any"]]}
        if "not" in node:
            return {"!": [self.condition(node["not"], inline)]}
        if "segment" in node:
            name = node["segment"]
            if name in self._segment_errors:
                raise Unsupported(self._segment_errors[name])
            if inline:
                return self.segment_logic(name)
            self.used_segments.add(name)
            return {"$ref": name}
        return self.operator(node["attr"], node["op"], node["value"], inline)

    def evaluators(self) -> dict[str, Any]:
        return {**self.segments, **self.guards}

    def used_evaluators(self) -> dict[str, Any]:
        return {
            name: self.evaluators()[name] for name in sorted(self.used_segments | set(self.guards))
        }

    def semver_guard(self, attribute: str, inline: bool) -> Any:
        """A string flagstone can read as a version (see the module doc). Written once per
        attribute in $evaluators; segments take it in place, since flagd resolves $ref only
        in a flag's targeting."""
        var = self.var(attribute)
        guard = {
            "and": [is_string(var), {"!": [{"starts_with": [var, "V"]}]}, semver_core_complete(var)]
        }
        if inline:
            return guard
        name = f"flagstone:semver:{attribute}"
        self.guards[name] = guard
        return {"$ref": name}

    def operator(self, attribute: str, op: str, operand: Any, inline: bool = False) -> Any:
        """One flagstone operator (runtime/operators.py) as JsonLogic with its answers."""
        if op in UNSUPPORTED_OPERATORS:
            raise Unsupported(UNSUPPORTED_OPERATORS[op])
        var = self.var(attribute)
        if op == "eq":
            return equals(var, operand)
        if op == "neq":
            return {"!": [equals(var, operand)]}
        if op == "in":
            return one_of(var, operand)
        if op == "not_in":
            return {"!": [one_of(var, operand)]}
        if op == "exists":
            return self.present(attribute) if operand else {"===": [var, None]}
        if op == "contains":
            # JavaScript's flagd-core raises for `in`/`some` over anything else.
            if isinstance(operand, str):
                # a substring of a string, an item of a list: JsonLogic's `in` does both
                return {"and": [{"or": [is_string(var), is_list(var)]}, {"in": [operand, var]}]}
            # A number or boolean is only ever an item of a list (`in` would find 1 in "a1").
            return {"and": [is_list(var), {"some": [var, equals({"var": ""}, operand)]}]}
        if op in ("starts_with", "ends_with"):
            return {op: [var, operand]}  # flagd answers null (false) for a non-string
        if op in NUMERIC_OPS:
            return {"and": [is_number(var), {NUMERIC_OPS[op]: [var, operand]}]}
        if op in SEMVER_OPS:
            compare = {"sem_ver": [var, SEMVER_OPS[op], operand.removeprefix("v")]}
            return {"and": [self.semver_guard(attribute, inline), compare]}
        raise Unsupported(f"the operator {op!r}")


def dump_export(document: Mapping[str, Any]) -> bytes:
    """The export file's bytes: standard JSON only (validation refuses NaN and Infinity
    first; this keeps a JSON parser that follows the standard, Node's, from ever failing)."""
    try:
        text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise FlagstoneError(
            "the flagd export holds NaN or Infinity, which JSON cannot represent; run `flagstone validate`"
        ) from None
    return text.encode() + b"\n"
