from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

from tests.test_validate_corpus import CASES

ROOT = Path(__file__).resolve().parent.parent


def repo_with_spec(tmp_path: Path, spec: str) -> Path:
    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    (root / "specs").mkdir()
    (root / "specs" / "checkout.yaml").write_text(textwrap.dedent(spec))
    return root


def test_spec__passing_cases__exit_0(cli, tmp_path: Path) -> None:
    root = repo_with_spec(
        tmp_path,
        """\
        cases:
          - flag: new-checkout
            context: {user_id: user-17}
            expect: {variant: on, reason: TARGET_MATCH}
          - config: api.timeout_ms
            expect: {value: 500}
          - experiment: checkout-test
            env: prod
            context: {country: DE}
            expect: {arm: null}
        """,
    )
    result = cli(["test"], cwd=root)
    assert result.exit_code == 0, result.stdout
    assert "5 passed, 0 failed" in result.stderr  # two cases in dev and prod, one in prod only


def test_spec__failure__prints_file_line_expected_actual_and_trace(cli, tmp_path: Path) -> None:
    root = repo_with_spec(
        tmp_path,
        """\
        env: prod
        cases:
          - name: DE users see the new checkout
            flag: new-checkout
            context: {user_id: u2, country: DE}
            expect: {variant: on}
        """,
    )
    result = cli(["test"], cwd=root)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "specs/checkout.yaml:3:5: FAIL [prod] DE users see the new checkout"
    # the second rule of new-checkout matched: "rule 2" in the failure and the trace (1-based)
    assert lines[1] == '    expected variant "on", got "off" (RULE_MATCH, rule 2)'
    assert '      rule 2: match -> "off" (bucket 9258 of 10000)' in lines


def test_spec__distribution__checks_shares_within_tolerance(cli, tmp_path: Path) -> None:
    root = repo_with_spec(
        tmp_path,
        """\
        env: prod
        context: {country: FR}
        cases:
          - flag: new-checkout
            distribution: {samples: 10000, expect: {on: 35, off: 65}, tolerance: 1}
          - flag: new-checkout
            distribution: {samples: 10000, expect: {on: 20, off: 80}, tolerance: 1}
        """,
    )
    result = cli(["test", "--format", "json"], cwd=root)
    doc = json.loads(result.stdout)
    assert [r["passed"] for r in doc["results"]] == [True, False]
    # Half the units are in the running experiment (50/50), half in the 20 % rollout: 35 % on.
    assert doc["results"][1]["failures"][0].startswith(
        "expected 'on' for 20% ± 1 of 10,000 units, got 3"
    )


def test_spec__malformed_spec__reports_its_position(cli, tmp_path: Path) -> None:
    root = repo_with_spec(
        tmp_path,
        """\
        cases:
          - flag: new-checkout
            expect: {variant: on, colour: red}
        """,
    )
    result = cli(["test"], cwd=root)
    assert result.exit_code == 1
    assert (
        "specs/checkout.yaml:3:35: error: cases[0].expect.colour: unknown key 'colour'"
        in result.stdout
    )


def test_spec__example_repository_specs_pass_through_the_real_entry_point(flagstone_exe) -> None:
    result = flagstone_exe(["test"], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stderr


def test_spec__unknown_flag__fails_naming_it(cli, tmp_path: Path) -> None:
    root = repo_with_spec(
        tmp_path,
        """\
        env: prod
        cases:
          - flag: new-chekout
            context: {user_id: u1}
            expect: {variant: on}
        """,
    )
    result = cli(["test"], cwd=root)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[:2] == [
        "specs/checkout.yaml:3:5: FAIL [prod] flag new-chekout",
        "    no flag 'new-chekout' in prod",
    ]


def test_spec__expectation_the_subject_cannot_have__refused_with_its_position(
    cli, tmp_path: Path
) -> None:
    root = repo_with_spec(
        tmp_path,
        """\
        cases:
          - experiment: checkout-test
            expect: {variant: on}
        """,
    )
    result = cli(["test"], cwd=root)
    assert result.exit_code == 1
    assert (
        "specs/checkout.yaml:3:23: error: an experiment case expects only arm, not 'variant'"
        in result.stdout
    )
