"""Analytics count right and lose nothing: exact counts under threads, exposures through
every evaluation path (once per unit), flushing at exit, bounded memory, a stuck sink."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from flagstone.bundle import dump_bundle
from flagstone.runtime import Analytics, Client, MemorySink
from tests.runtime_helpers import bundle_from_yaml

FLAGS = """\
checkout:
  variants: {on: true, off: false}
  rules: [{when: {plan: pro}, serve: on}]
  default: {rollout: {on: 50, off: 50}}
layout:
  variants: {control: grid, list: list}
  default: control
"""
EXPERIMENTS = """\
layout-test:
  flag: layout
  status: running
  weights: {control: 50, list: 50}
  dimensions: [country, platform, email]
  metrics: {primary: {name: clicks, kind: proportion}}
"""


def bundle(tmp_path: Path, pii: list[str] | None = None) -> dict:
    raw = bundle_from_yaml(tmp_path, FLAGS, experiments=EXPERIMENTS)
    if pii is not None:
        raw["pii"] = pii
    return raw


def analytics_client(tmp_path: Path, **options) -> tuple[Client, MemorySink]:
    sink = MemorySink()
    pii = options.pop("pii", None)
    analytics = Analytics(
        sink, interval=options.pop("interval", 3600), pseudonym_key="k", **options
    )
    return Client.from_dict(bundle(tmp_path, pii), analytics=analytics), sink


def counts(sink: MemorySink) -> Counter:
    out: Counter = Counter()
    for r in sink.records:
        if r["type"] == "evaluations":
            out[(r["flag"], r["variant"], r["reason"])] += r["count"]
    return out


@pytest.mark.slow  # 4 x 1,000,000 evaluations: about 4 s on a quiet machine
def test_counts__four_threads_counting_while_flushes_race__flushed_counts_are_exact(
    tmp_path,
) -> None:
    client, sink = analytics_client(tmp_path, interval=0.005)  # flushes race the counting
    per_thread = 1_000_000
    contexts = [{"user_id": f"u{i}", "plan": "pro" if i % 3 == 0 else "free"} for i in range(1000)]

    def work() -> None:
        variant = client.variant
        for i in range(per_thread):
            variant("checkout", contexts[i % 1000])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    total = counts(sink)
    assert sum(total.values()) == 4 * per_thread
    assert total[("checkout", "on", "RULE_MATCH")] == 4 * sum(
        1 for i in range(per_thread) if (i % 1000) % 3 == 0
    )
    assert sum(r["type"] == "evaluations" for r in sink.records) > 4  # flushed in many windows


def test_counts__record_the_real_reason_on_every_path(tmp_path) -> None:
    client, sink = analytics_client(tmp_path)
    client.value("checkout", {})  # the default rollout needs a unit: ERROR
    client.enabled("checkout", {"plan": "pro"})  # RULE_MATCH
    client.variant("nope", {})
    client.details("checkout", {"user_id": "u1"})
    client.value("checkout", None)  # not a mapping
    client.flush()
    reasons = {(flag, reason) for flag, _, reason in counts(sink)}
    assert reasons == {
        ("checkout", "ERROR"),
        ("checkout", "RULE_MATCH"),
        ("nope", "FLAG_NOT_FOUND"),
        ("checkout", "SPLIT"),
    }


def exposures(sink: MemorySink) -> list[dict]:
    return [r for r in sink.records if r["type"] == "exposure"]


def test_exposures__every_path_that_serves_an_arm__once_per_unit(tmp_path) -> None:
    from openfeature.evaluation_context import EvaluationContext

    from flagstone.runtime.openfeature import FlagstoneProvider

    client, sink = analytics_client(tmp_path)
    provider = FlagstoneProvider(client)
    paths = {
        "variant": lambda ctx: client.variant("layout", ctx),
        "value": lambda ctx: client.value("layout", ctx),
        "enabled": lambda ctx: client.enabled("layout", ctx),
        "details": lambda ctx: client.details("layout", ctx),
        "assign": lambda ctx: client.assign("layout-test", ctx),
        "openfeature": lambda ctx: provider.resolve_string_details(
            "layout", "x", EvaluationContext(ctx["user_id"], {"country": "DE"})
        ),
    }
    for name, evaluate in paths.items():
        for _ in range(3):  # repeats are deduplicated
            evaluate({"user_id": f"{name}-user", "country": "DE"})
    client.flush()
    logged = Counter(r["experiment"] for r in exposures(sink))
    assert logged == {"layout-test": len(paths)}
    assert len({r["unit"] for r in exposures(sink)}) == len(paths)


def test_exposure_record__is_the_shared_contract_with_dimensions_and_no_pii(tmp_path) -> None:
    client, sink = analytics_client(tmp_path, pii=["platform"])
    arm = client.assign(
        "layout-test",
        {"user_id": "u-1", "country": "DE", "platform": "ios", "email": "ann@example.com"},
    )
    client.flush()
    (record,) = exposures(sink)
    assert set(record) == {
        "type",
        "experiment",
        "arm",
        "unit",
        "flag",
        "environment",
        "ts",
        "dimensions",
    }
    assert (record["experiment"], record["arm"], record["flag"], record["environment"]) == (
        "layout-test",
        arm,
        "layout",
        "prod",
    )
    assert record["unit"] != "u-1" and len(record["unit"]) == 32  # HMAC-SHA256, hex
    assert isinstance(record["ts"], float) and abs(record["ts"] - time.time()) < 60
    # platform is PII in the bundle: never written, though the experiment declares it.
    assert record["dimensions"] == {"country": "DE", "email": "ann@example.com"}


def test_pii_from_the_repository__never_reaches_the_bundle_dimensions(tmp_path) -> None:
    import shutil

    from flagstone.bundle import build_bundle
    from flagstone.load import load_repository

    raw = bundle_from_yaml(tmp_path, FLAGS, experiments=EXPERIMENTS)
    root = sorted(tmp_path.glob("repo-*"))[-1]
    settings = root / "flagstone.yaml"
    settings.write_text(settings.read_text() + "privacy:\n  pii: [email]\n")
    repo, _ = load_repository(root)
    built = build_bundle(repo, "prod")
    assert raw["experiments"]["layout-test"]["dimensions"] == ["country", "platform", "email"]
    assert built["experiments"]["layout-test"]["dimensions"] == ["country", "platform"]
    assert built["pii"] == ["email"]
    shutil.rmtree(root)


def test_exposures__pseudonymized_on_the_writer_thread(tmp_path) -> None:
    client, sink = analytics_client(tmp_path, interval=0.01)
    threads: set[str] = set()
    pseudonym = client.analytics.pseudonym

    def recording(unit: str) -> str:
        threads.add(threading.current_thread().name)
        return pseudonym(unit)

    client.analytics.pseudonym = recording
    for i in range(50):
        client.assign("layout-test", {"user_id": f"u{i}"})
    deadline = time.monotonic() + 5
    while len(exposures(sink)) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(exposures(sink)) == 50
    assert threads == {"flagstone-analytics"}
    client.close()


def test_queue__bounded_drop_oldest_with_a_dropped_counter(tmp_path) -> None:
    client, sink = analytics_client(tmp_path, max_queue=10)
    for i in range(100):
        client.assign("layout-test", {"user_id": f"u{i}"})
    assert client.analytics.dropped == 90
    client.flush()
    assert len(exposures(sink)) == 10


def test_close__honours_its_timeout_when_the_sink_is_stuck(tmp_path) -> None:
    release = threading.Event()

    class StuckSink(MemorySink):
        def write(self, records) -> None:
            release.wait(30)

    analytics = Analytics(StuckSink(), interval=0.01, pseudonym_key="k")
    client = Client.from_dict(bundle(tmp_path), analytics=analytics)
    client.assign("layout-test", {"user_id": "u1"})
    time.sleep(0.1)  # the writer thread is now stuck in write()
    client.assign("layout-test", {"user_id": "u2"})
    started = time.monotonic()
    client.close(timeout=0.5)
    assert time.monotonic() - started < 2.0
    release.set()


PROGRAM = """
import sys
from flagstone.runtime import Client
client = Client.from_file(sys.argv[1], analytics_file=sys.argv[2], pseudonym_key="k", flush_interval=3600)
for i in range(1000):
    client.assign("layout-test", {{"user_id": f"u{{i}}"}})
    client.variant("checkout", {{"plan": "pro"}})
{ending}
"""


def run_program(tmp_path: Path, ending: str) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    path = tmp_path / "prod.json"
    path.write_bytes(dump_bundle(bundle(tmp_path)))
    out = tmp_path / "events.jsonl"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROGRAM.format(ending=ending)), str(path), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return result, lines


def test_subprocess__normal_exit__has_written_every_event(tmp_path) -> None:
    result, records = run_program(tmp_path, "")
    assert result.returncode == 0, result.stderr
    assert sum(r["type"] == "exposure" for r in records) == 1000
    assert sum(r["count"] for r in records if r["type"] == "evaluations") == 1000


def test_subprocess__system_exit__has_written_every_event(tmp_path) -> None:
    result, records = run_program(tmp_path, "raise SystemExit(3)")
    assert result.returncode == 3, result.stderr
    assert sum(r["type"] == "exposure" for r in records) == 1000
    assert sum(r["count"] for r in records if r["type"] == "evaluations") == 1000
