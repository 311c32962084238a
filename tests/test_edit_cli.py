from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_validate_corpus import CASES

COMMENTED = """\
# Checkout flags: owned by payments.
new-checkout:
  description: Redesigned checkout   # since March
  owner: payments
  variants: {on: true, off: false}
  enabled: true
  off_variant: off
  targets:
    on: [user-17]
  rules:
    # staff first, then a share of DE and FR
    - segment: internal
      serve: on
    - when: {country: {in: [DE, FR]}}
      serve: {rollout: {on: 20, off: 80}}
  default: off

# The banner needs the new checkout.
banner-text:
  variants:
    short: Hi
    long: Hello there
  prerequisites: [{flag: new-checkout, variant: on}]
  default: short
"""


@pytest.fixture
def repo(git_repo, commit) -> Path:
    root = Path(git_repo.working_dir)
    shutil.copytree(CASES / "valid" / "base", root, dirs_exist_ok=True)
    (root / "environments" / "dev" / "flags.yaml").write_text(COMMENTED)
    commit(message="base")
    return root


def flags(root: Path) -> str:
    return (root / "environments" / "dev" / "flags.yaml").read_text()


def test_flag_rollout__changes_only_that_value_and_keeps_every_comment(cli, repo: Path) -> None:
    result = cli(
        [
            "flag",
            "rollout",
            "new-checkout",
            "--env",
            "dev",
            "--rule",
            "2",
            "-v",
            "on=50",
            "-v",
            "off=50",
        ],
        cwd=repo,
    )
    assert result.exit_code == 0, result.stderr
    assert flags(repo) == COMMENTED.replace(
        "{rollout: {on: 20, off: 80}}", "{rollout: {on: 50, off: 50}}"
    )


def test_flag_disable_and_enable__toggle_the_kill_switch(cli, repo: Path) -> None:
    cli(["flag", "disable", "new-checkout", "--env", "dev"], cwd=repo)
    assert flags(repo) == COMMENTED.replace("  enabled: true\n", "  enabled: false\n", 1)
    cli(["flag", "enable", "new-checkout", "--env", "dev"], cwd=repo)
    assert flags(repo) == COMMENTED


def test_flag_target__adds_and_removes_ids(cli, repo: Path) -> None:
    cli(
        [
            "flag",
            "target",
            "new-checkout",
            "--env",
            "dev",
            "-v",
            "on",
            "--add",
            "user-99",
            "--remove",
            "user-17",
        ],
        cwd=repo,
    )
    assert flags(repo) == COMMENTED.replace("on: [user-17]", "on: [user-99]")


def test_flag_create__appends_a_valid_flag(cli, repo: Path) -> None:
    result = cli(
        ["flag", "create", "promo", "--env", "dev", "-d", "Promo banner", "--owner", "growth"],
        cwd=repo,
    )
    assert result.exit_code == 0, result.stderr
    assert flags(repo) == COMMENTED + (
        "promo:\n  description: Promo banner\n  owner: growth\n  variants: {on: true, off: false}\n"
        "  enabled: true\n  off_variant: off\n  default: off\n"
    )
    assert cli(["validate", "--env", "dev"], cwd=repo).exit_code == 0


def test_edit__that_would_be_invalid__is_refused_and_the_file_untouched(cli, repo: Path) -> None:
    result = cli(
        ["flag", "rollout", "new-checkout", "--env", "dev", "-v", "on=30", "-v", "off=60"], cwd=repo
    )
    assert result.exit_code == 1
    assert "rollout weights sum to 90, expected 100" in result.stdout
    assert flags(repo) == COMMENTED
    assert (
        subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True
        ).stdout
        == ""
    )


def test_edit__commit__records_the_change(cli, repo: Path) -> None:
    result = cli(["flag", "disable", "new-checkout", "--env", "dev", "--commit"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    log = subprocess.run(
        ["git", "log", "-1", "--format=%s"], cwd=repo, capture_output=True, text=True
    ).stdout
    assert log.strip() == "dev: flag new-checkout disabled (kill switch)"


def test_config_set__typed_by_the_schema_and_read_back(cli, repo: Path) -> None:
    assert cli(["config", "set", "api.timeout_ms", "750", "--env", "dev"], cwd=repo).exit_code == 0
    config = (repo / "environments" / "dev" / "config.yaml").read_text()
    assert "timeout_ms: 750\n" in config
    assert cli(["config", "get", "api.timeout_ms", "--env", "dev"], cwd=repo).stdout == "750\n"
    refused = cli(["config", "set", "api.timeout_ms", "fast", "--env", "dev"], cwd=repo)
    assert refused.exit_code == 1 and "expected integer" in refused.stdout


def test_config_set__a_secret_in_plain_text__is_refused(cli, repo: Path) -> None:
    result = cli(["config", "set", "api.token", "sk_live_123", "--env", "dev"], cwd=repo)
    assert result.exit_code == 2 and "is a secret" in result.stderr


def test_edit__crlf_and_bom__kept_byte_for_byte_around_the_change(cli, repo: Path) -> None:
    path = repo / "environments" / "dev" / "flags.yaml"
    original = ("\ufeff" + COMMENTED).replace("\n", "\r\n").encode()
    path.write_bytes(original)
    result = cli(["flag", "disable", "new-checkout", "--env", "dev"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    assert path.read_bytes() == original.replace(b"  enabled: true\r\n", b"  enabled: false\r\n", 1)


def test_edit__mixed_line_endings__each_untouched_line_keeps_its_own(cli, repo: Path) -> None:
    path = repo / "environments" / "dev" / "flags.yaml"
    lines = COMMENTED.splitlines(keepends=True)
    mixed = "".join(
        line.replace("\n", "\r\n") if i % 3 == 0 else line for i, line in enumerate(lines)
    )
    path.write_bytes(mixed.encode())
    assert cli(["flag", "disable", "new-checkout", "--env", "dev"], cwd=repo).exit_code == 0
    expected = mixed.replace("  enabled: true\n", "  enabled: false\n", 1).replace(
        "  enabled: true\r\n", "  enabled: false\r\n", 1
    )
    assert path.read_bytes() == expected.encode()


def test_kill_switch__with_an_unrelated_error_in_prod__still_works_and_lists_it(
    cli, repo: Path
) -> None:
    """Incidents first: pulling the kill switch never waits for an unrelated fix."""
    path = repo / "environments" / "dev" / "flags.yaml"
    broken = COMMENTED.replace("  default: short\n", "  default: medium\n")  # no such variant
    path.write_text(broken)
    subprocess.run(["git", "commit", "-qam", "a typo in banner-text"], cwd=repo, check=True)
    result = cli(["flag", "disable", "new-checkout", "--env", "dev", "--commit"], cwd=repo)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "already had 1 error(s) that this edit does not touch" in result.stderr
    assert "banner-text" in result.stderr
    assert path.read_text() == broken.replace("  enabled: true\n", "  enabled: false\n", 1)
    # An edit that adds an error is still refused.
    refused = cli(
        ["flag", "rollout", "new-checkout", "--env", "dev", "-v", "on=30", "-v", "off=60"],
        cwd=repo,
    )
    assert refused.exit_code == 1
    assert "rollout weights sum to 90, expected 100" in refused.stdout
    assert "medium" not in refused.stdout  # the old error is not what refused it
