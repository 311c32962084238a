from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_validate_corpus import CASES


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    assert old in text, (rel, old)
    path.write_text(text.replace(old, new))


@pytest.fixture
def repo(git_repo, commit) -> Path:
    root = Path(git_repo.working_dir)
    shutil.copytree(CASES / "valid" / "base", root, dirs_exist_ok=True)
    commit(
        message="base",
        GIT_AUTHOR_NAME="Ann",
        GIT_AUTHOR_EMAIL="ann@example.test",
        GIT_AUTHOR_DATE="2026-01-01T10:00:00+00:00",
        GIT_COMMITTER_DATE="2026-01-01T10:00:00+00:00",
    )
    edit(root, "environments/prod/flags.yaml", "on: 20, off: 80", "on: 50, off: 50")
    commit(
        message="ramp checkout",
        GIT_AUTHOR_NAME="Bob",
        GIT_AUTHOR_EMAIL="bob@example.test",
        GIT_AUTHOR_DATE="2026-02-01T10:00:00+00:00",
        GIT_COMMITTER_DATE="2026-02-01T10:00:00+00:00",
    )
    edit(root, "environments/prod/config.yaml", "timeout_ms: 500", "timeout_ms: 800")
    edit(root, "environments/prod/flags.yaml", "  default: short", "  default: long")
    commit(
        message="timeouts and banner",
        GIT_AUTHOR_NAME="Cy",
        GIT_AUTHOR_EMAIL="cy@example.test",
        GIT_AUTHOR_DATE="2026-03-01T10:00:00+00:00",
        GIT_COMMITTER_DATE="2026-03-01T10:00:00+00:00",
    )
    return root


def history(cli, root: Path, *args: str) -> list[dict]:
    result = cli(["history", *args, "--format", "json"], cwd=root)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["entries"]


def test_history__one_flag__newest_first_with_author_and_change(cli, repo: Path) -> None:
    entries = history(cli, repo, "new-checkout", "--env", "prod")
    assert [(e["author"], e["changes"]) for e in entries] == [
        ("Bob", ["rule 2 rollout on 20% → 50%, off 80% → 50%"]),
        ("Ann", ["flag added"]),
    ]
    assert entries[0]["signature"] == "N"


def test_history__config_key__and_filters(cli, repo: Path) -> None:
    entries = history(cli, repo, "api.timeout_ms", "--env", "prod")
    assert [(e["author"], e["changes"]) for e in entries] == [
        ("Cy", ["500 → 800"]),
        ("Ann", ["config key added"]),
    ]
    assert [e["author"] for e in history(cli, repo, "new-checkout", "--since", "2026-01-15")] == [
        "Bob"
    ]
    assert [e["author"] for e in history(cli, repo, "new-checkout", "--author", "ann@")] == [
        "Ann",
        "Ann",
    ]


def test_history__follows_a_kind_moving_from_a_file_to_a_folder(cli, repo: Path, commit) -> None:
    flags = repo / "environments" / "prod" / "flags.yaml"
    text = flags.read_text()
    (repo / "environments" / "prod" / "flags").mkdir()
    (repo / "environments" / "prod" / "flags" / "checkout.yaml").write_text(
        text.split("banner-text:")[0]
    )
    (repo / "environments" / "prod" / "flags" / "banner.yaml").write_text(
        "banner-text:" + text.split("banner-text:")[1]
    )
    flags.unlink()
    commit(message="split flags into a folder")
    edit(repo, "environments/prod/flags/checkout.yaml", "on: 50, off: 50", "on: 60, off: 40")
    commit(message="ramp again")
    entries = history(cli, repo, "new-checkout", "--env", "prod")
    assert [e["subject"] for e in entries] == ["ramp again", "ramp checkout", "base"]


