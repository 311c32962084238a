"""Load-time checks: a bundle that loads is a bundle that evaluates.

Two passes, both before anything goes live:

1. **Shape** against ``schemas/bundle.schema.json`` with jsonschema-rs: one call into
   Rust that holds the GIL for its few milliseconds, so evaluating threads cannot stretch
   it (a Python walk would be time-sliced with them). Imported on the first load, not at
   ``import flagstone``. A load from bytes decodes each changed flag into the msgspec
   types of ``flag_shape``, which check its shape in the same C call; the schema then
   checks the rest of the bundle, and any flag those types do not accept.
2. **Cross-references** in Python, which no schema can express: every variant a flag
   serves, targets or falls back to exists; rollouts end at 10,000 in order; segments,
   prerequisites and experiments named exist; experiment arms are the flag's variants;
   every ``matches`` pattern compiles in the bounded engine; conditions nest at most
   ``MAX_CONDITION_DEPTH`` deep.

A refusal is a ``BundleError`` naming the flag (or segment, experiment) and the field.
Flags unchanged since the previous bundle skip both passes: they were checked then
against the same names.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flagstone.runtime.errors import BundleError
from flagstone.runtime.format import BUCKETS, FORMAT, FORMAT_VERSION
from flagstone.runtime.operators import regex_problem

MAX_CONDITION_DEPTH = 64

_KINDS = {"flags": "flag", "segments": "segment", "experiments": "experiment"}


def schema_path() -> Path:
    """The packaged bundle schema (wheel), or the checkout's schemas/ (editable install)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "schemas", here.parent.parent / "schemas"):
        path = candidate / "bundle.schema.json"
        if path.is_file():
            return path
    raise BundleError(
        "flagstone's bundle schema is missing from the installation; reinstall flagstone"
    )


@functools.cache
def _validator() -> Any:
    import jsonschema_rs

    return jsonschema_rs.validator_for(json.loads(schema_path().read_text(encoding="utf-8")))


@functools.cache
def bundle_members() -> tuple[str, ...]:
    """The members a bundle may have at its top level, as the schema lists them."""
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    return tuple(schema["properties"])


def shape_validator() -> Any:
    """The compiled schema (``is_valid`` is one call into Rust)."""
    return _validator()


def check_format(bundle: Mapping[str, Any]) -> None:
    """Refuse what is not a bundle this runtime reads, before looking any further."""
    if bundle.get("format") != FORMAT:
        raise BundleError(
            f"not a flagstone bundle (format is {bundle.get('format')!r}, expected {FORMAT!r})",
            field="format",
        )
    if bundle.get("version") != FORMAT_VERSION:
        raise BundleError(
            f"unsupported bundle version {bundle.get('version')!r} (this runtime reads version {FORMAT_VERSION})",
            field="version",
        )


def check_shape(bundle: Mapping[str, Any]) -> None:
    """Refuse anything ``schemas/bundle.schema.json`` refuses, naming where."""
    validator = _validator()
    if validator.is_valid(bundle):
        return
    error = min(validator.iter_errors(bundle), key=lambda e: -len(e.instance_path))
    path = list(error.instance_path)
    if len(path) >= 2 and path[0] in _KINDS:
        raise BundleError(
            _shape_message(error),
            kind=_KINDS[str(path[0])],
            key=str(path[1]),
            field=field_text(path[2:]),
        )
    raise BundleError(_shape_message(error), field=field_text(path))


