"""Options every command shares: -h, -C, completion, --env checking, colour and width."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_schemas import check_output

EXE = str(Path(sys.executable).parent / "flagstone")


@pytest.fixture
def repo(repo_from_case) -> Path:
    return repo_from_case("valid/base")


def test_help__dash_h__works_on_the_root_and_on_subcommands(cli, repo: Path) -> None:
    for args in (["-h"], ["validate", "-h"], ["flag", "create", "-h"]):
        result = cli(args, cwd=repo)
        assert result.exit_code == 0, args
        assert "--help" in result.stdout and "-h" in result.stdout


def test_completion__typer_offers_install_and_show(flagstone_exe, repo: Path) -> None:
    helped = flagstone_exe(["--help"], cwd=repo)
    assert "--install-completion" in helped.stdout
    shown = flagstone_exe(["--show-completion", "bash"], cwd=repo, env={**os.environ})
    assert shown.returncode == 0, shown.stderr
    assert "_FLAGSTONE_COMPLETE" in shown.stdout


def test_dash_c__runs_as_if_started_in_that_directory(cli, repo: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli(["-C", str(repo), "validate", "--format", "json"], cwd=elsewhere)
    assert result.exit_code == 0, result.stderr
    assert check_output("validate", result.stdout)["ok"] is True


def test_dash_c__missing_directory__is_a_usage_error(cli, repo: Path) -> None:
    result = cli(["-C", "no/such/dir", "validate"], cwd=repo)
    assert result.exit_code == 2
    assert "no/such/dir" in result.stderr
    assert "Traceback" not in result.stderr


UNKNOWN_ENV = [
    ["validate", "--env", "nope"],
    ["test", "--env", "nope"],
    ["eval", "new-checkout", "--env", "nope"],
    ["build", "--env", "nope"],
    ["diff", "dev", "nope"],
    ["diff", "--rev", "HEAD..", "--env", "nope"],
    ["promote", "dev", "nope", "--dry-run"],
    ["drift", "dev", "nope"],
    ["history", "new-checkout", "--env", "nope"],
    ["rollback", "nope", "--to", "HEAD", "--dry-run"],
    ["revert", "HEAD", "--env", "nope", "--dry-run"],
    ["config", "get", "api.timeout_ms", "--env", "nope"],
    ["config", "set", "api.timeout_ms", "1", "--env", "nope"],
    ["flag", "create", "x", "--env", "nope"],
    ["flag", "enable", "new-checkout", "--env", "nope"],
    ["segment", "set", "s", "--when", '{"a": 1}', "--env", "nope"],
]


@pytest.mark.parametrize("args", UNKNOWN_ENV, ids=" ".join)
def test_unknown_env__is_a_usage_error_everywhere(cli, repo: Path, args: list[str]) -> None:
    result = cli(args, cwd=repo)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "unknown environment 'nope'" in result.stderr
    option = "--output-format" if args[0] == "build" else "--format"
    as_json = cli([*args, option, "json"], cwd=repo)
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout) == {
        "ok": False,
        "error": {"code": "unknown-environment", "message": as_json.stderr.strip()[7:]},
    }


def test_usage_error__under_json__is_the_error_envelope(cli, repo: Path) -> None:
    result = cli(["validate", "--format", "json", "--no-such-option"], cwd=repo)
    assert result.exit_code == 2
    doc = check_output("validate", result.stdout)
    assert doc["error"]["code"] == "usage"
    assert "--no-such-option" in doc["error"]["message"]


def test_expected_error__under_json__is_the_error_envelope(cli, repo: Path) -> None:
    result = cli(["eval", "new-chekout", "--format", "json"], cwd=repo)
    assert result.exit_code == 2
    doc = check_output("eval", result.stdout)
    assert doc["error"]["message"] == "no flag 'new-chekout' in dev; did you mean 'new-checkout'?"
    assert result.stderr == f"error: {doc['error']['message']}\n"


def test_outside_a_repository__json_names_the_code(cli, tmp_path: Path) -> None:
    result = cli(["validate", "--format", "json"], cwd=tmp_path)
    assert result.exit_code == 2
    assert check_output("validate", result.stdout)["error"]["code"] == "repository-not-found"


DISABLED_WITHOUT_OFF = "\nquiet:\n  variants: {a: 1, b: 2}\n  enabled: false\n  default: a\n"


def test_validate_strict__warnings_fail_with_a_cross_and_ok_false(cli, repo: Path) -> None:
    for env in ("dev", "prod"):
        path = repo / "environments" / env / "flags.yaml"
        path.write_text(path.read_text() + DISABLED_WITHOUT_OFF)
    lenient = cli(["validate"], cwd=repo)
    assert lenient.exit_code == 0
    assert "✓ 0 errors, 2 warnings" in lenient.stderr
    strict = cli(["validate", "--strict"], cwd=repo)
    assert strict.exit_code == 1
    assert "✗ 0 errors, 2 warnings" in strict.stderr
    doc = check_output("validate", cli(["validate", "--strict", "-f", "json"], cwd=repo).stdout)
    assert (doc["ok"], doc["strict"], doc["warnings"]) == (False, True, 2)
    github = cli(["validate", "--strict", "-f", "github"], cwd=repo).stdout
    assert github.startswith("::error ")


def test_build__from_a_subfolder__writes_dist_at_the_repository_root(cli, repo: Path) -> None:
    result = cli(["build"], cwd=repo / "environments" / "prod")
    assert result.exit_code == 0, result.stderr
    assert (repo / "dist" / "prod.json").is_file()
    assert not (repo / "environments" / "prod" / "dist").exists()


def test_text_output__not_a_terminal__is_never_cropped(flagstone_exe, repo: Path) -> None:
    key = "a-flag-whose-key-is-long-enough-to-run-past-any-terminal-" + "x" * 80
    path = repo / "environments" / "prod" / "flags.yaml"
    path.write_text(
        path.read_text() + f"\n{key}:\n  variants: {{on: true, off: false}}\n  default: off\n"
    )
    result = flagstone_exe(["diff", "dev", "prod"], cwd=repo, env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert f"flag {key}" in result.stdout


def run_in_terminal(args: list[str], cwd: Path, **env: str) -> bytes:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return what it printed."""
    leader, follower = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    environment.update(TERM="xterm-256color", **env)
    process = subprocess.Popen(
        [EXE, *args], cwd=cwd, stdout=follower, stderr=follower, env=environment
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks)


def test_no_color__removes_bold_and_dim_too(repo: Path) -> None:
    path = repo / "environments" / "dev" / "flags.yaml"
    path.write_text(path.read_text() + DISABLED_WITHOUT_OFF)
    styled = run_in_terminal(["validate"], repo)
    assert b"\x1b[1m" in styled  # on a terminal the location is bold ...
    plain = run_in_terminal(["validate"], repo, NO_COLOR="1")
    assert b"no-off-variant" in plain
    assert b"\x1b[" not in plain  # ... and with NO_COLOR there is no escape sequence at all
