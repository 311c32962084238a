"""The flagd export, checked with the real openfeature-provider-flagd in-process file resolver."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext

from flagstone.bundle import build_bundle
from flagstone.flagd import export_environment
from flagstone.load import load_repository
from flagstone.runtime import Client
from tests.flagd_helpers import flagd_context, flagd_details
from tests.runtime_helpers import bundle_from_yaml

HERE = Path(__file__).parent
VECTORS = json.loads((HERE / "conformance" / "vectors.json").read_text())


@pytest.fixture
def flagd(tmp_path: Path):
    """Start the flagd in-process file resolver on a path; yields an OpenFeature client factory."""
    started = []

    def start(path: Path):
        api.set_provider(
            FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path))
        )
        client = api.get_client()
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and client.get_boolean_details("__probe__", False).error_code == "PROVIDER_NOT_READY"
        ):
            time.sleep(0.02)
        time.sleep(0.3)
        started.append(True)
        return client

    yield start
    if started:
        api.shutdown()
        api.clear_providers()


def export(repo_root: Path, tmp_path: Path, env: str = "prod") -> tuple[Path, dict[str, Any], list]:
    repo, _ = load_repository(repo_root)
    document, warnings = export_environment(repo, env)
    path = tmp_path / f"{env}.flagd.json"
    path.write_text(json.dumps(document))
    return path, document, warnings


def test_flagd_export__same_variant_as_flagstone_for_every_exported_flag_and_context(
    tmp_path: Path, flagd
) -> None:
    path, document, warnings = export(HERE / "conformance" / "repository", tmp_path)
    left_out = {w.path[0] for w in warnings if w.code == "flagd-unsupported"}
    # the TypeScript runtime's regex and date edge cases (generate.py) have no flagd form either
    unsupported_edges = {
        k for k in VECTORS["bundle"]["flags"] if k.startswith(("edge-regex-", "edge-dates-"))
    }
    assert left_out == {"op-matches", "op-dates", "prereq-child"} | unsupported_edges
    assert {"json-payload", "checkout-flow", "onboarding-flow"} <= set(
        document["flags"]
    )  # layers, consent
    assert left_out.isdisjoint(document["flags"])
    assert all(w.severity == "warning" for w in warnings)
    client = flagd(path)
    ours = Client.from_dict(VECTORS["bundle"])
    compared = errors = 0
    mismatches = []
    for case in VECTORS["flags"]:
        key, ctx = case["flag"], case["context"]
        # Edge cases hold the runtimes to each other; flagd differs on some by design (an
        # empty targeting key, literal dotted keys, whitespace and leading zeros in semver).
        if key not in document["flags"] or case.get("edge"):
            continue
        details = flagd_details(client, key, VECTORS["bundle"]["flags"][key]["variants"], ctx)
        mine = ours.details(key, ctx)
        compared += 1
        if mine.variant is None:
            # The caller's default on both sides, for the same reason (ERROR or DISABLED).
            if (details.variant, str(details.reason).rsplit(".", 1)[-1]) != (None, mine.reason):
                mismatches.append((key, ctx, mine.reason, details.variant, details.reason))
            errors += 1
        elif details.variant != mine.variant:
            mismatches.append((key, ctx, mine.variant, details.variant, details.reason))
    assert compared > 1000
    assert errors > 0
    assert mismatches == [], "\n".join(map(repr, mismatches))


def test_flagd_export__rollout_shares_within_one_point_and_identical_buckets(
    tmp_path: Path, flagd
) -> None:
    flags = (
        "split:\n  variants: {red: red, green: green, blue: blue}\n"
        "  default: {rollout: {red: 20, green: 30, blue: 50}}\n"
    )
    bundle = bundle_from_yaml(tmp_path, flags)
    repo_root = next(tmp_path.glob("repo-*"))
    path, _, warnings = export(repo_root, tmp_path)
    assert warnings == []
    client = flagd(path)
    ours = Client.from_dict(bundle)
    counts = {"red": 0, "green": 0, "blue": 0}
    same = 0
    for i in range(10_000):
        ctx = {"user_id": f"user-{i}"}
        theirs = client.get_string_details("split", "", flagd_context(ctx)).variant
        counts[theirs] += 1
        same += theirs == ours.variant("split", ctx)
    assert same == 10_000  # flagstone buckets exactly as flagd's fractional does
    for variant, share in (("red", 20), ("green", 30), ("blue", 50)):
        assert abs(counts[variant] / 100 - share) <= 1


def test_flagd_export__provider_hot_reloads_a_rewritten_export(tmp_path: Path, flagd) -> None:
    flags = "banner:\n  variants: {old: old, new: new}\n  default: old\n"
    bundle_from_yaml(tmp_path, flags)
    repo_root = next(tmp_path.glob("repo-*"))
    path, _, _ = export(repo_root, tmp_path)
    client = flagd(path)
    assert client.get_string_value("banner", "", EvaluationContext("u1")) == "old"
    flags_file = repo_root / "environments" / "prod" / "flags.yaml"
    flags_file.write_text(flags.replace("default: old", "default: new"))
    repo, _ = load_repository(repo_root)
    document, _ = export_environment(repo, "prod")
    path.write_text(json.dumps(document))
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and client.get_string_value("banner", "", EvaluationContext("u1")) != "new"
    ):
        time.sleep(0.05)
    assert client.get_string_value("banner", "", EvaluationContext("u1")) == "new"


def test_flagd_export__disabled_flags_serve_off_variant_or_the_default(tmp_path: Path) -> None:
    repo, _ = load_repository(HERE / "conformance" / "repository")
    document, _ = export_environment(repo, "prod")
    assert document["flags"]["killed"] == {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
    }
    assert document["flags"]["killed-no-off"]["state"] == "DISABLED"
    assert build_bundle(repo, "prod")["flags"]["killed"]["enabled"] is False


def test_flagd_export__a_running_experiment_with_an_audience__assigns_the_same_arms(
    tmp_path: Path, flagd
) -> None:
    flags = (
        "checkout:\n  variants: {old: old, new: new}\n  targets: {new: [qa-1]}\n  default: old\n"
    )
    experiments = (
        "checkout-test:\n  flag: checkout\n  status: running\n  traffic: 40\n"
        "  audience: {country: {in: [DE, FR]}}\n"
        "  weights: {old: 50, new: 50}\n  metrics: {primary: {name: conversion, kind: proportion}}\n"
    )
    bundle = bundle_from_yaml(tmp_path, flags, experiments=experiments)
    repo_root = next(tmp_path.glob("repo-*"))
    path, _, warnings = export(repo_root, tmp_path)
    assert warnings == []
    client = flagd(path)
    ours = Client.from_dict(bundle)
    enrolled = 0
    for i in range(3000):
        ctx = {"user_id": f"user-{i}", "country": ("DE", "US")[i % 2]}
        theirs = client.get_string_details("checkout", "", flagd_context(ctx)).variant
        assert theirs == ours.variant("checkout", ctx), ctx
        enrolled += ours.assign("checkout-test", ctx) is not None
    assert abs(enrolled / 3000 - 0.2) < 0.03  # 40 % of the half in the audience
    assert (
        client.get_string_details("checkout", "", flagd_context({"user_id": "qa-1"})).variant
        == "new"
    )


def test_flagd_export__dotted_attribute__exported_with_a_warning_naming_the_difference(
    tmp_path: Path, flagd
) -> None:
    path, document, warnings = export(HERE / "conformance" / "repository", tmp_path)
    dotted = {w.path[0]: w for w in warnings if w.code == "flagd-dotted-attribute"}
    assert set(dotted) == {
        "op-nested",
        "json-payload",
    }  # onboarding-flow's consent.experiments is a path in both
    assert "'device.os'" in dotted["op-nested"].message and dotted["op-nested"].line > 0
    versions = {w.path[0]: w for w in warnings if w.code == "flagd-difference"}
    assert {"op-semver", "op-semver-eq"} <= set(versions)
    assert versions["op-semver"].hint.startswith(
        "send 'app_version' as trimmed semver.org versions"
    )
    assert dotted["op-nested"].hint.endswith('{"device": {"os": ...}}')
    assert "op-nested" in document["flags"]
    client = flagd(path)
    ours = Client.from_dict(VECTORS["bundle"])
    nested = {"user_id": "u-1", "device": {"os": "ios"}}
    literal = {"user_id": "u-1", "device.os": "ios"}
    assert (
        client.get_string_details("op-nested", "", flagd_context(nested)).variant
        == ours.variant("op-nested", nested)
        == "ios"
    )
    # The difference the warning names: flagstone reads the literal key, flagd does not.
    assert ours.variant("op-nested", literal) == "ios"
    assert client.get_string_details("op-nested", "", flagd_context(literal)).variant == "other"


def test_flagd_export__installed_provider__is_the_version_documented_as_verified() -> None:
    from importlib.metadata import version

    from flagstone.flagd import FLAGD_VERSION_VERIFIED

    installed = f"openfeature-provider-flagd {version('openfeature-provider-flagd')} (flagd-core {version('openfeature-flagd-core')})"
    assert installed == FLAGD_VERSION_VERIFIED
    assert FLAGD_VERSION_VERIFIED in (HERE.parent / "docs" / "flagd.md").read_text()


def test_flagd_export__flag_bucketed_by_another_unit__targeting_key_stays_the_default_unit(
    tmp_path: Path, flagd
) -> None:
    flags = (
        "team-plan:\n  unit: org_id\n  variants: {on: true, off: false}\n  targets: {on: [org-7]}\n"
        "  rules:\n    - {segment: staff, serve: on}\n    - {when: {plan: team}, serve: {rollout: {on: 30, off: 70}}}\n"
        "  default: off\n"
    )
    segments = "staff:\n  when: {user_id: {in: [u-1, u-2]}}\n"
    bundle = bundle_from_yaml(tmp_path, flags, segments=segments)
    repo_root = next(tmp_path.glob("repo-*"))
    path, document, warnings = export(repo_root, tmp_path)
    assert [(w.code, w.path) for w in warnings] == [("flagd-difference", ("team-plan",))]
    assert "'org_id' sent as a whole-number float (7.0)" in warnings[0].message
    assert warnings[0].hint.startswith("send 'org_id' as a string or an integer")
    assert document["$evaluators"]["staff"] == {"in": [{"var": "targetingKey"}, ["u-1", "u-2"]]}
    client = flagd(path)
    ours = Client.from_dict(bundle)
    served = {True: 0, False: 0}
    for i in range(2000):
        ctx: dict[str, Any] = {
            "user_id": f"u-{i % 5}",
            "org_id": f"org-{i}",
            "plan": ("team", "free")[i % 3 == 0],
        }
        if i % 7 == 3:
            del ctx["org_id"]
        theirs = client.get_boolean_details("team-plan", False, flagd_context(ctx))
        mine = ours.details("team-plan", ctx)
        assert (theirs.variant, theirs.value) == (mine.variant, mine.value), ctx
        served[bool(mine.value)] += 1
    assert min(served.values()) > 100
    assert (
        client.get_boolean_details(
            "team-plan", False, flagd_context({"user_id": "u-9", "org_id": "org-7"})
        ).value
        is True
    )


def test_flagd_export__layered_experiments_with_consent__assign_the_same_arms(
    tmp_path: Path, flagd
) -> None:
    flags = (
        "search:\n  variants: {old: old, new: new}\n  default: old\n"
        "ranking:\n  variants: {a: a, b: b, c: c}\n  default: a\n"
    )
    experiments = (
        "search-test:\n  flag: search\n  status: running\n  traffic: 30\n  layer: discovery\n"
        "  consent: required\n  metrics: {primary: {name: clicks, kind: mean}}\n"
        "ranking-test:\n  flag: ranking\n  status: running\n  traffic: 50\n  layer: discovery\n"
        "  weights: {a: 20, b: 40, c: 40}\n  metrics: {primary: {name: clicks, kind: mean}}\n"
    )
    bundle = bundle_from_yaml(tmp_path, flags, experiments=experiments)
    repo_root = next(tmp_path.glob("repo-*"))
    path, _, warnings = export(repo_root, tmp_path)
    assert warnings == []
    client = flagd(path)
    ours = Client.from_dict(bundle)
    consents: tuple[Any, ...] = (
        True,
        False,
        {"experiments": True},
        {"experiments": 1},
        1,
        "true",
        None,
    )
    enrolled = {"search-test": 0, "ranking-test": 0}
    for i in range(3000):
        ctx = {"user_id": f"user-{i}", "consent": consents[i % len(consents)]}
        for flag, experiment in (("search", "search-test"), ("ranking", "ranking-test")):
            theirs = client.get_string_details(flag, "", flagd_context(ctx)).variant
            assert theirs == ours.variant(flag, ctx), (flag, ctx)
            enrolled[experiment] += ours.assign(experiment, ctx) is not None
    assert enrolled["search-test"] > 200 and enrolled["ranking-test"] > 1200


def test_openfeature_sdk__empty_targeting_key__reaches_the_provider_as_none(
    tmp_path: Path, flagd
) -> None:
    """Why docs/flagd.md tells apps to send a non-empty targeting key: the Python SDK's
    context merge (``ctx2.targeting_key or self.targeting_key``) turns "" into None, so a
    unit flagstone buckets (the empty string) is no unit under flagd."""
    flags = "split:\n  variants: {a: a, b: b}\n  default: {rollout: {a: 50, b: 50}}\n"
    bundle = bundle_from_yaml(tmp_path, flags)
    path, _, _ = export(next(tmp_path.glob("repo-*")), tmp_path)
    client = flagd(path)
    assert Client.from_dict(bundle).details("split", {"user_id": ""}).reason == "SPLIT"
    details = client.get_string_details("split", "fallback", EvaluationContext(""))
    assert (details.value, str(details.reason).rsplit(".", 1)[-1]) == ("fallback", "ERROR")


def test_flagd_export__every_operator_of_the_format__is_exported_or_refused() -> None:
    from flagstone.flagd import EXPORTED_OPERATORS, UNSUPPORTED_OPERATORS
    from flagstone.runtime.format import OPERATORS

    assert EXPORTED_OPERATORS.isdisjoint(UNSUPPORTED_OPERATORS)
    assert EXPORTED_OPERATORS | set(UNSUPPORTED_OPERATORS) == set(OPERATORS)
