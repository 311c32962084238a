from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_validate_corpus import CASES

THREE_ENVS = "version: 1\nproject: shop\nenvironments: [dev, staging, prod]\nconfig_schema: schemas/config.schema.json\npinned: [config.api.base_url, flags.new-checkout.default]\n"


@pytest.fixture
def repo(git_repo, commit) -> Path:
    """dev, staging, prod identical at first; then dev moves ahead in one commit."""
    root = Path(git_repo.working_dir)
    shutil.copytree(CASES / "valid" / "base", root, dirs_exist_ok=True)
    shutil.copytree(root / "environments" / "prod", root / "environments" / "staging")
    (root / "flagstone.yaml").write_text(THREE_ENVS)
    for env in ("staging", "prod"):
        flags = root / "environments" / env / "flags.yaml"
        flags.write_text("# " + env + " flags: reviewed by the release team\n" + flags.read_text())
    commit(message="three environments")
    dev = root / "environments" / "dev"
    (dev / "flags.yaml").write_text(
        (dev / "flags.yaml")
        .read_text()
        .replace("on: 20, off: 80", "on: 40, off: 60")
        .replace(
            "    - segment: internal\n",
            "    - segment: beta\n      serve: on\n    - segment: internal\n",
        )
        .replace("  default: off\n", "  default: on\n", 1)
    )
    (dev / "segments.yaml").write_text(
        (dev / "segments.yaml").read_text() + "beta:\n  when: {plan: pro}\n"
    )
    (dev / "config.yaml").write_text(
        (dev / "config.yaml").read_text().replace("timeout_ms: 500", "timeout_ms: 700")
    )
    commit(message="dev: beta segment, wider rollout")
    return root


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def test_promote__then_diff__equal_except_pinned(cli, repo: Path) -> None:
    result = cli(["promote", "dev", "staging", "--yes"], cwd=repo)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "kept in staging: flags.new-checkout.default, config.api.base_url" in result.stdout
    diff = json.loads(cli(["diff", "dev", "staging", "--format", "json"], cwd=repo).stdout)
    assert sorted((c["key"], c["field"]) for c in diff["changes"]) == [
        ("api.base_url", None),
        ("new-checkout", "default"),
    ]


def test_promote__keeps_the_targets_comments_byte_for_byte(cli, repo: Path) -> None:
    flags = repo / "environments" / "staging" / "flags.yaml"
    before = flags.read_text()
    result = cli(["promote", "dev", "staging", "--only", "new-checkout", "--yes"], cwd=repo)
    assert "also promoting segment beta: used by flag new-checkout" in result.stdout
    after = flags.read_text()
    assert after.startswith("# staging flags: reviewed by the release team\n")
    assert after == before.replace("{on: 20, off: 80}", "{on: 40, off: 60}").replace(
        "    - segment: internal\n",
        "    - segment: beta\n      serve: on\n    - segment: internal\n",
    )


def test_promote__no_deps__refuses_and_names_the_missing_segment(cli, repo: Path) -> None:
    result = cli(
        ["promote", "dev", "staging", "--only", "new-checkout", "--no-deps", "--yes"], cwd=repo
    )
    assert result.exit_code == 2
    assert "flags.new-checkout needs segment 'beta', which staging lacks" in result.stderr
    assert git(repo, "status", "--porcelain") == ""


def test_promote__out_of_order__refused_unless_a_reason_is_given(cli, repo: Path) -> None:
    result = cli(["promote", "dev", "prod", "--yes"], cwd=repo)
    assert (
        result.exit_code == 2
        and "out of promotion order" in result.stderr
        and "promote from staging" in result.stderr
    )
    ok = cli(
        ["promote", "dev", "prod", "--yes", "--commit", "--skip-order", "incident 4711"], cwd=repo
    )
    assert ok.exit_code == 0, ok.stderr
    assert "Flagstone-Skip-Order: incident 4711" in git(repo, "log", "-1", "--format=%B")


def test_promote__invalid_result__aborts_and_leaves_the_tree_clean(cli, repo: Path) -> None:
    schema = repo / "schemas" / "config.schema.json"
    schema.write_text(schema.read_text().replace('"minimum": 1', '"maximum": 600'))
    git(repo, "commit", "-qam", "stricter timeout")
    result = cli(["promote", "dev", "staging", "--yes", "--commit"], cwd=repo)
    assert result.exit_code == 1
    assert (
        "environments/staging/config.yaml:3:15: error: api.timeout_ms: 700 is greater than the maximum of 600"
        in result.stdout
    )
    assert "nothing was written" in result.stderr
    assert git(repo, "status", "--porcelain") == ""


def test_promote__commit__has_trailers_naming_source_and_keys(cli, repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    result = cli(["promote", "dev", "staging", "--yes", "--commit"], cwd=repo)
    assert result.exit_code == 0
    message = git(repo, "log", "-1", "--format=%B")
    assert "Flagstone-Promote: dev -> staging" in message
    assert f"Flagstone-Source: {head}" in message
    assert "Flagstone-Keys: flags.new-checkout, segments.beta, config" in message
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "show", "--stat", "--format=", "HEAD").count("environments/staging/") == 3


def test_promote__commit_over_uncommitted_target_changes__refused(cli, repo: Path) -> None:
    (repo / "environments" / "staging" / "segments.yaml").write_text("# work in progress\n{}\n")
    result = cli(["promote", "dev", "staging", "--yes", "--commit"], cwd=repo)
    assert result.exit_code == 2 and "uncommitted changes" in result.stderr


