"""Regenerate the cross-language conformance vectors from a real repository.

    python tests/conformance/generate.py

Builds tests/conformance/repository/ (a flagstone repository exercising every operator,
rollouts, prerequisites, targets, experiments, layers, traffic and consent) into its
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
from flagstone.runtime.evaluate import compile_bundle, resolve  # noqa: E402
from flagstone.runtime.hashing import bucket, cbor_text, murmur3  # noqa: E402

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


def main() -> None:
    repo, problems = load_repository(HERE / "repository")
    errors = [p for p in problems if p.is_error]
    if errors:
        raise SystemExit(f"repository does not load: {errors[0]}")
    raw = build_bundle(repo, "prod", commit=None)
    bundle = compile_bundle(raw)
    rnd = random.Random(20261125)
    cases = []
    for ctx in contexts(rnd, 70):
        for key in sorted(bundle.flags):
            r = resolve(bundle, key, ctx)
            cases.append(
                {
                    "flag": key,
                    "context": ctx,
                    "variant": r.variant,
                    "value": r.value,
                    "reason": r.reason,
                    "rule": r.rule_index,
                    "experiment": r.experiment,
                }
            )
    assignments = []
    for ctx in contexts(random.Random(7), 200):
        for key in sorted(bundle.experiments):
            arm, _ = bundle.experiments[key].assign(ctx)
            assignments.append({"experiment": key, "context": ctx, "arm": arm})
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


if __name__ == "__main__":
    main()
