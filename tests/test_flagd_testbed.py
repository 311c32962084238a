"""The flagd-testbed's targeting and fractional cases (tests/flagd_testbed/cases.json,
converted from open-feature/flagd-testbed by tests/flagd_testbed/convert.py: its origin,
commit and version are in the file) run three ways:

- against Python's flagd-core (the in-process provider's evaluator): it passes every case
  not tagged for an older fractional scheme, which shows the conversion reads the cases
  as the testbed means them;
- against npm's @openfeature/flagd-core 4.0.1 in Node: the ``@fractional-v2`` cases pass,
  the ``@fractional-v3`` ones do not (docs/flagd.md, the compatibility table);
- against flagstone's own evaluator, through tests/flagd_testbed/to_flagstone.py: each
  case passes, passes on the runtime's bucketing alone (a bucket key no flagstone salt
  produces), cannot be expressed, or differs for a reason listed in ``DIFFERS``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import OpenFeatureError

from flagstone.runtime import Client
from flagstone.runtime.hashing import bucket_of_key
from tests.flagd_testbed.to_flagstone import HashCheck, NotConvertible, bundle, convert_flag
from tests.test_flagd_node import NodeEvaluate, node_flagd_core  # noqa: F401 -- the fixture

HERE = Path(__file__).parent
TESTBED = json.loads((HERE / "flagd_testbed" / "cases.json").read_text())
CASES: list[dict[str, Any]] = TESTBED["cases"]
OLDER_SCHEMES = {"fractional-v1", "fractional-v2"}

# Cases flagstone answers differently from flagd, and why (docs/flagd.md, "The flagd-testbed").
_PARTIAL = (
    "flagstone compares only full major.minor.patch versions; flagd pads '1' and '1.0' to 1.0.0"
)
_NUMERIC = "flagstone compares only version strings; flagd reads the number {} as a version"
_UPPER_V = "flagstone accepts a lowercase 'v' prefix only; flagd strips 'V' too"
DIFFERS = {
    "sem_ver v-prefix handling (version=V1.0.0, value=match)": _UPPER_V,
    "sem_ver partial version string handling (version=1.0, type=String, value=match)": _PARTIAL,
    "sem_ver partial version string handling (version=1, type=String, value=match)": _PARTIAL,
    "sem_ver partial version string handling (version=1, type=Integer, value=match)": _NUMERIC.format(
        1
    ),
    "sem_ver partial version string handling (version=1, type=Float, value=match)": _NUMERIC.format(
        1.0
    ),
    "sem_ver partial version string handling (version=1.2, type=Float, value=match)": _NUMERIC.format(
        1.2
    ),
    "sem_ver numeric context value coercion (version=1.2, type=Float, value=match)": _NUMERIC.format(
        1.2
    ),
    "sem_ver numeric context value coercion (version=2, type=Integer, value=match)": _NUMERIC.format(
        2
    ),
    "sem_ver numeric context value coercion (version=1.2, type=String, value=match)": _PARTIAL,
}
# The outcome of every case, by kind: docs/flagd.md shows the same numbers.
SUMMARY = {
    "pass": 46,
    "pass (runtime bucketing)": 38,
    "not convertible": 136,
    "differs": 9,
    "older fractional scheme": 72,
}


def _case_name(case: dict[str, Any]) -> str:
    return case["id"].split(" ", 1)[1]


def _flagd_core_answer(core: FlagdCore, case: dict[str, Any]) -> dict[str, Any]:
    kind = {"String": "string", "Integer": "integer", "Float": "float", "Boolean": "boolean"}
    method = getattr(core, f"resolve_{kind.get(case['type'], 'object')}_value")
    try:
        details = method(
            case["flag"], case["default"], EvaluationContext(case["targeting_key"], case["context"])
        )
    except OpenFeatureError as e:
        code = str(e.error_code).rsplit(".", 1)[-1]
        return {"value": case["default"], "reason": "ERROR", "error_code": code}
    return {
        "value": details.value,
        "reason": str(details.reason).rsplit(".", 1)[-1],
        "error_code": None,
    }


def _passes(expect: dict[str, Any], got: dict[str, Any]) -> bool:
    return all(got.get(k) == v for k, v in expect.items())


def _is_older_scheme(case: dict[str, Any]) -> bool:
    return bool(OLDER_SCHEMES & set(case["tags"]))


def test_testbed__conversion_notes_its_origin() -> None:
    origin = TESTBED["origin"]
    assert origin["repository"] == "https://github.com/open-feature/flagd-testbed"
    assert len(origin["commit"]) == 40 and origin["version"] == "3.9.0"
    assert len(CASES) == 301
    assert sum("fractional-v3" in c["tags"] for c in CASES) == 132


def test_testbed__python_flagd_core__passes_every_case_but_the_older_fractional_schemes() -> None:
    logging.getLogger("openfeature").setLevel(logging.CRITICAL)  # it logs each bad version
    cores = {}
    for name, flags in TESTBED["flag_sets"].items():
        cores[name] = FlagdCore()
        cores[name].set_flags(json.dumps(flags))
    failed = [
        c for c in CASES if not _passes(c["expect"], _flagd_core_answer(cores[c["flag_set"]], c))
    ]
    assert [c["id"] for c in failed if not _is_older_scheme(c)] == []
    assert len(failed) == 42  # of the 72 v1/v2 rows; the other 30 bucket alike in v3


def test_testbed__npm_flagd_core_4_0_1__passes_fractional_v2_not_v3(
    node_flagd_core: NodeEvaluate,  # noqa: F811 -- the fixture imported above
) -> None:
    types = {"String": "string", "Integer": "number", "Float": "number", "Boolean": "boolean"}
    outcome: Counter[tuple[str, bool]] = Counter()
    for name, flags in TESTBED["flag_sets"].items():
        cases = [c for c in CASES if c["flag_set"] == name]
        results = node_flagd_core(
            flags,
            [
                {
                    "flag": c["flag"],
                    "type": types.get(c["type"], "object"),
                    "default": c["default"],
                    "targetingKey": c["targeting_key"],
                    "attributes": c["context"],
                }
                for c in cases
            ],
        )
        for case, r in zip(cases, results, strict=True):
            got = {"value": r["value"], "reason": r["reason"], "error_code": r["errorCode"]}
            scheme = next((t for t in case["tags"] if t.startswith("fractional-v")), "other")
            outcome[scheme, _passes(case["expect"], got)] += 1
    assert outcome["fractional-v2", False] == 0 and outcome["fractional-v2", True] == 42
    assert outcome["fractional-v3", True] < 10 < outcome["fractional-v3", False]
    assert outcome["other", False] == 0


def flagstone_outcome(case: dict[str, Any], converted: dict[str, Any]) -> tuple[str, str]:
    """(kind, detail) of one case under flagstone's evaluator."""
    if _is_older_scheme(case):
        return "older fractional scheme", ""
    flag = converted[case["flag_set"], case["flag"]]
    if isinstance(flag, NotConvertible):
        return "not convertible", str(flag)
    ctx = dict(case["context"])
    if case["targeting_key"] is not None:
        ctx["targetingKey"] = case["targeting_key"]
    if isinstance(flag, HashCheck):
        values = [p if isinstance(p, str) else _lookup(ctx, p["var"]) for p in flag.key_parts]
        if any(v is not None and not isinstance(v, str) for v in values):
            kinds = {type(v).__name__ for v in values if not isinstance(v, str | None)}
            return (
                "not convertible",
                f"v3 hashes the CBOR of a {'/'.join(sorted(kinds))}; flagstone buckets text",
            )
        assert flag.variants is not None
        if any(v is None for v in values):  # flagd: no bucket key, the default variant
            got = {"value": flag.variants[flag.default_variant], "reason": "DEFAULT"}
        else:
            b = bucket_of_key("".join(values))
            variant = next(v for v, end in flag.arms if b < end)
            got = {"value": flag.variants[variant], "reason": "TARGETING_MATCH"}
        kind = "pass (runtime bucketing)"
    else:
        client, _ = flag
        details = client.details(case["flag"], ctx, case["default"])
        reason = {"RULE_MATCH": "TARGETING_MATCH", "TARGET_MATCH": "TARGETING_MATCH"}
        got = {"value": details.value, "reason": reason.get(details.reason, details.reason)}
        kind = "pass"
    expect = {k: v for k, v in case["expect"].items() if k != "error_code" or v is not None}
    return (kind, "") if _passes(expect, got) else ("differs", f"expected {expect}, got {got}")


