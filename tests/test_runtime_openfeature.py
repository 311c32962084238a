"""The OpenFeature provider, one test per specification requirement it implements.

Requirements are numbered as in the OpenFeature specification (openfeature.dev/specification):
section 2 (providers), 3 (evaluation context), 5 (events) and 1.6 (shutdown). Each test
drives the real SDK (``openfeature-sdk``) through ``api`` and a client, as an app does.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.provider import ProviderStatus

from flagstone.bundle import dump_bundle
from flagstone.runtime import Client
from flagstone.runtime.openfeature import FlagstoneProvider
from tests.runtime_helpers import bundle_from_yaml

FLAGS = """\
checkout:
  variants: {on: true, off: false}
  targets: {on: [u-target]}
  rules: [{when: {country: DE}, serve: on}]
  default: {rollout: {on: 50, off: 50}}
org-rollout:
  variants: {on: true, off: false}
  unit: org_id
  default: {rollout: {on: 50, off: 50}}
gated:
  variants: {on: true, off: false}
  off_variant: off
  prerequisites: [{flag: checkout, variant: on}]
  default: on
killed:
  variants: {on: true, off: false}
  enabled: false
  default: on
ratio:
  variants: {whole: 3, half: 0.5}
  rules: [{when: {plan: pro}, serve: half}]
  default: whole
theme:
  variants: {dark: {bg: black}, light: {bg: white}}
  default: dark
label:
  variants: {a: hello}
  default: a
