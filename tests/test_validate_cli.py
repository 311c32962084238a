from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.test_validate_corpus import CASES, build_case


def test_validate__clean_repository__exits_0_from_a_subdirectory(cli, tmp_path: Path) -> None:
    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    result = cli(["validate"], cwd=root / "environments" / "dev")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "0 errors, 0 warnings" in result.stderr


def test_validate__errors__exit_1_with_file_line_col(cli, tmp_path: Path) -> None:
    root = build_case("rollout-sum", tmp_path / "repo")
    result = cli(["validate"], cwd=root)
    assert result.exit_code == 1
    assert (
        "environments/dev/flags.yaml:13:15: error: rollout weights sum to 90, expected 100 [rollout-sum]"
        in result.stdout
    )


def test_validate__warnings_only__exit_0_unless_strict(cli, tmp_path: Path) -> None:
    root = build_case("warn-skipped-promotion", tmp_path / "repo")
    assert cli(["validate"], cwd=root).exit_code == 0
    strict = cli(["validate", "--strict"], cwd=root)
    assert strict.exit_code == 1
    assert "error: flag 'hotfix' is in prod but not in dev" in strict.stdout


def test_validate__json__is_stable_and_machine_readable(cli, tmp_path: Path) -> None:
    root = build_case("unknown-segment-rule", tmp_path / "repo")
    result = cli(["validate", "--format", "json"], cwd=root)
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["errors"] == 1
    assert doc["problems"] == [
        {
            "code": "unknown-segment",
            "column": 16,
            "file": "environments/dev/flags.yaml",
            "hint": "did you mean 'internal'?",
            "line": 10,
            "message": "segment 'internl' does not exist in dev",
            "path": ["new-checkout", "rules", 0, "segment"],
            "severity": "error",
        }
    ]


def test_validate__github_format__prints_workflow_annotations(cli, tmp_path: Path) -> None:
    root = build_case("unknown-segment-rule", tmp_path / "repo")
    result = cli(["validate", "--format", "github"], cwd=root)
    assert result.stdout == (
        "::error file=environments/dev/flags.yaml,line=10,col=16,title=flagstone unknown-segment::"
        "segment 'internl' does not exist in dev (did you mean 'internal'?)\n"
    )


