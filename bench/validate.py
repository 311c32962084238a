"""`flagstone validate`/`build` against `featurevisor lint`/`build` on the same workload, one run.

    make bench            # or: .venv/bin/python bench/validate.py [--runs 5] [--no-write]

Generates the anchor workload (2,000 features, 200 segments, 50 attributes, three
environments; ../shared/anchors/featurevisor_workload.py, v1 dialect) and the same
workload in flagstone's format (bench/workload.py), installs @featurevisor/cli@1.11.1
with npm into bench/.work (once), then times each command N times, alternating tools,
and reports median wall time, peak RSS (/usr/bin/time) and the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
FV_CLI = "@featurevisor/cli@1.11.1"
sys.path.insert(0, str(Path(__file__).parent))

import workload  # noqa: E402


def prepare() -> tuple[Path, Path, Path]:
    fs_dir, fv_dir = WORK / "flagstone", WORK / "featurevisor"
    # Time what an installed package runs: bytecode compiled once. Under
    # PYTHONDONTWRITEBYTECODE a stale .pyc is recompiled on every start (~0.15 s).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    workload.generate(fs_dir)
    subprocess.run(["git", "init", "-q", str(fs_dir)], check=True)
    subprocess.run(
        [sys.executable, str(workload.ANCHORS), str(fv_dir), "--dialect", "v1"],
        check=True,
        capture_output=True,
    )
    cli_dir = WORK / "featurevisor-cli"
    binary = cli_dir / "node_modules" / ".bin" / "featurevisor"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("npm is needed to install Featurevisor's CLI for the comparison")
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cli_dir), FV_CLI],
            check=True,
            capture_output=True,
        )
    # Featurevisor resolves its config and plugins from the project's node_modules.
    link = fv_dir / "node_modules"
    if not link.exists():
        link.symlink_to(cli_dir / "node_modules")
    return fs_dir, fv_dir, binary


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, int, float]:
    """(wall seconds, peak RSS in MB, CPU seconds: user + system of the run and every
    process it started) of one run, through /usr/bin/time when present."""
    time_bin = Path("/usr/bin/time")
    prefix = [str(time_bin), "-f", "%M"] if time_bin.exists() else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [*prefix, *cmd], cwd=cwd, capture_output=True, text=True, env=env and {**os.environ, **env}
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode not in (0,):
        raise SystemExit(
            f"{' '.join(cmd)} failed in {cwd}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    rss = int(result.stderr.strip().splitlines()[-1]) // 1024 if prefix else 0
    return elapsed, rss, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    fs_dir, fv_dir, fv = prepare()
    flagstone = str(Path(sys.executable).parent / "flagstone")
    build_cmd = [flagstone, "build", "--all", "--out", "dist"]
    # task -> (flagstone's command, its environment, Featurevisor's command)
    pairs: dict[str, tuple[list[str], dict[str, str] | None, list[str]]] = {
        "validate / lint": ([flagstone, "validate"], None, [str(fv), "lint"]),
        "build (all environments)": (build_cmd, None, [str(fv), "build"]),
        "build, one process (FLAGSTONE_JOBS=1)": (
            build_cmd,
            {"FLAGSTONE_JOBS": "1"},
            [str(fv), "build"],
        ),
    }
    results: dict[str, dict[str, list[tuple[float, int, float]]]] = {
        k: {"flagstone": [], "featurevisor": []} for k in pairs
    }
    startup: list[float] = []
    load_before = os.getloadavg()[0]
    for _ in range(args.runs):
        for name, (ours, env, theirs) in pairs.items():
            results[name]["flagstone"].append(timed(ours, fs_dir, env))
            results[name]["featurevisor"].append(timed(theirs, fv_dir))
        startup.append(timed([flagstone, "--help"], fs_dir)[0])
    check_bundles(fs_dir / "dist")
    load = f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    lines = [
        "## Validate and build",
        "",
        f"Command: `.venv/bin/python bench/validate.py` (run by `make bench`). Measured {time.strftime('%Y-%m-%d')} on "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, Node {node_version()}; median of {args.runs} "
        f"alternating runs each ({load}). Workload: the anchor (2,000 features, 200 segments, 50 attributes, three "
        "environments; flagstone's copy adds 50 experiments) — `bench/workload.py` writes it in flagstone's format "
        f"from the anchor generator's own draws; Featurevisor is `{FV_CLI}` on the v1 dialect. CPU is user + "
        "system time of the run and every process it started.",
        "",
        "| task | flagstone | Featurevisor | flagstone ÷ Featurevisor | CPU flagstone / Featurevisor | peak RSS flagstone / Featurevisor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, by_tool in results.items():
        ours_t = statistics.median(t for t, _, _ in by_tool["flagstone"])
        theirs_t = statistics.median(t for t, _, _ in by_tool["featurevisor"])
        ours_c = statistics.median(c for _, _, c in by_tool["flagstone"])
        theirs_c = statistics.median(c for _, _, c in by_tool["featurevisor"])
        ours_m = max(m for _, m, _ in by_tool["flagstone"])
        theirs_m = max(m for _, m, _ in by_tool["featurevisor"])
        lines.append(
            f"| {name} | {ours_t:.2f} s | {theirs_t:.2f} s | {ours_t / theirs_t:.2f} | "
            f"{ours_c:.2f} s / {theirs_c:.2f} s | {ours_m} MB / {theirs_m} MB |"
        )
    build = results["build (all environments)"]
    ratio = statistics.median(t for t, _, _ in build["flagstone"]) / statistics.median(
        t for t, _, _ in build["featurevisor"]
    )
    lines += [
        "",
        f"`flagstone --help` starts in {statistics.median(startup):.3f} s (median).",
        "",
        f"Goal for build: at most a third of Featurevisor's time — {'met' if ratio <= 1 / 3 else 'not met'} "
        f"({ratio:.2f}). Build validates from the same parse it compiles (a forked worker "
        "checks while this process imports the bundle code, compiles and encodes; what both "
        "use, jsonschema-rs among it, is imported once before the fork), no step reads a file "
        "twice, and what the environments write alike is handled once: the load cuts each "
        "file at its top-level keys and at the two-space entries of their mappings and parses, "
        "in one yaml-rs call per file, only the entries not met before (the 2.09 MB of YAML "
        "become 0.28 MB of new text; an entry met before shares its value, and anything the "
        "cut cannot vouch for is parsed whole, so values and errors are the whole file's; "
        "the cut costs Python where nothing repeats: a 2,000-flag file in which no line "
        "repeats takes 395 M instructions against 205 M parsed whole, so a repository read "
        "for one environment is parsed file by file as before), "
        "the checks look once at a rule list, default or variant map shared by several flags "
        "and environments (6,000 flags hold 1,092 rule lists, 148 variant maps and 12 "
        "defaults), the compile compiles each of those once, and a flag or segment written "
        "alike in several environments compiles once. The console script runs a plain "
        "`flagstone build` without importing typer or rich (anything else goes to the Typer "
        "app unchanged; a test compares both paths byte for byte), the build's result types "
        "live apart from the other results (flagstone.report is imported for JSON output "
        "only), the prerequisite walks take only the flags that have prerequisites, the "
        "worker closes its pipe before it exits and is not waited for (freeing its memory "
        "took 15-50 ms), a run that ends with os._exit leaves the garbage collector off "
        "(enabling it again walked the whole parsed repository: 1.20 -> 1.01 s CPU at load "
        "average 4-5), and bundles are encoded by msgspec with sorted keys (validation refuses "
        "every value JSON cannot hold, a YAML !!set included, and a jsonschema-rs walk checks "
        "the types again before msgspec may write them; the exact encoder takes a text with "
        "an integral float, an exponent, a long integer or a key beyond the BMP; every bundle "
        "this run built was checked byte for byte against the exact encoder and the rfc8785 "
        "package). Where the time goes, in CPU seconds of one process doing the whole build "
        "(time.process_time around each step, 5 runs alternating with the code before the "
        "entry-once parse, load average 0.9-1.0, 2026-12-03): all the imports 0.10-0.16 either "
        "way, reading and parsing the YAML 0.13-0.27 -> 0.07-0.13 (under callgrind, the nine "
        "files' parse 629 M -> 405 M instructions: the cut and its lookups are Python, the "
        "parse they save is Rust), the checks 0.12-0.15 -> 0.08-0.16, compiling 0.06-0.08 -> "
        "0.03-0.06, encoding the three bundles 0.06-0.07 -> 0.04-0.06; the whole one-process "
        "build under callgrind 2,274 M -> 1,910 M instructions. With the worker, the critical "
        "path is the start (interpreter and imports, ~0.05 s to the build's code) and the "
        "load (~0.1 s, its first touch of fresh memory included), then the worker's checks "
        "(CPU since the fork 0.15-0.16 s) beside this process's imports, compiling, encoding "
        "and writing (0.16-0.19 s), about equal. Importing the shared modules in a thread "
        "beside the parse overlapped nothing (0.233 against 0.229 s, 12 runs each). Next "
        "levers: the frozen dataclasses of flagstone.model and errors (~0.02 s to create at "
        "start), the pages the two processes copy once they write to what the fork shares "
        "(this process's system time rises from ~0.05 to ~0.10 s), and the per-flag Python "
        "of the schema check and the compile. The ratio moves with the machine's load: Node "
        "starts slower than Python on a busy machine, and both share the two cores.",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        from runtime import write_section

        write_section(section)


def check_bundles(dist: Path) -> None:
    """Every bundle built is byte for byte what the exact encoder and the independent
    ``rfc8785`` package write for it: the fast encoder may not change a byte."""
    import json

    import rfc8785

    from flagstone.runtime.canonical import exact_canonical_json

    bundles = sorted(dist.glob("*.json"))
    if not bundles:
        raise SystemExit(f"no bundle was built in {dist}")
    for path in bundles:
        data = path.read_bytes()
        value = json.loads(data)
        exact = exact_canonical_json(value) + b"\n"
        if not data == exact == rfc8785.dumps(value) + b"\n":
            raise SystemExit(f"{path}: the bundle's bytes differ from RFC 8785's")
    print(f"{len(bundles)} bundles: the same bytes as the exact encoder and rfc8785")


def node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "not found"


if __name__ == "__main__":
    main()