def test_promote__expect_target_rev__refuses_when_the_target_moved(cli, repo: Path) -> None:
    reviewed = git(repo, "rev-parse", "HEAD").strip()
    segments = repo / "environments" / "staging" / "segments.yaml"
    segments.write_text(segments.read_text() + "late:\n  when: {plan: team}\n")
    git(repo, "commit", "-qam", "someone else changed staging")
    result = cli(["promote", "dev", "staging", "--yes", "--expect-target-rev", reviewed], cwd=repo)
    assert result.exit_code == 2 and f"staging changed since {reviewed}" in result.stderr


def test_promote__branch__commits_on_a_new_branch(cli, repo: Path) -> None:
    result = cli(
        ["promote", "dev", "staging", "--yes", "--commit", "--branch", "promote/dev-staging"],
        cwd=repo,
    )
    assert result.exit_code == 0, result.stderr
    assert git(repo, "branch", "--show-current").strip() == "promote/dev-staging"
    assert "Flagstone-Promote" in git(repo, "log", "-1", "--format=%B")


def test_promote__without_a_terminal__requires_yes(flagstone_exe, repo: Path) -> None:
    result = flagstone_exe(["promote", "dev", "staging"], cwd=repo, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "stdin is not a terminal; pass --yes" in result.stderr
    assert git(repo, "status", "--porcelain") == ""


def test_drift__lists_unpromoted_work_and_hot_fixes(cli, repo: Path) -> None:
    segments = repo / "environments" / "staging" / "segments.yaml"
    segments.write_text(segments.read_text() + "hotfix:\n  when: {plan: team}\n")
    result = cli(["drift", "dev", "staging", "--format", "json"], cwd=repo)
    assert result.exit_code == 1
    found = {(d["kind"], d["key"]): d["state"] for d in json.loads(result.stdout)["drift"]}
    assert found[("segments", "hotfix")] == "only in staging: flow it back to dev"
    assert found[("segments", "beta")] == "only in dev: not promoted to staging yet"
    assert found[("flags", "new-checkout")].startswith("differs")
    assert ("config", "api.base_url") not in found  # pinned


def test_promote__into_a_folder_layout__writes_one_file_per_new_flag(
    cli, repo: Path, commit
) -> None:
    staging = repo / "environments" / "staging"
    text = (staging / "flags.yaml").read_text()
    (staging / "flags").mkdir()
    (staging / "flags" / "checkout.yaml").write_text(text)
    (staging / "flags.yaml").unlink()
    dev_flags = repo / "environments" / "dev" / "flags.yaml"
    dev_flags.write_text(
        dev_flags.read_text() + "promo:\n  variants: {on: true, off: false}\n  default: off\n"
    )
    commit(message="staging keeps flags in a folder; dev has a new flag")
    result = cli(["promote", "dev", "staging", "--only", "promo", "--yes"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    assert (
        staging / "flags" / "promo.yaml"
    ).read_text() == "promo:\n  variants: {on: true, off: false}\n  default: off\n"
    assert cli(["validate", "--env", "staging"], cwd=repo).exit_code == 0


def test_promote__keeps_inline_and_trailing_comments_of_the_target(cli, repo: Path) -> None:
    staging = repo / "environments" / "staging" / "flags.yaml"
    text = staging.read_text().replace(
        "  default: off\n", "  default: off  # held back in staging\n", 1
    )
    text = text.replace("    - segment: internal\n", "    - segment: internal  # staff\n", 1)
    staging.write_text(text + "# end of staging flags\n")
    git(repo, "commit", "-qam", "comments in staging")
    result = cli(["promote", "dev", "staging", "--only", "new-checkout", "--yes"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    after = staging.read_text()
    assert "  default: off  # held back in staging\n" in after  # pinned, and its comment
    assert "    - segment: internal  # staff\n" in after
    assert after.endswith("# end of staging flags\n")
    assert "{on: 40, off: 60}" in after


def test_promote__crlf_target__keeps_its_line_endings(cli, repo: Path) -> None:
    staging = repo / "environments" / "staging" / "flags.yaml"
    staging.write_bytes(staging.read_bytes().replace(b"\n", b"\r\n"))
    git(repo, "commit", "-qam", "staging uses CRLF")
    result = cli(["promote", "dev", "staging", "--only", "new-checkout", "--yes"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    data = staging.read_bytes()
    assert b"{on: 40, off: 60}" in data
    assert data.count(b"\n") == data.count(b"\r\n")


def test_rollback__with_an_unrelated_error__is_not_blocked(cli, repo: Path) -> None:
    """Incidents first: a rollback never waits for an unrelated fix."""
    assert cli(["promote", "dev", "staging", "--yes", "--commit"], cwd=repo).exit_code == 0
    segments = repo / "environments" / "staging" / "segments.yaml"
    segments.write_text(segments.read_text() + "odd:\n  when: {plan: {bogus_op: 1}}\n")
    git(repo, "commit", "-qam", "an unrelated broken segment")
    result = cli(
        ["rollback", "staging", "--to", "HEAD~2", "--only", "new-checkout", "--yes"], cwd=repo
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "{on: 20, off: 80}" in (repo / "environments" / "staging" / "flags.yaml").read_text()
