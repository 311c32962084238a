"""A bundle that loads is a bundle that evaluates; every public method stays inside its
never-raise boundary, whatever the bundle (fuzzed) and whatever the context."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagstone.bundle import dump_bundle
from flagstone.runtime import BundleError, Client
from flagstone.runtime.check import check_shape
from tests.test_conformance import VECTORS

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "bundle.schema.json").read_text())
BASE = VECTORS["bundle"]
CONTEXTS: list[Any] = [
    {},
    {"user_id": "u-1", "country": "DE", "plan": "pro", "email": "a@isometry.app", "consent": True},
    {"user_id": 7, "age": 30.5, "app_version": "2.0.0", "signup": "2026-01-01", "tags": ["beta"]},
    {"user_id": True, "country": ["DE"], "age": "old", "email": 5, "device": {"os": 1}},
]


def mutated(**changes: Any) -> dict[str, Any]:
    bundle = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = bundle
        parts = path.split("__")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[parts[-1]] = value
    return bundle


def refusal(bundle: dict[str, Any]) -> BundleError:
    with pytest.raises(BundleError) as info:
        Client.from_dict(bundle)
    with pytest.raises(BundleError) as from_bytes:
        Client.from_bytes(json.dumps(bundle).encode())
    assert str(info.value) == str(from_bytes.value)
    return info.value


def test_unknown_variant_in_a_rule_serve__refused_naming_flag_and_field() -> None:
    key = next(k for k, f in BASE["flags"].items() if f["rules"])
    bundle = copy.deepcopy(BASE)
    bundle["flags"][key]["rules"][0]["serve"] = {"variant": "nope"}
    error = refusal(bundle)
    assert error.flag == key
    assert error.field == "rules[0].serve.variant"
    assert str(error).startswith(
        f"flag {key!r}: rules[0].serve.variant: serves unknown variant 'nope'"
    )


def with_flag(key: str, **changes: Any) -> dict[str, Any]:
    bundle = copy.deepcopy(BASE)
    bundle["flags"][key].update(changes)
    return bundle


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"off_variant": "gone"}, "off_variant", "unknown variant 'gone'"),
        ({"targets": {"user-1": "gone"}}, "targets.user-1", "unknown variant 'gone'"),
        ({"default": {"variant": "gone"}}, "default.variant", "unknown variant 'gone'"),
        (
            {
                "default": {
                    "rollout": [{"variant": "on", "end": 5000}, {"variant": "gone", "end": 10000}]
                }
            },
            "default.rollout[1].variant",
            "unknown variant 'gone'",
        ),
        (
            {
                "default": {
                    "rollout": [{"variant": "on", "end": 5000}, {"variant": "off", "end": 9000}]
                }
            },
            "default.rollout[1].end",
            "expected 10000",
        ),
        (
            {
                "default": {
                    "rollout": [
                        {"variant": "on", "end": 6000},
                        {"variant": "off", "end": 5000},
                        {"variant": "on", "end": 10000},
                    ]
                }
            },
            "default.rollout[1].end",
            "must not decrease",
        ),
        ({"targets": ["user-1"]}, "targets", 'is not of type "object"'),
        ({"enabled": "false"}, "enabled", 'is not of type "boolean"'),
        (
            {"prerequisites": [{"flag": "ghost", "variants": ["on"]}]},
            "prerequisites[0].flag",
            "unknown flag 'ghost'",
        ),
        (
            {"rules": [{"when": {"segment": "ghost"}, "serve": {"variant": "on"}}]},
            "rules[0].when.segment",
            "unknown segment 'ghost'",
        ),
        (
            {
                "rules": [
                    {
                        "when": {"attr": "email", "op": "matches", "value": "(?=a)b+"},
                        "serve": {"variant": "on"},
                    }
                ]
            },
            "rules[0].when.value",
            "lookaround",
        ),
        (
            {
                "rules": [
                    {"when": {"attr": "age", "op": "gt", "value": "18"}, "serve": {"variant": "on"}}
                ]
            },
            "rules[0].when",
            "is not a condition",
        ),
        (
            {
                "rules": [
                    {
                        "when": {"attr": "age", "op": "between", "value": 1},
                        "serve": {"variant": "on"},
                    }
                ]
            },
            "rules[0].when",
            "is not a condition",
        ),
        ({"experiment": "ghost"}, "experiment", "unknown experiment 'ghost'"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_flag_that_would_not_evaluate__refused_naming_the_field(changes, field, words) -> None:
    key = next(
        k
        for k, f in BASE["flags"].items()
        if set(f["variants"]) >= {"on", "off"} and "experiment" not in f
    )
    error = refusal(with_flag(key, **changes))
    assert (error.kind, error.key, error.field) == ("flag", key, field)
    assert words in str(error), str(error)


def test_deeply_nested_condition__refused_not_a_recursion_error() -> None:
    node: dict[str, Any] = {"attr": "x", "op": "exists", "value": True}
    for _ in range(200):
        node = {"not": node}
    key = next(iter(BASE["flags"]))
    bundle = with_flag(
        key,
        rules=[{"when": node, "serve": {"variant": next(iter(BASE["flags"][key]["variants"]))}}],
    )
    error = refusal(bundle)
    assert "nest deeper than 64" in str(error)


def test_experiment_cross_references__refused_naming_experiment_and_field() -> None:
    key = next(iter(BASE["experiments"]))
    bundle = copy.deepcopy(BASE)
    bundle["experiments"][key]["control"] = "nobody"
    error = refusal(bundle)
    assert (error.kind, error.key, error.field) == ("experiment", key, "control")
    bundle = copy.deepcopy(BASE)
    bundle["experiments"][key]["arms"][0]["variant"] = "nobody"
    bundle["experiments"][key]["control"] = "nobody"
    error = refusal(bundle)
    assert (error.kind, error.field) == ("experiment", "arms[0].variant")


def test_segment_cycle__refused() -> None:
    bundle = copy.deepcopy(BASE)
    bundle["segments"]["a-loop"] = {"when": {"segment": "b-loop"}}
    bundle["segments"]["b-loop"] = {"when": {"not": {"segment": "a-loop"}}}
    assert "cycle" in str(refusal(bundle))


def test_wrong_format_or_version__refused_with_what_was_expected() -> None:
    assert "not a flagstone bundle" in str(refusal(mutated(format="other")))
    assert "unsupported bundle version 2" in str(refusal(mutated(version=2)))


def test_deeply_nested_json_file__bundle_error_at_start(tmp_path: Path) -> None:
    path = tmp_path / "prod.json"
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(BundleError, match="nested too deeply"):
        Client.from_file(path)


def test_catastrophic_regex__evaluates_in_linear_time() -> None:
    """`(a|a)+$` on 4,096 a's then a b: years under backtracking, microseconds under RE2."""
    code = """
import copy, json, sys
from flagstone.runtime import Client
bundle = json.loads(sys.stdin.read())
key = next(iter(bundle["flags"]))
flag = bundle["flags"][key]
variant = next(iter(flag["variants"]))
flag["rules"] = [{"when": {"attr": "s", "op": "matches", "value": "(a|a)+$"}, "serve": {"variant": variant}},
                 {"when": {"attr": "s", "op": "matches", "value": "^(a|aa)+$"}, "serve": {"variant": variant}}]
client = Client.from_dict(bundle)
for n in (24, 30, 4096):
    client.details(key, {"user_id": "u", "s": "a" * n + "b"})
print("done")
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(BASE),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "done", result.stderr


class HostileContext(dict):
    """A context whose ``get`` works once, then raises."""

    calls = 0

    def get(self, key, default=None):
        HostileContext.calls += 1
        if HostileContext.calls > 1:
            raise RuntimeError("the context broke")
        return super().get(key, default)


@pytest.mark.parametrize(
    "context",
    [None, 42, "user", ["user_id"], HostileContext(user_id="u"), {"user_id": object()}],
    ids=["none", "int", "str", "list", "get-raises-on-second-call", "odd-unit"],
)
def test_every_public_method__never_raises_on_a_bad_context(context) -> None:
    client = Client.from_dict(BASE)
    exercise(client, context)


@pytest.mark.parametrize("key", [["a", "list"], {"a": 1}, None, 3, "", "no-such-flag"])
def test_every_public_method__never_raises_on_an_odd_key(key) -> None:
    client = Client.from_dict(BASE)
    assert client.variant(key, {}, "d") == "d"
    assert client.value(key, {}, "d") == "d"
    assert client.enabled(key, {}, True) is True
    assert client.details(key, {}, "d").value == "d"
    assert client.details(key, {}, "d").reason in {"FLAG_NOT_FOUND", "ERROR"}
    assert client.explain(key, {})[0].reason in {"FLAG_NOT_FOUND", "ERROR"}
    assert client.assign(key, {}) is None
    assert client.config(key, "d") == "d"


def exercise(client: Client, context: Any) -> None:
    for key in list(client.bundle.flags):
        client.variant(key, context, "d")
        client.value(key, context, "d")
        client.enabled(key, context)
        client.details(key, context, "d")
        client.explain(key, context)
    for key in list(client.bundle.experiments):
        client.assign(key, context)
    client.config("a.b.c")


MUTATIONS = st.sampled_from(["delete", "wrong-type", "random", "rename"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 20_000) | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=6,
)


def nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += nodes(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += nodes(v, (*path, i))
    return out


# A small real bundle, so that each mutation is likely to hit something that matters.
SMALL = {
    **{k: v for k, v in BASE.items() if k not in ("flags", "experiments", "segments")},
    "flags": {k: BASE["flags"][k] for k in list(BASE["flags"])[:6]}
    | {k: BASE["flags"][k] for k, f in BASE["flags"].items() if "experiment" in f},
    "segments": BASE["segments"],
    "experiments": BASE["experiments"],
}
SMALL_NODES = nodes(SMALL)[1:]


def with_mutations(bundle: dict, mutations: Any) -> dict:
    """A copy of ``bundle`` with each (path, how, value) applied where the path still exists."""
    bundle = copy.deepcopy(bundle)
    for path, how, value in mutations:
        parent, last = bundle, path[-1]
        try:
            for part in path[:-1]:
                parent = parent[part]
            if how == "delete" and isinstance(parent, dict):
                del parent[last]
            elif how == "rename" and isinstance(parent, dict) and isinstance(parent[last], str):
                parent[last] += "-x"
            elif how == "wrong-type":
                parent[last] = [parent[last]] if not isinstance(parent[last], list) else "x"
            else:
                parent[last] = value
        except (KeyError, IndexError, TypeError):
            continue
    return bundle


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(SMALL_NODES), MUTATIONS, JSON), min_size=1, max_size=3))
def test_fuzz__mutated_bundle__refused_at_load_or_never_raises(mutations) -> None:
    bundle = with_mutations(SMALL, mutations)
    try:
        client = Client.from_dict(bundle)
    except BundleError:
        return
    # Flags compile lazily, where a failure would only show as an ERROR evaluation:
    # compile each one here, so that anything the load-time checks let through fails.
    flags = client.bundle.flags
    for key in list(flags):
        flags[key]
    for context in CONTEXTS:
        exercise(client, context)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 20_000), st.binary(max_size=3))
def test_fuzz__truncated_or_corrupted_bytes__refused_or_usable(cut, junk) -> None:
    data = dump_bundle(SMALL)
    corrupted = data[: cut % len(data)] + junk + data[cut % len(data) + len(junk) :]
    try:
        client = Client.from_bytes(corrupted)
    except BundleError:
        return
    exercise(client, CONTEXTS[1])


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SMALL_NODES), JSON)
def test_shape_check__held_equal_to_the_reference_jsonschema(path, value) -> None:
    bundle = copy.deepcopy(SMALL)
    parent = bundle
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    expected = jsonschema.Draft202012Validator(SCHEMA).is_valid(bundle)
    try:
        check_shape(bundle)
        accepted = True
    except BundleError:
        accepted = False
    assert accepted == expected


# --- the typed decoding of a load from bytes decides exactly as the schema path ----------

# Values the typed shape treats differently from JSON Schema: whole floats (an "integer"
# to the schema, not an int to msgspec), true against numbers, null against absent.
TYPED_EDGES = st.sampled_from([None, True, False, 0, 1, 10_000, 10_000.0, 2.5, "", "on", [], {}])


def decisions(bundle: dict[str, Any]) -> tuple[str | None, str | None]:
    """(refusal of the dict path or None, refusal of the bytes path or None)."""
    out: list[str | None] = []
    for load in (Client.from_dict, lambda b: Client.from_bytes(json.dumps(b).encode())):
        try:
            client = load(bundle)
        except BundleError as e:
            out.append(str(e))
            continue
        out.append(None)
        flags = client.bundle.flags
        for key in list(flags):
            flags[key]  # every flag compiles: lazily compiled flags cannot fail later
        exercise(client, CONTEXTS[1])
    return out[0], out[1]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from([p for p in SMALL_NODES if p[0] == "flags"]),
            MUTATIONS,
            JSON | TYPED_EDGES,
        ),
        min_size=1,
        max_size=2,
    )
)
def test_fuzz__mutated_flag__bytes_load_decides_as_the_dict_load(mutations) -> None:
    bundle = with_mutations(SMALL, mutations)
    by_dict, by_bytes = decisions(bundle)
    assert (by_dict is None) == (by_bytes is None), (by_dict, by_bytes)


def first_flag_with(predicate: Any) -> str:
    return next(k for k, f in BASE["flags"].items() if predicate(f))


@pytest.mark.parametrize(
    "change",
    [
        # The schema accepts these and msgspec's types do not: the load takes the schema path.
        lambda f: f["default"].update(
            rollout=[{"variant": next(iter(f["variants"])), "end": 10000.0}]
        ),
        lambda f: f["default"].update(rollout=[{"variant": next(iter(f["variants"])), "end": 1e4}]),
        # Refused, by the typed pass or by the schema when a type cannot tell.
        lambda f: f["rules"].append(
            {
                "when": {"attr": "a", "op": "gt", "value": True},
                "serve": {"variant": next(iter(f["variants"]))},
            }
        ),
        lambda f: f["rules"].append(
            {
                "when": {"attr": "a", "op": "in", "value": "DE"},
                "serve": {"variant": next(iter(f["variants"]))},
            }
        ),
        lambda f: f["rules"].append(
            {
                "when": {"attr": "a", "op": "eq", "value": 1, "segment": "x"},
                "serve": {"variant": next(iter(f["variants"]))},
            }
        ),
        lambda f: f["rules"].append(
            {"when": {"all": [], "any": []}, "serve": {"variant": next(iter(f["variants"]))}}
        ),
        lambda f: f["rules"].append(
            {"when": {"attr": "a", "op": "exists"}, "serve": {"variant": next(iter(f["variants"]))}}
        ),
        lambda f: f["rules"].append(
            {
                "when": {"attr": "a", "op": "exists", "value": None},
                "serve": {"variant": next(iter(f["variants"]))},
            }
        ),
        lambda f: f["rules"].append(
            {
                "when": {"segment": "x", "ecmascript": None},
                "serve": {"variant": next(iter(f["variants"]))},
            }
        ),
        lambda f: f.update(default={"variant": next(iter(f["variants"])), "by": "org_id"}),
        lambda f: f.update(
            default={
                "variant": next(iter(f["variants"])),
                "rollout": [{"variant": next(iter(f["variants"])), "end": 10000}],
            }
        ),
        lambda f: f.update(default={}),
        lambda f: f.update(off_variant=None),
        lambda f: f.update(variants={}),
        lambda f: f.update(enabled=1),
    ],
)
def test_typed_shape_edges__bytes_load_decides_and_names_as_the_dict_load(change) -> None:
    bundle = copy.deepcopy(BASE)
    change(bundle["flags"][first_flag_with(lambda f: "experiment" not in f)])
    by_dict, by_bytes = decisions(bundle)
    assert by_dict == by_bytes


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.update(variants=[]),
        lambda f: f.update(variants={}),
        lambda f: f.update(variants=None),
    ],
)
def test_experiment_flag_variants_not_an_object__bytes_load_names_as_the_dict_load(change) -> None:
    bundle = copy.deepcopy(BASE)
    change(bundle["flags"][first_flag_with(lambda f: "experiment" in f)])
    by_dict, by_bytes = decisions(bundle)
    assert by_dict is not None
    assert by_dict == by_bytes


def twin_flags(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """BASE with two more flags, the second after the first."""
    bundle = copy.deepcopy(BASE)
    for key, changes in (("twin-a", first), ("twin-b", second)):
        bundle["flags"][key] = {
            "variants": {"on": True, "off": False},
            "enabled": True,
            "unit": "user_id",
            "salt": key,
            "prerequisites": [],
            "targets": {},
            "rules": [],
            "default": {"variant": "off"},
            **changes,
        }
    return bundle


SHARED_RULE = {"when": {"attr": "country", "op": "in", "value": ["DE"]}, "serve": {"variant": "on"}}
SHARED_ROLLOUT = {"rollout": [{"variant": "on", "end": 5000}, {"variant": "off", "end": 10000}]}


@pytest.mark.parametrize(
    ("second", "field"),
    [
        (
            {"variants": {"yes": 1, "no": 0}, "default": {"variant": "no"}, "rules": [SHARED_RULE]},
            "rules[0].serve.variant",
        ),
        ({"variants": {"on": 1, "no": 0}, "default": SHARED_ROLLOUT}, "default.rollout[1].variant"),
        (
            {"variants": {"on": 1, "no": 0}, "default": {"variant": "no"}, "off_variant": "off"},
            "off_variant",
        ),
    ],
)
def test_parts_repeated_across_flags__each_flag_judged_against_its_own_variants(
    second, field
) -> None:
    # A load from bytes judges each distinct rule list, serve and condition text once
    # (flag_shape.References): the verdict on the first flag's text must not let the
    # second flag, with the same text but other variants, through.
    first = {"rules": [SHARED_RULE], "default": SHARED_ROLLOUT, "off_variant": "off"}
    error = refusal(twin_flags(first, second))
    assert (error.key, error.field) == ("twin-b", field)
    assert "serves unknown variant" in str(error)


def test_parts_repeated_across_flags__the_same_sound_texts_load() -> None:
    flag = {"rules": [SHARED_RULE, SHARED_RULE], "default": SHARED_ROLLOUT, "off_variant": "off"}
    data = json.dumps(twin_flags(flag, flag)).encode()
    client = Client.from_bytes(data)
    assert client.variant("twin-b", {"user_id": "u", "country": "DE"}) == "on"
    assert client.variant("twin-a", {"user_id": "u", "country": "FR"}) in {"on", "off"}


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.update(extra=1),  # an unknown member: the typed top level refuses it
        lambda b: b.update(project=None),
        lambda b: b.update(project=7),
        lambda b: b.pop("flags"),
        lambda b: b.update(flags=[]),
        lambda b: b.pop("segments"),
        lambda b: b.update(config=None),
        lambda b: b.update(pii=["email", "email"]),
    ],
)
def test_top_level_edges__bytes_load_decides_and_names_as_the_dict_load(change) -> None:
    bundle = copy.deepcopy(BASE)
    change(bundle)
    by_dict, by_bytes = decisions(bundle)
    assert by_dict == by_bytes
    if by_dict is None:
        assert Client.from_bytes(json.dumps(bundle).encode()).bundle.meta == {
            k: v for k, v in bundle.items() if k != "flags"
        }
