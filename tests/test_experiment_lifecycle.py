"""`experiment create|start|stop|ramp|conclude|status` on real repositories and real data."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from flagstone.experiments import (
    LifecycleError,
    frozen_changes,
    parse_metric,
    parse_weights,
    results_block,
)
from tests.analyze_data import make_repo, simulate, write_jsonl
from tests.cli_schemas import check_output

DRAFT = """
onboarding-length:  # the onboarding test
  flag: onboarding-flow
  status: draft
  traffic: 20
  weights: {classic: 50, short: 50}
  metrics:
    primary: {name: converted, kind: proportion}
    guardrails:
      - {name: crashed, kind: proportion, worse: increase}
  analysis: {method: frequentist, mde: 0.02}
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout


def experiments_file(repo: Path, env: str = "prod") -> Path:
    return repo / "environments" / env / "experiments.yaml"


def experiment(repo: Path, key: str = "onboarding-length", env: str = "prod") -> dict:
    return yaml.safe_load(experiments_file(repo, env).read_text())[key]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", DRAFT)


def run(cli, repo: Path, *args: str, code: int = 0) -> str:
    result = cli(list(args), cwd=repo)
    assert result.exit_code == code, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_create__writes_a_draft_with_arms_metrics_and_dimensions__keeping_comments(
    cli, repo
) -> None:
    out = cli(
        [
            "experiment",
            "create",
            "pricing",
            "--env",
            "prod",
            "--flag",
            "second-flow",
            "--metric",
            "primary:paid:proportion",
            "--metric",
            "guardrail:refunds:proportion:worse=increase",
            "--metric",
            "secondary:revenue:mean:winsorize=99",
            "--dimension",
            "country",
            "--traffic",
            "50",
            "--method",
            "sequential",
            "--mde",
            "0.01",
            "--commit",
            "-f",
            "json",
        ],
        cwd=repo,
    )
    doc = check_output("experiment create", out.stdout)
    assert doc["ok"] and doc["commit"]
    text = experiments_file(repo).read_text()
    assert "# the onboarding test" in text  # the rest of the file is untouched
    created = experiment(repo, "pricing")
    assert created["status"] == "draft"
    assert created["weights"] == {"a": 50, "b": 50}
    assert created["dimensions"] == ["country"]
    assert created["metrics"]["guardrails"] == [
        {"name": "refunds", "kind": "proportion", "worse": "increase"}
    ]
    assert created["metrics"]["secondary"][0]["winsorize"] == 99
    assert created["analysis"] == {"method": "sequential", "mde": 0.01}
    assert (
        git(repo, "log", "-1", "--format=%s")
        == "prod: experiment pricing created (draft) on flag second-flow\n"
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--flag", "nope", "--metric", "primary:x:proportion"], "no flag 'nope'"),
        (["--flag", "second-flow", "--metric", "secondary:x:mean"], "exactly one primary"),
        (["--flag", "second-flow", "--metric", "primary:x:count"], "ROLE:NAME:KIND"),
        (
            ["--flag", "second-flow", "--metric", "primary:x:proportion", "--weights", "a=50,c=50"],
            "not variants",
        ),
        (
            ["--flag", "second-flow", "--metric", "primary:x:proportion", "--weights", "a=50,b=40"],
            "sum to 90",
        ),
    ],
)
def test_create__bad_input__is_refused_and_nothing_is_written(cli, repo, args, words) -> None:
    before = experiments_file(repo).read_bytes()
    result = cli(["experiment", "create", "pricing", "--env", "prod", *args], cwd=repo)
    assert result.exit_code in (1, 2)
    assert words in result.stdout + result.stderr
    assert experiments_file(repo).read_bytes() == before


def test_start__without_a_plan__is_refused_then_starts_with_one(cli, repo) -> None:
    out = run(cli, repo, "experiment", "start", "onboarding-length", "-e", "prod", code=2)
    assert "--baseline" in out and "--daily-units" in out
    # 20% of 1,000 daily units cannot detect 2 points on a 10% baseline within 28 days.
    out = run(
        cli,
        repo,
        "experiment",
        "start",
        "onboarding-length",
        "-e",
        "prod",
        "--baseline",
        "0.1",
        "--daily-units",
        "1000",
        code=2,
    )
    assert "under-powered" in out and "3,839 units per arm" in out
    assert experiment(repo)["status"] == "draft"
    run(
        cli,
        repo,
        "experiment",
        "start",
        "onboarding-length",
        "-e",
        "prod",
        "--baseline",
        "0.1",
        "--daily-units",
        "5000",
        "--at",
        "2026-03-01T09:00:00Z",
        "--commit",
    )
    started = experiment(repo)
    assert started["status"] == "running" and started["started_at"] == "2026-03-01T09:00:00Z"
    again = run(
        cli, repo, "experiment", "start", "onboarding-length", "-e", "prod", "--force", code=2
    )
    assert "is running; start needs a draft" in again


