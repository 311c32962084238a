"""Regenerate the cross-language conformance vectors from a real repository.

    python tests/conformance/generate.py

Builds tests/conformance/repository/ (a flagstone repository exercising every operator,
rollouts, prerequisites, targets, experiments, layers, traffic and consent under a
non-default ``privacy.consent_attribute``) into its
bundle, evaluates a deterministic set of contexts against it with the Python runtime,
and writes vectors.json. Every runtime (Python, TypeScript) must reproduce each case.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "src"))

from flagstone.bundle import build_bundle  # noqa: E402
from flagstone.load import load_repository  # noqa: E402
from flagstone.runtime.evaluate import CompiledBundle, compile_bundle, resolve  # noqa: E402
from flagstone.runtime.hashing import bucket, bucket_of_key, cbor_text, murmur3  # noqa: E402

COUNTRIES = ["DE", "FR", "US", "GB", "NL", "JP", None]
PLANS = ["free", "pro", "team", None]
VERSIONS = ["1.9.9", "2.0.0-beta.1", "2.0.0", "2.3.1", "10.0.0", "not-a-version", None]
EMAILS = ["ann@isometry.app", "bob@example.com", "eve@ISOMETRY.APP", "qa+1@isometry.app", None]
DATES = ["2026-01-01", "2026-06-15T12:00:00Z", "2027-01-01T00:00:00+02:00", 1767225600, None]


def contexts(rnd: random.Random, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {},  # nothing at all
        {"user_id": "qa-1"},  # an individual target
        {"user_id": 42, "country": "DE", "plan": "pro"},  # a numeric unit id
        {"user_id": True},  # a boolean is not a unit id
        {"user_id": "ünïcødé-ユーザー", "country": "JP"},
        {"user_id": "u-1", "device": {"os": "ios", "version": "17.2.0"}},
        {"user_id": "u-2", "tags": ["beta", "staff"], "consent": True},
        {"user_id": "u-3", "age": "30", "country": "DE"},  # a number as a string
        {"user_id": "u-4", "age": 1, "beta": True},
    ]
    while len(out) < n:
        ctx: dict[str, Any] = {"user_id": f"user-{rnd.randrange(100000)}"}
        for attr, values in (
            ("country", COUNTRIES),
            ("plan", PLANS),
            ("app_version", VERSIONS),
            ("email", EMAILS),
            ("signup", DATES),
        ):
            value = rnd.choice(values)
            if value is not None:
                ctx[attr] = value
        if rnd.random() < 0.5:
            ctx["age"] = rnd.choice([12, 17, 18, 30.5, 65, 90])
        if rnd.random() < 0.3:
            ctx["beta"] = rnd.choice([True, False, 1])
        if rnd.random() < 0.3:
            ctx["tags"] = rnd.sample(["beta", "staff", "vip", "churned"], rnd.randint(0, 3))
        if rnd.random() < 0.5:
            ctx["consent"] = rnd.choice(
                [True, False, {"experiments": True}, {"experiments": False}]
            )
        if rnd.random() < 0.2:
            ctx["device"] = {"os": rnd.choice(["ios", "android", "web"])}
        out.append(ctx)
    return out


def case(bundle: CompiledBundle, key: str, ctx: dict[str, Any]) -> dict[str, Any]:
    r = resolve(bundle, key, ctx)
    return {
        "flag": key,
        "context": ctx,
        "variant": r.variant,
        "value": r.value,
        "reason": r.reason,
        "rule": r.rule_index,
        "experiment": r.experiment,
    }


def main() -> None:
    repo, problems = load_repository(HERE / "repository")
    errors = [p for p in problems if p.is_error]
    if errors:
        raise SystemExit(f"repository does not load: {errors[0]}")
    raw = build_bundle(repo, "prod", commit=None)
    bundle = compile_bundle(raw)
    rnd = random.Random(20261125)
    cases = [case(bundle, key, ctx) for ctx in contexts(rnd, 70) for key in sorted(bundle.flags)]
    cases += edge_flag_cases(bundle, raw)
    assignments = []
    for ctx in contexts(random.Random(7), 200):
        for key in sorted(bundle.experiments):
            arm, _ = bundle.experiments[key].assign(ctx)
            assignments.append({"experiment": key, "context": ctx, "arm": arm})
    assignments += edge_assignments(bundle, raw)
    hashes = []
    for i, (salt, unit) in enumerate(
        [
            ("new-checkout", "user-1"),
            ("a", ""),
            ("flag", "ünïcødé"),
            ("long-salt-" * 3, "u" * 40),
            ("experiment:onboarding", "42"),
            ("layer:checkout", "user-99"),
        ]
        + [(f"flag-{i}", f"user-{i * 7919}") for i in range(40)]
        + edge_hash_inputs()
    ):
        key = f"{salt}/{unit}"
        hashes.append(
            {
                "salt": salt,
                "unit": unit,
                "input_hex": cbor_text(key).hex(),
                "murmur3": murmur3(cbor_text(key)),
                "bucket": bucket(salt, unit),
                "index": i,
            }
        )
    doc = {
        "description": "flagstone conformance vectors: evaluate `bundle` for each case; see tests/conformance/generate.py",
        "bundle": raw,
        "flags": cases,
        "assignments": assignments,
        "hashes": hashes,
    }
    (HERE / "vectors.json").write_text(
        json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    )
    print(f"{len(cases)} flag cases, {len(assignments)} assignments, {len(hashes)} hash vectors")


# --- edge cases (the TypeScript runtime's list in issue #21) --------------------------------
# Kept apart from the sampled contexts above: each function returns cases for the flags or
# experiments an edge concerns, evaluated by the Python runtime like every other case.

EDGE_TEXTS = [
    "123", "١٢٣", "１２３", "12a", "", "123\n", "abc\n", "abc", "a\nc", "a\rc", "a\u2028c",
    "a😀c", "café", "naïve_1", "a-b", "日本語", "cat", "concat", "the cat sat", "écat", "cat_",
    " ", "\t\n", "\u00a0", "\u2003", "\x1c", "\ufeff", "STAFF@x", "Staff@isometry.app",
    "ſtaff@", "]a", "abc]", "d", "xx", "x{2}", "a{json}b", "yy", "yyy", "y{,2}", "abc-12",
    "abc-", "ABC-1", "𝒰cat", "cat𝒰", "a-b#c d.", "a-b#c d", "ab", "ab\n", "cab", "x" * 4096, "x" * 4097,
    "😀" * 4096, "😀" * 4097, 12, None, True, ["cat"],
]  # fmt: skip

EDGE_INSTANTS = [
    "2026-02-28T23:00:00Z", "2026-02-28T22:59:59.999999Z", "2026-02-28T22:59:59.9999999Z",
    "2026-02-28T23:00:00.000001Z", "2026-03-01", "2026-02-28", "2026-03-01T00:00:00+01:00",
    "2026-03-01T00:00:00+0100", "2026-03-01T00:00+01", "2026-02-28T23:00:00-00:00",
    "20260228T230000Z", "20260301", "2026-02-28 23:00:00Z", "2026-02-28x23:00Z",
    "2026-02-28T23:00:00.000+00:00", "2026-02-28T23:00:00,5Z", "2026-02-28t23:00:00z",
    "2026-02-28T24:00:00Z", "2026-02-29T00:00:00Z", "2024-02-29T00:00:00Z",
    "2026-02-28T23:00:00+24:00", "2026-02-28T23:00:00+23:59", "2026-03-01T00:00:00+01:00:30",
    "2026-03-01T00:00:00.5+01:00", "2026-03-01T00:00:00+01:00:00.5", "2026-W09-7", "2026W097",
    "2026-W09", "2026-W53", "2020-W53-1", "2026-02-28T23", "2026-02-28T2300Z",
    "2026-02-28T23:00:00 +00:00", "2026-02-28T23:00:00x+00:00", "2026-02-28T23:00:00.",
    "2026-02-28T", "2026-2-28", "+2026-02-28", "0000-01-01", "0001-01-01", "9999-12-31",
    "2026-02-28T23:00:00ZZ", "2026-13-01", "", "now", 1772319600, 1772319599.5, 0, -1.5,
    "1772319600", True, None,
]  # fmt: skip

EDGE_VERSIONS = [
    "2.0.0-alpha", "2.0.0-alpha.1", "2.0.0-alpha.beta", "2.0.0-beta", "2.0.0-beta.1",
    "2.0.0-beta.2", "2.0.0-beta.11", "2.0.0-rc.1", "2.0.0+build.5", "2.0.0-beta.1+exp.sha",
    "v2.3.1", " 2.3.1 ", "2.3.1\n", "\u00a02.3.1", "02.0.0", "2.0", "2.0.0-", "2.0.0-beta.01",
    "\x1c2.3.1", "2.3.1\x85", "\ufeff2.3.1", "2.3.1\u3000", "2.3.1-0", "2.3.2-alpha", "١.٢.٣", "1١.0.0", "99999999999999999999.0.0", "2.0.0-beta..1", "V2.3.1",
    2, None,
]  # fmt: skip

EDGE_UNITS: list[Any] = [
    "", "0", " ", "42", 42, 0, -1, 9007199254740991, 1.5, True, False, [], {},
    "ünïcødé", "é", "e\u0301", "𝒰𝓃𝒾𝒸ℴ𝒹ℯ", "👩\u200d💻", "\u0000", "مرحبا", "u" * 300,
    "qa-1", "user-7",
]  # fmt: skip

NULL_CONTEXTS: list[dict[str, Any]] = [
    dict.fromkeys(
        [
            "user_id",
            "country",
            "plan",
            "email",
            "age",
            "tags",
            "device",
            "app_version",
            "signup",
            "consent",
            "beta",
            "text",
            "at",
        ]
    ),
    {"user_id": "u-n", "device": {"os": None}},
    {"user_id": "u-n", "device": "ios"},
    {"user_id": "u-n", "device.os": "ios"},
    {"user_id": "u-n", "device.os": None, "device": {"os": "ios"}},
    {"user_id": "u-n", "constructor": "x"},
    {"user_id": "u-n", "__proto__": "x"},
    {"user_id": "u-n", "toString": None, "hasOwnProperty": 1},
    {"user_id": "u-n", "hasOwnProperty": True},
]


# The repository's privacy.consent_attribute is consent.purposes.experiments: consent is the
# value at that path, or at a prefix of it, being exactly true; nothing else grants it.
CONSENT_VALUES: list[Any] = [
    True, {"purposes": True}, {"purposes": {"experiments": True}},
    False, None, 1, "true", [True], {}, {"experiments": True}, {"purposes": False},
    {"purposes": None}, {"purposes": [True]}, {"purposes": {"experiments": False}},
    {"purposes": {"experiments": 1}}, {"purposes": {"experiments": "true"}},
    {"purposes": {"experiments": {"granted": True}}}, {"purposes.experiments": True},
    {"purposes": {"analytics": True}}, {"purposes": {"constructor": True}},
]  # fmt: skip
CONSENT_CONTEXTS: list[dict[str, Any]] = [
    {"user_id": f"u-c{i}-{j}", "country": "DE", "consent": value}
    for i, value in enumerate(CONSENT_VALUES)
    for j in range(3)  # three units each: the 80% traffic leaves some consenting unit enrolled
] + [
    {"user_id": "u-c-dotted", "country": "DE", "consent.purposes.experiments": True},
    {"user_id": "u-c-dotted2", "country": "DE", "consent.purposes": True},
]


def boundary_units(prefix: str, buckets: list[int]) -> list[str]:
    """The first ids ``b-<n>`` whose bucket under ``prefix`` is each of ``buckets``."""
    wanted = set(buckets)
    found: dict[int, str] = {}
    n = 0
    while wanted - set(found):
        unit = f"b-{n}"
        b = bucket_of_key(prefix + unit)
        if b in wanted and b not in found:
            found[b] = unit
        n += 1
    return [found[b] for b in buckets]


def edge_unit_contexts(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Unit ids of every JSON type, unicode and astral ids, and ids on bucket boundaries."""
    ends = [a["end"] for a in raw["flags"]["rollout-default"]["default"]["rollout"]]
    three = [a["end"] for a in raw["flags"]["rollout-three"]["default"]["rollout"]][:-1]
    onboarding = raw["experiments"]["onboarding"]
    arm_ends = [a["end"] for a in onboarding["arms"]][:-1]
    salt = onboarding["salt"]
    boundaries = (
        boundary_units("rollout-default/", [0, ends[0] - 1, ends[0], 9999])
        + boundary_units("colour-test-2026/", [b + d for b in three for d in (-1, 0)])
        + boundary_units(
            f"experiment:{salt}:traffic/", [onboarding["traffic"] - 1, onboarding["traffic"]]
        )
        + boundary_units(f"experiment:{salt}/", [b + d for b in arm_ends for d in (-1, 0)])
    )
    return [
        {"user_id": unit, "country": "DE", "plan": "pro", "consent": True}
        for unit in [*EDGE_UNITS, *boundaries]
    ]


