"""`make demo`: a guided tour of flagstone on this repository's own example.

Runs in a scratch copy (a fresh git repository), never in the checkout, printing each
command and what it printed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path

EXAMPLE_PATHS = ("flagstone.yaml", "environments", "schemas", "specs", ".flagstone")
BOLD, DIM, CYAN, RESET = (
    ("\033[1m", "\033[2m", "\033[36m", "\033[0m") if sys.stdout.isatty() else ("",) * 4
)


def copy_example(source: Path, scratch: Path) -> None:
    for name in EXAMPLE_PATHS:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, scratch / name)
        elif src.is_file():
            shutil.copy2(src, scratch / name)


def git(scratch: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=scratch, check=True, capture_output=True, text=True
    ).stdout


def step(title: str, explanation: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}")
    print(textwrap.fill(explanation, width=88))


def run(scratch: Path, args: Sequence[str], *, expect: Sequence[int] = (0,)) -> str:
    print(f"\n{CYAN}$ flagstone {shlex.join(args)}{RESET}")
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "flagstone", *args],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
    )
    output = (result.stdout + result.stderr).rstrip()
    if output:
        print(textwrap.indent(output, "  "))
    if result.returncode not in expect:
        print(
            f"{BOLD}exit code {result.returncode}, expected {' or '.join(map(str, expect))}{RESET}"
        )
        raise SystemExit(1)
    print(f"{DIM}  (exit {result.returncode}){RESET}")
    return result.stdout


RUNTIME_SNIPPET = """
import json, time
from pathlib import Path
from flagstone import Client

path = Path("dist/prod.json")
client = Client.from_file(path, watch=True)
ctx = {"user_id": "u-7", "platform": "web", "browser": "chrome", "plan": "pro"}
print("graph-renderer ->", client.value("graph-renderer", ctx))
print("max-graph-nodes ->", client.value("max-graph-nodes", ctx))
print("details:", client.details("cloudkit-sync-v2", ctx))
for user in ("u-1", "u-2", "u-3", "u-4"):
    arm = client.assign("onboarding-length", {"user_id": user, "signup_date": "2026-11-10", "consent": True})
    print(f"assign onboarding-length {user} ->", arm)
print("config api.timeout_ms ->", client.config("api.timeout_ms"))

# Ramp the prod rollout to 100 % and rebuild: the running client picks it up.
bundle = json.loads(path.read_text())
bundle["flags"]["cloudkit-sync-v2"]["default"] = {"variant": "on"}
from flagstone.bundle import content_hash, dump_bundle
bundle["hash"] = content_hash(bundle)
started = time.perf_counter()
tmp = path.with_suffix(".tmp"); tmp.write_bytes(dump_bundle(bundle)); tmp.replace(path)
while client.bundle.hash != bundle["hash"]:
    time.sleep(0.001)
print(f"hot reload: new bundle live after {1000 * (time.perf_counter() - started):.1f} ms ->",
      client.variant("cloudkit-sync-v2", ctx))