def test_start__force__starts_an_under_powered_plan(cli, repo) -> None:
    run(
        cli,
        repo,
        "experiment",
        "start",
        "onboarding-length",
        "-e",
        "prod",
        "--baseline",
        "0.1",
        "--daily-units",
        "100",
        "--force",
    )
    assert experiment(repo)["status"] == "running"


def test_start__sequential__tunes_the_sequence_to_the_planned_sample(cli, tmp_path) -> None:
    repo = make_repo(tmp_path / "r", DRAFT.replace("method: frequentist", "method: sequential"))
    run(
        cli,
        repo,
        "experiment",
        "start",
        "onboarding-length",
        "-e",
        "prod",
        "--baseline",
        "0.1",
        "--daily-units",
        "50000",
    )
    assert experiment(repo)["analysis"]["sequential_tuning"] == 2 * 3839


def test_ramp__only_upward_while_running(cli, repo) -> None:
    run(cli, repo, "experiment", "ramp", "onboarding-length", "-e", "prod", "--traffic", "10")
    assert experiment(repo)["traffic"] == 10  # a draft ramps freely
    run(cli, repo, "experiment", "start", "onboarding-length", "-e", "prod", "--force")
    run(cli, repo, "experiment", "ramp", "onboarding-length", "-e", "prod", "--traffic", "60")
    out = run(
        cli,
        repo,
        "experiment",
        "ramp",
        "onboarding-length",
        "-e",
        "prod",
        "--traffic",
        "30",
        code=2,
    )
    assert "only ramps up" in out
    assert experiment(repo)["traffic"] == 60


def test_stop__records_stopped_at__and_only_from_running(cli, repo) -> None:
    out = run(cli, repo, "experiment", "stop", "onboarding-length", "-e", "prod", code=2)
    assert "is draft; stop needs a running experiment" in out
    run(cli, repo, "experiment", "start", "onboarding-length", "-e", "prod", "--force")
    result = cli(
        [
            "experiment",
            "stop",
            "onboarding-length",
            "-e",
            "prod",
            "--at",
            "2026-04-01T00:00:00Z",
            "--dry-run",
            "-f",
            "json",
        ],
        cwd=repo,
    )
    doc = check_output("experiment stop", result.stdout)
    assert doc["dry_run"] and "+  stopped_at:" in doc["diff"].replace("'", "")
    assert experiment(repo)["status"] == "running"
    run(
        cli,
        repo,
        "experiment",
        "stop",
        "onboarding-length",
        "-e",
        "prod",
        "--at",
        "2026-04-01T00:00:00Z",
    )
    assert experiment(repo)["stopped_at"] == "2026-04-01T00:00:00Z"