def _lookup(ctx: dict[str, Any], name: str) -> Any:
    node: Any = ctx
    for part in name.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


@pytest.fixture(scope="module")
def converted() -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for name, flags in TESTBED["flag_sets"].items():
        evaluators = flags.get("$evaluators", {})
        for key, flag in flags["flags"].items():
            try:
                result = convert_flag(key, flag)
                if isinstance(result, dict):
                    refs = set(json.dumps(result).split('"segment": "')[1:])
                    missing = {r.split('"', 1)[0] for r in refs} - set(evaluators)
                    if missing:
                        raise NotConvertible(
                            f"a $ref to the missing evaluator {sorted(missing)[0]!r}"
                        )
                    result = (Client.from_dict(bundle({key: result}, evaluators)), flag["variants"])
            except NotConvertible as e:
                result = e
            out[name, key] = result
    return out


def test_testbed__flagstone_evaluator__passes_or_differs_only_as_recorded(converted) -> None:
    outcomes = {c["id"]: flagstone_outcome(c, converted) for c in CASES}
    differs = {
        _case_name(c): outcomes[c["id"]][1] for c in CASES if outcomes[c["id"]][0] == "differs"
    }
    assert set(differs) == set(DIFFERS), json.dumps(differs, indent=1)
    assert Counter(kind for kind, _ in outcomes.values()) == SUMMARY
    # Every v3 vector with a string bucket key lands in the expected bucket; the others
    # hash a CBOR integer, float, boolean, map or array, which flagstone never buckets.
    v3 = Counter(outcomes[c["id"]][0] for c in CASES if "fractional-v3" in c["tags"])
    assert v3 == {"pass (runtime bucketing)": 34, "not convertible": 98}


def test_testbed__summary__is_the_one_docs_flagd_md_records() -> None:
    docs = (HERE.parent / "docs" / "flagd.md").read_text()
    for kind, count in SUMMARY.items():
        assert f"| {kind} | {count} |" in docs, kind
    assert TESTBED["origin"]["commit"][:12] in docs
