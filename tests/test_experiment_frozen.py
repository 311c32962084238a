"""A started experiment's weights, arms and metrics stay as they were when it started until
it is concluded, its status only moves forward and its traffic only up while it runs:
`verify` flags a commit that breaks this by hand, `validate --base` a working tree, and
`rollback`/`revert` refuse to, unless --force. Real git repositories, the real CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.analyze_data import make_repo
from tests.cli_schemas import check_output

RUNNING = """
onboarding-length:  # the onboarding test
  flag: onboarding-flow
  status: running
  started_at: "2026-11-01T00:00:00Z"
  traffic: 20
  weights: {classic: 50, short: 50}
  metrics:
    primary: {name: converted, kind: proportion}
  analysis: {method: frequentist}
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout


def experiments_file(repo: Path) -> Path:
    return repo / "environments" / "prod" / "experiments.yaml"


def edit(repo: Path, old: str, new: str, message: str) -> str:
    path = experiments_file(repo)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    git(repo, "commit", "-qam", message, "--no-gpg-sign")
    return git(repo, "rev-parse", "HEAD").strip()


def position(repo: Path, needle: str) -> str:
    """file:line:col of the first line holding ``needle``, col at the line's key."""
    lines = experiments_file(repo).read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if needle in text)
    col = len(lines[line - 1]) - len(lines[line - 1].lstrip()) + 1
    return f"environments/prod/experiments.yaml:{line}:{col}"


def value_position(repo: Path, needle: str) -> str:
    """file:line:col of the scalar value after ``needle`` (e.g. "status: ")."""
    lines = experiments_file(repo).read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if needle in text)
    col = lines[line - 1].index(needle) + len(needle) + 1
    return f"environments/prod/experiments.yaml:{line}:{col}"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo", RUNNING)
    git(root, "branch", "base")
    return root


def verify(cli, repo: Path) -> tuple[int, dict]:
    result = cli(["verify", "--range", "base..HEAD", "-f", "json"], cwd=repo)
    return result.exit_code, check_output("verify", result.stdout)


def test_verify__a_hand_edit_of_a_running_experiments_weights__is_refused_with_its_position(
    cli, repo
) -> None:
    sha = edit(repo, "{classic: 50, short: 50}", "{classic: 40, short: 60}", "rebalance")
    code, doc = verify(cli, repo)
    assert code == 1 and not doc["ok"]
    (violation,) = doc["violations"]
    assert violation["commit"] == sha and violation["rule"] == "frozen"
    assert violation["env"] == "prod"
    assert violation["reason"].startswith(position(repo, "weights:") + ": ")
    assert "'onboarding-length' is running in prod" in violation["reason"]
    assert (
        "its weights" in violation["reason"]
        and "conclude the experiment first" in violation["reason"]
    )


def test_verify__changed_metrics_are_refused_but_a_ramp_and_a_stop_pass(cli, repo) -> None:
    edit(repo, "traffic: 20", "traffic: 50", "ramp")
    edit(repo, "status: running", "status: stopped", "stop")
    assert verify(cli, repo) == (0, {"ok": True, "range": "base..HEAD", "violations": []})
    git(repo, "reset", "-q", "--hard", "base")
    edit(repo, "name: converted", "name: activated", "switch the primary metric")
    code, doc = verify(cli, repo)
    assert code == 1
    (violation,) = doc["violations"]
    assert violation["reason"].startswith(position(repo, "metrics:") + ": ")
    assert "its metrics" in violation["reason"]


def test_verify__a_stopped_experiment__keeps_its_design_until_concluded_and_never_runs_again(
    cli, repo
) -> None:
    # conclude analyses the units enrolled under the design: re-planning before it would
    # test other weights (SRM) or other metrics than those the units ran under
    edit(repo, "status: running", "status: stopped", "stop")
    git(repo, "branch", "-f", "base", "HEAD")
    replan = edit(repo, "{classic: 50, short: 50}", "{classic: 40, short: 60}", "re-plan")
    code, doc = verify(cli, repo)
    assert code == 1
    (violation,) = doc["violations"]
    assert violation["commit"] == replan and violation["rule"] == "frozen"
    assert violation["reason"].startswith(position(repo, "weights:") + ": ")
    assert "'onboarding-length' is stopped in prod" in violation["reason"]
    assert "stay fixed until it is concluded" in violation["reason"]
    git(repo, "reset", "-q", "--hard", "base")
    restart = edit(repo, "status: stopped", "status: running", "run again")
    code, doc = verify(cli, repo)
    assert code == 1
    (violation,) = doc["violations"]
    assert violation["commit"] == restart
    assert violation["reason"].startswith(value_position(repo, "status: ") + ": ")
    assert "would set its status to running, which no lifecycle step does" in violation["reason"]
    assert "create a new experiment" in violation["reason"]
    # concluding it (as `experiment conclude` would) passes, and then the design is free
    git(repo, "reset", "-q", "--hard", "base")
    edit(repo, "status: stopped", "status: concluded", "conclude")
    edit(repo, "{classic: 50, short: 50}", "{classic: 40, short: 60}", "next design")
    assert verify(cli, repo)[0] == 0


