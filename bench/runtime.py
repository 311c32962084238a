"""Runtime benchmark: flagstone against the peer Python SDKs, same workload, same run.

    make bench            # or: .venv/bin/python bench/runtime.py [--quick]

Workload 1 (flag): an e-mail ends_with rule, a `country in [...] and plan == pro` rule,
then a 30 % rollout, evaluated for the same 1,000 contexts by every SDK.
Workload 2 (assignment): a 3-arm experiment (34/33/33) for the same contexts.
Reload: a 1,000-flag bundle rewritten on disk; time until the new bundle is live.
Rounds are interleaved (A B C ... A B C ...) and the median per SDK is reported, with
each peer's ratio to flagstone; the machine's noise hits every SDK alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from flagstone.bundle import build_bundle, dump_bundle  # noqa: E402
from flagstone.load import load_repository  # noqa: E402
from flagstone.runtime import Client  # noqa: E402

COUNTRIES = ["DE", "FR", "NL", "US", "GB", "JP", "BR"]
PLANS = ["free", "pro", "team"]


def make_contexts(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        email = f"person{i}@isometry.app" if i % 10 == 0 else f"person{i}@example.com"
        out.append(
            {
                "user_id": f"user-{i}",
                "email": email,
                "country": COUNTRIES[i % 7],
                "plan": PLANS[i % 3],
            }
        )
    return out


FLAG_YAML = """\
checkout:
  variants: {on: true, off: false}
  rules:
    - when: {email: {ends_with: "@isometry.app"}}
      serve: on
    - when: {country: {in: [DE, FR, NL]}, plan: pro}
      serve: on
  default: {rollout: {on: 30, off: 70}}
onboarding:
  variants: {a: a, b: b, c: c}
  default: a
"""
EXPERIMENT_YAML = """\
onboarding-test:
  flag: onboarding
  status: running
  weights: {a: 34, b: 33, c: 33}
  metrics: {primary: {name: m, kind: proportion}}
