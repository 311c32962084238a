"""`make demo`: a guided tour of flagstone on this repository's own example.

Runs in a scratch copy (a fresh git repository), never in the checkout, printing each
command and what it printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path

EXAMPLE_PATHS = ("flagstone.yaml", "environments", "schemas", "specs", ".flagstone")
BOLD, DIM, CYAN, RESET = ("\033[1m", "\033[2m", "\033[36m", "\033[0m") if sys.stdout.isatty() else ("",) * 4


def copy_example(source: Path, scratch: Path) -> None:
    for name in EXAMPLE_PATHS:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, scratch / name)
        elif src.is_file():
            shutil.copy2(src, scratch / name)


def git(scratch: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=scratch, check=True, capture_output=True, text=True).stdout


def step(title: str, explanation: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}")
    print(textwrap.fill(explanation, width=88))


def run(scratch: Path, args: Sequence[str], *, expect: Sequence[int] = (0,)) -> str:
    print(f"\n{CYAN}$ flagstone {' '.join(args)}{RESET}")
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-m", "flagstone", *args], cwd=scratch, env=env,
                            capture_output=True, text=True)
    output = (result.stdout + result.stderr).rstrip()
    if output:
        print(textwrap.indent(output, "  "))
    if result.returncode not in expect:
        print(f"{BOLD}exit code {result.returncode}, expected {' or '.join(map(str, expect))}{RESET}")
        raise SystemExit(1)
    print(f"{DIM}  (exit {result.returncode}){RESET}")
    return result.stdout


def tour(scratch: Path) -> None:
    step("Validate", "Every file is checked against flagstone's JSON Schemas and the rules a schema "
         "cannot express. Findings print as file:line:col; warnings (an expired flag, say) do not fail the run.")
    run(scratch, ["validate"])
    step("Validate, as CI sees it", "--format github prints workflow annotations, the default inside GitHub Actions.")
    run(scratch, ["validate", "--format", "github"])


def main() -> None:
    source = Path.cwd()
    if not (source / "flagstone.yaml").is_file():
        print("error: run `make demo` from the flagstone checkout (no flagstone.yaml here)", file=sys.stderr)
        raise SystemExit(2)
    with tempfile.TemporaryDirectory(prefix="flagstone-demo-") as tmp:
        scratch = Path(tmp) / "isometry-config"
        scratch.mkdir()
        copy_example(source, scratch)
        os.environ.update({"GIT_AUTHOR_NAME": "Demo", "GIT_AUTHOR_EMAIL": "demo@isometry.example",
                           "GIT_COMMITTER_NAME": "Demo", "GIT_COMMITTER_EMAIL": "demo@isometry.example"})
        git(scratch, "init", "-q", "-b", "main")
        git(scratch, "add", "-A")
        git(scratch, "commit", "-q", "--no-gpg-sign", "-m", "Isometry configuration")
        print(f"{BOLD}flagstone tour{RESET} — a scratch copy of this repository's example in {scratch}")
        tour(scratch)
        print(f"\n{BOLD}Done.{RESET} The checkout was not touched.")


if __name__ == "__main__":
    main()
