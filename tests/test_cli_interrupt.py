"""Ctrl-C: every command prints one line and exits 130 (128 + SIGINT), as a shell reports a
job it stopped, whether the signal comes before the command runs, inside it or while it
reads its standard input. Each run is a real process in its own process group, started
with default signal handlers, and gets SIGINT as a terminal sends it: to the whole group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).parent / "flagstone")

# Runs flagstone as the console script does with one function replaced by a wait: the
# test knows the run is there (the marker file) and interrupts it at that point. Before
# the command runs is, for a plain build, its options being read (it never loads typer).
PAUSED = """
import sys, time
from pathlib import Path
import flagstone.cli.app as app
import flagstone.cli.entry as entry
import flagstone.load as load
marker, where, *argv = sys.argv[1:]
if where == "before":
    module, name = (entry, "read_build_args") if argv == ["build"] else (app, "_only")
else:
    module, name = (load, "find_root")
real = getattr(module, name)
def paused(*args, **kwargs):
    Path(marker).touch()
    time.sleep(60)
    return real(*args, **kwargs)
setattr(module, name, paused)
sys.argv = ["flagstone", *argv]
entry.main()
"""

COMMANDS = {
    "validate": ["validate"],
    "validate-json": ["validate", "--format", "json"],
    "test": ["test"],
    "eval": ["eval", "new-checkout", "--env", "dev", "--context", '{"id": "u1"}'],
    "build": ["build"],
    "diff": ["diff", "dev", "prod"],
    "history": ["history"],
    "verify": ["verify"],
    "promote": ["promote", "dev", "prod", "--dry-run"],
    "flag-list": ["flag", "list"],
    "flag-show": ["flag", "show", "new-checkout"],
    "segment-list": ["segment", "list"],
    "config-list": ["config", "list"],
    "experiment-list": ["experiment", "list"],
}


def default_signal_handlers() -> None:
    """In the child before exec: a parent that ignores SIGINT (nohup, some CI runners)
    would hand that on, and the test would then send an ignored signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str], cwd: Path, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signal_handlers,
        process_group=0,  # its own group, as a terminal's foreground job
        **kwargs,  # type: ignore[call-overload]
    )


# Guards against a hang, not timings: fourteen interpreters start at once on a machine
# that may be running the rest of the suite on every core.
PATIENCE = 120


def interrupt_when(process: subprocess.Popen[str], marker: Path) -> tuple[str, str]:
    deadline = time.monotonic() + PATIENCE
    while not marker.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never reached the pause"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)
    return process.communicate(timeout=PATIENCE)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["before", "inside"])
def test_ctrl_c__every_command__aborted_and_130(repo_from_case, tmp_path: Path, where: str) -> None:
    root = repo_from_case("valid/base")
    runs = {}
    for name, args in COMMANDS.items():
        marker = tmp_path / f"{where}-{name}"
        runs[name] = (
            marker,
            start(
                [sys.executable, "-c", PAUSED, str(marker), where, *args],
                root,
                stdin=subprocess.DEVNULL,
            ),
        )
    for name, (marker, process) in runs.items():
        stdout, stderr = interrupt_when(process, marker)
        assert (process.returncode, stderr) == (130, "aborted\n"), (name, stdout, stderr)
    assert not (root / "dist").exists()


def test_ctrl_c__build_in_one_process__aborted_and_130(repo_from_case, tmp_path: Path) -> None:
    root = repo_from_case("valid/base")
    marker = tmp_path / "paused"
    process = start(
        [sys.executable, "-c", PAUSED, str(marker), "inside", "build"],
        root,
        env={**os.environ, "FLAGSTONE_JOBS": "1"},
        stdin=subprocess.DEVNULL,
    )
    _, stderr = interrupt_when(process, marker)
    assert (process.returncode, stderr) == (130, "aborted\n")
    assert not (root / "dist").exists()


def test_ctrl_c__eval_reading_its_context_from_stdin__aborted_and_130(repo_from_case) -> None:
    """The installed command, unpatched: it waits on a pipe that never delivers."""
    root = repo_from_case("valid/base")
    process = start(
        [EXE, "eval", "new-checkout", "--env", "dev", "--context", "-"],
        root,
        stdin=subprocess.PIPE,
    )
    try:
        time.sleep(1.0)  # started and blocked in read(): a Ctrl-C earlier is the test above
        assert process.poll() is None, process.communicate()
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=PATIENCE)
    finally:
        if process.poll() is None:
            process.kill()
    assert (process.returncode, stdout, stderr) == (130, "", "aborted\n")
