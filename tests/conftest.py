"""Shared fixtures: real git repositories, real files, the real CLI."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
import pytest
import typer.testing
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).parent / "cases"
GOLDEN = Path(__file__).parent / "golden"

# An ignored SIGINT (nohup, some CI runners) is inherited by every child, and a Ctrl-C test
# would then pass or hang without testing anything; a handler here is reset to the
# default in each child at exec.
signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden files")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """In CI nothing may skip: a skipped test there is a test that did not run."""
    skipped = terminalreporter.stats.get("skipped", [])
    if os.environ.get("CI") == "true" and skipped:
        terminalreporter.write_line(
            f"CI=true: {len(skipped)} test(s) skipped; CI must run every test", red=True
        )
        terminalreporter._session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow start first (in their collected order): spread over two workers, a
    long test collected near the end would otherwise run alone after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """No user git config, fixed identity and dates: commit SHAs repeat on every run."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test Author")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "author@example.test")
        monkeypatch.setenv(f"GIT_{role}_DATE", "2026-01-01T00:00:00+00:00")


@pytest.fixture
def git_repo(tmp_path: Path) -> git.Repo:
    return git.Repo.init(tmp_path / "repo", initial_branch="main")


def write_files(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def commit(git_repo: git.Repo) -> Callable[..., str]:
    """Write files (dedented) into the repository and commit them; returns the SHA."""

    def _commit(files: Mapping[str, str] | None = None, message: str = "change", **env: str) -> str:
        root = Path(git_repo.working_dir)
        write_files(root, files or {})
        git_repo.git.add("-A")
        git_repo.git.commit("-m", message, "--no-gpg-sign", "--allow-empty", env=env or None)
        return git_repo.head.commit.hexsha

    return _commit


@pytest.fixture
def repo_from_case(git_repo: git.Repo) -> Callable[[str], Path]:
    """Copy tests/cases/<name> into the temp git repository and commit it."""

    def _copy(name: str) -> Path:
        root = Path(git_repo.working_dir)
        shutil.copytree(CASES / name, root, dirs_exist_ok=True)
        git_repo.git.add("-A")
        git_repo.git.commit("-m", f"case {name}", "--no-gpg-sign")
        return root

    return _copy


# typer's CliRunner rebuilds the whole click command tree on every invoke, which costs
# more than most commands take to run; the tree never changes within a test session.
typer.testing._get_command = functools.cache(typer.testing._get_command)  # type: ignore[attr-defined]


def invoke(args: list[str], *, input: str | None = None, catch_exceptions: bool = False) -> Any:
    """Run the real root command (its error handling included) in process."""
    from flagstone.cli.app import _load_commands, app
    from flagstone.secrets import forget_remembered

    _load_commands()
    forget_remembered()  # each command starts as a fresh process would
    return CliRunner().invoke(app, args, input=input, catch_exceptions=catch_exceptions)


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run the CLI in-process (typer's CliRunner) from ``cwd``."""
    # In-process runs show a bug's real traceback instead of the one-line internal error.
    monkeypatch.setenv("FLAGSTONE_DEBUG", "1")

    def run(args: list[str], cwd: Path | None = None, input: str | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        result = invoke(args, input=input, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def flagstone_exe() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed ``flagstone`` entry point as a real subprocess."""
    exe = Path(sys.executable).parent / "flagstone"

    def run(args: list[str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]

    return run


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    def check(name: str, actual: str) -> None:
        path = GOLDEN / name
        if request.config.getoption("--update-golden"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual)
        assert path.exists(), (
            f"{name}: no expectation yet; run pytest --update-golden and review it"
        )
        assert actual == path.read_text(), f"{name}: rerun with --update-golden and review the diff"

    return check