def test_rollback__restores_the_environment_as_a_new_commit(cli, repo: Path) -> None:
    first = git(repo, "rev-list", "--max-parents=0", "HEAD").strip()
    result = cli(["rollback", "prod", "--to", first, "--yes"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "4"  # history is never rewritten
    assert (repo / "environments" / "prod" / "flags.yaml").read_text() == (
        CASES / "valid" / "base" / "environments" / "prod" / "flags.yaml"
    ).read_text()
    assert cli(["validate"], cwd=repo).exit_code == 0
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith(f"Roll back prod to {first[:12]} (every key)")
    assert f"Flagstone-Rollback: prod to {first}" in message
    latest = history(cli, repo, "new-checkout", "--env", "prod")[0]
    assert latest["subject"].startswith("Roll back prod") and latest["changes"] == [
        "rule 2 rollout on 50% → 20%, off 50% → 80%"
    ]


def test_rollback__only_one_key__keeps_the_rest(cli, repo: Path) -> None:
    result = cli(
        ["rollback", "prod", "--to", "HEAD~2", "--only", "api.timeout_ms", "--yes"], cwd=repo
    )
    assert result.exit_code == 0, result.stderr
    assert "timeout_ms: 500" in (repo / "environments/prod/config.yaml").read_text()
    assert "default: long" in (repo / "environments/prod/flags.yaml").read_text()


def test_rollback__to_date(cli, repo: Path) -> None:
    assert cli(["rollback", "prod", "--to-date", "2026-01-15", "--yes"], cwd=repo).exit_code == 0
    assert "on: 20, off: 80" in (repo / "environments/prod/flags.yaml").read_text()


def test_rollback__invalid_result__aborts_and_leaves_the_tree_clean(
    cli, repo: Path, commit
) -> None:
    schema = repo / "schemas" / "config.schema.json"
    schema.write_text(schema.read_text().replace('"minimum": 1', '"minimum": 600'))
    edit(repo, "environments/dev/config.yaml", "timeout_ms: 500", "timeout_ms: 700")
    commit(message="timeouts must be at least 600")
    result = cli(["rollback", "prod", "--to", "HEAD~3", "--yes"], cwd=repo)
    assert result.exit_code == 1
    assert "api.timeout_ms: 500 is less than the minimum of 600" in result.stdout
    assert git(repo, "status", "--porcelain") == ""


def test_revert__undoes_one_commit_key_by_key_keeping_later_changes(
    cli, repo: Path, commit
) -> None:
    edit(repo, "environments/prod/flags.yaml", "on: 50, off: 50", "on: 70, off: 30")
    commit(message="ramp to 70")
    target = git(repo, "rev-parse", "HEAD~1").strip()  # "timeouts and banner"
    result = cli(["revert", target, "--yes"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    flags = (repo / "environments/prod/flags.yaml").read_text()
    assert "default: short" in flags and "on: 70, off: 30" in flags
    assert "timeout_ms: 500" in (repo / "environments/prod/config.yaml").read_text()
    assert f"Flagstone-Revert: {target}" in git(repo, "log", "-1", "--format=%B")


def test_revert__a_key_changed_again_since__is_a_conflict(cli, repo: Path, commit) -> None:
    ramp = git(repo, "rev-parse", "HEAD~1").strip()  # "ramp checkout"
    edit(repo, "environments/prod/flags.yaml", "on: 50, off: 50", "on: 70, off: 30")
    commit(message="ramp to 70")
    result = cli(["revert", ramp, "--yes"], cwd=repo)
    assert result.exit_code == 2
    assert "new-checkout changed again since" in result.stderr
    assert git(repo, "status", "--porcelain") == ""


def test_history__across_branches_and_merges__credits_the_branch_commit(
    cli, repo: Path, commit
) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    edit(repo, "environments/prod/flags.yaml", "on: 50, off: 50", "on: 60, off: 40")
    commit(
        message="feature: ramp to 60",
        GIT_AUTHOR_NAME="Dee",
        GIT_AUTHOR_EMAIL="dee@example.test",
        GIT_AUTHOR_DATE="2026-04-01T10:00:00+00:00",
        GIT_COMMITTER_DATE="2026-04-01T10:00:00+00:00",
    )
    git(repo, "checkout", "-q", "main")
    edit(repo, "environments/prod/config.yaml", "timeout_ms: 800", "timeout_ms: 900")
    commit(
        message="main: timeout",
        GIT_AUTHOR_NAME="Eve",
        GIT_AUTHOR_EMAIL="eve@example.test",
        GIT_AUTHOR_DATE="2026-04-02T10:00:00+00:00",
        GIT_COMMITTER_DATE="2026-04-02T10:00:00+00:00",
    )
    git(repo, "merge", "-q", "--no-ff", "--no-edit", "feature")
    flag = history(cli, repo, "new-checkout", "--env", "prod")
    assert [(e["author"], e["changes"]) for e in flag[:2]] == [
        ("Dee", ["rule 2 rollout on 50% → 60%, off 50% → 40%"]),
        ("Bob", ["rule 2 rollout on 20% → 50%, off 80% → 50%"]),
    ]
    timeout = history(cli, repo, "api.timeout_ms", "--env", "prod")
    assert [e["author"] for e in timeout] == ["Eve", "Cy", "Ann"]


def test_rollback__only_a_key__brings_back_its_old_layout_and_comments(
    cli, repo: Path, commit
) -> None:
    original = (repo / "environments/prod/flags.yaml").read_text()
    edit(
        repo,
        "environments/prod/flags.yaml",
        "  rules:\n",
        "  # the rules below are under review\n  rules:\n",
    )
    commit(message="comment")
    result = cli(
        ["rollback", "prod", "--to", "HEAD~3", "--only", "new-checkout", "--yes"], cwd=repo
    )
    assert result.exit_code == 0, result.stderr
    restored = (repo / "environments/prod/flags.yaml").read_text()
    # new-checkout is back exactly as it was at HEAD~3; banner-text keeps its later change.
    assert restored == original.replace("on: 50, off: 50", "on: 20, off: 80")


def test_rollback__whole_environment__deletes_files_added_since(cli, repo: Path, commit) -> None:
    extra = repo / "environments" / "prod" / "experiments.yaml"
    assert extra.exists()
    first = git(repo, "rev-list", "--max-parents=0", "HEAD").strip()
    extra.unlink()
    (repo / "environments" / "prod" / "segments.yaml").unlink()
    segments = repo / "environments" / "prod" / "segments"
    segments.mkdir()
    (segments / "internal.yaml").write_text(
        (CASES / "valid" / "base" / "environments" / "prod" / "segments.yaml").read_text()
    )
    commit(message="segments into a folder, experiments removed")
    result = cli(["rollback", "prod", "--to", first, "--yes"], cwd=repo)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert extra.exists() and (repo / "environments" / "prod" / "segments.yaml").exists()
    assert not (segments / "internal.yaml").exists()
    assert git(repo, "status", "--porcelain") == ""
    assert cli(["validate"], cwd=repo).exit_code == 0


# --- history tells the truth --------------------------------------------------------------


def run_json(cli, root: Path, *args: str) -> tuple[int, dict]:
    result = cli([*args, "--format", "json"], cwd=root)
    return result.exit_code, json.loads(result.stdout)


def test_history__across_commits_that_touch_no_environment__compares_with_the_real_parent(
    cli, repo: Path, commit
) -> None:
    commit({"README.md": "# shop configuration\n"}, message="docs")
    edit(repo, "flagstone.yaml", "project: shop", "project: shop-config")
    commit(message="rename the project")
    edit(repo, "environments/prod/flags.yaml", "on: 50, off: 50", "on: 60, off: 40")
    commit(message="ramp again")
    entries = history(cli, repo, "new-checkout", "--env", "prod")
    assert [e["changes"] for e in entries] == [
        ["rule 2 rollout on 50% → 60%, off 50% → 40%"],
        ["rule 2 rollout on 20% → 50%, off 80% → 50%"],
        ["flag added"],
    ]
    audit = history(cli, repo, "--env", "prod")
    assert next((e["key"], e["action"]) for e in audit if e["env"] == "prod") == (
        "new-checkout",
        "changed",
    )
    first = audit[-1]["commit"]
    assert {e["action"] for e in audit if e["commit"] != first} == {"changed"}
    assert next(e["changes"] for e in audit if e["kind"] == "settings") == ["project changed"]


def test_history__a_file_that_does_not_parse__is_a_file_error_not_a_removal(
    cli, repo: Path, commit
) -> None:
    flags = repo / "environments/prod/flags.yaml"
    good = flags.read_text()
    flags.write_text(good.replace("  default: long", "  default: [long"))  # broken YAML
    broken = commit(message="oops")
    flags.write_text(good.replace("on: 50, off: 50", "on: 70, off: 30"))
    commit(message="fix and ramp")
    code, doc = run_json(cli, repo, "history", "--env", "prod")
    assert code == 1 and doc["ok"] is False
    errors = [e for e in doc["entries"] if e["problem"]]
    assert [(e["commit"], e["action"], e["key"]) for e in errors] == [
        (broken, "unreadable", "environments/prod/flags.yaml")
    ]
    assert errors[0]["problem"]["code"] == "yaml-syntax"
    assert not any(e["action"] in ("removed", "added") for e in doc["entries"][:-8])
    # The fix is compared with the last readable version: one real change, nothing re-added.
    latest = [e for e in doc["entries"] if e["subject"] == "fix and ramp"]
    assert [(e["key"], e["changes"]) for e in latest] == [
        ("new-checkout", ["rule 2 rollout on 50% → 70%, off 50% → 30%"])
    ]
    code, doc = run_json(cli, repo, "history", "banner-text", "--env", "prod")
    assert code == 1
    assert [e["action"] for e in doc["entries"]][:2] == ["unreadable", "changed"]


def test_history__symlink_leaving_the_repository__is_a_file_error_in_both_readers(
    cli, repo: Path, commit, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("stolen:\n  variants: {on: true}\n  default: on\n")
    (repo / "environments/prod/segments.yaml").unlink()
    (repo / "environments/prod/segments.yaml").symlink_to(outside)
    link = commit(message="link segments outside")
    code, doc = run_json(cli, repo, "history", "--env", "prod")
    assert code == 1
    assert [
        (e["commit"], e["action"], e["problem"]["code"]) for e in doc["entries"] if e["problem"]
    ] == [(link, "unreadable", "symlink")]
    assert not any(e["key"] == "internal" and e["action"] == "removed" for e in doc["entries"])
    # The working tree and the commit agree: both refuse the link.
    validated = cli(["validate", "--env", "prod", "--format", "json"], cwd=repo)
    assert validated.exit_code == 1
    assert "symlink" in [p["code"] for p in json.loads(validated.stdout)["problems"]]


def test_history__missing_environment_folder__is_reported_not_every_key_removed(
    cli, repo: Path, commit
) -> None:
    git(repo, "rm", "-rq", "environments/prod")
    gone = commit(message="lost prod")
    code, doc = run_json(cli, repo, "history", "new-checkout")
    assert code == 1
    assert next((e["commit"], e["action"]) for e in doc["entries"]) == (gone, "missing")
    assert not any(e["action"] == "removed" for e in doc["entries"])


def test_history__shallow_clone__names_its_boundary(cli, repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "2", f"file://{repo}", str(clone))
    code, doc = run_json(cli, clone, "history", "new-checkout", "--env", "prod")
    assert code == 0
    assert [e["action"] for e in doc["entries"]] == ["boundary"]
    assert "shallow clone boundary" in doc["entries"][0]["changes"][0]
    code, doc = run_json(cli, clone, "history", "--env", "prod")
    assert [e["action"] for e in doc["entries"]] == ["changed", "changed", "boundary"]


def test_history__bad_revision_in_rollback__one_sentence(cli, repo: Path) -> None:
    result = cli(["rollback", "prod", "--to", "no-such-rev", "--yes"], cwd=repo)
    assert result.exit_code == 2
    assert "unknown revision 'no-such-rev'" in result.stderr and "Traceback" not in result.stderr


def test_history__audit_log__every_key_with_author_promotion_and_filters(
    cli, repo: Path, commit
) -> None:
    edit(repo, "environments/dev/flags.yaml", "on: 20, off: 80", "on: 50, off: 50")
    commit(
        message="Promote\n\nFlagstone-Promote: dev -> prod\nFlagstone-Keys: flags.new-checkout",
        GIT_AUTHOR_NAME="Dee",
        GIT_AUTHOR_EMAIL="dee@example.test",
        GIT_AUTHOR_DATE="2026-04-01T10:00:00+00:00",
    )
    entries = history(cli, repo)
    assert [(e["author"], e["env"], e["key"], e["action"]) for e in entries[:4]] == [
        ("Dee", "dev", "new-checkout", "changed"),
        ("Cy", "prod", "banner-text", "changed"),
        ("Cy", "prod", "api.timeout_ms", "changed"),
        ("Bob", "prod", "new-checkout", "changed"),
    ]
    assert entries[0]["trailers"]["Flagstone-Promote"] == "dev -> prod"
    assert entries[0]["signature_status"] == "unsigned"
    assert [e["author"] for e in history(cli, repo, "--author", "cy")] == ["Cy", "Cy"]
    assert {e["author"] for e in history(cli, repo, "--since", "2026-02-15")} == {"Cy", "Dee"}
    markdown = cli(["history", "--format", "markdown"], cwd=repo).stdout
    assert "| `new-checkout` |" in markdown
    text = cli(["history", "--env", "prod"], cwd=repo)
    assert text.exit_code == 0 and "api.timeout_ms: 500 → 800" in text.stdout


def test_history__oversized_file__is_a_file_error_and_never_read(cli, repo: Path, commit) -> None:
    from flagstone.load import MAX_FILE_BYTES

    segments = repo / "environments/prod/segments.yaml"
    segments.write_text(segments.read_text() + "#" * MAX_FILE_BYTES + "\n")
    big = commit(message="a huge comment")
    code, doc = run_json(cli, repo, "history", "--env", "prod")
    assert code == 1
    assert [(e["commit"], e["problem"]["code"]) for e in doc["entries"] if e["problem"]] == [
        (big, "file-too-large")
    ]
    assert not any(e["action"] == "removed" for e in doc["entries"])


def test_diff_rev__a_file_that_does_not_parse__is_reported_not_diffed(
    cli, repo: Path, commit
) -> None:
    before = git(repo, "rev-parse", "HEAD").strip()
    flags = repo / "environments/prod/flags.yaml"
    flags.write_text(flags.read_text().replace("  default: long", "  default: [long"))
    edit(repo, "environments/prod/config.yaml", "timeout_ms: 800", "timeout_ms: 900")
    commit(message="oops, and a real change")
    code, doc = run_json(cli, repo, "diff", "--rev", f"{before}..HEAD")
    assert code == 1 and doc["ok"] is False
    assert [(p["file"], p["code"]) for p in doc["problems"]] == [
        ("environments/prod/flags.yaml", "yaml-syntax")
    ]
    # No "flag removed" for the unreadable file; the readable config change is shown.
    assert [(c["kind"], c["key"]) for c in doc["changes"]] == [("config", "api.timeout_ms")]
    comment = cli(["diff", "--rev", f"{before}..HEAD", "--format", "markdown"], cwd=repo)
    assert comment.exit_code == 1
    lines = comment.stdout.splitlines()
    assert lines[0] == "<!-- flagstone-diff -->"
    assert lines[1].startswith("> ❌ `environments/prod/flags.yaml:")
    assert "removed" not in comment.stdout


def test_diff_rev__missing_environment_folder__is_reported(cli, repo: Path, commit) -> None:
    before = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "rm", "-rq", "environments/prod")
    commit(message="lost prod")
    code, doc = run_json(cli, repo, "diff", "--rev", f"{before}..HEAD")
    assert code == 1
    assert [p["code"] for p in doc["problems"]] == ["missing-environment"]
    assert doc["changes"] == []


def test_promote__unreadable_source_file__refused_before_anything_is_written(
    cli, repo: Path
) -> None:
    dev = repo / "environments/dev/flags.yaml"
    dev.write_text(dev.read_text() + "broken: [\n")
    before = (repo / "environments/prod/flags.yaml").read_bytes()
    result = cli(["promote", "dev", "prod", "--yes", "--skip-order", "test"], cwd=repo)
    assert result.exit_code == 1
    assert "cannot promote: environments/dev/flags.yaml cannot be read" in result.stderr
    assert (repo / "environments/prod/flags.yaml").read_bytes() == before


def test_symlinks__followed_inside_environments_refused_elsewhere__by_every_reader(
    cli, repo: Path, commit
) -> None:
    segments = repo / "environments/prod/segments.yaml"
    segments.unlink()
    segments.symlink_to("../dev/segments.yaml")  # prod shares dev's segments
    commit(message="prod segments from dev")
    assert cli(["validate", "--env", "prod"], cwd=repo).exit_code == 0
    code, doc = run_json(cli, repo, "history", "--env", "prod")
    assert code == 0
    assert not any(e["subject"] == "prod segments from dev" for e in doc["entries"])
    for rev in ("HEAD~1..HEAD", "HEAD.."):
        code, doc = run_json(cli, repo, "diff", "--rev", rev, "--env", "prod")
        assert (code, doc["changes"], doc["problems"]) == (0, [], []), rev
    # A link out of environments/ (still inside the repository) is refused alike.
    (repo / "shared").mkdir()
    (repo / "shared/segments.yaml").write_bytes(
        (repo / "environments/dev/segments.yaml").read_bytes()
    )
    segments.unlink()
    segments.symlink_to("../../shared/segments.yaml")
    outside = commit(message="prod segments from shared/")
    validated = cli(["validate", "--env", "prod", "--format", "json"], cwd=repo)
    assert [p["code"] for p in json.loads(validated.stdout)["problems"]] == ["symlink"]
    code, doc = run_json(cli, repo, "history", "--env", "prod")
    assert [(e["commit"], e["problem"]["code"]) for e in doc["entries"] if e["problem"]] == [
        (outside, "symlink")
    ]
    code, doc = run_json(cli, repo, "diff", "--rev", "HEAD~1..HEAD", "--env", "prod")
    assert code == 1 and [p["code"] for p in doc["problems"]] == ["symlink"]
    assert doc["changes"] == []


def test_history__markdown__authors_keys_and_values_cannot_inject_markup(
    cli, repo: Path, commit
) -> None:
    """The audit log pasted into a PR or a decision record shows what was committed, as
    written: no HTML, heading, emphasis, link, table cell or @mention comes from the repo."""
    edit(
        repo,
        "environments/prod/flags.yaml",
        "    long: Hello there",
        '    long: "**x** <img src=y onerror=alert(1)> @everyone | [a](http://e.test) <!-- m -->"',
    )
    commit(
        message="## heading <!-- flagstone-diff --> @team",
        GIT_AUTHOR_NAME="Mallory @octocat **bold** [link](http://e.test) | cell",
        GIT_AUTHOR_EMAIL="m@example.test",
    )
    markdown = cli(["history", "--format", "markdown"], cwd=repo).stdout
    row = next(line for line in markdown.splitlines() if "Mallory" in line)
    for raw in ("@octocat", "@everyone", "**", "<img", "<!--", "[link]", "[a]"):
        assert raw not in row, (raw, row)
    cells = [c for c in re.split(r"(?<!\\)\|", row)[1:-1]]
    assert len(cells) == 7, cells  # the table keeps its columns
    assert "&lt;img src=y onerror=alert(1)&gt;" in cells[6]
    assert "Mallory @\u2060octocat \\*\\*bold\\*\\*" in cells[1]
    text = cli(["history", "--format", "text"], cwd=repo).stdout
    assert "Mallory @octocat **bold**" in text  # the terminal shows it as written


def test_environment_folder_renamed__diff_rev_and_history_show_both_sides(
    cli, repo: Path, commit
) -> None:
    """prod renamed to production (folder and flagstone.yaml in one commit): what prod held
    is shown as gone and production's keys as new, never silently dropped."""
    before = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "mv", "environments/prod", "environments/production")
    edit(repo, "flagstone.yaml", "[dev, prod]", "[dev, production]")
    commit(message="prod is now production")
    code, doc = run_json(cli, repo, "diff", "--rev", f"{before}..HEAD")
    assert code == 0 and doc["problems"] == []
    by_env = {
        env: {(c["kind"], c["key"], c["action"]) for c in doc["changes"] if c["env"] == env}
        for env in ("prod", "production")
    }
    assert ("flags", "new-checkout", "removed") in by_env["prod"]
    assert ("flags", "new-checkout", "added") in by_env["production"]
    assert {k for _, k, _ in by_env["prod"]} == {k for _, k, _ in by_env["production"]}
    assert all(a == "removed" for *_, a in by_env["prod"])
    # --env narrows to environments flagstone.yaml lists now
    code, doc = run_json(cli, repo, "diff", "--rev", f"{before}..HEAD", "--env", "production")
    assert {c["env"] for c in doc["changes"]} == {"production"}
    entries = history(cli, repo)
    renamed = [e for e in entries if e["subject"] == "prod is now production"]
    settings = [e for e in renamed if e["kind"] == "settings"]
    assert settings[0]["changes"] == [
        "environments production added, prod removed (dev, production)"
    ]
    assert {(e["env"], e["action"]) for e in renamed if e["kind"] == "flags"} == {
        ("prod", "removed"),
        ("production", "added"),
    }
    assert not any(e["problem"] for e in renamed)  # no "missing environment" error
