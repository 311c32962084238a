from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from flagstone.scaffold import init_repository
from flagstone.validate import validate_repository


def test_init__scaffold__validates_and_its_specs_pass(cli, tmp_path: Path) -> None:
    target = tmp_path / "shop-config"
    result = cli(["init", str(target), "--project", "shop"], cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "Initialized a git repository" in result.stdout
    assert (target / ".git").is_dir()
    assert validate_repository(target) == []
    tested = cli(["test", "--format", "json"], cwd=target)
    assert json.loads(tested.stdout)["ok"] is True


def test_init__every_yaml_file__starts_with_a_schema_modeline(tmp_path: Path) -> None:
    init_repository(tmp_path, project="shop")
    for path in [
        tmp_path / "flagstone.yaml",
        *tmp_path.glob("environments/*/*.yaml"),
        *tmp_path.glob("specs/*.yaml"),
    ]:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        schema = (path.parent / first.split("=", 1)[1]).resolve()
        assert schema.is_file(), f"{path}: {schema} does not exist"


def test_init__existing_files__refused_and_nothing_written(cli, tmp_path: Path) -> None:
    (tmp_path / "flagstone.yaml").write_text("# mine\n")
    result = cli(["init"], cwd=tmp_path)
    assert result.exit_code == 2
    assert (
        "already exist" in result.stderr
        and "flagstone.yaml" in result.stderr
        and "--force" in result.stderr
    )
    assert (tmp_path / "flagstone.yaml").read_text() == "# mine\n"
    assert not (tmp_path / "environments").exists()


def test_init__force__overwrites(cli, tmp_path: Path) -> None:
    (tmp_path / "flagstone.yaml").write_text("# mine\n")
    assert cli(["init", "--force", "--project", "x"], cwd=tmp_path).exit_code == 0
    assert "project: x" in (tmp_path / "flagstone.yaml").read_text()


def test_init__custom_environments__ramp_rollouts_and_pin_urls(tmp_path: Path) -> None:
    init_repository(
        tmp_path, project="shop", environments=["dev", "qa", "live"], today=dt.date(2026, 1, 1)
    )
    assert "environments: [dev, qa, live]" in (tmp_path / "flagstone.yaml").read_text()
    assert "{on: 100, off: 0}" in (tmp_path / "environments/dev/flags.yaml").read_text()
    assert "{on: 10, off: 90}" in (tmp_path / "environments/live/flags.yaml").read_text()
    assert "expires: 2026-04-01" in (tmp_path / "environments/dev/flags.yaml").read_text()
    assert "https://api.example.com" in (tmp_path / "environments/live/config.yaml").read_text()
    assert validate_repository(tmp_path, today=dt.date(2026, 1, 1)) == []


def test_init__real_entry_point__inside_an_existing_git_repository(flagstone_exe, git_repo) -> None:
    root = Path(git_repo.working_dir)
    result = flagstone_exe(["init", "config"], cwd=root)
    assert result.returncode == 0, result.stderr
    assert "Initialized a git repository" not in result.stdout
    assert flagstone_exe(["validate"], cwd=root / "config").returncode == 0


def test_init__dry_run__lists_the_files_and_writes_nothing(cli, tmp_path: Path) -> None:
    from tests.cli_schemas import check_output

    target = tmp_path / "new"
    result = cli(["init", str(target), "--dry-run", "--format", "json"], cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    doc = check_output("init", result.stdout)
    assert doc["dry_run"] is True and doc["git_initialized"] is False
    assert "flagstone.yaml" in doc["written"] and "environments/prod/flags.yaml" in doc["written"]
    assert not target.exists()
    text = cli(["init", "--dry-run"], cwd=tmp_path)
    assert "would write" in text.stdout and "nothing written" in text.stdout
    assert not any(tmp_path.iterdir())
    # The same refusal as a real run: a dry run never promises what would fail.
    (tmp_path / "flagstone.yaml").write_text("# mine\n")
    assert cli(["init", "--dry-run"], cwd=tmp_path).exit_code == 2
    assert (tmp_path / "flagstone.yaml").read_text() == "# mine\n"


@pytest.mark.parametrize(
    ("names", "words"),
    [
        ("dev,../../../../escaped", "environment '../../../../escaped' is not a valid name"),
        ("dev,/abs/path", "environment '/abs/path' is not a valid name"),
        ("", "no environment given"),
        (" , ", "no environment given"),
        ("dev,dev", "environment 'dev' is listed twice"),
        ("dev,Prod", "environment 'Prod' is not a valid name"),
    ],
)
def test_init__bad_environment_names__refused_before_anything_is_written(
    cli, tmp_path: Path, names: str, words: str
) -> None:
    target = tmp_path / "a" / "b" / "c" / "d" / "repo"
    result = cli(["init", str(target), "--environments", names], cwd=tmp_path)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.rglob("*")) == []  # not the target, not its parents, not ../escaped
