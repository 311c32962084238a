"""`make test` as CI runs it: a fresh clone, CI=true, a cold uv cache; the goal is well
under five minutes on a 2-core machine.

    make bench            # or: .venv/bin/python bench/ci_time.py [--no-write]

Clones the committed HEAD into a temporary folder (uncommitted changes are not measured),
runs `CI=true make test` there with an empty UV_CACHE_DIR (npm keeps its own cache, as a CI
runner's usually does), time-stamps every line it prints and reads the phases off them:
the set-up (venv, uv, the Python install, ruff, beside the Debian packages and npm ci),
mypy beside pytest, then the TypeScript suite. CPU is user + system time of make and every
process it started.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_make_test(clone: Path, uv_cache: Path) -> tuple[list[tuple[float, str]], float, float, int]:
    env = {**os.environ, "CI": "true", "UV_CACHE_DIR": str(uv_cache)}
    lines: list[tuple[float, str]] = []
    cpu = children_cpu()
    start = time.monotonic()
    process = subprocess.Popen(
        ["make", "test"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert process.stdout is not None
    for line in process.stdout:
        lines.append((time.monotonic() - start, line.rstrip("\n")))
    status = process.wait()
    return lines, time.monotonic() - start, children_cpu() - cpu, status


def first(lines: list[tuple[float, str]], pattern: str) -> float:
    return next(t for t, line in lines if re.search(pattern, line))


def phases(lines: list[tuple[float, str]], total: float) -> list[tuple[str, float]]:
    installed = first(lines, r"^touch \.venv/\.installed")
    # The mypy + pytest step prints each target's output when it ends (--output-sync), so
    # the set-up ends with the last line printed before mypy's or pytest's first one.
    second = next(
        i for i, (_, line) in enumerate(lines) if re.search(r"bin/mypy$|compileall", line)
    )
    setup_end = lines[second - 1][0]
    python_end = first(lines, r"\d+ passed")
    js_start = first(lines, r"npx tsc")
    found = re.search(r" in ([\d.]+)s", _line(lines, r"\d+ passed"))
    pytest_wall = float(found.group(1)) if found else float("nan")
    return [
        ("venv, uv and the Python install (beside Debian packages and npm ci)", installed),
        ("the rest of the set-up: ruff, npm ci", setup_end - installed),
        ("mypy beside pytest", python_end - setup_end),
        ("  of which pytest (as it reports)", pytest_wall),
        ("TypeScript: tsc, Vitest, build and smoke", total - js_start),
        ("total", total),
    ]


def _line(lines: list[tuple[float, str]], pattern: str) -> str:
    return next(line for _, line in lines if re.search(pattern, line))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--no-write", action="store_true", help="print, do not update docs/benchmarks.md"
    )
    args = parser.parse_args()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="flagstone-ci-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
        load_before = os.getloadavg()[0]
        lines, total, cpu, status = run_make_test(clone, Path(tmp) / "uv-cache")
        load_after = os.getloadavg()[0]
    if status != 0:
        sys.exit("make test failed:\n" + "\n".join(line for _, line in lines[-40:]))
    tests = _line(lines, r"\d+ passed").strip()
    rows = "\n".join(f"| {name} | {seconds:.1f} |" for name, seconds in phases(lines, total))
    section = f"""## make test on a fresh clone

Command: `.venv/bin/python bench/ci_time.py` (run by `make bench`). Measured {time.strftime("%Y-%m-%d")} on {os.cpu_count()} cores, Python {platform.python_version()}, commit {head}: `CI=true make test` in a fresh clone with a cold uv cache, one run; load average {load_before:.1f} before, {load_after:.1f} after (wall time swings with the load of a shared machine; CPU does less). Goal: well under 300 s on a 2-core CI machine.

| phase | wall s |
|---|---:|
{rows}

CPU (user + system, make and every process it started): {cpu:.0f} s. pytest: {tests}.
"""
    print(section)
    if not args.no_write:
        sys.path.insert(0, str(Path(__file__).parent))
        from runtime import write_section

        write_section(section)


if __name__ == "__main__":
    main()