def edge_flag_cases(bundle: CompiledBundle, raw: dict[str, Any]) -> list[dict[str, Any]]:
    def cases(flags: list[str], contexts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**case(bundle, key, ctx), "edge": True} for ctx in contexts for key in flags]

    every = sorted(bundle.flags)
    regexes = [k for k in every if k.startswith("edge-regex-")]
    return (
        cases(every, edge_unit_contexts(raw) + NULL_CONTEXTS)
        + cases(["onboarding-flow"], CONSENT_CONTEXTS)
        + cases(regexes, [{"user_id": "u-t", "text": t} for t in EDGE_TEXTS])
        + cases(["edge-dates-tz", "op-dates"], [{"at": t, "signup": t} for t in EDGE_INSTANTS])
        + cases(["op-semver", "op-semver-eq"], [{"app_version": v} for v in EDGE_VERSIONS])
    )


def edge_assignments(bundle: CompiledBundle, raw: dict[str, Any]) -> list[dict[str, Any]]:
    contexts = edge_unit_contexts(raw) + NULL_CONTEXTS + CONSENT_CONTEXTS
    return [
        {
            "experiment": key,
            "context": ctx,
            "arm": bundle.experiments[key].assign(ctx)[0],
            "edge": True,
        }
        for ctx in contexts
        for key in sorted(bundle.experiments)
    ]


def edge_hash_inputs() -> list[tuple[str, str]]:
    """Salts and units whose CBOR headers, UTF-8 and surrogate pairs differ most."""
    return [
        ("flag", "𝒰𝓃𝒾𝒸ℴ𝒹ℯ"),
        ("flag", "👩\u200d💻"),
        ("flag", "e\u0301"),
        ("flag", "é"),
        ("flag", "\u0000"),
        ("", ""),
        ("s" * 10, "u" * 12),  # 23 bytes: the last one-byte header
        ("s" * 10, "u" * 13),  # 24 bytes: the first 0x78 header
        ("s" * 100, "u" * 155),  # 256 bytes: the first 0x79 header
        ("日本", "ユーザー" * 30),
    ]


if __name__ == "__main__":
    main()