"""


@pytest.fixture
def bundle_path(tmp_path: Path) -> Path:
    path = tmp_path / "prod.json"
    path.write_bytes(dump_bundle(bundle_from_yaml(tmp_path, FLAGS)))
    return path


@pytest.fixture
def of_client(bundle_path: Path):
    provider = FlagstoneProvider(Client.from_file(bundle_path, watch=True))
    api.set_provider_and_wait(provider)
    yield api.get_client(), provider
    api.shutdown()
    api.clear_providers()


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_req_2_1_1__metadata_has_a_name(of_client) -> None:
    assert api.get_provider_metadata().name == "flagstone"


def test_req_2_2_1__every_typed_resolution(of_client) -> None:
    client, _ = of_client
    ctx = EvaluationContext("u-target")
    assert client.get_boolean_value("checkout", False, ctx) is True
    assert client.get_string_value("label", "", ctx) == "hello"
    assert client.get_integer_value("ratio", 0, ctx) == 3
    assert client.get_float_value("ratio", 0.0, EvaluationContext("u", {"plan": "pro"})) == 0.5
    assert client.get_object_value("theme", {}, ctx) == {"bg": "black"}


def test_req_2_2_3__normal_execution__value_is_the_resolved_value(of_client) -> None:
    client, _ = of_client
    details = client.get_boolean_details(
        "checkout", False, EvaluationContext("u-1", {"country": "DE"})
    )
    assert details.value is True


def test_req_2_2_4__normal_execution__variant_names_the_value(of_client) -> None:
    client, _ = of_client
    details = client.get_boolean_details(
        "checkout", True, EvaluationContext("u-1", {"country": "DE"})
    )
    assert details.variant == "on"


def test_req_2_2_5__reason_says_why(of_client) -> None:
    client, _ = of_client
    reason = lambda key, ctx: client.get_boolean_details(key, False, ctx).reason  # noqa: E731
    assert reason("checkout", EvaluationContext("u-target")) == "TARGETING_MATCH"
    assert reason("checkout", EvaluationContext("u-1", {"country": "DE"})) == "TARGETING_MATCH"
    assert reason("checkout", EvaluationContext("u-1")) == "SPLIT"
    assert reason("killed", EvaluationContext("u-1")) == "DISABLED"
    assert client.get_string_details("label", "", EvaluationContext("u")).reason == "DEFAULT"


def test_req_2_2_5__failed_prerequisite__its_own_reason(of_client) -> None:
    client, _ = of_client
    unit = next(
        f"u-{i}"
        for i in range(100)
        if not client.get_boolean_value("checkout", True, EvaluationContext(f"u-{i}"))
    )
    details = client.get_boolean_details("gated", True, EvaluationContext(unit))
    assert (details.value, details.variant, details.reason) == (False, "off", "PREREQUISITE_FAILED")
    assert details.error_code is None


def test_req_2_2_6__normal_execution__no_error_code(of_client) -> None:
    client, _ = of_client
    details = client.get_boolean_details("checkout", False, EvaluationContext("u-1"))
    assert details.error_code is None and details.error_message is None


def test_req_2_2_7__flag_not_found__error_code_and_default(of_client) -> None:
    client, _ = of_client
    details = client.get_boolean_details("nope", True, EvaluationContext("u-1"))
    assert (details.value, details.error_code, details.reason) == (
        True,
        ErrorCode.FLAG_NOT_FOUND,
        "ERROR",
    )


def test_req_2_2_7__wrong_type__type_mismatch(of_client) -> None:
    client, _ = of_client
    details = client.get_string_details("checkout", "x", EvaluationContext("u-1"))
    assert (details.value, details.error_code) == ("x", ErrorCode.TYPE_MISMATCH)


def test_req_2_2_7__float_lookup_of_an_integer__returns_a_float(of_client) -> None:
    client, _ = of_client
    details = client.get_float_details("ratio", 0.0, EvaluationContext("u-1"))
    assert details.value == 3.0 and type(details.value) is float and details.error_code is None


def test_req_2_2_7__no_targeting_key_for_a_rollout__targeting_key_missing(of_client) -> None:
    client, _ = of_client
    details = client.get_boolean_details(
        "checkout", True, EvaluationContext(None, {"country": "FR"})
    )
    assert (details.value, details.error_code) == (True, ErrorCode.TARGETING_KEY_MISSING)


def test_req_2_2_7__flag_bucketed_by_another_unit_missing__invalid_context(of_client) -> None:
    client, _ = of_client
    details = client.get_boolean_details("org-rollout", True, EvaluationContext("u-1"))
    assert details.error_code == ErrorCode.INVALID_CONTEXT


def test_req_2_2_7__refused_bundle_at_start__parse_error(tmp_path: Path) -> None:
    path = tmp_path / "prod.json"
    path.write_bytes(b'{"format": "flagstone-bundle", "version": 1, "flags": []}')
    events = []
    api.add_handler(ProviderEvent.PROVIDER_ERROR, events.append)
    try:
        api.set_provider(FlagstoneProvider.from_file(path))
        assert wait_for(lambda: events)
        assert events[0].error_code == ErrorCode.PARSE_ERROR
        assert "flags" in (events[0].message or "")
        assert api.get_client().get_provider_status() == ProviderStatus.ERROR
    finally:
        api.remove_handler(ProviderEvent.PROVIDER_ERROR, events.append)
        api.shutdown()
        api.clear_providers()


def test_req_2_2_9__flag_metadata_says_what_flagstone_decided(of_client) -> None:
    client, provider = of_client
    details = client.get_boolean_details(
        "checkout", False, EvaluationContext("u-1", {"country": "DE"})
    )
    assert details.flag_metadata["flagstone_reason"] == "RULE_MATCH"
    assert details.flag_metadata["rule"] == 0
    assert details.flag_metadata["bundle"] == provider.client.bundle.hash


def test_req_3_1_1__targeting_key_is_the_default_unit_and_wins_over_the_attribute(
    of_client,
) -> None:
    client, provider = of_client
    flagstone = provider.client
    for i in range(50):
        expected = flagstone.variant("checkout", {"user_id": f"u-{i}"})
        got = client.get_boolean_details(
            "checkout", False, EvaluationContext(f"u-{i}", {"user_id": "someone-else"})
        )
        assert got.variant == expected


def test_req_3_1_1__other_unit_attributes_are_passed_as_given(of_client) -> None:
    client, provider = of_client
    for i in range(50):
        expected = provider.client.variant("org-rollout", {"org_id": f"org-{i}"})
        got = client.get_boolean_details(
            "org-rollout", False, EvaluationContext("person", {"org_id": f"org-{i}"})
        )
        assert got.variant == expected  # the person's id never becomes the org's id


def test_req_5_1_1__reload__configuration_changed_with_the_flags_that_changed(
    of_client, bundle_path, tmp_path
) -> None:
    events = []
    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, events.append)
    try:
        changed = FLAGS.replace("variants: {a: hello}", "variants: {a: bonjour}")
        new = bundle_path.with_suffix(".tmp")
        new.write_bytes(dump_bundle(bundle_from_yaml(tmp_path, changed)))
        new.replace(bundle_path)
        assert wait_for(lambda: events)
        assert events[0].flags_changed == ["label"]
    finally:
        api.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, events.append)


def test_req_5_1_1__refused_reload_error__missing_file_stale__recovery_ready(
    of_client, bundle_path
) -> None:
    client, _ = of_client
    seen: list[tuple[str, object]] = []
    lock = threading.Lock()

    def record(name):
        def handler(details):
            with lock:
                seen.append((name, details))

        return handler

    handlers = {
        event: record(event.name)
        for event in (
            ProviderEvent.PROVIDER_ERROR,
            ProviderEvent.PROVIDER_STALE,
            ProviderEvent.PROVIDER_READY,
        )
    }
    for event, handler in handlers.items():
        client.add_handler(event, handler)
    good = bundle_path.read_bytes()
    try:
        seen.clear()  # READY handlers run at once for a ready provider (5.3.3)
        tmp = bundle_path.with_suffix(".tmp")
        tmp.write_bytes(b'{"format": "flagstone-bundle", "version": 7}')
        tmp.replace(bundle_path)
        assert wait_for(lambda: any(n == "PROVIDER_ERROR" for n, _ in seen))
        error = next(d for n, d in seen if n == "PROVIDER_ERROR")
        assert error.error_code == ErrorCode.PARSE_ERROR and "version 7" in error.message  # 5.1.4
        assert client.get_provider_status() == ProviderStatus.ERROR
        assert (
            client.get_string_value("label", "", EvaluationContext("u")) == "hello"
        )  # still serving
        bundle_path.unlink()
        assert wait_for(lambda: any(n == "PROVIDER_STALE" for n, _ in seen))
        assert wait_for(lambda: client.get_provider_status() == ProviderStatus.STALE)
        tmp.write_bytes(good)
        tmp.replace(bundle_path)
        assert wait_for(lambda: any(n == "PROVIDER_READY" for n, _ in seen))
        assert wait_for(lambda: client.get_provider_status() == ProviderStatus.READY)
    finally:
        for event, handler in handlers.items():
            client.remove_handler(event, handler)


def test_req_1_6_1__api_shutdown__stops_the_reload_thread(bundle_path) -> None:
    provider = FlagstoneProvider(Client.from_file(bundle_path, watch=True))
    api.set_provider_and_wait(provider)
    watchers = lambda: [t for t in threading.enumerate() if t.name.startswith("flagstone-watch")]  # noqa: E731
    assert watchers()
    api.shutdown()
    api.clear_providers()
    assert wait_for(lambda: not watchers())
