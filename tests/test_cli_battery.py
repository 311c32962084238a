"""No traceback, ever: every command, fed bad arguments, ends in one line and an exit code.

Runs in process through the real root command (its error handling included) and, for the
cases that need the operating system's help (a full disk, a closed stdout), as a real
subprocess. Any `Traceback` or `internal error` in the output fails the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CASES, invoke
from tests.test_cli_contract import COMMANDS, IDENTITY, git

EXE = str(Path(sys.executable).parent / "flagstone")
NO_REPOSITORY_NEEDED = {"init", "experiment plan"}


def dummy_args(cmd: Any) -> list[str]:
    """Values for a command's required parameters: wrong on purpose, of the right type."""
    args: list[str] = []
    for param in cmd.params:
        if not param.required:
            continue
        choices = getattr(param.type, "choices", None)
        numeric = param.type.name in ("int", "integer", "float") or "range" in param.type.name
        value = str(next(iter(choices))) if choices else "1" if numeric else "nope"
        if param.param_type_name == "argument":
            args += [value] * (param.nargs if param.nargs > 0 else 1)
        else:
            args += [param.opts[0], value]
    return args


def run(args: list[str], cwd: Path, input: str | None = None) -> tuple[int, str]:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        result = invoke(args, input=input, catch_exceptions=True)
    finally:
        os.chdir(old)
    text = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        repr(result.exception),
    )
    assert "Traceback" not in text and "internal error" not in text, (args, text)
    return result.exit_code, text


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("battery") / "repo"
    shutil.copytree(CASES / "valid" / "base", root)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base", "--no-gpg-sign")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("FLAGSTONE_DEBUG", raising=False)
        for name, value in IDENTITY.items():
            mp.setenv(name, value)
        yield root


def test_battery__every_command_with_bad_arguments(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "not-a-repository"
    outside.mkdir()
    for name, cmd in COMMANDS.items():
        words = name.split()
        code, text = run([*words, "--definitely-not-an-option"], repo)
        assert code == 2 and "No such option" in text, (name, text)
        assert run([*words, "-h"], repo)[0] == 0, name
        wrong = dummy_args(cmd)
        code, text = run([*words, *wrong], repo)
        assert code in (0, 1, 2), (name, code, text)
        if name not in NO_REPOSITORY_NEEDED:
            code, text = run([*words, *wrong], outside)
            assert code == 2, (name, code, text)
        if any(p.name == "fmt" for p in cmd.params):
            option = "--output-format" if name == "build" else "--format"
            code, text = run([*words, *wrong, option, "xml"], repo)
            assert code == 2 and "xml" in text, (name, text)
    # build writes dist/ (ignored in real repositories); nothing else may change
    assert git(repo, "status", "--porcelain", "--", ".", ":!dist") == "", "a command wrote"


NESTED = '{"a": ' * 30_000 + "1" + "}" * 30_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "--out", "flagstone.yaml"], "a file is in the way"),
        (["build", "--sign", "no-such-key.pem"], "--sign no-such-key.pem: no such key file"),
        (["build", "--sign", "environments"], "is a directory"),
        (["build", "--sign", "flagstone.yaml"], "cannot read the signing key"),
        (["eval", "new-checkout", "--context", NESTED], "nested too deeply"),
        (["eval", "new-checkout", "--context", "@nested.json"], "nested too deeply"),
        (["eval", "new-checkout", "--context", "[1]"], "must be a JSON object"),
        (["segment", "set", "s", "--when", "null"], "--when takes a JSON object"),
        (
            ["flag", "rule", "add", "new-checkout", "--when", NESTED, "--serve", "on"],
            "nested too deeply",
        ),
        (["flag", "create", "x", "--variants", f"a={NESTED}"], "nested too deeply"),
        (["diff", "--rev", "no-such-rev..HEAD"], "no-such-rev"),
        (["history", "new-checkout", "--since", "yesterday"], "is not a date"),
        (["rollback", "dev", "--to", "no-such-rev", "--dry-run"], "no-such-rev"),
        (["promote", "dev", "dev", "--dry-run"], "dev"),
        (["flag", "show", "None"], "no flag 'None'"),
    ],
)
def test_battery__bad_input__one_line_and_exit_2(repo: Path, args: list[str], message: str) -> None:
    (repo / "nested.json").write_text(NESTED)
    try:
        code, text = run(args, repo)
    finally:
        (repo / "nested.json").unlink()
    assert code == 2, (code, text)
    assert message in text, text
    assert len(text.strip().splitlines()) == 1, text


def test_battery__python_reprs_never_reach_a_message(repo: Path) -> None:
    # null/true/false as the user wrote them (JSON), never Python's None/True/False
    code, text = run(["config", "set", "api.timeout_ms", "null", "--dry-run"], repo)
    assert code == 1 and "null" in text and "None" not in text, text
    code, text = run(["config", "set", "api.timeout_ms", "true", "--dry-run"], repo)
    assert code == 1 and "true" in text and "True" not in text, text


@contextlib.contextmanager
def full_filesystem(where: Path) -> Iterator[Path | None]:
    """A real tmpfs filled to the last byte (needs root), or None where it cannot be mounted."""
    where.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        yield None
        return
    try:
        with (where / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 4096)
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_battery__full_disk__one_line_exit_2_and_nothing_half_written(
    repo: Path, tmp_path: Path
) -> None:
    # stdout on a full device: /dev/full answers every write with ENOSPC
    with Path("/dev/full").open("w") as full:
        done = subprocess.run(
            [EXE, "validate", "--format", "json"],
            cwd=repo,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "No space left" in done.stderr
    with full_filesystem(tmp_path / "full") as disk:
        if disk is None:
            # Without root no filesystem can be filled safely; /dev/full above covered ENOSPC.
            return
        built = subprocess.run(
            [EXE, "build", "--out", str(disk)], cwd=repo, capture_output=True, text=True
        )
        assert built.returncode == 2, built.stdout + built.stderr
        assert "Traceback" not in built.stderr
        assert "no space left on the device" in built.stderr
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_battery__closed_pipe__no_traceback(repo: Path) -> None:
    process = subprocess.Popen(
        [EXE, "flag", "list", "--format", "json"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()  # the reader went away, as `| head -0` does
    _, stderr = process.communicate(timeout=60)
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr
    assert json.dumps is not None
