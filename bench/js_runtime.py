"""The TypeScript runtime against the JS peer SDKs, and bundle sizes (run by `make bench`).

    .venv/bin/python bench/js_runtime.py [--quick] [--no-write]

Same two workloads and the same 1,000 contexts as bench/runtime.py (the flag with an
ends_with rule, a `country in [...] and plan == pro` rule and a 30 % rollout; a 3-arm
assignment), in Node, against @growthbook/growthbook, @featurevisor/sdk and
@openfeature/flagd-core; rounds interleaved, CPU time per call (process.cpuUsage),
medians reported with each peer's ratio. Sizes are esbuild's minified output, gzipped
(bench/js/build.mjs). The bench-only npm packages live in bench/js/, apart from the test
install.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from runtime import (  # noqa: E402
    EXPERIMENT_YAML,
    FLAG_YAML,
    flagstone_bundle,
    make_contexts,
    write_section,
)

JS = HERE / "js"


def npm_install() -> None:
    if not (JS / "node_modules" / ".package-lock.json").is_file():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS, check=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds (a smoke run)")
    parser.add_argument(
        "--no-write", action="store_true", help="print, do not update docs/benchmarks.md"
    )
    args = parser.parse_args()
    calls, rounds = (20_000, 2) if args.quick else (200_000, 7)
    load_before = os.getloadavg()[0]
    npm_install()
    sizes = json.loads(
        subprocess.run(
            ["node", "build.mjs"], cwd=JS, check=True, capture_output=True, text=True
        ).stdout
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bundle, contexts = tmp / "bundle.json", tmp / "contexts.json"
        bundle.write_text(json.dumps(flagstone_bundle(tmp, FLAG_YAML, EXPERIMENT_YAML)))
        contexts.write_text(json.dumps(make_contexts(1000)))
        run = subprocess.run(
            ["node", "dist/runtime.mjs", str(bundle), str(contexts), str(calls), str(rounds)],
            cwd=JS,
            check=True,
            capture_output=True,
            text=True,
        )
    table = render(json.loads(run.stdout), sizes, (load_before, os.getloadavg()[0]))
    print(table)
    if not args.no_write:
        write_section(table)


def render(result: dict, sizes: list[dict], load: tuple[float, float] = (0.0, 0.0)) -> str:
    sdks = result["sdks"]
    ours = sdks[0]
    lines = [
        "## JavaScript runtime",
        "",
        f"Command: `.venv/bin/python bench/js_runtime.py` (run by `make bench`). Measured {time.strftime('%Y-%m-%d')} on "
        f"{os.cpu_count()} cores, Node {result['node']}; median of {result['rounds']} interleaved rounds of "
        f"{result['calls']:,} calls over bench/runtime.py's 1,000 contexts, after a JIT warm-up, timed as the Node "
        "process's CPU time (user + system, `process.cpuUsage`); "
        f"load average {load[0]:.1f} before and {load[1]:.1f} after (other work on the machine).",
        "",
        "| SDK | flag evaluation (ns) | × flagstone | 3-arm assignment (ns) | × flagstone | share served `on` | arms a/b/c |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for s in sdks:
        arms = "/".join(f"{s['arms'][a]:.1%}" for a in "abc")
        lines.append(
            f"| {s['name']} | {s['flag']:,.0f} | {s['flag'] / ours['flag']:.1f} | {s['assign']:,.0f} | "
            f"{s['assign'] / ours['assign']:.1f} | {s['share']:.1%} | {arms} |"
        )
    peers = sdks[1:]
    fastest_flag = min(peers, key=lambda s: s["flag"])
    fastest_assign = min(peers, key=lambda s: s["assign"])
    lines += [
        "",
        f"Fastest peer on the flag: {fastest_flag['name']}, {fastest_flag['flag'] / ours['flag']:.1f}× flagstone's time. "
        f"Fastest peer on the assignment: {fastest_assign['name']}, {fastest_assign['assign'] / ours['assign']:.1f}× flagstone's time. "
        "Shares differ by a point or so because each SDK hashes units its own way; the flag and the split are the same.",
        "",
        "Bundle sizes (esbuild, minified for browsers, gzip -9; `bench/js/build.mjs`): what a page",
        "downloads up front, and what a dynamic import fetches later (flagstone's async paths on the",
        "first `watch()` or `load()`, the parts they import for a bundle that uses them, the",
        "signature check only when a public key is set). The core is `import { Client }` without",
        "the parts (dates, semver, regex, experiments, prerequisites, consent counts): flags with",
        "targets, rules, rollouts and the comparison operators. The second row adds experiments;",
        "`/full` has every part up front. The last row is the whole client: every chunk a page",
        "polling a signed bundle that uses every part ends up with.",
        "",
        "| package (entry) | minified | min + gzip | loaded later (gzip) |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {s['name']} | {kb(s['minified'])} | {kb(s['gzip'])} | "
        + (kb(s["lazyGzip"]) if s["lazyGzip"] else "-")
        + " |"
        for s in sizes
    ]
    core = sizes[0]
    react = next(s for s in sizes if s["name"].startswith("@flagstone/client/react"))
    lines.append(
        f"| @flagstone/client, all of it (async paths, parts, signature check) | "
        f"{kb(core['minified'] + core['lazyMinified'])} | {kb(core['gzip'] + core['lazyGzip'])} | - |"
    )
    lines += [
        "",
        f"Goals (KB = 1,024 B): the core at most 4 KB min + gzip, {goal(core['gzip'], CORE_GOAL)}; "
        f"the React part at most 1.5 KB, {goal(react['gzip'], REACT_GOAL)}.",
        "",
    ]
    return "\n".join(lines)


CORE_GOAL, REACT_GOAL = 4 * 1024, 1536


def goal(size: int, limit: int) -> str:
    return f"{size:,} B, " + ("met" if size <= limit else f"{size - limit:,} B over: unmet")


def kb(n: int) -> str:
    """Kilobytes to one decimal and the exact bytes (goals are in bytes)."""
    return f"{n / 1024:.1f} KB ({n:,} B)"


if __name__ == "__main__":
    main()
