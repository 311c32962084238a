"""Export an environment as a flagd flag-definition file (``flagstone build --format flagd``).

flagstone's bucketing is flagd's ``fractional`` (see runtime/hashing.py), so a rollout
exported as ``{"fractional": [{"cat": [salt + "/", {"var": unit}]}, [variant, weight], ...]}``
with weights in 0.01 % steps puts every unit in the same bucket as flagstone does.
The default unit becomes flagd's ``targetingKey``. What flagd cannot express is never
dropped silently: the flag is left out of the export and a warning names the construct
(prerequisites, ``matches``, ``before``/``after``). Running experiments, layered or not,
with or without consent, are exported with the runtime's buckets.
A flag that is exported but reads a dotted attribute gets a warning too: flagd reads
``device.os`` only as a nested path, flagstone also as a literal key. See docs/flagd.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flagstone.bundle import build_bundle
from flagstone.errors import Problem
from flagstone.model import Repository

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
CONSENT_PATH = "consent.experiments"  # read as a path by flagstone too: no dotted-key difference
NO_UNIT_VARIANT = "flagstone: no unit to bucket"  # never a variant: flagd answers ERROR


class Unsupported(Exception):
    """A construct with no flagd equivalent; the message names it."""


def export_environment(repo: Repository, env_name: str) -> tuple[dict[str, Any], list[Problem]]:
    """The flagd document for one environment, and a warning per flag left out."""
    bundle = build_bundle(repo, env_name)
    env = repo.env(env_name)
    exporter = _Exporter(bundle)
    flags: dict[str, Any] = {}
    warnings: list[Problem] = []
    for key, flag in bundle["flags"].items():
        try:
            flags[key] = exporter.flag(key, flag)
        except Unsupported as e:
            warnings.append(
                Problem(
                    env.flags[key].file,
                    0,
                    0,
                    f"flag {key!r} is not in the flagd export: flagd cannot express {e}",
                    "flagd-unsupported",
                    "warning",
                    path=(key,),
                    hint="flagd serves its default for a missing flag; keep this flag on the flagstone runtime",
                )
            )
            continue
        dotted = sorted(
            a for a in _attributes(flags[key], exporter.segments) if "." in a and a != CONSENT_PATH
        )
        if dotted:
            names = ", ".join(repr(a) for a in dotted)
            warnings.append(
                Problem(
                    env.flags[key].file,
                    0,
                    0,
                    f"flag {key!r} reads {names} as a nested path under flagd: a context with a "
                    "literal dotted key matches in flagstone but not in flagd",
                    "flagd-dotted-attribute",
                    "warning",
                    path=(key,),
                    hint=f"apps that evaluate through flagd must send nested objects: {_nested_example(dotted[0])}",
                )
            )
    document: dict[str, Any] = {"$schema": FLAGD_SCHEMA, "flags": flags}
    evaluators = {name: exporter.segments[name] for name in sorted(exporter.used_segments)}
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


def _attributes(node: Any, evaluators: Mapping[str, Any]) -> set[str]:
    """Every context attribute a piece of flagd targeting reads, through ``$ref`` too."""
    if isinstance(node, list):
        return set().union(*(_attributes(n, evaluators) for n in node))
    if not isinstance(node, dict):
        return set()
    if "var" in node and isinstance(node["var"], str):
        return {node["var"]}
    if "$ref" in node:
        return _attributes(evaluators[node["$ref"]], evaluators)
    return _attributes(list(node.values()), evaluators)


class _Exporter:
    def __init__(self, bundle: Mapping[str, Any]) -> None:
        self.bundle = bundle
        # One OpenFeature context has one targeting key: it carries the environment's
        # default unit for every flag and segment; other units are plain attributes.
        self.unit = str(bundle["default_unit"])
        self.flag_unit = self.unit
        self.used_segments: set[str] = set()
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
            branches += [{"in": [self.var(self.flag_unit), sorted(ids)]}, variant]
        if flag.get("experiment"):
            branches += self.experiment(flag["experiment"])
        for rule in flag["rules"]:
            condition = self.condition(rule["when"])
            serve = rule["serve"]
            if "rollout" in serve:
                by = serve.get("by", self.flag_unit)
                condition = {
                    "and": [condition, self.present(by)]
                }  # flagstone skips a rule it cannot bucket
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
                self.present(default.get("by", self.flag_unit)),
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
        pick = {"fractional": [{"cat": [f"experiment:{experiment['salt']}/", unit]}, *arms]}
        conditions: list[Any] = [{"!==": [unit, None]}]
        if experiment.get("consent_required"):
            # runtime.evaluate.has_consent: `consent` is true, or `consent.experiments` is.
            conditions.append(
                {
                    "or": [
                        self.operator("consent", "eq", True),
                        self.operator(CONSENT_PATH, "eq", True),
                    ]
                }
            )
        if "audience" in experiment:
            conditions.append(self.condition(experiment["audience"]))
        if "layer" in experiment:
            low, high = experiment["layer_range"]
            slices = [
                [name, width]
                for name, width in (("below", low), ("in", high - low), ("above", 10_000 - high))
                if width > 0
            ]
            in_layer = {"fractional": [{"cat": [f"layer:{experiment['layer']}/", unit]}, *slices]}
            conditions.append({"==": [in_layer, "in"]} if high > low else False)
        elif experiment["traffic"] < 10_000:
            enrolled = {
                "fractional": [
                    {"cat": [f"experiment:{experiment['salt']}:traffic/", unit]},
                    ["in", experiment["traffic"]],
                    ["out", 10_000 - experiment["traffic"]],
                ]
            }
            conditions.append({"==": [enrolled, "in"]})
        return [{"and": conditions} if len(conditions) > 1 else conditions[0], pick]

    def var(self, attribute: str) -> dict[str, str]:
        return {"var": "targetingKey" if attribute == self.unit else attribute}

    def present(self, attribute: str) -> dict[str, Any]:
        return {"!==": [self.var(attribute), None]}

    def serve(self, serve: Mapping[str, Any], salt: str) -> Any:
        if "variant" in serve:
            return serve["variant"]
        start, weights = 0, []
        for arm in serve["rollout"]:
            weights.append([arm["variant"], arm["end"] - start])
            start = arm["end"]
        by = serve.get("by", self.flag_unit)
        return {"fractional": [{"cat": [f"{salt}/", self.var(by)]}, *weights]}

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
        return self.operator(node["attr"], node["op"], node["value"])

    def operator(self, attribute: str, op: str, operand: Any) -> Any:
        if op in UNSUPPORTED_OPERATORS:
            raise Unsupported(UNSUPPORTED_OPERATORS[op])
        var = self.var(attribute)
        present = self.present(attribute)
        if op in ("eq", "neq"):
            equal: Any = {"===": [var, operand]}
            if isinstance(operand, bool):
                # Python's == makes 1 equal True; the string form tells them apart
                # (flagd-core in Python writes "True", flagd in Go writes "true").
                spelled = ["true", "True"] if operand else ["false", "False"]
                equal = {"and": [equal, {"in": [{"cat": [var]}, spelled]}]}
            return equal if op == "eq" else {"!": [equal]}
        if op == "in":
            return {"in": [var, operand]}
        if op == "not_in":
            return {"!": [{"in": [var, operand]}]}
        if op == "exists":
            return present if operand else {"===": [var, None]}
        if op == "contains":
            return {"and": [present, {"in": [operand, var]}]}
        if op in ("starts_with", "ends_with"):
            return {"and": [present, {op: [var, operand]}]}
        if op in NUMERIC_OPS:
            # Only numbers compare: "+x" equals x for a number, not for a numeric string.
            is_number = {"===": [{"+": [var]}, var]}
            return {"and": [present, is_number, {NUMERIC_OPS[op]: [var, operand]}]}
        if op in SEMVER_OPS:
            return {"and": [present, {"sem_ver": [var, SEMVER_OPS[op], operand.removeprefix("v")]}]}
        raise Unsupported(f"the operator {op!r}")