def test_conclude__writes_a_decision_that_git_alone_can_recompute(cli, repo, tmp_path) -> None:
    from flagstone.stats import ExperimentSpec, Proportion, analyze_experiment

    run(
        cli,
        repo,
        "experiment",
        "start",
        "onboarding-length",
        "-e",
        "prod",
        "--force",
        "--at",
        "2026-01-01T00:00:00Z",
        "--commit",
    )
    exposures, events = simulate(3000, rates={"classic": 0.10, "short": 0.16})
    exp = write_jsonl(tmp_path / "exp.jsonl", exposures)
    met = write_jsonl(tmp_path / "met.jsonl", events)
    out = cli(
        [
            "experiment",
            "conclude",
            "onboarding-length",
            "-e",
            "prod",
            "--winner",
            "short",
            "--reason",
            "conversion up",
            "--exposures",
            str(exp),
            "--metrics",
            str(met),
            "--rollout",
            "--commit",
            "--at",
            "2026-02-01T00:00:00Z",
            "-f",
            "json",
        ],
        cwd=repo,
    )
    doc = check_output("experiment conclude", out.stdout)
    assert doc["ok"] and sorted(doc["files"]) == [
        "environments/prod/experiments.yaml",
        "environments/prod/flags.yaml",
    ]
    concluded = experiment(repo)
    decision = concluded["decision"]
    assert concluded["status"] == "concluded" and concluded["stopped_at"] == "2026-02-01T00:00:00Z"
    assert (decision["winner"], decision["reason"]) == ("short", "conversion up")
    results = decision["results"]
    assert results["version"] == "flagstone-stats/1" and results["method"] == "frequentist"
    arms = results["metrics"]["converted"]["arms"]
    assert arms["short"]["verdict"] == "better"
    # Recompute from the YAML alone: the same p-value.
    raw = yaml.safe_load(git(repo, "show", "HEAD:environments/prod/experiments.yaml"))[
        "onboarding-length"
    ]
    spec = ExperimentSpec.from_mapping("onboarding-length", raw)
    data = {
        name: {arm: Proportion(v["n"], v["successes"]) for arm, v in m["arms"].items()}
        for name, m in raw["decision"]["results"]["metrics"].items()
    }
    again = analyze_experiment(spec, data)
    p = again.metric("converted").comparisons[0].p_adjusted
    assert p == pytest.approx(arms["short"]["p_adjusted"], rel=1e-5)
    flags = yaml.safe_load((repo / "environments" / "prod" / "flags.yaml").read_text())
    assert flags["onboarding-flow"]["default"] == "short"
    assert (
        yaml.safe_load((repo / "environments" / "dev" / "flags.yaml").read_text())[
            "onboarding-flow"
        ]["default"]
        == "classic"
    )  # only that environment
    log = git(repo, "log", "-1", "--format=%s")
    assert log.startswith("prod: experiment onboarding-length concluded: winner short")
    assert git(repo, "status", "--porcelain") == ""


def test_conclude__srm__blocks_without_force(cli, repo, tmp_path) -> None:
    run(cli, repo, "experiment", "start", "onboarding-length", "-e", "prod", "--force")
    exposures, events = simulate(4000, shares=(0.45, 0.55))
    exp = write_jsonl(tmp_path / "exp.jsonl", exposures)
    met = write_jsonl(tmp_path / "met.jsonl", events)
    args = [
        "experiment",
        "conclude",
        "onboarding-length",
        "-e",
        "prod",
        "--winner",
        "short",
        "--reason",
        "r",
        "--exposures",
        str(exp),
        "--metrics",
        str(met),
    ]
    before = experiments_file(repo).read_bytes()
    out = run(cli, repo, *args, code=2)
    assert "sample ratio mismatch" in out and "--force" in out
    assert experiments_file(repo).read_bytes() == before
    run(cli, repo, *args, "--force")
    assert experiment(repo)["status"] == "concluded"


def test_conclude__needs_a_real_arm_and_a_reason(cli, repo, tmp_path) -> None:
    run(cli, repo, "experiment", "start", "onboarding-length", "-e", "prod", "--force")
    exposures, events = simulate(500)
    exp, met = (
        write_jsonl(tmp_path / "e.jsonl", exposures),
        write_jsonl(tmp_path / "m.jsonl", events),
    )
    data = ["--exposures", str(exp), "--metrics", str(met)]
    out = run(
        cli,
        repo,
        "experiment",
        "conclude",
        "onboarding-length",
        "-e",
        "prod",
        "--winner",
        "long",
        "--reason",
        "x",
        *data,
        code=2,
    )
    assert "not an arm" in out
    out = run(
        cli,
        repo,
        "experiment",
        "conclude",
        "onboarding-length",
        "-e",
        "prod",
        "--winner",
        "none",
        "--reason",
        "x",
        "--rollout",
        *data,
        code=2,
    )
    assert "--rollout needs" in out