"""


def flagstone_bundle(tmp: Path, flags: str, experiments: str = "{}\n") -> dict[str, Any]:
    root = tmp / f"repo-{time.perf_counter_ns()}"
    (root / "environments" / "prod").mkdir(parents=True)
    (root / "flagstone.yaml").write_text("environments: [prod]\n")
    (root / "environments" / "prod" / "flags.yaml").write_text(flags)
    (root / "environments" / "prod" / "experiments.yaml").write_text(experiments)
    repo, _ = load_repository(root)
    return build_bundle(repo, "prod")


# --- the SDKs, each set up for both workloads -------------------------------------------

Evaluator = Callable[[dict[str, Any]], Any]


def setup_flagstone(tmp: Path) -> tuple[Evaluator, Evaluator, str]:
    client = Client.from_dict(flagstone_bundle(tmp, FLAG_YAML, EXPERIMENT_YAML))
    variant, assign = client.variant, client.assign
    return (
        (lambda ctx: variant("checkout", ctx) == "on"),
        (lambda ctx: assign("onboarding-test", ctx)),
        "flagstone",
    )


def setup_growthbook(tmp: Path) -> tuple[Evaluator, Evaluator, str]:
    from growthbook import GrowthBook

    features = {
        "checkout": {
            "defaultValue": False,
            "rules": [
                {"condition": {"email": {"$regex": "@isometry\\.app$"}}, "force": True},
                {
                    "condition": {"country": {"$in": ["DE", "FR", "NL"]}, "plan": "pro"},
                    "force": True,
                },
                {"coverage": 0.3, "force": True, "hashAttribute": "user_id"},
            ],
        },
        "onboarding": {
            "defaultValue": "a",
            "rules": [
                {
                    "key": "onboarding-test",
                    "variations": ["a", "b", "c"],
                    "weights": [0.34, 0.33, 0.33],
                    "hashAttribute": "user_id",
                }
            ],
        },
    }
    gb = GrowthBook(attributes={}, features=features)

    def flag(ctx: dict[str, Any]) -> Any:
        gb.set_attributes(ctx)
        return gb.is_on("checkout")

    def arm(ctx: dict[str, Any]) -> Any:
        gb.set_attributes(ctx)
        return gb.get_feature_value("onboarding", "a")

    return flag, arm, "growthbook"


def setup_featurevisor(tmp: Path) -> tuple[Evaluator, Evaluator, str]:
    from featurevisor import create_featurevisor

    datafile = {
        "schemaVersion": "2",
        "revision": "1",
        "segments": {
            "staff": {
                "key": "staff",
                "conditions": [
                    {"attribute": "email", "operator": "endsWith", "value": "@isometry.app"}
                ],
            },
            "eu-pro": {
                "key": "eu-pro",
                "conditions": [
                    {"attribute": "country", "operator": "in", "value": ["DE", "FR", "NL"]},
                    {"attribute": "plan", "operator": "equals", "value": "pro"},
                ],
            },
        },
        "features": {
            "checkout": {
                "key": "checkout",
                "bucketBy": "user_id",
                "traffic": [
                    {"key": "staff", "segments": ["staff"], "percentage": 100000},
                    {"key": "eu-pro", "segments": ["eu-pro"], "percentage": 100000},
                    {"key": "everyone", "segments": "*", "percentage": 30000},
                ],
            },
            "onboarding": {
                "key": "onboarding",
                "bucketBy": "user_id",
                "variations": [{"value": "a"}, {"value": "b"}, {"value": "c"}],
                "traffic": [
                    {
                        "key": "everyone",
                        "segments": "*",
                        "percentage": 100000,
                        "allocation": [
                            {"variation": "a", "range": [0, 34000]},
                            {"variation": "b", "range": [34000, 67000]},
                            {"variation": "c", "range": [67000, 100000]},
                        ],
                    }
                ],
            },
        },
    }
    f = create_featurevisor({"datafile": datafile, "logLevel": "error"})
    return (
        (lambda ctx: f.is_enabled("checkout", ctx)),
        (lambda ctx: f.get_variation("onboarding", ctx)),
        "featurevisor",
    )


def setup_flagsmith(tmp: Path) -> tuple[Evaluator, Evaluator, str]:
    from flag_engine.engine import get_evaluation_result

    on = {"key": "1", "name": "checkout", "enabled": True, "value": True, "priority": 1}

    def segment(name: str, conditions: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "key": name,
            "name": name,
            "rules": [{"type": "ALL", "conditions": conditions}],
            "overrides": [dict(on)],
        }

    segments = {
        "staff": segment(
            "staff", [{"property": "email", "operator": "REGEX", "value": ".*@isometry\\.app$"}]
        ),
        "eu-pro": segment(
            "eu-pro",
            [
                {"property": "country", "operator": "IN", "value": ["DE", "FR", "NL"]},
                {"property": "plan", "operator": "EQUAL", "value": "pro"},
            ],
        ),
        "rollout": segment(
            "rollout",
            [{"property": "$.identity.key", "operator": "PERCENTAGE_SPLIT", "value": "30"}],
        ),
    }
    features = {"checkout": {"key": "1", "name": "checkout", "enabled": False, "value": False}}
    multivariate = {
        "onboarding": {
            "key": "2",
            "name": "onboarding",
            "enabled": True,
            "value": "a",
            "variants": [
                {"value": "a", "weight": 34, "priority": 0},
                {"value": "b", "weight": 33, "priority": 1},
                {"value": "c", "weight": 33, "priority": 2},
            ],
        }
    }

    def context(ctx: dict[str, Any], feats: dict[str, Any], segs: dict[str, Any]) -> dict[str, Any]:
        uid = ctx["user_id"]
        traits = {k: v for k, v in ctx.items() if k != "user_id"}
        return {
            "environment": {"key": "env", "name": "prod"},
            "identity": {"identifier": uid, "key": uid, "traits": traits},
            "segments": segs,
            "features": feats,
        }

    def flag(ctx: dict[str, Any]) -> Any:
        return get_evaluation_result(context(ctx, features, segments))["flags"]["checkout"][
            "enabled"
        ]

    def arm(ctx: dict[str, Any]) -> Any:
        return get_evaluation_result(context(ctx, multivariate, {}))["flags"]["onboarding"]["value"]

    return flag, arm, "flagsmith-flag-engine"


def setup_unleash(tmp: Path) -> tuple[Evaluator, Evaluator, str]:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    cache = FileCache("bench", directory=tempfile.mkdtemp(dir=tmp))
    cache.bootstrap_from_dict(
        {
            "version": 1,
            "features": [
                {
                    "name": "checkout",
                    "enabled": True,
                    "strategies": [
                        {
                            "name": "default",
                            "constraints": [
                                {
                                    "contextName": "email",
                                    "operator": "STR_ENDS_WITH",
                                    "values": ["@isometry.app"],
                                }
                            ],
                        },
                        {
                            "name": "default",
                            "constraints": [
                                {
                                    "contextName": "country",
                                    "operator": "IN",
                                    "values": ["DE", "FR", "NL"],
                                },
                                {"contextName": "plan", "operator": "IN", "values": ["pro"]},
                            ],
                        },
                        {
                            "name": "flexibleRollout",
                            "parameters": {
                                "rollout": "30",
                                "stickiness": "userId",
                                "groupId": "checkout",
                            },
                        },
                    ],
                },
                {
                    "name": "onboarding",
                    "enabled": True,
                    "strategies": [{"name": "default"}],
                    "variants": [
                        {
                            "name": "a",
                            "weight": 340,
                            "stickiness": "userId",
                            "weightType": "variable",
                        },
                        {
                            "name": "b",
                            "weight": 330,
                            "stickiness": "userId",
                            "weightType": "variable",
                        },
                        {
                            "name": "c",
                            "weight": 330,
                            "stickiness": "userId",
                            "weightType": "variable",
                        },
                    ],
                },
            ],
        }
    )
    client = UnleashClient(
        url="http://127.0.0.1:9",
        app_name="bench",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
        refresh_interval=3600,
    )
    client.initialize_client(fetch_toggles=False)

    def unleash_context(ctx: dict[str, Any]) -> dict[str, Any]:
        return {
            "userId": ctx["user_id"],
            "properties": {k: v for k, v in ctx.items() if k != "user_id"},
        }

    contexts: dict[int, dict[str, Any]] = {}

    def converted(ctx: dict[str, Any]) -> dict[str, Any]:
        # Converted once per context object so the timing is Unleash's, not ours.
        key = id(ctx)
        if key not in contexts:
            contexts[key] = unleash_context(ctx)
        return contexts[key]

    return (
        (lambda ctx: client.is_enabled("checkout", converted(ctx))),
        (lambda ctx: client.get_variant("onboarding", converted(ctx))["name"]),
        "UnleashClient",
    )


def setup_flagd(tmp: Path) -> tuple[Evaluator, Evaluator, str]:
    from openfeature import api
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType
    from openfeature.evaluation_context import EvaluationContext

    path = tmp / "flagd.json"
    path.write_text(
        json.dumps(
            {
                "flags": {
                    "checkout": {
                        "state": "ENABLED",
                        "variants": {"on": True, "off": False},
                        "defaultVariant": "off",
                        "targeting": {
                            "if": [
                                {"ends_with": [{"var": "email"}, "@isometry.app"]},
                                "on",
                                {
                                    "and": [
                                        {"in": [{"var": "country"}, ["DE", "FR", "NL"]]},
                                        {"==": [{"var": "plan"}, "pro"]},
                                    ]
                                },
                                "on",
                                {"fractional": [["on", 30], ["off", 70]]},
                            ]
                        },
                    },
                    "onboarding": {
                        "state": "ENABLED",
                        "variants": {"a": "a", "b": "b", "c": "c"},
                        "defaultVariant": "a",
                        "targeting": {"fractional": [["a", 34], ["b", 33], ["c", 33]]},
                    },
                }
            }
        )
    )
    api.set_provider(
        FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path))
    )
    client = api.get_client()
    deadline = time.monotonic() + 10
    while (
        client.get_boolean_details("checkout", False, EvaluationContext("probe")).reason == "ERROR"
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    time.sleep(0.5)
    contexts: dict[int, EvaluationContext] = {}

    def converted(ctx: dict[str, Any]) -> EvaluationContext:
        key = id(ctx)
        if key not in contexts:
            contexts[key] = EvaluationContext(
                ctx["user_id"], {k: v for k, v in ctx.items() if k != "user_id"}
            )
        return contexts[key]

    return (
        (lambda ctx: client.get_boolean_value("checkout", False, converted(ctx))),
        (lambda ctx: client.get_string_value("onboarding", "a", converted(ctx))),
        "openfeature-provider-flagd (in-process)",
    )


SETUPS = [
    setup_flagstone,
    setup_growthbook,
    setup_featurevisor,
    setup_flagsmith,
    setup_unleash,
    setup_flagd,
]


def time_per_call(fn: Evaluator, contexts: list[dict[str, Any]], calls: int) -> float:
    n = len(contexts)
    started = time.perf_counter_ns()
    for i in range(calls):
        fn(contexts[i % n])
    return (time.perf_counter_ns() - started) / calls


def reload_bundles(tmp: Path, every_flag: bool) -> list[bytes]:
    """Two 1,000-flag bundles to alternate. ``every_flag``: the second changes all 1,000
    flags (nothing can be reused); otherwise one flag's rollout, as a typical ramp does."""

    def flags(version: int) -> str:
        plan = f"pro-{version}" if every_flag else "pro"
        return "".join(
            f"flag-{i:04d}:\n  variants: {{on: true, off: false}}\n"
            f"  rules:\n    - when: {{country: {{in: [DE, FR]}}, plan: {plan}}}\n      serve: on\n"
            f"  default: {{rollout: {{on: {(i + (version if i == 500 else 0)) % 100}, "
            f"off: {100 - (i + (version if i == 500 else 0)) % 100}}}}}\n"
            for i in range(1000)
        )

    return [dump_bundle(flagstone_bundle(tmp, flags(v))) for v in range(2)]


