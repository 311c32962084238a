"""flag rule add|remove|move, flag create's variants and kill switch, eval --context sources."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cli_schemas import check_output
from tests.test_edit_cli import COMMENTED, flags
from tests.test_edit_cli import repo as repo  # the commented dev flags file, committed


def status(root: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def test_rule_add__at_a_position__keeps_comments_and_numbers_from_one(cli, repo: Path) -> None:
    result = cli(
        [
            "flag",
            "rule",
            "add",
            "new-checkout",
            "--when",
            '{"plan": "pro"}',
            "--serve",
            "on",
            "--at",
            "2",
        ],
        cwd=repo,
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "environments/dev/flags.yaml: flag new-checkout rule 2 added: when {plan: pro} → on\n"
    )
    assert flags(repo) == COMMENTED.replace(
        "      serve: on\n    - when: {country",
        "      serve: on\n    - when: {plan: pro}\n      serve: on\n    - when: {country",
    )
    explained = cli(
        ["eval", "new-checkout", "-c", '{"user_id": "u1", "plan": "pro"}', "--explain"], cwd=repo
    )
    assert "RULE_MATCH rule 2" in explained.stdout.splitlines()[0]
    assert '  rule 2: match -> "on"' in explained.stdout


def test_rule_add__segment_with_a_rollout__appended_last(cli, repo: Path) -> None:
    result = cli(
        [
            "flag",
            "rule",
            "add",
            "banner-text",
            "--segment",
            "internal",
            "--rollout",
            "short=25,long=75",
            "--by",
            "account_id",
            "--name",
            "staff",
        ],
        cwd=repo,
    )
    assert result.exit_code == 0, result.stderr
    assert flags(repo) == COMMENTED.replace(
        "  prerequisites: [{flag: new-checkout, variant: on}]\n",
        # the file's own list style: dashes indented under the key
        "  prerequisites: [{flag: new-checkout, variant: on}]\n  rules:\n    - name: staff\n"
        "      segment: internal\n      serve: {rollout: {short: 25, long: 75}, by: account_id}\n",
    )
    assert cli(["validate", "--env", "dev"], cwd=repo).exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--serve", "on"], "give the rule one of --segment NAME or --when JSON"),
        (["--segment", "internal"], "give the rule one of --serve VARIANT or --rollout a=50,b=50"),
        (
            ["--segment", "internal", "--serve", "maybe"],
            "flag 'new-checkout' has no variant 'maybe'; its variants are on, off",
        ),
        (
            ["--segment", "internal", "--serve", "on", "--at", "4"],
            "flag 'new-checkout' has 2 rule(s); --at takes 1..3",
        ),
        (["--when", "{plan: pro}", "--serve", "on"], "--when is not valid JSON"),
        (
            ["--segment", "internal", "--rollout", "on=half"],
            "--rollout 'on=half': write variant=percent pairs",
        ),
    ],
)
def test_rule_add__bad_arguments__one_line_exit_2_nothing_written(
    cli, repo: Path, args, message
) -> None:
    result = cli(["flag", "rule", "add", "new-checkout", *args], cwd=repo)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {message}")
    assert status(repo) == ""


def test_rule_add__unknown_segment__is_refused_by_validation(cli, repo: Path) -> None:
    result = cli(
        ["flag", "rule", "add", "new-checkout", "--segment", "nobody", "--serve", "on"], cwd=repo
    )
    assert result.exit_code == 1
    assert "segment 'nobody' does not exist in dev" in result.stdout
    assert flags(repo) == COMMENTED


def test_rule_remove__takes_the_number_eval_shows(cli, repo: Path) -> None:
    result = cli(["flag", "rule", "remove", "new-checkout", "--rule", "1", "-f", "json"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    doc = check_output("flag rule remove", result.stdout)
    assert doc["description"] == "flag new-checkout rule 1 removed: segment internal → on"
    assert "    - segment: internal\n      serve: on\n" not in flags(repo)
    assert "    - when: {country: {in: [DE, FR]}}\n" in flags(repo)


def test_rule_remove__the_last_rule__drops_the_rules_key(cli, repo: Path) -> None:
    cli(["flag", "rule", "remove", "new-checkout", "--rule", "2"], cwd=repo)
    result = cli(["flag", "rule", "remove", "new-checkout", "--rule", "1"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    assert "rules:" not in flags(repo).split("banner-text")[0]
    again = cli(["flag", "rule", "remove", "new-checkout", "--rule", "1"], cwd=repo)
    assert again.exit_code == 2 and "has no rules" in again.stderr


def test_rule_move__reorders_and_dry_run_shows_the_diff(cli, repo: Path) -> None:
    preview = cli(
        ["flag", "rule", "move", "new-checkout", "--rule", "2", "--to", "1", "--dry-run"], cwd=repo
    )
    assert preview.exit_code == 0
    assert "+    - when: {country: {in: [DE, FR]}}" in preview.stdout
    assert flags(repo) == COMMENTED
    result = cli(["flag", "rule", "move", "new-checkout", "--rule", "2", "--to", "1"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    text = flags(repo)
    assert text.index("when: {country") < text.index("segment: internal")
    out_of_range = cli(
        ["flag", "rule", "move", "new-checkout", "--rule", "3", "--to", "1"], cwd=repo
    )
    assert out_of_range.exit_code == 2 and "--rule takes 1..2" in out_of_range.stderr


def test_flag_create__off_variant_defaults_to_the_default_variant(cli, repo: Path) -> None:
    result = cli(
        [
            "flag",
            "create",
            "banner",
            "--variants",
            'none=null,spring={"text":"Spring sale","color":"green"}',
            "--default",
            "none",
        ],
        cwd=repo,
    )
    assert result.exit_code == 0, result.stderr
    assert flags(repo).endswith(
        "banner:\n  variants: {none: null, spring: {text: Spring sale, color: green}}\n"
        "  enabled: true\n  off_variant: none\n  default: none\n"
    )
    cli(["flag", "disable", "banner"], cwd=repo)
    disabled = json.loads(cli(["eval", "banner", "-f", "json"], cwd=repo).stdout)
    assert (disabled["variant"], disabled["reason"]) == ("none", "DISABLED")


def test_flag_create__off_variant_option(cli, repo: Path) -> None:
    result = cli(
        [
            "flag",
            "create",
            "mode",
            "--variants",
            'a="x",b="y",c="z"',
            "--default",
            "b",
            "--off-variant",
            "a",
        ],
        cwd=repo,
    )
    assert result.exit_code == 0, result.stderr
    assert "  off_variant: a\n  default: b\n" in flags(repo)


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ("on=tru,off=false", "--variants: the value of 'on' is not JSON: tru"),
        ("on=true,on=false", "--variants names 'on' twice"),
        ("on", "--variants: 'on' is not name=value"),
        ('a={"x": 1', "--variants: the value of 'a' is not JSON"),
    ],
)
def test_flag_create__bad_variants__refused(cli, repo: Path, variants, message) -> None:
    result = cli(["flag", "create", "x", "--variants", variants], cwd=repo)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {message}")
    assert flags(repo) == COMMENTED


def test_flag_create__commas_inside_json_strings_and_arrays(cli, repo: Path) -> None:
    result = cli(
        [
            "flag",
            "create",
            "x",
            "--variants",
            'a="p,q",b=[1,2,{"c":"d,e"}]',
            "--default",
            "a",
            "-f",
            "json",
        ],
        cwd=repo,
    )
    assert result.exit_code == 0, result.stderr
    assert check_output("flag create", result.stdout)["written"] is True
    evaluated = json.loads(cli(["eval", "x", "-f", "json"], cwd=repo).stdout)
    assert evaluated["value"] == "p,q"


def test_eval_context__from_a_file_and_from_stdin(cli, repo: Path) -> None:
    (repo / "ctx.json").write_text('{"user_id": "user-17"}')
    from_file = json.loads(
        cli(["eval", "new-checkout", "-c", "@ctx.json", "-f", "json"], cwd=repo).stdout
    )
    assert from_file["reason"] == "TARGET_MATCH"
    from_stdin = cli(
        ["eval", "new-checkout", "-c", "-", "-f", "json"], cwd=repo, input='{"user_id": "user-17"}'
    )
    assert json.loads(from_stdin.stdout)["reason"] == "TARGET_MATCH"
    missing = cli(["eval", "new-checkout", "-c", "@nope.json"], cwd=repo)
    assert (missing.exit_code, missing.stderr) == (2, "error: --context @nope.json: no such file\n")
    listed = cli(["eval", "new-checkout", "-c", "-"], cwd=repo, input="[1, 2]")
    assert listed.exit_code == 2
    assert (
        "standard input must be a JSON object" in listed.stderr and "not an array" in listed.stderr
    )