def test_validate__inside_github_actions__defaults_to_annotations(
    cli, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    root = build_case("rollout-sum", tmp_path / "repo")
    assert cli(["validate"], cwd=root).stdout.startswith(
        "::error file=environments/dev/flags.yaml,line=13"
    )


def test_validate__markdown__has_a_table_row_per_problem(cli, tmp_path: Path) -> None:
    root = build_case("rollout-sum", tmp_path / "repo")
    result = cli(["validate", "--format", "markdown"], cwd=root)
    assert (
        "| ❌ | `environments/dev/flags.yaml:13:15` | rollout weights sum to 90, expected 100 | `rollout-sum` |"
        in result.stdout
    )


def test_validate__one_environment__reports_only_it(cli, tmp_path: Path) -> None:
    root = build_case("rollout-sum", tmp_path / "repo")
    result = cli(["validate", "--env", "prod"], cwd=root)
    assert result.exit_code == 0


def test_validate__no_repository__exit_2_suggests_init(cli, tmp_path: Path) -> None:
    result = cli(["validate"], cwd=tmp_path)
    assert result.exit_code == 2
    assert "no flagstone.yaml in" in result.stderr and "flagstone init" in result.stderr


def test_validate__unreadable_settings__exit_2_with_position(cli, tmp_path: Path) -> None:
    (tmp_path / "flagstone.yaml").write_text("environments: [dev\n")
    result = cli(["validate"], cwd=tmp_path)
    assert result.exit_code == 2
    assert "flagstone.yaml:" in result.stderr and "yaml-syntax" in result.stderr


def test_validate__real_entry_point__exit_codes(flagstone_exe, tmp_path: Path) -> None:
    good = shutil.copytree(CASES / "valid" / "base", tmp_path / "good")
    bad = build_case("prerequisite-cycle", tmp_path / "bad")
    assert flagstone_exe(["validate"], cwd=good).returncode == 0
    failed = flagstone_exe(["validate"], cwd=bad)
    assert failed.returncode == 1
    assert "prerequisite cycle: banner-text -> new-checkout -> banner-text" in failed.stdout
    missing = flagstone_exe(["validate"], cwd=tmp_path)
    assert missing.returncode == 2


def test_help__lists_validate(flagstone_exe, tmp_path: Path) -> None:
    result = flagstone_exe(["--help"], cwd=tmp_path)
    assert result.returncode == 0 and "validate" in result.stdout


def test_validate__unknown_environment__exit_2_lists_the_known_ones(cli, tmp_path: Path) -> None:
    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    result = cli(["validate", "--env", "qa"], cwd=root)
    assert result.exit_code == 2
    assert "unknown environment 'qa': flagstone.yaml lists dev, prod" in result.stderr


STALE_FLAG = "old-banner:\n  variants: {on: true, off: false}\n  default: on\n"


def test_validate__flag_fully_on_everywhere_and_unchanged__is_reported_stale(
    cli, git_repo, commit
) -> None:
    root = Path(git_repo.working_dir)
    files = {"flagstone.yaml": "environments: [dev, prod]\n"}
    for env in ("dev", "prod"):
        files[f"environments/{env}/flags.yaml"] = STALE_FLAG
    commit(files, "old flag", GIT_COMMITTER_DATE="2026-01-01T00:00:00+00:00")
    result = cli(["validate", "--format", "json"], cwd=root)
    problems = json.loads(result.stdout)["problems"]
    assert [(p["code"], p["file"]) for p in problems] == [
        ("stale-flag", "environments/prod/flags.yaml")
    ]
    assert "serves 'on' to everyone in every environment, unchanged for" in problems[0]["message"]
    assert result.exit_code == 0  # a warning


def test_validate__permanent_or_recently_changed_flag__is_not_stale(cli, git_repo, commit) -> None:
    root = Path(git_repo.working_dir)
    permanent = STALE_FLAG.replace("  default: on\n", "  default: on\n  lifetime: permanent\n")
    commit(
        {
            "flagstone.yaml": "environments: [dev, prod]\n",
            "environments/dev/flags.yaml": permanent,
            "environments/prod/flags.yaml": permanent,
        },
        "permanent toggle",
        GIT_COMMITTER_DATE="2026-01-01T00:00:00+00:00",
    )
    assert json.loads(cli(["validate", "--format", "json"], cwd=root).stdout)["problems"] == []
    (root / "environments/dev/flags.yaml").write_text(STALE_FLAG)
    (root / "environments/prod/flags.yaml").write_text(STALE_FLAG)  # uncommitted: changed just now
    assert json.loads(cli(["validate", "--format", "json"], cwd=root).stdout)["problems"] == []


def test_validate__a_revision__is_checked_against_its_own_config_schema(
    cli, repo_from_case, commit, git_repo
) -> None:
    from flagstone.edit import check_write
    from flagstone.load import load_repository

    root = repo_from_case("valid/base")
    schema = (root / "schemas" / "config.schema.json").read_text()
    assert '"integer"' in schema
    first = git_repo.head.commit.hexsha
    # The next revision's schema wants a string where every config holds a number.
    commit({"schemas/config.schema.json": schema.replace('"integer"', '"string"', 1)})
    assert cli(["validate", "--rev", first], cwd=root).exit_code == 0
    head = cli(["validate", "--rev", "HEAD", "--format", "json"], cwd=root)
    assert head.exit_code == 1
    assert {p["code"] for p in json.loads(head.stdout)["problems"]} == {"config-schema"}
    # Undo it in the working tree only: the committed revision still fails, the tree passes.
    (root / "schemas" / "config.schema.json").write_text(schema)
    assert cli(["validate", "--rev", "HEAD"], cwd=root).exit_code == 1
    assert cli(["validate"], cwd=root).exit_code == 0
    # A planned edit is checked against the schema the repository was read with, even
    # when the file on disk changes after the read.
    repo, _ = load_repository(root)
    (root / "schemas" / "config.schema.json").write_text("not json")
    config = repo.env("dev").config
    assert config is not None
    text = (root / config.file).read_text()
    checked = check_write(repo, "dev", {config.file: text})
    assert checked.allowed and checked.new == []
