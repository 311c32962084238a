"""Every runtime must reproduce tests/conformance/vectors.json (regenerate: generate.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flagstone.bundle import build_bundle, dump_bundle
from flagstone.load import load_repository
from flagstone.runtime import Client
from flagstone.runtime.evaluate import compile_bundle, explain
from flagstone.runtime.hashing import bucket, cbor_text, murmur3

HERE = Path(__file__).parent / "conformance"
VECTORS = json.loads((HERE / "vectors.json").read_text())


def test_vectors__cover_every_reason_and_at_least_500_cases() -> None:
    reasons = {c["reason"] for c in VECTORS["flags"]}
    assert reasons >= {
        "DISABLED",
        "PREREQUISITE_FAILED",
        "TARGET_MATCH",
        "RULE_MATCH",
        "SPLIT",
        "DEFAULT",
        "ERROR",
    }
    assert len(VECTORS["flags"]) + len(VECTORS["assignments"]) >= 500
    ops = {
        n["op"]
        for f in VECTORS["bundle"]["flags"].values()
        for r in f["rules"]
        for n in _leaves(r["when"])
    }
    assert ops >= {
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
    }


def _leaves(node):
    if "attr" in node:
        yield node
    for key in ("all", "any"):
        for sub in node.get(key, ()):
            yield from _leaves(sub)
    if "not" in node:
        yield from _leaves(node["not"])


def test_vectors__bundle_is_what_the_repository_builds_today() -> None:
    repo, _ = load_repository(HERE / "repository")
    assert dump_bundle(build_bundle(repo, "prod")) == dump_bundle(VECTORS["bundle"])


def test_compiled_evaluator__reproduces_every_flag_case() -> None:
    client = Client.from_dict(VECTORS["bundle"])
    mismatches = []
    for case in VECTORS["flags"]:
        r = client.details(case["flag"], case["context"])
        got = {
            "variant": r.variant,
            "value": r.value,
            "reason": r.reason,
            "rule": r.rule_index,
            "experiment": r.experiment,
        }
        want = {k: case[k] for k in got}
        if got != want:
            mismatches.append((case["flag"], case["context"], want, got))
    assert mismatches == []


def test_explain_interpreter__agrees_with_the_compiled_evaluator_on_every_case() -> None:
    bundle = compile_bundle(VECTORS["bundle"])
    for case in VECTORS["flags"]:
        r, trace = explain(bundle, case["flag"], case["context"])
        assert (r.variant, r.reason, r.rule_index) == (
            case["variant"],
            case["reason"],
            case["rule"],
        ), (case, trace)
        assert trace


def test_assignments__reproduce_every_case() -> None:
    client = Client.from_dict(VECTORS["bundle"])
    got = [client.assign(a["experiment"], a["context"]) for a in VECTORS["assignments"]]
    assert got == [a["arm"] for a in VECTORS["assignments"]]


@pytest.mark.parametrize("vector", VECTORS["hashes"], ids=lambda v: str(v["index"]))
def test_hash_vectors__input_hash_and_bucket(vector) -> None:
    data = cbor_text(f"{vector['salt']}/{vector['unit']}")
    assert data.hex() == vector["input_hex"]
    assert murmur3(data) == vector["murmur3"]
    assert bucket(vector["salt"], vector["unit"]) == vector["bucket"]


def test_hash__matches_flagd_fractional_bucketing() -> None:
    """flagd hashes the CBOR of its bucket-by value with murmur3 and scales by the total weight."""
    import cbor2
    import mmh3

    for v in VECTORS["hashes"]:
        flagd_hash = mmh3.hash(
            cbor2.dumps(f"{v['salt']}/{v['unit']}", canonical=True), signed=False
        )
        assert (flagd_hash * 10_000) >> 32 == v["bucket"]