client.close()
"""


def tour(scratch: Path) -> None:
    step(
        "1. Validate",
        "Every file is checked against flagstone's JSON Schemas and the rules a schema "
        "cannot express. Findings print as file:line:col; warnings (an expired flag) do not fail the run.",
    )
    run(scratch, ["validate"])
    step(
        "2. A mistake, caught",
        "A typo in a segment name and a rollout that does not add up: validate points at "
        "the exact line and column, and suggests the fix.",
    )
    flags = scratch / "environments" / "dev" / "flags.yaml"
    original = flags.read_text()
    flags.write_text(
        original.replace("segment: internal-testers", "segment: internal-tester", 1).replace(
            "{rollout: {on: 100, off: 0}}", "{rollout: {on: 100, off: 10}}", 1
        )
    )
    run(scratch, ["validate", "--env", "dev"], expect=(1,))
    flags.write_text(original)
    step(
        "3. What does a user get, and why?",
        "eval builds the bundle in memory and explains each step.",
    )
    run(
        scratch,
        [
            "eval",
            "cloudkit-sync-v2",
            "--env",
            "prod",
            "--context",
            '{"user_id": "u-7", "platform": "ios", "beta": true, "app_version": "3.1.0-beta.2"}',
            "--explain",
        ],
    )
    run(
        scratch,
        [
            "eval",
            "--all",
            "--env",
            "prod",
            "--context",
            '{"user_id": "u-7", "platform": "web", "plan": "team"}',
        ],
    )
    step(
        "4. Test the configuration like code",
        "Specs in specs/ assert variants, values, arms, config and "
        "rollout shares over generated ids, for every environment.",
    )
    run(scratch, ["test"])
    step(
        "5. Build the bundles",
        "One deterministic JSON bundle per environment, with the source commit and a "
        "content hash (the ETag); also a flagd export for OpenFeature's daemon.",
    )
    run(scratch, ["build", "--all"])
    run(scratch, ["build", "--env", "prod", "--format", "flagd"])
    step(
        "6. Inside the app",
        "The Python runtime evaluates the prod bundle in about a microsecond per call and "
        "hot-reloads it when the file changes.",
    )
    print(f"\n{CYAN}$ python app.py{RESET}")
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME_SNIPPET], cwd=scratch, capture_output=True, text=True
    )
    print(textwrap.indent((result.stdout + result.stderr).rstrip(), "  "))
    if result.returncode != 0:
        raise SystemExit(1)
    step(
        "7. Promote, review, audit, undo",
        "A rollout change in dev is promoted to staging as a commit with "
        "trailers; the reviewer sees a semantic diff; history answers who changed what; rollback undoes it.",
    )
    run(
        scratch,
        [
            "flag",
            "rollout",
            "cloudkit-sync-v2",
            "--env",
            "staging",
            "-v",
            "on=60",
            "-v",
            "off=40",
            "--commit",
            "-m",
            "staging: sync v2 to 60%",
        ],
    )
    run(scratch, ["diff", "--rev", "HEAD~1..HEAD", "--format", "markdown"])
    run(
        scratch,
        [
            "flag",
            "target",
            "cloudkit-sync-v2",
            "--env",
            "dev",
            "-v",
            "on",
            "--add",
            "qa-android-1",
            "--commit",
            "-m",
            "dev: target the Android QA device",
        ],
    )
    run(scratch, ["promote", "dev", "staging", "--only", "cloudkit-sync-v2", "--yes", "--commit"])
    run(scratch, ["history", "cloudkit-sync-v2", "--env", "staging"])
    run(scratch, ["rollback", "staging", "--to", "HEAD~3", "--only", "cloudkit-sync-v2", "--yes"])
    run(scratch, ["drift", "staging", "prod"], expect=(1,))
    step(
        "8. Start a new repository",
        "init scaffolds settings, schemas, three environments, a spec, a CI workflow "
        "and a pre-commit hook; the result validates and its specs pass.",
    )
    run(scratch, ["init", "new-project", "--project", "new-project"])
    run(scratch / "new-project", ["validate"])


def main() -> None:
    source = Path.cwd()
    if not (source / "flagstone.yaml").is_file():
        print(
            "error: run `make demo` from the flagstone checkout (no flagstone.yaml here)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    with tempfile.TemporaryDirectory(prefix="flagstone-demo-") as tmp:
        scratch = Path(tmp) / "isometry-config"
        scratch.mkdir()
        copy_example(source, scratch)
        os.environ.update(
            {
                "GIT_AUTHOR_NAME": "Demo",
                "GIT_AUTHOR_EMAIL": "demo@isometry.example",
                "GIT_COMMITTER_NAME": "Demo",
                "GIT_COMMITTER_EMAIL": "demo@isometry.example",
            }
        )
        git(scratch, "init", "-q", "-b", "main")
        git(scratch, "add", "-A")
        git(scratch, "commit", "-q", "--no-gpg-sign", "-m", "Isometry configuration")
        print(
            f"{BOLD}flagstone tour{RESET} — a scratch copy of this repository's example in {scratch}"
        )
        tour(scratch)
        print(f"\n{BOLD}Done.{RESET} The checkout was not touched.")


if __name__ == "__main__":
    main()
