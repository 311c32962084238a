"""`make bench`: every benchmark, one after another; each rewrites its section of docs/benchmarks.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = [
    "validate.py",
    "promote.py",
    "runtime.py",
    "runtime_memory.py",
    "js_runtime.py",
    "history.py",
    "stats.py",
    "redos.py",
    "analyze.py",
    "secrets_bench.py",  # not secrets.py: that name would shadow the standard library module
    "ci_time.py",  # last: a whole `make test` in a fresh clone
]

if __name__ == "__main__":
    for name in BENCHMARKS:
        print(f"== bench/{name}", flush=True)
        subprocess.run([sys.executable, str(HERE / name), *sys.argv[1:]], check=True)
