"""flag/segment/experiment list and show, config list, and delete refusing what is used."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli_schemas import check_output


@pytest.fixture
def repo(repo_from_case) -> Path:
    return repo_from_case("valid/base")


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


def test_flag_list__one_row_per_flag_one_column_per_environment(cli, repo: Path) -> None:
    prod = repo / "environments" / "prod" / "flags.yaml"
    prod.write_text(prod.read_text().replace("  enabled: true\n", "  enabled: false\n", 1))
    result = cli(["flag", "list"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["flag", "dev", "prod"]
    assert lines[2].split() == ["banner-text", "short", "short"]
    assert lines[3].split() == ["new-checkout", "off", "·", "2", "rules", "disabled", "→", "off"]
    doc = check_output("flag list", cli(["flag", "list", "-f", "json"], cwd=repo).stdout)
    checkout = doc["items"][1]["environments"]
    assert (checkout["dev"]["enabled"], checkout["prod"]["enabled"]) == (True, False)
    assert checkout["dev"]["rules"] == 2


def test_flag_show__side_by_side__marks_what_uses_it(cli, repo: Path) -> None:
    prod = repo / "environments" / "prod" / "flags.yaml"
    prod.write_text(prod.read_text().replace("{on: 20, off: 80}", "{on: 50, off: 50}"))
    result = cli(["flag", "show", "new-checkout"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    rows = {
        line.split()[0] + " " + line.split()[1]: line for line in result.stdout.splitlines()[2:]
    }
    assert "when {country: {in: [DE, FR]}} → rollout on 20% / off 80%" in rows["rule 2"]
    assert "rollout on 50% / off 50%" in rows["rule 2"]
    assert rows["rule 1"].count("segment internal → on") == 2
    assert "flag banner-text (as a prerequisite)" in rows["used by"]
    assert "experiment checkout-test (as its flag)" in rows["used by"]
    doc = check_output(
        "flag show", cli(["flag", "show", "new-checkout", "-f", "json"], cwd=repo).stdout
    )
    assert doc["environments"]["prod"]["value"]["rules"][1]["serve"] == {
        "rollout": {"on": 50, "off": 50}
    }
    markdown = cli(["flag", "show", "new-checkout", "-f", "markdown"], cwd=repo).stdout
    assert "| rule 2 | when {country: {in: [DE, FR]}} → rollout on 20% / off 80% |" in markdown


def test_flag_show__in_one_environment_only__shows_a_dash_elsewhere(cli, repo: Path) -> None:
    dev = repo / "environments" / "dev" / "flags.yaml"
    dev.write_text(dev.read_text() + "solo:\n  variants: {a: 1, b: 2}\n  default: a\n")
    result = cli(["flag", "show", "solo"], cwd=repo)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[2].split() == ["variants", "{a:", "1,", "b:", "2}", "—"]


def test_flag_show__unknown_key__suggests_the_closest(cli, repo: Path) -> None:
    result = cli(["flag", "show", "new-chekout", "-f", "json"], cwd=repo)
    assert result.exit_code == 2
    assert check_output("flag show", result.stdout)["error"]["message"] == (
        "no flag 'new-chekout' in dev, prod; did you mean 'new-checkout'?"
    )


def test_segment_list_and_show(cli, repo: Path) -> None:
    listed = cli(["segment", "list"], cwd=repo)
    assert listed.stdout.splitlines()[2].split()[:2] == ["internal", "{email:"]
    shown = cli(["segment", "show", "internal", "--env", "prod"], cwd=repo)
    assert shown.exit_code == 0
    assert "flag new-checkout (in rule 1)" in shown.stdout
    assert "dev" not in shown.stdout.splitlines()[0]


def test_experiment_list_and_show(cli, repo: Path) -> None:
    listed = cli(["experiment", "list", "-f", "json"], cwd=repo)
    doc = check_output("experiment list", listed.stdout)
    assert doc["items"][0]["environments"]["prod"] == {
        "file": "environments/prod/experiments.yaml",
        "status": "running",
        "flag": "new-checkout",
        "traffic": 50,
    }
    shown = cli(["experiment", "show", "checkout-test"], cwd=repo)
    assert "layer" in shown.stdout and "checkout" in shown.stdout


def test_config_list__dotted_keys_side_by_side__pinned_marked__secrets_hidden(
    cli, repo: Path
) -> None:
    # api.token is x-flagstone-secret in the case's schema; api.base_url x-flagstone-pinned
    for env in ("dev", "prod"):
        path = repo / "environments" / env / "config.yaml"
        path.write_text(path.read_text() + f"  token: hunter2-{env}\n")
    result = cli(["config", "list"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()[2:]]
    assert lines == [
        ["api.base_url", "(pinned)", '"https://dev.shop.test"', '"https://shop.test"'],
        ["api.timeout_ms", "500", "500"],
        ["api.token", "<secret>", "<secret>"],
    ]
    doc = check_output("config list", cli(["config", "list", "api", "-f", "json"], cwd=repo).stdout)
    assert doc["keys"][2] == {
        "key": "api.token",
        "secret": True,
        "pinned": False,
        "values": {"dev": None, "prod": None},
    }
    for fmt in ("text", "json", "markdown"):
        assert "hunter2" not in cli(["config", "list", "-f", fmt], cwd=repo).stdout
    narrowed = cli(["config", "list", "api.timeout_ms", "-e", "prod"], cwd=repo)
    assert [line.split() for line in narrowed.stdout.splitlines()] == [
        ["key", "prod"],
        [narrowed.stdout.splitlines()[1].strip()],
        ["api.timeout_ms", "500"],
    ]


def test_flag_delete__refused_while_used__names_every_user_with_its_line(cli, repo: Path) -> None:
    before = git(repo, "rev-parse", "HEAD")
    result = cli(["flag", "delete", "new-checkout"], cwd=repo)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "environments/dev/experiments.yaml:2:9: error: flag 'new-checkout' is used by "
        "experiment checkout-test (as its flag) in dev [still-referenced]",
        "environments/dev/flags.yaml:19:19: error: flag 'new-checkout' is used by "
        "flag banner-text (as a prerequisite) in dev [still-referenced]",
    ]
    assert "nothing was deleted" in result.stderr
    assert git(repo, "status", "--porcelain") == "" and git(repo, "rev-parse", "HEAD") == before


def test_segment_delete__refused_while_a_rule_uses_it(cli, repo: Path) -> None:
    result = cli(["segment", "delete", "internal", "-f", "json"], cwd=repo)
    assert result.exit_code == 1
    doc = check_output("segment delete", result.stdout)
    assert [p["message"] for p in doc["problems"]] == [
        "segment 'internal' is used by flag new-checkout (in rule 1) in dev"
    ]
    assert doc["written"] is False


def test_flag_delete__unused__removes_only_its_block_and_commits(cli, repo: Path) -> None:
    flags = repo / "environments" / "dev" / "flags.yaml"
    before = flags.read_text()
    result = cli(
        ["flag", "delete", "banner-text", "--env", "dev", "--env", "prod", "--commit"], cwd=repo
    )
    assert result.exit_code == 0, result.stderr
    assert flags.read_text() == before[: before.index("banner-text:")]
    assert "banner-text" not in (repo / "environments" / "prod" / "flags.yaml").read_text()
    assert git(repo, "log", "-1", "--format=%s").strip() == "dev, prod: flag banner-text deleted"
    assert git(repo, "status", "--porcelain") == ""


def test_flag_delete__folder_layout__removes_the_file_it_empties(cli, repo: Path) -> None:
    folder = repo / "environments" / "dev" / "flags"
    folder.mkdir()
    flags = repo / "environments" / "dev" / "flags.yaml"
    text = flags.read_text()
    cut = text.index("banner-text:")
    (folder / "checkout.yaml").write_text(text[:cut])
    (folder / "banner.yaml").write_text(text[cut:])
    flags.unlink()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "split")
    result = cli(["flag", "delete", "banner-text", "--commit"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    assert not (folder / "banner.yaml").exists()
    assert git(repo, "status", "--porcelain") == ""
    assert "environments/dev/flags/banner.yaml" in git(repo, "show", "--stat", "--format=", "HEAD")


def test_flag_delete__dry_run__shows_the_diff_and_writes_nothing(cli, repo: Path) -> None:
    result = cli(["flag", "delete", "banner-text", "--dry-run"], cwd=repo)
    assert result.exit_code == 0
    assert "-banner-text:" in result.stdout
    assert "nothing written" in result.stderr
    assert git(repo, "status", "--porcelain") == ""