def test_verify__lowering_a_running_experiments_traffic_by_hand__is_refused(cli, repo) -> None:
    edit(repo, "traffic: 20", "traffic: 50", "ramp")
    assert verify(cli, repo)[0] == 0
    lower = edit(repo, "traffic: 50", "traffic: 30", "ramp down")
    code, doc = verify(cli, repo)
    assert code == 1
    (violation,) = doc["violations"]
    assert violation["commit"] == lower
    assert violation["reason"].startswith(value_position(repo, "traffic: ") + ": ")
    assert "would lower its traffic (50% → 30%)" in violation["reason"]


def test_verify__a_merge_is_not_blamed_for_its_branchs_commit_but_the_commit_is(cli, repo) -> None:
    git(repo, "checkout", "-qb", "topic")
    bad = edit(repo, "{classic: 50, short: 50}", "{classic: 40, short: 60}", "rebalance")
    git(repo, "checkout", "-q", "main")
    Path(repo / "README-merge").write_text("x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "elsewhere", "--no-gpg-sign")
    git(repo, "merge", "-q", "--no-ff", "--no-gpg-sign", "-m", "merge topic", "topic")
    code, doc = verify(cli, repo)
    assert code == 1
    assert [v["commit"] for v in doc["violations"]] == [bad]


def test_revert__of_a_running_experiments_weights_change__is_refused_unless_forced(
    cli, repo
) -> None:
    # Undoing a weights change that has already moved enrolled units moves them again.
    change = edit(repo, "{classic: 50, short: 50}", "{classic: 40, short: 60}", "rebalance")
    before = experiments_file(repo).read_bytes()
    result = cli(["revert", change, "--yes", "-f", "json"], cwd=repo)
    assert result.exit_code == 1, result.stdout + result.stderr
    doc = check_output("revert", result.stdout)
    assert not doc["ok"]
    problem = next(p for p in doc["problems"] if p["code"] == "experiment-frozen")
    assert f"{problem['file']}:{problem['line']}:{problem['column']}" == position(repo, "weights:")
    assert "--force" in problem["hint"] and "conclude the experiment first" in problem["hint"]
    assert experiments_file(repo).read_bytes() == before  # nothing was written
    forced = cli(["revert", change, "--yes", "--force"], cwd=repo)
    assert forced.exit_code == 0, forced.stdout + forced.stderr
    exp = yaml.safe_load(experiments_file(repo).read_text())["onboarding-length"]
    assert exp["weights"] == {"classic": 50, "short": 50} and exp["status"] == "running"


def test_rollback__that_would_change_a_running_experiments_weights__is_refused_unless_forced(
    cli, repo
) -> None:
    edit(repo, "{classic: 50, short: 50}", "{classic: 40, short: 60}", "rebalance")
    before = experiments_file(repo).read_bytes()
    result = cli(["rollback", "prod", "--to", "base", "--yes"], cwd=repo)
    assert result.exit_code == 1, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert position(repo, "weights:") in out and "--force" in out
    assert experiments_file(repo).read_bytes() == before
    forced = cli(["rollback", "prod", "--to", "base", "--yes", "--force"], cwd=repo)
    assert forced.exit_code == 0, forced.stdout + forced.stderr
    assert b"{classic: 50, short: 50}" in experiments_file(repo).read_bytes()


def test_rollback__of_keys_a_running_experiment_does_not_freeze__passes(cli, repo) -> None:
    edit(repo, "  traffic: 20\n", "  traffic: 20\n  hypothesis: shorter converts more\n", "why")
    result = cli(["rollback", "prod", "--to", "base", "--yes"], cwd=repo)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert b"hypothesis" not in experiments_file(repo).read_bytes()


def test_rollback__of_a_running_experiments_ramp__is_refused_unless_forced(cli, repo) -> None:
    # undoing a ramp lowers the traffic: units enrolled since would drop out
    edit(repo, "traffic: 20", "traffic: 50", "ramp")
    result = cli(["rollback", "prod", "--to", "base", "--yes"], cwd=repo)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "would lower its traffic (50% → 20%)" in " ".join(
        (result.stdout + result.stderr).split()
    )
    assert b"traffic: 50" in experiments_file(repo).read_bytes()
    forced = cli(["rollback", "prod", "--to", "base", "--yes", "--force"], cwd=repo)
    assert forced.exit_code == 0, forced.stdout + forced.stderr
    assert b"traffic: 20" in experiments_file(repo).read_bytes()


def test_validate_base__refuses_a_stopped_experiment_set_running_again_in_the_tree(
    cli, repo
) -> None:
    edit(repo, "status: running", "status: stopped", "stop")
    git(repo, "branch", "-f", "base", "HEAD")
    path = experiments_file(repo)
    path.write_text(path.read_text().replace("status: stopped", "status: running"))
    assert cli(["validate"], cwd=repo).exit_code == 0  # alone, the file is valid
    result = cli(["validate", "--base", "base", "-f", "json"], cwd=repo)
    assert result.exit_code == 1, result.stdout + result.stderr
    doc = check_output("validate", result.stdout)
    (problem,) = [p for p in doc["problems"] if p["code"] == "experiment-lifecycle"]
    assert f"{problem['file']}:{problem['line']}:{problem['column']}" == value_position(
        repo, "status: "
    )
    assert "is stopped in prod" in problem["message"]
    assert "flagstone experiment start, stop and conclude" in problem["hint"]


def test_validate_base__refuses_a_running_experiments_changed_weights__in_the_tree_and_at_a_rev(
    cli, repo
) -> None:
    path = experiments_file(repo)
    path.write_text(
        path.read_text().replace("{classic: 50, short: 50}", "{classic: 40, short: 60}")
    )
    plain = cli(["validate"], cwd=repo)
    assert plain.exit_code == 0, plain.stdout + plain.stderr  # alone, the file is valid
    result = cli(["validate", "--base", "base", "-f", "json"], cwd=repo)
    assert result.exit_code == 1, result.stdout + result.stderr
    doc = check_output("validate", result.stdout)
    (problem,) = [p for p in doc["problems"] if p["code"] == "experiment-frozen"]
    assert f"{problem['file']}:{problem['line']}:{problem['column']}" == position(repo, "weights:")
    assert "since base" in problem["message"] and "conclude the experiment first" in problem["hint"]
    git(repo, "commit", "-qam", "rebalance", "--no-gpg-sign")
    path.write_text(
        path.read_text().replace("{classic: 40, short: 60}", "{classic: 50, short: 50}")
    )
    at_rev = cli(["validate", "--rev", "HEAD", "--base", "base"], cwd=repo)
    assert at_rev.exit_code == 1 and position(repo, "weights:") in at_rev.stdout + at_rev.stderr
    assert cli(["validate", "--base", "base"], cwd=repo).exit_code == 0  # the tree is back


def test_verify__stopping_and_changing_in_one_commit__is_refused(cli, repo) -> None:
    path = experiments_file(repo)
    text = path.read_text().replace("status: running", "status: stopped")
    path.write_text(text.replace("{classic: 50, short: 50}", "{classic: 40, short: 60}"))
    git(repo, "commit", "-qam", "stop and re-plan", "--no-gpg-sign")
    code, doc = verify(cli, repo)
    assert code == 1 and [v["rule"] for v in doc["violations"]] == ["frozen"]


def test_verify__a_running_experiment_without_weights__keeps_its_flags_variants_as_arms(
    cli, tmp_path
) -> None:
    repo = make_repo(
        tmp_path / "repo", RUNNING.replace("  weights: {classic: 50, short: 50}\n", "")
    )
    git(repo, "branch", "base")
    flags = repo / "environments" / "prod" / "flags.yaml"
    flags.write_text(
        flags.read_text().replace("{classic: 1, short: 2}", "{classic: 1, short: 2, long: 3}")
    )
    git(repo, "commit", "-qam", "a third variant", "--no-gpg-sign")
    code, doc = verify(cli, repo)
    assert code == 1
    (violation,) = doc["violations"]
    lines = flags.read_text().splitlines()
    line = next(i for i, t in enumerate(lines, 1) if "long: 3" in t)
    assert violation["reason"].startswith(f"environments/prod/flags.yaml:{line}:")
    assert "classic, short → classic, short, long" in violation["reason"]
