from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstone.runtime import Client
from flagstone.runtime.evaluate import _compile_operator
from flagstone.runtime.operators import apply
from tests.runtime_helpers import bundle_from_yaml

EVERYTHING = """
    checkout:
      variants: {on: true, off: false}
      enabled: true
      off_variant: off
      prerequisites: [{flag: payments, variant: v2}]
      targets: {on: [vip-1], off: [blocked-1]}
      rules:
        - segment: staff
          serve: on
        - when: {country: {in: [DE, FR]}, plan: pro}
          serve: {rollout: {on: 20, off: 80}}
      default: off
    payments:
      variants: {v1: 1, v2: 2}
      rules: [{when: {country: {neq: KP}}, serve: v2}]
      default: v1
"""
SEGMENTS = "staff:\n  when: {email: {ends_with: '@isometry.app'}}\n"


@pytest.fixture
def client(tmp_path: Path) -> Client:
    return Client.from_dict(bundle_from_yaml(tmp_path, EVERYTHING, SEGMENTS))


def test_evaluate__target__beats_rules(client: Client) -> None:
    r = client.details("checkout", {"user_id": "blocked-1", "email": "a@isometry.app"})
    assert (r.variant, r.reason) == ("off", "TARGET_MATCH")


def test_evaluate__prerequisite_failure__beats_targets(client: Client) -> None:
    r = client.details("checkout", {"user_id": "vip-1", "country": "KP"})
    assert (r.variant, r.reason, r.message) == ("off", "PREREQUISITE_FAILED", "payments")


def test_evaluate__first_matching_rule__wins(client: Client) -> None:
    r = client.details(
        "checkout", {"user_id": "u", "email": "a@isometry.app", "country": "DE", "plan": "pro"}
    )
    assert (r.variant, r.reason, r.rule_index) == ("on", "RULE_MATCH", 0)


def test_evaluate__no_rule__serves_default(client: Client) -> None:
    r = client.details("checkout", {"user_id": "u", "country": "US"})
    assert (r.variant, r.value, r.reason) == ("off", False, "DEFAULT")


def test_evaluate__kill_switch__beats_everything(tmp_path: Path) -> None:
    killed = EVERYTHING.replace("enabled: true", "enabled: false")
    client = Client.from_dict(bundle_from_yaml(tmp_path, killed, SEGMENTS))
    r = client.details("checkout", {"user_id": "vip-1"})
    assert (r.variant, r.reason) == ("off", "DISABLED")


def test_evaluate__missing_flag__returns_callers_default(client: Client) -> None:
    r = client.details("nope", {"user_id": "u"}, default="fallback")
    assert (r.value, r.reason) == ("fallback", "FLAG_NOT_FOUND")
    assert client.value("nope", {}, default=3) == 3
    assert client.variant("nope", {}) is None


@pytest.mark.parametrize(
    "context",
    [
        {"user_id": ["a", "list"]},
        {"user_id": {"nested": 1}},
        {"country": ["DE"], "plan": {"x": 1}},
        {"email": 12, "country": None},
        {"user_id": float("nan")},
        {},
    ],
)
def test_evaluate__odd_context__never_raises(client: Client, context: dict) -> None:
    r = client.details("checkout", context, default="d")
    assert r.reason in {"DEFAULT", "RULE_MATCH", "ERROR", "PREREQUISITE_FAILED", "TARGET_MATCH"}
    # the other accessors answer the same, and do not raise either
    assert client.variant("checkout", context) == r.variant
    assert client.value("checkout", context, default="d") == r.value


def test_evaluate__default_rollout_without_unit__is_an_error_with_the_callers_default(
    tmp_path: Path,
) -> None:
    client = Client.from_dict(
        bundle_from_yaml(
            tmp_path, "f:\n  variants: {a: 1, b: 2}\n  default: {rollout: {a: 50, b: 50}}\n"
        )
    )
    r = client.details("f", {}, default=0)
    assert (r.value, r.reason) == (0, "ERROR")
    assert "user_id" in (r.message or "")