def test_status__alerts_on_srm_and_exits_1(cli, tmp_path) -> None:
    running = DRAFT.replace(
        "status: draft", "status: running\n  started_at: '2026-01-01T00:00:00Z'"
    )
    repo = make_repo(tmp_path / "r", running)
    fair, events = simulate(3000)
    exp = write_jsonl(tmp_path / "fair.jsonl", fair)
    met = write_jsonl(tmp_path / "met.jsonl", events)
    args = ["experiment", "status", "--env", "prod", "--at", "2026-01-08T00:00:00Z"]
    result = cli([*args, "--exposures", str(exp), "--metrics", str(met), "-f", "json"], cwd=repo)
    doc = check_output("experiment status", result.stdout)
    assert result.exit_code == 0 and doc["alerts"] == 0
    (entry,) = doc["experiments"]
    assert entry["days_running"] == pytest.approx(7.0)
    assert entry["planned_units_per_arm"] and 0 < entry["progress"] < 1
    assert entry["expected_end"] and entry["expected_end"] > "2026-01-08"
    skewed, _ = simulate(3000, shares=(0.45, 0.55))
    bad = write_jsonl(tmp_path / "skewed.jsonl", skewed)
    result = cli([*args, "--exposures", str(bad), "--metrics", str(met)], cwd=repo)
    assert result.exit_code == 1
    assert "MISMATCH" in result.stdout and "1 alerting" in result.stderr


def test_status__guardrail_harm__alerts(cli, tmp_path) -> None:
    running = DRAFT.replace(
        "status: draft", "status: running\n  started_at: '2026-01-01T00:00:00Z'"
    )
    repo = make_repo(tmp_path / "r", running)
    exposures, events = simulate(3000, crash={"classic": 0.02, "short": 0.08})
    exp, met = (
        write_jsonl(tmp_path / "e.jsonl", exposures),
        write_jsonl(tmp_path / "m.jsonl", events),
    )
    result = cli(
        ["experiment", "status", "--exposures", str(exp), "--metrics", str(met), "-f", "markdown"],
        cwd=repo,
    )
    assert result.exit_code == 1
    assert "HARMED: crashed:short" in result.stdout


def test_status__sequential__reports_the_decision_so_far(cli, tmp_path) -> None:
    running = DRAFT.replace(
        "status: draft", "status: running\n  started_at: '2026-01-01T00:00:00Z'"
    ).replace("method: frequentist, mde: 0.02", "method: sequential, mde: 0.02")
    repo = make_repo(tmp_path / "r", running)
    args = ["experiment", "status", "--env", "prod", "--at", "2026-01-08T00:00:00Z", "-f", "json"]

    def entry(rates: dict[str, float]) -> dict:
        exposures, events = simulate(6000, rates=rates)
        exp = write_jsonl(tmp_path / "e.jsonl", exposures)
        met = write_jsonl(tmp_path / "m.jsonl", events)
        result = cli([*args, "--exposures", str(exp), "--metrics", str(met)], cwd=repo)
        assert result.exit_code == 0, result.stdout + result.stderr
        (found,) = check_output("experiment status", result.stdout)["experiments"]
        assert found["method"] == "sequential"
        return found

    planted = entry({"classic": 0.10, "short": 0.16})
    assert planted["decided"] and planted["primary"].startswith("short better (p ")
    same = entry({"classic": 0.10, "short": 0.10})
    assert not same["decided"] and "short better" not in same["primary"]


def test_lifecycle__parsers__refuse_bad_text() -> None:
    assert parse_metric("guardrail:crash:proportion:worse=increase:margin=0.01").options == {
        "worse": "increase",
        "margin": 0.01,
    }
    assert parse_weights("a=50, b=50") == {"a": 50, "b": 50}
    for bad in ("primary:x", "primary:x:proportion:oops", "primary:x:mean:margin=big"):
        with pytest.raises(LifecycleError):
            parse_metric(bad)
    with pytest.raises(LifecycleError):
        parse_weights("a:50")


def test_frozen_changes__name_what_a_running_experiment_may_not_change() -> None:
    before = yaml.safe_load(DRAFT)["onboarding-length"]
    after = json.loads(json.dumps(before))
    after["traffic"] = 80
    assert frozen_changes(before, after) == []
    after["weights"] = {"classic": 40, "short": 60}
    after["metrics"]["primary"]["name"] = "activated"
    assert frozen_changes(before, after) == ["weights", "metrics"]


