"""Prerequisite chains: validate refuses exactly the chains the runtime cannot follow."""

from __future__ import annotations

from pathlib import Path

from flagstone.runtime.format import MAX_PREREQUISITE_DEPTH


def chain_flags(levels: int) -> str:
    """flag-0 requires flag-1 … requires flag-<levels>: ``levels`` prerequisite levels."""
    text = []
    for i in range(levels + 1):
        text.append(f"flag-{i}:\n  variants: {{on: true, off: false}}\n  default: on\n")
        if i < levels:
            text.append(f"  prerequisites: [{{flag: flag-{i + 1}, variant: on}}]\n")
    return "".join(text)


def make_repo(repo_from_case, commit, flags: str) -> Path:
    root = repo_from_case("valid/base")
    empty = {
        f"environments/{env}/{kind}.yaml": "{}\n"
        for env in ("dev", "prod")
        for kind in ("flags", "experiments")
    }
    commit({**empty, "environments/dev/flags.yaml": flags}, "prerequisite chain")
    return root


def evaluate_top(root: Path) -> tuple[object, str]:
    from flagstone.bundle import build_bundle
    from flagstone.load import load_repository
    from flagstone.runtime.client import Client

    repo, _ = load_repository(root)
    client = Client.from_dict(build_bundle(repo, "dev"))
    details = client.details("flag-0", {"user_id": "u1"})
    return details.variant, details.reason


def test_prerequisites__as_deep_as_the_runtime_follows__valid_and_served(
    repo_from_case, commit
) -> None:
    from flagstone.validate import validate_repository

    root = make_repo(repo_from_case, commit, chain_flags(MAX_PREREQUISITE_DEPTH))
    assert [p for p in validate_repository(root) if p.is_error] == []
    assert evaluate_top(root) == ("on", "DEFAULT")


def test_prerequisites__one_level_deeper__refused_where_the_chain_starts(
    repo_from_case, commit
) -> None:
    from flagstone.validate import validate_repository

    root = make_repo(repo_from_case, commit, chain_flags(MAX_PREREQUISITE_DEPTH + 1))
    problems = [p for p in validate_repository(root) if p.code == "prerequisite-depth"]
    assert [(p.file, p.line, p.path) for p in problems] == [
        ("environments/dev/flags.yaml", 4, ("flag-0", "prerequisites", 0))
    ]
    assert problems[0].message == (
        "prerequisites of 'flag-0' nest 33 deep (flag-0 -> flag-1 -> flag-2 -> … -> flag-33); "
        "the runtime follows at most 32 levels and serves an error beyond"
    )
    # the limit is the runtime's: that bundle, built anyway, fails the whole chain
    assert evaluate_top(root)[1] == "PREREQUISITE_FAILED"


def test_prerequisites__long_chain_and_a_cycle__each_reported_once(repo_from_case, commit) -> None:
    from flagstone.validate import validate_repository

    flags = chain_flags(2000) + (
        "loop-a:\n  variants: {on: true}\n  default: on\n"
        "  prerequisites: [{flag: loop-b, variant: on}]\n"
        "loop-b:\n  variants: {on: true}\n  default: on\n"
        "  prerequisites: [{flag: loop-a, variant: on}]\n"
    )
    root = make_repo(repo_from_case, commit, flags)
    codes = [p.code for p in validate_repository(root, envs=["dev"]) if p.is_error]
    assert sorted(codes) == ["prerequisite-cycle", "prerequisite-depth"]


def test_validate_cli__too_deep__exit_1_with_position(repo_from_case, commit, cli) -> None:
    root = make_repo(repo_from_case, commit, chain_flags(40))
    result = cli(["validate"], cwd=root)
    assert result.exit_code == 1
    assert "environments/dev/flags.yaml:4:" in result.stdout
    assert "nest 40 deep" in result.stdout and "[prerequisite-depth]" in result.stdout