def reload_latency(
    tmp: Path,
    bundles: list[bytes],
    samples: int,
    *,
    threads: int,
    floor: bool = False,
    cooperative: bool = True,
) -> list[float]:
    """Milliseconds from the atomic rename of a new 1,000-flag bundle to its swap into the
    client (timestamped by an on_change listener). ``threads``: that many other threads
    evaluate flags the whole time. ``cooperative``: the client's default, evaluating
    threads take part in the reload; False: the watcher's thread alone (the design before).
    ``floor``: time instead a thread that polls the file's stat as the watcher does (every
    2 ms) and only notes the change: what waking up and taking the GIL back costs."""
    import threading

    path = tmp / "prod.json"
    path.write_bytes(bundles[0])
    client = Client.from_file(path, watch=not floor, cooperative_reload=cooperative)
    swapped = threading.Event()
    swapped_at = [0.0]

    def on_change(new: object, old: object) -> None:
        swapped_at[0] = time.perf_counter()
        swapped.set()

    stop = threading.Event()
    if floor:
        first_seen = path.stat().st_ino  # before the thread starts: the first rename is news

        def poll_stat() -> None:
            seen = first_seen
            while not stop.wait(0.002):
                ino = path.stat().st_ino
                if ino != seen:
                    seen = ino
                    on_change(None, None)

        threading.Thread(target=poll_stat, daemon=True).start()
    else:
        client.on_change(on_change)

    def evaluate() -> None:
        contexts = make_contexts(100)
        variant = client.variant
        while not stop.is_set():
            for ctx in contexts:
                variant("flag-0007", ctx)

    workers = [threading.Thread(target=evaluate, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    latencies = []
    try:
        for i in range(samples):
            swapped.clear()
            tmp_file = tmp / "prod.json.tmp"
            tmp_file.write_bytes(bundles[(i + 1) % 2])
            started = time.perf_counter()
            tmp_file.replace(path)
            if not swapped.wait(30):
                status = client.status
                raise SystemExit(
                    f"a reload did not happen within 30 s (floor={floor}, threads={threads}, "
                    f"sample {i}): {status.state} {status.last_error}"
                )
            latencies.append((swapped_at[0] - started) * 1000)
            time.sleep(0.02)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
        client.close()
    return latencies


# (label, threads, floor, cooperative), measured in interleaved rounds.
RELOAD_ROWS: list[tuple[str, int, bool, bool]] = [
    (kind, threads, kind == "floor", kind != "watcher")
    for threads in (0, 1, 4)
    for kind in ("every", "watcher", "one", "floor")
    if not (kind == "one" and threads == 1)
]


def reload_rows(tmp: Path, samples: int, rounds: int) -> dict[tuple[str, int], list[float]]:
    """Every row's samples, taken ``samples // rounds`` at a time, row after row, round
    after round: the machine's noise reaches each row alike."""
    bundles = {True: reload_bundles(tmp, True), False: reload_bundles(tmp, False)}
    kinds = ["every", "watcher", "one", "floor"]
    rows = sorted(RELOAD_ROWS, key=lambda row: (kinds.index(row[0]), row[1]))
    out: dict[tuple[str, int], list[float]] = {(kind, t): [] for kind, t, *_ in rows}
    per_round = max(1, samples // rounds)
    for _ in range(rounds):
        for kind, threads, floor, cooperative in RELOAD_ROWS:
            out[(kind, threads)] += reload_latency(
                tmp,
                bundles[kind != "one"],
                per_round,
                threads=threads,
                floor=floor,
                cooperative=cooperative,
            )
    return out


LOAD_STEPS = (  # the stages of LoadTask, in order
    "split into flag texts",
    "schema check without flags",
    "segments and experiments",
    "flags: typed decode and checks",
    "assembly",
)


def load_step_cpu(bundles: list[bytes], loads: int) -> dict[str, float]:
    """Median CPU per step of a load (``LoadTask`` in runtime/loader.py, run by one thread,
    ``time.thread_time_ns``), each load replacing a bundle in which every flag differs,
    20 ms apart: where an idle reload's time goes, beside the wall time the reload rows
    measure."""
    from flagstone.runtime.loader import LoadTask, collector_paused

    previous = Client.from_bytes(bundles[0]).bundle
    spent: dict[str, list[float]] = {name: [] for name in (*LOAD_STEPS, "total")}
    for i in range(loads):
        task = LoadTask(bundles[(i + 1) % 2], previous=previous, free_later=True)
        per_step = [0] * len(LOAD_STEPS)
        with collector_paused():
            while not task.done:
                stage = min(task._stage, len(LOAD_STEPS) - 1)
                started = time.thread_time_ns()
                task._step()
                per_step[stage] += time.thread_time_ns() - started
        previous = task.result()
        previous.leftovers.clear()
        time.sleep(0.02)  # as between the reload rows' reloads (caches go cold meanwhile)
        for name, ns in zip(LOAD_STEPS, per_step, strict=True):
            spent[name].append(ns / 1e6)
        spent["total"].append(sum(per_step) / 1e6)
    return {name: statistics.median(values) for name, values in spent.items()}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds (a smoke run)")
    parser.add_argument(
        "--no-write", action="store_true", help="print, do not update docs/benchmarks.md"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    calls, rounds, samples = (2_000, 2, 8) if args.quick else (20_000, 5, 40)
    load_before = os.getloadavg()[0]
    contexts = make_contexts(1000)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sdks = []
        for setup in SETUPS:
            try:
                flag, arm, name = setup(tmp)
            except Exception as e:  # a peer that cannot start is reported, never silently dropped
                print(
                    f"{setup.__name__}: could not start ({type(e).__name__}: {e})", file=sys.stderr
                )
                continue
            share = sum(bool(flag(c)) for c in contexts) / len(contexts)
            sdks.append((name, flag, arm, share))
        results: dict[str, dict[str, list[float]]] = {
            name: {"flag": [], "assign": []} for name, *_ in sdks
        }
        for _ in range(rounds):
            for name, flag, arm, _share in sdks:
                results[name]["flag"].append(time_per_call(flag, contexts, calls))
                results[name]["assign"].append(time_per_call(arm, contexts, calls))
        reloads = reload_rows(tmp, samples, 4)
        steps = load_step_cpu(reload_bundles(tmp, True), samples)
        analytics_rows = assignment_with_analytics(tmp, contexts, calls, rounds)
    table = render(
        sdks,
        results,
        reloads,
        calls,
        rounds,
        analytics_rows,
        (load_before, os.getloadavg()[0]),
        steps,
    )
    print(table)
    if not args.no_write:
        write_section(table)


def assignment_with_analytics(
    tmp: Path, contexts: list[dict[str, Any]], calls: int, rounds: int
) -> dict[str, float]:
    """ns per `assign()` (and per `variant()` of the experiment's flag) with analytics off
    and on (a memory sink; exposures deduplicated per unit, pseudonymized on the writer)."""
    from flagstone.runtime import Analytics, MemorySink

    raw = flagstone_bundle(tmp, FLAG_YAML, EXPERIMENT_YAML)
    off = Client.from_dict(raw)
    on = Client.from_dict(raw, analytics=Analytics(MemorySink(), interval=0.5, pseudonym_key="k"))
    out: dict[str, list[float]] = {
        "assign, analytics off": [],
        "assign, analytics on": [],
        "flag evaluation, analytics off": [],
        "flag evaluation, analytics on": [],
    }
    for _ in range(rounds):
        out["assign, analytics off"].append(
            time_per_call(lambda c: off.assign("onboarding-test", c), contexts, calls)
        )
        out["assign, analytics on"].append(
            time_per_call(lambda c: on.assign("onboarding-test", c), contexts, calls)
        )
        out["flag evaluation, analytics off"].append(
            time_per_call(lambda c: off.variant("checkout", c), contexts, calls)
        )
        out["flag evaluation, analytics on"].append(
            time_per_call(lambda c: on.variant("checkout", c), contexts, calls)
        )
    on.close()
    return {k: statistics.median(v) for k, v in out.items()}


def render(
    sdks: list[tuple[str, Any, Any, float]],
    results: dict[str, dict[str, list[float]]],
    reloads: dict[tuple[str, int], list[float]],
    calls: int,
    rounds: int,
    analytics_rows: dict[str, float] | None = None,
    load_average: tuple[float, float] | None = None,
    steps: dict[str, float] | None = None,
) -> str:
    median = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    ours = median["flagstone"]
    peers = {k: v for k, v in median.items() if k != "flagstone"}
    lines = [
        "## Runtime",
        "",
        f"Command: `.venv/bin/python bench/runtime.py` (run by `make bench`). Measured {time.strftime('%Y-%m-%d')} on "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; median of {rounds} interleaved rounds of "
        f"{calls:,} calls over the same 1,000 contexts"
        + (
            f"; load average {load_average[0]:.1f} at the start, {load_average[1]:.1f} at the end."
            if load_average
            else "."
        ),
        "",
        "| SDK | flag evaluation (ns) | × flagstone | 3-arm assignment (ns) | × flagstone | share served `on` |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, _f, _a, share in sdks:
        m = median[name]
        lines.append(
            f"| {name} | {m['flag']:,.0f} | {m['flag'] / ours['flag']:.1f} | {m['assign']:,.0f} | "
            f"{m['assign'] / ours['assign']:.1f} | {share:.1%} |"
        )
    if peers:
        fastest_flag = min(peers.items(), key=lambda kv: kv[1]["flag"])
        fastest_assign = min(peers.items(), key=lambda kv: kv[1]["assign"])
        lines += [
            "",
            f"Fastest peer on the flag: {fastest_flag[0]}, {fastest_flag[1]['flag'] / ours['flag']:.1f}× flagstone's time. "
            f"Fastest peer on the assignment: {fastest_assign[0]}, {fastest_assign[1]['assign'] / ours['assign']:.1f}× flagstone's time.",
        ]
    samples = len(next(iter(reloads.values())))
    lines += [
        "",
        f"Hot reload of a 1,000-flag bundle: atomic rename → new bundle live, timestamped by an `on_change` "
        f"listener, {samples} reloads per row:",
        "",
        "| new bundle | while the app | p50 | p95 | max |",
        "|---|---|---:|---:|---:|",
    ]
    labels = {
        "every": "every flag changed",
        "watcher": "every flag changed, `cooperative_reload=False` (the watcher's thread alone)",
        "one": "one flag changed",
        "floor": "floor: a thread polling the file's stat, no load",
    }
    for (kind, threads), values in reloads.items():
        busy = (
            "is idle"
            if threads == 0
            else f"evaluates flags on {threads} other thread{'s' if threads > 1 else ''} without pause"
        )
        lines.append(
            f"| {labels[kind]} | {busy} | "
            f"{percentile(values, 50):.1f} ms | {percentile(values, 95):.1f} ms | {max(values):.1f} ms |"
        )
    if steps:
        idle = percentile(reloads[("every", 0)], 50) if ("every", 0) in reloads else None
        lines += [
            "",
            f"CPU per step of the load, every flag changed (median of {samples} loads on one thread, "
            "20 ms apart, `time.thread_time`):",
            "",
            "| " + " | ".join((*LOAD_STEPS, "total")) + " |",
            "|" + "---:|" * (len(LOAD_STEPS) + 1),
            "| " + " | ".join(f"{steps[name]:.1f} ms" for name in (*LOAD_STEPS, "total")) + " |",
        ]
        if idle is not None:
            lines += [
                "",
                f"Idle, the median reload took {idle:.1f} ms from the rename to the listener, "
                f"{idle - steps['total']:.1f} ms more than the load's CPU: the watcher's poll "
                "interval (2 ms, so 1 ms on average), reading the file, the swap and the listener call, and on a busy machine the wait for a core.",
            ]
    if analytics_rows:
        base_assign = analytics_rows["assign, analytics off"]
        base_flag = analytics_rows["flag evaluation, analytics off"]
        lines += [
            "",
            "Analytics on the hot path (1,000 units, each exposure logged once per unit; counts per thread; HMAC on the writer thread):",
            "",
            "| call | ns | × analytics off |",
            "|---|---:|---:|",
        ]
        for name, ns in analytics_rows.items():
            base = base_assign if name.startswith("assign") else base_flag
            lines.append(f"| {name} | {ns:,.0f} | {ns / base:.2f} |")
    lines.append("")
    return "\n".join(lines)


def write_section(section: str) -> None:
    """Replace this benchmark's section of docs/benchmarks.md, keeping the others."""
    path = ROOT / "docs" / "benchmarks.md"
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nEvery number here comes from one command, run on the same machine in one go; ratios compare tools measured in the same run.\n\n"
    )
    heading = section.splitlines()[0]
    if heading in text:
        start = text.index(heading)
        rest = text[start + len(heading) :]
        end = rest.find("\n## ")
        text = text[:start] + section.rstrip("\n") + ("\n" + rest[end:] if end != -1 else "\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    main()