def test_results_block__keeps_the_sufficient_statistics_exactly() -> None:
    from flagstone.stats import ExperimentSpec, Mean, Proportion, analyze_experiment

    spec = ExperimentSpec.from_mapping(
        "e",
        {
            "weights": {"c": 50, "t": 50},
            "metrics": {
                "primary": {"name": "p", "kind": "proportion"},
                "secondary": [{"name": "m", "kind": "mean"}],
            },
        },
    )
    data = {
        "p": {"c": Proportion(1000, 100), "t": Proportion(1000, 130)},
        "m": {"c": Mean(1000, 1234.5678901234, 9876.54321), "t": Mean(1000, 1300.1, 9999.9)},
    }
    block = results_block(analyze_experiment(spec, data), "2026-01-01T00:00:00Z")
    assert block["metrics"]["m"]["arms"]["c"]["sum"] == 1234.5678901234
    assert block["metrics"]["p"]["arms"]["t"]["successes"] == 130
    assert set(block["metrics"]["p"]["arms"]["t"]) >= {"estimate", "ci", "p_value", "verdict"}


def test_promote__carries_an_experiment_forward_with_its_flag(cli, tmp_path) -> None:
    repo = make_repo(tmp_path / "r", "{}\n")
    for env in ("dev", "staging"):  # staging has neither the flag nor the experiment yet
        flags = repo / "environments" / env / "flags.yaml"
        flags.write_text(flags.read_text().split("\nonboarding-flow:")[0] + "\n")
    git(repo, "commit", "-qam", "no onboarding flag in dev and staging", "--no-gpg-sign")
    run(
        cli,
        repo,
        "flag",
        "create",
        "onboarding-flow",
        "-e",
        "dev",
        "--variants",
        "classic=1,short=2",
        "--commit",
    )
    run(
        cli,
        repo,
        "experiment",
        "create",
        "onboarding-length",
        "-e",
        "dev",
        "--flag",
        "onboarding-flow",
        "--metric",
        "primary:converted:proportion",
        "--commit",
    )
    run(cli, repo, "experiment", "start", "onboarding-length", "-e", "dev", "--commit")
    out = run(
        cli, repo, "promote", "dev", "staging", "--only", "onboarding-length", "--commit", "--yes"
    )
    assert "onboarding-flow" in out  # the flag came along as a dependency
    promoted = experiment(repo, env="staging")
    assert promoted == experiment(repo, env="dev")
    assert promoted["status"] == "running" and "started_at" in promoted
    staging_flags = yaml.safe_load((repo / "environments/staging/flags.yaml").read_text())
    assert "onboarding-flow" in staging_flags


def test_promote__refuses_to_change_what_a_running_experiment_rests_on(cli, tmp_path) -> None:
    repo = make_repo(tmp_path / "r", DRAFT.replace("status: draft", "status: running"))
    dev = experiments_file(repo, "dev")
    dev.write_text(dev.read_text().replace("{classic: 50, short: 50}", "{classic: 30, short: 70}"))
    git(repo, "commit", "-qam", "reweigh in dev", "--no-gpg-sign")
    before = experiments_file(repo, "staging").read_bytes()
    result = cli(["promote", "dev", "staging", "--yes", "-f", "json"], cwd=repo)
    assert result.exit_code == 1
    doc = check_output("promote", result.stdout)
    (problem,) = doc["problems"]
    assert problem["code"] == "experiment-frozen" and "weights" in problem["message"]
    assert problem["line"] > 0 and problem["file"] == "environments/staging/experiments.yaml"
    assert experiments_file(repo, "staging").read_bytes() == before
    # stopped, it keeps its design until concluded and never runs again
    run(cli, repo, "experiment", "stop", "onboarding-length", "-e", "staging", "--commit")
    stopped = experiments_file(repo, "staging").read_bytes()
    result = cli(["promote", "dev", "staging", "--yes", "-f", "json"], cwd=repo)
    assert result.exit_code == 1
    codes = {p["code"] for p in check_output("promote", result.stdout)["problems"]}
    assert codes == {"experiment-frozen", "experiment-lifecycle"}
    assert experiments_file(repo, "staging").read_bytes() == stopped
    # concluded, its design is free, but the promotion may not reopen it
    staging = experiments_file(repo, "staging")
    staging.write_text(staging.read_text().replace("status: stopped", "status: concluded"))
    git(repo, "commit", "-qam", "concluded in staging", "--no-gpg-sign")
    result = cli(["promote", "dev", "staging", "--yes", "-f", "json"], cwd=repo)
    assert result.exit_code == 1
    (problem,) = check_output("promote", result.stdout)["problems"]
    assert problem["code"] == "experiment-lifecycle"
    assert (
        "is concluded in staging: the promotion would set its status to running"
        in (problem["message"])
    )
