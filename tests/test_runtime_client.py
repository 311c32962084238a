from __future__ import annotations

import json
import time
from pathlib import Path

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent
from openfeature.flag_evaluation import Reason

from flagstone.bundle import dump_bundle
from flagstone.runtime import Client, MemorySink
from flagstone.runtime.openfeature import FlagstoneProvider
from tests.runtime_helpers import bundle_from_yaml

FLAGS = """
    dark-mode:
      variants: {on: true, off: false}
      targets: {on: [user-1]}
      default: off
    layout:
      variants:
        grid: {columns: 3}
        list: {columns: 1}
      default: list
    onboarding:
      variants: {control: long, short: short}
      default: control
"""
EXPERIMENTS = """
    onboarding-test:
      flag: onboarding
      status: running
      consent: required
      metrics: {primary: {name: d7, kind: proportion}}
"""
CONFIG = "api:\n  timeout_ms: 800\n  base_url: https://api.example\n  token: ENC[AES256_GCM,data:xyz,iv:abc,tag:def,type:str]\n"


def test_client__api_surface(tmp_path: Path) -> None:
    client = Client.from_dict(bundle_from_yaml(tmp_path, FLAGS, config=CONFIG))
    assert client.variant("dark-mode", {"user_id": "user-1"}) == "on"
    assert client.enabled("dark-mode", {"user_id": "user-1"}) is True
    assert client.enabled("dark-mode", {"user_id": "user-2"}) is False
    assert client.enabled("missing", {}, default=True) is True
    assert client.value("layout", {}) == {"columns": 1}
    assert client.config("api.timeout_ms") == 800
    assert client.config("api.missing", 5) == 5
    assert client.config("api.token") is None  # secrets stay out of bundles by default


def test_analytics__exposures_are_pseudonymized_and_counts_flushed(tmp_path: Path) -> None:
    sink = MemorySink()
    client = Client.from_dict(
        bundle_from_yaml(tmp_path, FLAGS, experiments=EXPERIMENTS),
        sink=sink,
        pseudonym_key="pepper",
        flush_interval=3600,
    )
    arms = [
        client.assign("onboarding-test", {"user_id": f"person-{i}", "consent": True})
        for i in range(20)
    ]
    assert client.assign("onboarding-test", {"user_id": "no-consent"}) is None
    for _ in range(3):
        client.variant("dark-mode", {"user_id": "user-1"})
    client.flush()
    exposures = [r for r in sink.records if r["type"] == "exposure"]
    assert [e["arm"] for e in exposures] == arms
    text = json.dumps(sink.records)
    assert "person-" not in text and "no-consent" not in text
    assert len({e["unit"] for e in exposures}) == 20
    counts = [r for r in sink.records if r["type"] == "evaluations"]
    assert counts == [
        {
            "type": "evaluations",
            "flag": "dark-mode",
            "variant": "on",
            "reason": "TARGET_MATCH",
            "count": 3,
            "from": counts[0]["from"],
            "to": counts[0]["to"],
        }
    ]
    client.close()


def test_analytics__same_key_same_pseudonym_across_clients(tmp_path: Path) -> None:
    bundle = bundle_from_yaml(tmp_path, FLAGS, experiments=EXPERIMENTS)
    ids = []
    for _ in range(2):
        sink = MemorySink()
        with Client.from_dict(bundle, sink=sink, pseudonym_key="pepper") as client:
            client.assign("onboarding-test", {"user_id": "alice", "consent": True})
        ids.append(sink.records[0]["unit"])
    assert ids[0] == ids[1] and ids[0] != "alice"


def test_analytics__json_lines_file_sink(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "exposures.jsonl"
    with Client.from_dict(
        bundle_from_yaml(tmp_path, FLAGS, experiments=EXPERIMENTS),
        analytics_file=log,
        pseudonymize=False,
    ) as client:
        client.assign("onboarding-test", {"user_id": "alice", "consent": True})
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert rows[0]["type"] == "exposure" and rows[0]["unit"] == "alice"


def test_openfeature_provider__resolves_through_the_standard_api_and_emits_on_reload(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prod.json"
    path.write_bytes(dump_bundle(bundle_from_yaml(tmp_path, FLAGS)))
    client = Client.from_file(path, watch=True)
    events = []
    api.set_provider(FlagstoneProvider(client))
    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, events.append)
    try:
        of = api.get_client()
        details = of.get_boolean_details("dark-mode", False, EvaluationContext("user-1"))
        assert (details.value, details.variant, details.reason) == (
            True,
            "on",
            Reason.TARGETING_MATCH,
        )
        assert of.get_object_value("layout", {}, EvaluationContext("u")) == {"columns": 1}
        assert of.get_string_details("dark-mode", "x").error_code == "TYPE_MISMATCH"
        assert of.get_boolean_details("missing", True).error_code == "FLAG_NOT_FOUND"
        path.write_bytes(
            dump_bundle(bundle_from_yaml(tmp_path, FLAGS.replace("default: off", "default: on")))
        )
        deadline = time.monotonic() + 2
        while not events and time.monotonic() < deadline:
            time.sleep(0.005)
        assert events and events[0].flags_changed == ["dark-mode"]
        assert of.get_boolean_value("dark-mode", False, EvaluationContext("user-9")) is True
    finally:
        api.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, events.append)
        api.clear_providers()
        client.close()
