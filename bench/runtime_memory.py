"""Runtime memory and load benchmark: a 10,000-flag bundle, loaded and reloaded 100 times.

    .venv/bin/python bench/runtime_memory.py [--quick] [--no-write]

The bundle (about 4 MB) has 200 segments and 10,000 flags, each with a segment rule, an
attribute rule with a rollout, a default rollout and, for a quarter, a target. Memory is
what `tracemalloc` sees retained (after a full collection); the baseline is the same
file held as parsed JSON (`json.loads`), which is what a runtime keeping its bundle's
JSON would retain at least. Load time is compared with `json.loads` of the same bytes,
the floor any JSON runtime pays. Each reload alternates between two versions of the
bundle in which every flag changed (nothing reusable), or one flag changed (a ramp).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from flagstone.bundle import content_hash, dump_bundle  # noqa: E402
from flagstone.runtime import Client  # noqa: E402
from flagstone.runtime.loader import load_bundle_bytes  # noqa: E402


def synthetic_bundle(
    flags: int, version: int = 0, ramp_only: bool = False, distinct: bool = False
) -> bytes:
    """``distinct``: no two flags' attribute rules alike (nothing for compiling to share)."""
    segments = {
        f"seg-{i}": {
            "when": {
                "all": [
                    {"attr": "country", "op": "in", "value": ["DE", "FR", "NL"][: 1 + i % 3]},
                    {"attr": "age", "op": "gt", "value": 18 + i % 5},
                ]
            }
        }
        for i in range(200)
    }
    out = {}
    for i in range(flags):
        shift = version if (not ramp_only or i == 0) else 0
        end = (i * 7 + shift) % 100 * 100
        rollout = [{"variant": "on", "end": end}, {"variant": "off", "end": 10000}]
        out[f"feature-{i:05d}"] = {
            "variants": {"on": True, "off": False},
            "enabled": True,
            "unit": "user_id",
            "salt": f"feature-{i:05d}",
            "prerequisites": [],
            "targets": {f"user-{i}": "on"} if i % 4 == 0 else {},
            "rules": [
                {"when": {"segment": f"seg-{i % 200}"}, "serve": {"variant": "on"}},
                {
                    "when": {
                        "attr": "plan",
                        "op": "eq",
                        "value": f"pro-{i}" if distinct else "pro",
                    },
                    "serve": {"rollout": rollout},
                },
            ],
            "default": {"rollout": rollout},
        }
    bundle: dict[str, Any] = {
        "format": "flagstone-bundle",
        "version": 1,
        "project": "bench",
        "environment": "prod",
        "source": {"commit": None, "dirty": False},
        "default_unit": "user_id",
        "flags": out,
        "segments": segments,
        "experiments": {},
        "config": {},
    }
    bundle["hash"] = content_hash(bundle)
    return dump_bundle(bundle)


def retained(build: Any) -> tuple[Any, float]:
    """(the object built, MiB it retains), measured by tracemalloc after a collection."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    obj = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return obj, (after - before) / 2**20


def best_ms(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    reloads, rounds = (10, 2) if args.quick else (100, 5)
    load_before = os.getloadavg()[0]
    data = [synthetic_bundle(10_000, v) for v in range(2)]
    ramps = [synthetic_bundle(10_000, v, ramp_only=True) for v in range(2)]
    json_ms = best_ms(lambda: json.loads(data[0]), rounds)
    load_ms = best_ms(lambda: load_bundle_bytes(data[0]), rounds)
    _, json_mib = retained(lambda: json.loads(data[0]))
    client, load_mib = retained(lambda: Client.from_bytes(data[0]))
    ctx = {"user_id": "u-1", "country": "DE", "age": 30, "plan": "pro"}
    keys = list(client.bundle.flags)
    del client
    evaluated, evaluated_mib = retained(lambda: _evaluated(data[0], keys, ctx))
    del evaluated
    distinct = synthetic_bundle(10_000, distinct=True)
    evaluated, distinct_mib = retained(lambda: _evaluated(distinct, keys, ctx))
    del evaluated
    samples: dict[str, list[float]] = {"every flag changed": [], "one flag changed": []}
    for name, versions in (("every flag changed", data), ("one flag changed", ramps)):
        gc.collect()
        tracemalloc.start()
        live = Client.from_bytes(versions[0])
        for key in keys[:1000]:
            live.variant(key, ctx)
        for i in range(reloads):
            live.swap(live.load(versions[(i + 1) % 2]))
            for key in keys[:1000]:  # the app keeps evaluating its hot flags
                live.variant(key, ctx)
            gc.collect()
            samples[name].append(tracemalloc.get_traced_memory()[0] / 2**20)
        tracemalloc.stop()
        del live
    table = render(
        len(data[0]),
        json_ms,
        load_ms,
        json_mib,
        load_mib,
        (evaluated_mib, distinct_mib),
        samples,
        reloads,
        (load_before, os.getloadavg()[0]),
    )
    print(table)
    if not args.no_write:
        sys.path.insert(0, str(ROOT / "bench"))
        from runtime import write_section

        write_section(table)


def _evaluated(data: bytes, keys: list[str], ctx: dict[str, Any]) -> Client:
    client = Client.from_bytes(data)
    for key in keys:
        client.variant(key, ctx)
    return client


def render(
    size: int,
    json_ms: float,
    load_ms: float,
    json_mib: float,
    load_mib: float,
    evaluated_mib: tuple[float, float],
    samples: dict[str, list[float]],
    reloads: int,
    load_average: tuple[float, float],
) -> str:
    lines = [
        "## Runtime memory and load",
        "",
        f"Command: `.venv/bin/python bench/runtime_memory.py` (run by `make bench`). Measured {time.strftime('%Y-%m-%d')} on "
        f"{os.cpu_count()} cores, Python {platform.python_version()}: a synthetic 10,000-flag bundle of {size / 1e6:.1f} MB "
        "(200 segments; per flag a segment rule, an attribute rule with a rollout, a default rollout, a target for one in four). "
        f"Load average {load_average[0]:.1f} at the start, {load_average[1]:.1f} at the end.",
        "",
        "| what | flagstone | baseline | × baseline |",
        "|---|---:|---:|---:|",
        f"| load (parse, check, prepare), best of runs | {load_ms:.0f} ms | `json.loads` of the file: {json_ms:.0f} ms | {load_ms / json_ms:.2f} |",
        f"| retained after load | {load_mib:.1f} MiB | the parsed JSON: {json_mib:.1f} MiB | {load_mib / json_mib:.2f} |",
        f"| retained with every flag evaluated once (all compiled) | {evaluated_mib[0]:.1f} MiB | the parsed JSON: {json_mib:.1f} MiB | {evaluated_mib[0] / json_mib:.2f} |",
        f"| the same, no two flags' attribute rules alike (nothing shared) | {evaluated_mib[1]:.1f} MiB | the parsed JSON: {json_mib:.1f} MiB | {evaluated_mib[1] / json_mib:.2f} |",
    ]
    for name, values in samples.items():
        first, last = values[0], values[-1]
        lines.append(
            f"| traced memory over {reloads} reloads, {name}, 1,000 hot flags evaluated after each | "
            f"first {first:.1f} MiB, last {last:.1f} MiB, max {max(values):.1f} MiB | median {statistics.median(values):.1f} MiB | {last / first:.2f} (last / first) |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
