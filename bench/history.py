"""`flagstone history` on a long history: 5,000 commits, one key's audit and the whole
audit log in under 3 s.

    make bench            # or: .venv/bin/python bench/history.py [--commits 5000] [--no-write]

Builds the repository with `git fast-import` (seconds): three environments of 50 flags,
each commit ramping one flag in one environment, every seventh commit touching only a
README (so the walk must find each commit's real parent), then times `flagstone history`
for a flag, for a config key and with no key (median of 3 runs, the real CLI in a
subprocess).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "history"
FLAGS = 50
ENVS = ("dev", "staging", "prod")


def flags_text(pcts: list[int]) -> str:
    return "".join(
        f"flag-{i:03d}:\n  description: Flag {i}\n  variants: {{on: true, off: false}}\n"
        f"  rules:\n    - when: {{plan: pro}}\n      serve: on\n"
        f"  default: {{rollout: {{on: {p}, off: {100 - p}}}}}\n"
        for i, p in enumerate(pcts)
    )


def build(commits: int) -> Path:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(WORK)], check=True)
    rnd = random.Random(7)
    state = {env: [0] * FLAGS for env in ENVS}
    timeout = {env: 1000 for env in ENVS}
    stream = []

    def data(text: str) -> str:
        raw = text.encode()
        return f"data {len(raw)}\n{text}\n"

    when = 1_700_000_000
    for n in range(commits):
        env = ENVS[n % 3]
        files: dict[str, str] = {}
        if n == 0:
            files["flagstone.yaml"] = "version: 1\nenvironments: [dev, staging, prod]\n"
            for e in ENVS:
                files[f"environments/{e}/flags.yaml"] = flags_text(state[e])
                files[f"environments/{e}/config.yaml"] = f"api:\n  timeout_ms: {timeout[e]}\n"
        elif n % 7 == 0:
            files["README.md"] = f"# bench configuration, revision {n}\n"
        elif n % 10 == 0:
            timeout[env] += 10
            files[f"environments/{env}/config.yaml"] = f"api:\n  timeout_ms: {timeout[env]}\n"
        else:
            flag = rnd.randrange(FLAGS)
            state[env][flag] = (state[env][flag] + 5) % 100
            files[f"environments/{env}/flags.yaml"] = flags_text(state[env])
        when += 60
        message = f"change {n}"
        stream.append(
            f"commit refs/heads/main\nauthor Bench <bench@example.test> {when} +0000\n"
            f"committer Bench <bench@example.test> {when} +0000\n{data(message)}"
        )
        for path, text in files.items():
            stream.append(f"M 100644 inline {path}\n{data(text)}")
        stream.append("\n")
    subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=WORK, input="".join(stream).encode(), check=True
    )
    subprocess.run(["git", "checkout", "-q", "-f", "main"], cwd=WORK, check=True)
    return WORK


def time_command(args: list[str], cwd: Path, runs: int = 3) -> tuple[float, float, str]:
    """Median wall time, median CPU time (the CLI and its git children: steadier than wall
    time on a shared machine) and the output."""
    import resource

    exe = str(Path(sys.executable).parent / "flagstone")
    times, cpus, output = [], [], ""
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        output = result.stdout
    return statistics.median(times), statistics.median(cpus), output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commits", type=int, default=5000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    repo = build(args.commits)
    built = time.perf_counter() - started
    count = subprocess.run(
        ["git", "rev-list", "--count", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    flag_time, flag_cpu, flag_out = time_command(
        ["history", "flag-007", "--env", "prod", "--format", "json"], repo
    )
    config_time, config_cpu, _ = time_command(
        ["history", "api.timeout_ms", "--format", "json"], repo
    )
    all_envs_time, all_envs_cpu, _ = time_command(["history", "flag-007", "--format", "json"], repo)
    audit_time, audit_cpu, audit_out = time_command(["history", "--format", "json"], repo)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import json

    entries = len(json.loads(flag_out)["entries"])
    audit_entries = len(json.loads(audit_out)["entries"])
    section = "\n".join(
        [
            "## History",
            "",
            f"Command: `.venv/bin/python bench/history.py` (run by `make bench`). Measured {time.strftime('%Y-%m-%d')} on "
            f"{os.cpu_count()} cores, Python {platform.python_version()}; a repository of {count} commits over three "
            f"environments of {FLAGS} flags, every seventh commit outside them (built with git fast-import in {built:.1f} s); median of 3 runs of the real CLI; "
            f"load average {load:.1f} while measuring (CPU time is the steadier number on a shared machine).",
            "",
            "| query | time | CPU | goal |",
            "|---|---:|---:|---:|",
            f"| `flagstone history flag-007 --env prod` ({entries} changes found) | {flag_time:.2f} s | {flag_cpu:.2f} s | < 3 s |",
            f"| `flagstone history flag-007` (every environment) | {all_envs_time:.2f} s | {all_envs_cpu:.2f} s | < 3 s |",
            f"| `flagstone history api.timeout_ms` (a config key) | {config_time:.2f} s | {config_cpu:.2f} s | < 3 s |",
            f"| `flagstone history` (the audit log: {audit_entries} changes of every key) | {audit_time:.2f} s | {audit_cpu:.2f} s | < 3 s |",
            "",
        ]
    )
    print(section)
    if not args.no_write:
        sys.path.insert(0, str(Path(__file__).parent))
        from runtime import write_section

        write_section(section)


if __name__ == "__main__":
    main()
