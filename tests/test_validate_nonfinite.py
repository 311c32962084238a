"""NaN and Infinity: YAML can write them (.nan, .inf), JSON cannot. They are refused at
validation with their position, and no writer ever emits non-standard JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml_rs
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstone.schema import may_hold_unsafe_number
from flagstone.validate import validate_repository

NAN_FLAGS = """\
new-checkout:
  variants: {on: true, off: false}
  rules:
    - when: {country: {in: [DE, FR]}}
      serve: {rollout: {on: .nan, off: 80}}
  default: {rollout: {on: .inf, off: -.inf}}
banner-text:
  variants: {short: Hi, long: Hello}
  rules:
    - when: {country: DE}
      serve: {rollout: {short: 20, long: 70}}
  default: short
"""


def strict_json(text: str) -> object:
    """Parse as a strict parser (Node's JSON.parse) would: NaN and Infinity are errors."""

    def refuse(constant: str) -> object:
        raise AssertionError(f"non-standard JSON constant {constant} in output")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def nan_repo(repo_from_case, commit) -> Path:
    root = repo_from_case("valid/base")
    commit(
        {
            "environments/dev/flags.yaml": NAN_FLAGS,
            "environments/dev/config.yaml": "api:\n  base_url: https://dev.shop.test\n  timeout_ms: .nan\n",
            "environments/dev/experiments.yaml": (
                "checkout-test:\n  flag: new-checkout\n  unit: user_id\n  status: draft\n"
                "  traffic: .inf\n"
                "  metrics: {primary: {name: conversion, kind: proportion}}\n"
            ),
        },
        "NaN and Infinity",
    )
    return root


def test_validate__nan_and_infinity__refused_at_their_positions(nan_repo: Path) -> None:
    problems = [p for p in validate_repository(nan_repo) if p.code == "non-finite-number"]
    assert [(p.file, p.line, p.col) for p in problems] == [
        ("environments/dev/config.yaml", 3, 15),
        ("environments/dev/experiments.yaml", 5, 12),
        ("environments/dev/flags.yaml", 5, 29),
        ("environments/dev/flags.yaml", 6, 27),
        ("environments/dev/flags.yaml", 6, 38),
    ]
    assert problems[2].message == (
        "new-checkout.rules[0].serve.rollout.on: .nan (NaN) is not a number JSON can hold"
    )
    assert "-.inf (-Infinity)" in problems[4].message


def test_validate__nan__other_objects_in_the_file_are_still_checked(nan_repo: Path) -> None:
    codes = {(p.path[0], p.code) for p in validate_repository(nan_repo)}
    assert ("banner-text", "rollout-sum") in codes


def test_validate__nan_in_config_without_an_app_schema__refused(repo_from_case, commit) -> None:
    root = repo_from_case("valid/base")
    settings = (
        (root / "flagstone.yaml")
        .read_text()
        .replace("config_schema: schemas/config.schema.json\n", "")
    )
    commit(
        {
            "flagstone.yaml": settings,
            "environments/dev/config.yaml": "api:\n  base_url: x\n  ratio: -.inf\n",
        }
    )
    problems = validate_repository(root)
    assert [(p.code, p.line) for p in problems if p.is_error] == [("non-finite-number", 3)]


def test_validate_cli__nan__one_finding_per_value_and_no_traceback(nan_repo: Path, cli) -> None:
    result = cli(["validate", "--format", "json"], cwd=nan_repo)
    assert result.exit_code == 1
    found = strict_json(result.stdout)
    assert isinstance(found, dict)
    assert sum(p["code"] == "non-finite-number" for p in found["problems"]) == 5
    assert "Traceback" not in result.stderr


def test_build__nan__refused_and_nothing_written(nan_repo: Path, cli) -> None:
    for fmt in ("flagstone", "flagd"):
        result = cli(["build", "--format", fmt, "--out", "dist"], cwd=nan_repo)
        assert result.exit_code == 1, result.stderr
        assert "non-finite-number" in result.stdout + result.stderr
    assert not (nan_repo / "dist").exists()


def test_bundle_encoder__never_writes_nan() -> None:
    from flagstone.bundle import canonical_json
    from flagstone.errors import FlagstoneError

    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(FlagstoneError):
            canonical_json({"config": {"x": value}})


def test_diff_json__nan_in_a_revision__standard_json_with_the_yaml_spelling(
    nan_repo: Path, cli
) -> None:
    result = cli(["diff", "dev", "prod", "--format", "json"], cwd=nan_repo)
    assert result.exit_code == 0, result.stderr
    doc = strict_json(result.stdout)
    assert isinstance(doc, dict)
    timeout = next(c for c in doc["changes"] if c["key"] == "api.timeout_ms")
    assert timeout["old"] == ".nan"
    flag = next(c for c in doc["changes"] if c["key"] == "new-checkout" and c["field"] == "default")
    assert flag["old"] == {"rollout": {"on": ".inf", "off": "-.inf"}}


def test_diff_rev_json__nan_committed_in_history__standard_json(nan_repo: Path, cli) -> None:
    result = cli(["diff", "--rev", "HEAD~1..HEAD", "--format", "json"], cwd=nan_repo)
    assert result.exit_code == 0, result.stderr
    strict_json(result.stdout)
    markdown = cli(["diff", "--rev", "HEAD~1..HEAD", "--format", "markdown"], cwd=nan_repo)
    assert "NaN" not in markdown.stdout and ".nan" in markdown.stdout


def test_flagd_encoder__never_writes_nan() -> None:
    from flagstone.errors import FlagstoneError
    from flagstone.flagd import dump_export

    assert strict_json(dump_export({"flags": {"x": {"defaultVariant": "on"}}}).decode())
    for value in (float("nan"), float("inf")):
        with pytest.raises(FlagstoneError, match="NaN or Infinity"):
            dump_export({"flags": {"x": {"variants": {"on": value}}}})


def test_build_flagd__writes_standard_json(repo_from_case, cli) -> None:
    root = repo_from_case("valid/base")
    result = cli(["build", "--format", "flagd", "--out", "dist"], cwd=root)
    assert result.exit_code == 0, result.stderr
    strict_json((root / "dist/dev.flagd.json").read_text())


def test_experiment_plan_json__infinite_option__refused_not_written(cli, tmp_path) -> None:
    result = cli(
        [
            "experiment",
            "plan",
            "--baseline",
            "0.1",
            "--mde",
            "0.01",
            "--daily-units",
            "inf",
            "--format",
            "json",
        ],
        cwd=tmp_path,
    )
    assert result.exit_code == 2
    doc = strict_json(result.stdout)
    assert isinstance(doc, dict) and doc["ok"] is False
    assert "--daily-units must be a finite number" in doc["error"]["message"]


def test_json_output__every_command__standard_json_even_with_nan_in_the_tree(
    nan_repo: Path, cli
) -> None:
    """--format json of the commands that read a tree holding NaN: standard JSON or a clean error."""
    for args in (
        ["validate", "--format", "json"],
        ["diff", "dev", "prod", "--format", "json"],
        ["diff", "--rev", "HEAD~1..HEAD", "--format", "json"],
        ["promote", "dev", "prod", "--dry-run", "--format", "json"],
        ["history", "new-checkout", "--format", "json"],
        ["drift", "dev", "prod", "--format", "json"],
        ["build", "--out", "dist", "--output-format", "json"],
    ):
        result = cli(args, cwd=nan_repo)
        assert "Traceback" not in result.stdout + result.stderr, args
        assert result.stdout.strip(), args
        strict_json(result.stdout)


@pytest.mark.parametrize(
    ("context", "word", "where"),
    [
        ('{"user_id": "u1", "score": NaN}', "NaN", "line 1 column 28"),
        ('{"user_id": "u1",\n "limit": Infinity}', "Infinity", "line 2 column 11"),
        ('{"user_id": "NaN", "limit": -Infinity}', "-Infinity", "line 1 column 29"),
        ('{"user_id": "u1", "big": 1e999}', "1e999", "line 1 column 26"),
        ('{"user_id": "u1", "nested": [1, {"x": NaN}]}', "NaN", "line 1 column 39"),
    ],
)
def test_eval_context__nan_or_infinity__one_clear_error_exit_2(
    repo_from_case, flagstone_exe, tmp_path: Path, context: str, word: str, where: str
) -> None:
    """A context is standard JSON: NaN matches no rule as a number would, so it is refused
    where it stands, inline, from a file and from standard input, in text and json."""
    root = repo_from_case("valid/base")
    (tmp_path / "context.json").write_text(context)
    ways: list[tuple[list[str], dict[str, str]]] = [(["--context", context], {})]
    if "score" in context:  # the other ways of giving a context, once
        ways += [
            (["--context", f"@{tmp_path / 'context.json'}"], {}),
            (["--context", "-"], {"input": context}),
        ]
    for args, kwargs in ways:
        result = flagstone_exe(["eval", "new-checkout", "--env", "prod", *args], cwd=root, **kwargs)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"holds {word} at {where}, which is not a JSON number" in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    if "score" not in context:
        return
    result = flagstone_exe(
        ["eval", "--all", "--env", "prod", "--context", context, "--format", "json"], cwd=root
    )
    assert result.returncode == 2
    error = strict_json(result.stdout)
    assert error["ok"] is False and word in error["error"]["message"]  # type: ignore[index]


# --- the source scan that lets a document skip the walk for NaN ------------------------

float_literals = st.builds(
    lambda tag, sign, whole, point, fraction, exp_mark, exp_sign, exponent: (
        tag + sign + whole + point + fraction + (exp_mark + exp_sign + exponent if exp_mark else "")
    ),
    st.sampled_from(["", "", "!!float "]),
    st.sampled_from(["", "-", "+"]),
    st.from_regex(r"[0-9][0-9_]{0,3}|[0-9]{200,320}|", fullmatch=True),
    st.sampled_from(["", "."]),
    st.from_regex(r"[0-9_]{0,4}", fullmatch=True),
    st.sampled_from(["", "e", "E"]),
    st.sampled_from(["", "+", "-"]),
    st.from_regex(r"0*[0-9_]{1,5}", fullmatch=True),
) | st.builds(
    lambda tag, sign, word: tag + sign + word,
    st.sampled_from(["", "!!float "]),
    st.sampled_from(["", "-", "+"]),
    st.sampled_from(
        [".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "nan", "inf", "infinity", "Infinity"]
    ),
)


@settings(max_examples=600, deadline=None)
@given(float_literals)
def test_source_scan__every_literal_that_parses_to_nan_or_infinity_is_flagged(literal) -> None:
    source = f"flag:\n  variants: {{a: {literal}}}\n".encode()
    try:
        value = yaml_rs.loads(source.decode(), parse_datetime=False)["flag"]["variants"]["a"]
    except (yaml_rs.YAMLDecodeError, TypeError, KeyError):
        return
    if isinstance(value, float) and not math.isfinite(value):
        assert may_hold_unsafe_number(source)


def test_source_scan__ordinary_flags_pass_and_unknown_sources_do_not() -> None:
    ordinary = b"banner:\n  variants: {a: 1.5, b: 2e10, c: 'text 1.0', d: seg_0111}\n  default: a\n"
    assert not may_hold_unsafe_number(ordinary)
    assert may_hold_unsafe_number(None)
    assert may_hold_unsafe_number(b"x: 1e4_00\n")
    assert may_hold_unsafe_number(b"x: " + b"9" * 215 + b"e99\n")


def test_validate__infinity_spelled_with_digit_separators__refused(repo_from_case, commit) -> None:
    root = repo_from_case("valid/base")
    flags = NAN_FLAGS.replace("on: .nan", "on: 20").replace(
        "{on: .inf, off: -.inf}", "{on: 1e4_00, off: 80}"
    )
    commit({"environments/dev/flags.yaml": flags})
    problems = [p for p in validate_repository(root) if p.code == "non-finite-number"]
    assert [(p.file, p.line) for p in problems] == [("environments/dev/flags.yaml", 6)]