def field_text(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _shape_message(error: Any) -> str:
    schema_path = [str(p) for p in error.schema_path]
    tail = schema_path[-3:]
    if tail[-2:] == ["condition", "oneOf"] or (tail[-1] == "oneOf" and "condition" in schema_path):
        what = "is not a condition: expected {all: [...]}, {any: [...]}, {not: ...}, {segment: key} or {attr, op, value} with a known operator and an operand of its type"
    elif "serve" in schema_path and tail[-1] == "oneOf":
        what = "is not a serve: expected {variant: name} or {rollout: [{variant, end}...], by?}"
    else:
        what = str(error.message)
        return _truncate(what)
    return f"{_truncate(json.dumps(error.instance, default=str))} {what}"


def _truncate(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- cross-references --------------------------------------------------------------------


def check_references(
    bundle: Mapping[str, Any],
    flags: Mapping[str, Mapping[str, Any]],
    all_flag_keys: Iterable[str],
) -> None:
    """Check the names ``flags`` (the changed ones) and the bundle's segments and
    experiments refer to; ``all_flag_keys`` are every flag in the new bundle."""
    flag_keys = all_flag_keys if isinstance(all_flag_keys, Mapping | set) else set(all_flag_keys)
    check_context(bundle, flags, flag_keys)
    check_flags(bundle, flags, flag_keys)


def check_context(
    bundle: Mapping[str, Any], flags: Mapping[str, Mapping[str, Any]], flag_keys: Any
) -> None:
    """The segments and experiments part of ``check_references``."""
    segments: Mapping[str, Any] = bundle["segments"]
    for key, segment in segments.items():
        _check_condition(segment["when"], segments, "segment", key, "when", 0)
    _check_segment_cycles(segments)
    for key, experiment in bundle["experiments"].items():
        _check_experiment(key, experiment, flags, flag_keys, segments)


def check_flags(
    bundle: Mapping[str, Any], flags: Mapping[str, Mapping[str, Any]], flag_keys: Any
) -> None:
    """The flags part of ``check_references``: any subset of the changed flags, in any
    order (a reload checks them in batches)."""
    segments: Mapping[str, Any] = bundle["segments"]
    experiments: Mapping[str, Any] = bundle["experiments"]
    for key, flag in flags.items():
        if not _flag_is_sound(flag, flag_keys, segments, experiments, key):
            # Something needs a closer look (or is wrong): the full check names the field.
            _check_flag(key, flag, flag_keys, segments, experiments)


def _condition_is_plain(node: Mapping[str, Any], segments: Mapping[str, Any], depth: int) -> bool:
    """No regex to compile, every segment known, shallow: nothing the full check would refuse."""
    if "attr" in node:
        return bool(node["op"] != "matches")  # a pattern is compiled (and judged) by the full check
    if "segment" in node:
        return node["segment"] in segments
    if depth >= 8:
        return False  # deep: the full check measures it
    if "not" in node:
        return _condition_is_plain(node["not"], segments, depth + 1)
    for child in node["all"] if "all" in node else node["any"]:
        if not _condition_is_plain(child, segments, depth + 1):
            return False
    return True


def _flag_is_sound(
    flag: Mapping[str, Any],
    flag_keys: Any,
    segments: Mapping[str, Any],
    experiments: Mapping[str, Any],
    key: str,
) -> bool:
    """The fast path of every load: True when ``_check_flag`` would find nothing.

    One pass over the flag, the common shapes tested inline (a reload of 1,000 changed
    flags runs this 1,000 times between the C calls that parse and check them)."""
    variants = flag["variants"]
    if "off_variant" in flag and flag["off_variant"] not in variants:
        return False
    targets = flag["targets"]
    if targets and not variants.keys() >= set(targets.values()):
        return False
    if not _serve_is_sound(flag["default"], variants):
        return False
    for rule in flag["rules"]:
        serve = rule["serve"]
        if "variant" in serve:
            if serve["variant"] not in variants:
                return False
        elif not _serve_is_sound(serve, variants):
            return False
        when = rule["when"]
        if "attr" in when:
            if when["op"] == "matches":
                return False  # a pattern is compiled (and judged) by the full check
        elif "segment" in when:
            if when["segment"] not in segments:
                return False
        elif not _condition_is_plain(when, segments, 0):
            return False
    for prerequisite in flag["prerequisites"]:
        if prerequisite["flag"] not in flag_keys:
            return False
    experiment = flag.get("experiment")
    return experiment is None or (
        experiment in experiments and experiments[experiment]["flag"] == key
    )


def _serve_is_sound(serve: Mapping[str, Any], variants: Mapping[str, Any]) -> bool:
    if "variant" in serve:
        return serve["variant"] in variants
    end = 0
    for arm in serve["rollout"]:
        if arm["variant"] not in variants or arm["end"] < end:
            return False
        end = arm["end"]
    return bool(end == BUCKETS)


def _check_flag(
    key: str,
    flag: Mapping[str, Any],
    flag_keys: Any,
    segments: Mapping[str, Any],
    experiments: Mapping[str, Any],
) -> None:
    variants = flag["variants"]

    def known(name: str, field: str) -> None:
        if name not in variants:
            raise BundleError(
                f"serves unknown variant {name!r} (variants: {', '.join(variants)})",
                kind="flag",
                key=key,
                field=field,
            )

    if "off_variant" in flag:
        known(flag["off_variant"], "off_variant")
    for unit, variant in flag["targets"].items():
        if variant not in variants:
            known(variant, f"targets.{unit}")
    for index, rule in enumerate(flag["rules"]):
        _check_condition(rule["when"], segments, "flag", key, f"rules[{index}].when", 0)
        _check_serve(rule["serve"], known, key, f"rules[{index}].serve")
    _check_serve(flag["default"], known, key, "default")
    for index, prerequisite in enumerate(flag["prerequisites"]):
        if prerequisite["flag"] not in flag_keys:
            raise BundleError(
                f"requires unknown flag {prerequisite['flag']!r}",
                kind="flag",
                key=key,
                field=f"prerequisites[{index}].flag",
            )
    experiment = flag.get("experiment")
    if experiment is not None:
        if experiment not in experiments:
            raise BundleError(
                f"names unknown experiment {experiment!r}", kind="flag", key=key, field="experiment"
            )
        if experiments[experiment]["flag"] != key:
            raise BundleError(
                f"names experiment {experiment!r}, which runs on flag {experiments[experiment]['flag']!r}",
                kind="flag",
                key=key,
                field="experiment",
            )


def _check_serve(serve: Mapping[str, Any], known: Any, key: str, field: str) -> None:
    if "variant" in serve:
        known(serve["variant"], f"{field}.variant")
        return
    _check_arms(serve["rollout"], "flag", key, f"{field}.rollout")
    for index, arm in enumerate(serve["rollout"]):
        known(arm["variant"], f"{field}.rollout[{index}].variant")


def _check_arms(arms: list[Mapping[str, Any]], kind: str, key: str, field: str) -> None:
    previous = 0
    for index, arm in enumerate(arms):
        if arm["end"] < previous:
            raise BundleError(
                f"bucket ends must not decrease: {arm['end']} after {previous}",
                kind=kind,
                key=key,
                field=f"{field}[{index}].end",
            )
        previous = arm["end"]
    if previous != BUCKETS:
        raise BundleError(
            f"the last arm ends at {previous}, expected {BUCKETS}",
            kind=kind,
            key=key,
            field=f"{field}[{len(arms) - 1}].end",
        )


def _check_condition(
    node: Mapping[str, Any],
    segments: Mapping[str, Any],
    kind: str,
    key: str,
    field: str,
    depth: int,
) -> None:
    if depth >= MAX_CONDITION_DEPTH:
        raise BundleError(
            f"conditions nest deeper than {MAX_CONDITION_DEPTH} levels",
            kind=kind,
            key=key,
            field=field,
        )
    if "attr" in node:
        if node["op"] == "matches":
            problem = regex_problem(node["value"])
            if problem is not None:
                raise BundleError(problem, kind=kind, key=key, field=f"{field}.value")
        return
    if "segment" in node:
        if node["segment"] not in segments:
            raise BundleError(
                f"refers to unknown segment {node['segment']!r}",
                kind=kind,
                key=key,
                field=f"{field}.segment",
            )
        return
    if "not" in node:
        _check_condition(node["not"], segments, kind, key, f"{field}.not", depth + 1)
        return
    combinator = "all" if "all" in node else "any"
    for index, child in enumerate(node[combinator]):
        _check_condition(child, segments, kind, key, f"{field}.{combinator}[{index}]", depth + 1)


def _segment_refs(node: Mapping[str, Any]) -> Iterable[str]:
    if "segment" in node:
        yield node["segment"]
    elif "not" in node:
        yield from _segment_refs(node["not"])
    else:
        for combinator in ("all", "any"):
            for child in node.get(combinator, ()):
                yield from _segment_refs(child)


def _check_segment_cycles(segments: Mapping[str, Any]) -> None:
    done: set[str] = set()

    def visit(key: str, path: tuple[str, ...]) -> None:
        if key in done:
            return
        if key in path:
            cycle = " -> ".join((*path[path.index(key) :], key))
            raise BundleError(
                f"segments refer to each other in a cycle: {cycle}",
                kind="segment",
                key=key,
                field="when",
            )
        for ref in _segment_refs(segments[key]["when"]):
            visit(ref, (*path, key))
        done.add(key)

    for key in segments:
        visit(key, ())


def _check_experiment(
    key: str,
    experiment: Mapping[str, Any],
    changed_flags: Mapping[str, Mapping[str, Any]],
    flag_keys: Any,
    segments: Mapping[str, Any],
) -> None:
    flag_key = experiment["flag"]
    if flag_key not in flag_keys:
        raise BundleError(
            f"runs on unknown flag {flag_key!r}", kind="experiment", key=key, field="flag"
        )
    _check_arms(experiment["arms"], "experiment", key, "arms")
    names = [arm["variant"] for arm in experiment["arms"]]
    flag = changed_flags.get(flag_key)
    if flag is not None:
        for index, name in enumerate(names):
            if name not in flag["variants"]:
                raise BundleError(
                    f"arm {name!r} is not a variant of flag {flag_key!r}",
                    kind="experiment",
                    key=key,
                    field=f"arms[{index}].variant",
                )
    if experiment["control"] not in names:
        raise BundleError(
            f"control {experiment['control']!r} is not one of the arms ({', '.join(names)})",
            kind="experiment",
            key=key,
            field="control",
        )
    if "audience" in experiment:
        _check_condition(experiment["audience"], segments, "experiment", key, "audience", 0)
    if "layer_range" in experiment:
        start, end = experiment["layer_range"]
        if start > end:
            raise BundleError(
                f"layer range [{start}, {end}) is empty backwards",
                kind="experiment",
                key=key,
                field="layer_range",
            )