def test_evaluate__boolean_is_not_one(tmp_path: Path) -> None:
    client = Client.from_dict(
        bundle_from_yaml(
            tmp_path,
            "f:\n  variants: {y: 1, n: 0}\n  rules: [{when: {age: {in: [1, 2]}}, serve: y}]\n  default: n\n",
        )
    )
    assert client.variant("f", {"age": 1}) == "y"
    assert client.variant("f", {"age": 1.0}) == "y"
    assert client.variant("f", {"age": True}) == "n"


ATTR_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, width=16),
    st.sampled_from(["DE", "de", "", "qa@isometry.app", "x@example.com", "1.2.3"]),
    st.lists(st.sampled_from(["DE", "vip"]), max_size=2),
)
OPERANDS = {
    "eq": st.one_of(st.sampled_from(["DE", "1.2.3"]), st.integers(-2, 2), st.booleans()),
    "in": st.lists(
        st.one_of(st.sampled_from(["DE", "FR", ""]), st.integers(-2, 2), st.booleans()),
        min_size=1,
        max_size=3,
    ),
    "not_in": st.lists(
        st.one_of(st.sampled_from(["DE", "FR"]), st.integers(-2, 2)), min_size=1, max_size=3
    ),
    "starts_with": st.sampled_from(["qa", "x", ""]),
    "ends_with": st.sampled_from(["@isometry.app", "com"]),
    "matches": st.sampled_from(["^qa", "@isometry\\.app$", "[0-9]"]),
    "exists": st.booleans(),
    "gt": st.integers(-3, 3),
    "lte": st.integers(-3, 3),
    "neq": st.sampled_from(["DE", 1]),
    "contains": st.sampled_from(["vip", "@", "DE"]),
}


@settings(max_examples=400, deadline=None)
@given(op=st.sampled_from(sorted(OPERANDS)), data=st.data(), value=ATTR_VALUES)
def test_compiled_operator__agrees_with_reference_semantics(
    op: str, data: st.DataObject, value: object
) -> None:
    operand = data.draw(OPERANDS[op])
    matcher = _compile_operator("attr", op, operand)
    context = {} if value is None else {"attr": value}
    assert matcher(context) == apply(op, value, operand)


def test_semver__prerelease_sorts_before_release() -> None:
    assert apply("semver_lt", "2.0.0-beta.1", "2.0.0")
    assert apply("semver_lt", "2.0.0-alpha", "2.0.0-alpha.1")
    assert apply("semver_lt", "2.0.0-alpha.1", "2.0.0-alpha.beta")
    assert apply("semver_gt", "10.0.0", "9.99.99")
    assert not apply("semver_eq", "not-a-version", "1.0.0")


def test_dates__iso_and_epoch_compare_as_instants() -> None:
    assert apply("before", "2026-01-01", "2026-03-01")
    assert apply("after", "2027-01-01T00:00:00+02:00", "2026-12-31T21:59:59Z")
    assert apply("before", 1767225600, "2026-01-02")
    assert not apply("before", "yesterday", "2026-01-01")


def test_nested_attribute__dotted_name_reaches_into_objects(tmp_path: Path) -> None:
    client = Client.from_dict(
        bundle_from_yaml(
            tmp_path,
            "f:\n  variants: {i: 1, o: 0}\n  rules: [{when: {device.os: ios}, serve: i}]\n  default: o\n",
        )
    )
    assert client.variant("f", {"device": {"os": "ios"}}) == "i"
    assert client.variant("f", {"device.os": "ios"}) == "i"
    assert client.variant("f", {"device": "ios"}) == "o"


def test_buckets__are_stable_across_processes_and_hash_seeds() -> None:
    code = "from flagstone.runtime.hashing import bucket; print([bucket('f', f'u{i}') for i in range(50)])"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("0", "1", "4242", "random")
    }
    assert len(outputs) == 1
