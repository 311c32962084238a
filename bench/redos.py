"""What the `unsafe-regex` check prevents, and what it costs `validate`.

1. Catastrophic patterns from the test corpus, timed in Python's own ``re.search`` on
   texts built from the analysis' witness (the text the pattern matches in two ways,
   repeated, then a character that makes the match fail), at growing lengths; a run stops
   growing once one search passes a second.
2. The analysis itself over the whole corpus (catastrophic and safe patterns), uncached,
   against a baseline measured in the same run: compiling the same patterns with ``re``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from flagstone import redos  # noqa: E402
from tests.test_validate_regex import CATASTROPHIC, SAFE  # noqa: E402

TIMED = [r"^(a|a)+$", r"^(a|aa)+$", r"^(\w+\s?)*$", r"(.*a){6}$", r"^.*\..*$", r"\d*\d*x"]
SECOND = 0.5


def attack(pattern: str, size: int) -> str:
    finding = redos.analyze(pattern)
    assert finding is not None and finding.text, pattern
    pump = finding.text
    return (pump * (size // len(pump) + 1))[:size] + "\n!"


def search_seconds(pattern: str, text: str) -> float:
    compiled = re.compile(pattern)
    start = time.perf_counter()
    compiled.search(text)
    return time.perf_counter() - start


def growth(pattern: str) -> list[tuple[int, float]]:
    sizes = [8, 12, 16, 20, 24, 28, 32, 40, 48, 64, 128, 256, 512, 1024, 2048, 4096]
    out = []
    for size in sizes:
        seconds = search_seconds(pattern, attack(pattern, size))
        out.append((size, seconds))
        if seconds > SECOND:
            break
    return out


def analysis_ms(patterns: list[str], repeats: int) -> tuple[float, float]:
    """Median and slowest per-pattern time of the analysis, caches bypassed."""
    per_pattern = []
    for pattern in patterns:
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            redos._analyze.__wrapped__(pattern)  # type: ignore[attr-defined]
            runs.append((time.perf_counter() - start) * 1000)
        per_pattern.append(statistics.median(runs))
    return statistics.median(per_pattern), max(per_pattern)


def compile_ms(patterns: list[str], repeats: int) -> float:
    per_pattern = []
    for pattern in patterns:
        runs = []
        for _ in range(repeats):
            re.purge()
            start = time.perf_counter()
            re.compile(pattern)
            runs.append((time.perf_counter() - start) * 1000)
        per_pattern.append(statistics.median(runs))
    return statistics.median(per_pattern)


def _time(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 0.1 else f"{seconds * 1000:.2g} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument(
        "--no-write", action="store_true", help="print, do not update docs/benchmarks.md"
    )
    args = parser.parse_args()
    repeats = 3 if args.quick else 15
    patterns = [p for p, _ in CATASTROPHIC] + SAFE
    median, slowest = analysis_ms(patterns, repeats)
    baseline = compile_ms(patterns, repeats)
    lines = [
        "## Regular expressions (`unsafe-regex`)",
        "",
        f"Command: `.venv/bin/python bench/redos.py` (run by `make bench`). Measured {time.strftime('%Y-%m-%d')} on "
        f"{os.cpu_count()} cores, Python {platform.python_version()}. What the check refuses, timed in Python's "
        "`re.search` on the analysis' own witness text repeated to the given length, then a character that fails "
        f"the match (a row stops growing past {SECOND} s):",
        "",
        "| pattern | refused as | characters → seconds per search |",
        "|---|---|---|",
    ]
    for pattern in TIMED:
        finding = redos.analyze(pattern)
        assert finding is not None
        steps = ", ".join(f"{size} → {_time(seconds)}" for size, seconds in growth(pattern))
        lines.append(f"| `{pattern}` | {finding.kind} | {steps} |")
    lines += [
        "",
        f"The analysis of the {len(patterns)} corpus patterns (tests/test_validate_regex.py), uncached: "
        f"median {median:.2f} ms per pattern, slowest {slowest:.1f} ms; baseline in the same run, `re.compile` "
        f"of the same patterns: median {baseline:.3f} ms (× {median / baseline:.0f}). Results are cached per "
        "pattern, so a pattern used in every environment is analysed once.",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        from runtime import write_section

        write_section(section)


if __name__ == "__main__":
    main()
