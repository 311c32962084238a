"""Values YAML can write and JSON cannot hold (a ``!!set``, a number or a list as a key,
an integer beyond 2**53) are findings of ``validate`` with their file, line and column,
wherever they are written, so ``build`` refuses them as findings too and never meets one
while encoding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml_rs
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstone.runtime.format import MAX_SAFE_INTEGER
from flagstone.schema import may_hold_unsafe_number
from flagstone.validate import validate_repository

FLAGS = "environments/prod/flags.yaml"
CONFIG = "environments/prod/config.yaml"

# (file, text replaced, its replacement, code, line:col of the finding)
CASES = {
    "set as a variant value": (
        FLAGS,
        "variants: {on: true, off: false}",
        "variants: {on: !!set {a, b}, off: false}",
        "non-json-value",
        "4:14",
    ),
    "set in a list in a variant value": (
        FLAGS,
        "variants: {on: true, off: false}",
        "variants: {on: {x: [1, !!set {a}]}, off: false}",
        "non-json-value",
        "4:26",
    ),
    "set under a tag written with %TAG": (
        FLAGS,
        "variants: {on: true, off: false}",
        "variants: {on: !e!set {a}, off: false}",
        "non-json-value",
        "4:14",
    ),
    "set where the schema wants a string": (
        FLAGS,
        "description: Redesigned checkout",
        "description: !!set {a}",
        "non-json-value",
        "2:3",
    ),
    "set in config": (
        CONFIG,
        "timeout_ms: 500",
        "timeout_ms: 500\n  extra: !!set {a}",
        "non-json-value",
        "4:3",
    ),
    "number as a key in a variant value": (
        FLAGS,
        "variants: {on: true, off: false}",
        "variants: {on: {1: x}, off: false}",
        "non-string-key",
        "4:22",
    ),
    "list as a key in a variant value": (
        FLAGS,
        "variants: {on: true, off: false}",
        "variants: {on: {[1, 2]: x}, off: false}",
        "non-string-key",
        "4:14",  # the mapping holding it: a path cannot name a list key
    ),
    "long integer as a variant value": (
        FLAGS,
        "variants: {on: true, off: false}",
        "variants: {on: 123456789012345678901234567890, off: false}",
        "unsafe-integer",
        "4:18",
    ),
    "long integer with digit separators": (
        FLAGS,
        "variants: {on: true, off: false}",
        "variants: {on: 9_007_199_254_740_993, off: false}",
        "unsafe-integer",
        "4:18",
    ),
    "long integer in hexadecimal": (
        FLAGS,
        "variants: {on: true, off: false}",
        "variants: {on: 0x20000000000001, off: false}",
        "unsafe-integer",
        "4:18",
    ),
    "long integer as a target": (
        FLAGS,
        "on: [user-17]",
        "on: [user-17, 90071992547409930]",
        "unsafe-integer",
        "8:19",
    ),
    "long integer in config": (
        CONFIG,
        "timeout_ms: 500",
        "timeout_ms: 90071992547409930",
        "unsafe-integer",
        "3:15",
    ),
}


def _write_case(root: Path, case: str) -> tuple[str, str, str]:
    file, old, new, code, position = CASES[case]
    path = root / file
    text = path.read_text()
    assert old in text
    if "!e!" in new:
        text = "%TAG !e! tag:yaml.org,2002:\n---\n" + text
        position = f"{int(position.split(':')[0]) + 2}:{position.split(':')[1]}"
    path.write_text(text.replace(old, new, 1))
    return file, code, position


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate__value_json_cannot_hold__one_finding_with_its_position(
    case: str, repo_from_case
) -> None:
    root = repo_from_case("valid/base")
    file, code, position = _write_case(root, case)
    problems = [p for p in validate_repository(root) if p.is_error]
    assert [(p.file, f"{p.line}:{p.col}", p.code) for p in problems] == [(file, position, code)]
    assert problems[0].hint or problems[0].message.endswith("; quote it")


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_build__value_json_cannot_hold__refused_as_a_finding_nothing_written(
    case: str, jobs: str, repo_from_case, flagstone_exe
) -> None:
    root = repo_from_case("valid/base")
    file, code, position = _write_case(root, case)
    result = flagstone_exe(["build"], root, env={**os.environ, "FLAGSTONE_JOBS": jobs})
    assert result.returncode == 1, result.stderr
    assert f"{file}:{position}: error:" in result.stdout
    assert f"[{code}]" in result.stdout
    assert "cannot write the bundle" not in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (root / "dist").exists()


def test_build__binary_and_dates__stay_the_strings_written(repo_from_case, cli) -> None:
    root = repo_from_case("valid/base")
    flags = root / FLAGS
    flags.write_text(
        flags.read_text().replace(
            "variants: {on: true, off: false}",
            "variants: {on: !!binary aGVsbG8=, off: 2001-12-14, day: 2001-12-14t21:59:43.10-05:00}",
        )
    )
    assert [p for p in validate_repository(root) if p.is_error] == []
    result = cli(["build", "--env", "prod"], cwd=root)
    assert result.exit_code == 0, result.stdout + result.stderr
    variants = json.loads((root / "dist" / "prod.json").read_text())["flags"]["new-checkout"][
        "variants"
    ]
    assert variants == {
        "on": "aGVsbG8=",
        "off": "2001-12-14",
        "day": "2001-12-14t21:59:43.10-05:00",
    }


def _spelled(value: int, base: str, separators: bool) -> str:
    sign = "-" if value < 0 else ""
    digits = {"dec": f"{abs(value)}", "hex": f"0x{abs(value):x}", "oct": f"0o{abs(value):o}"}[base]
    if separators and base == "dec" and len(digits) > 3:
        digits = f"{abs(value):_}"
    return sign + digits


@settings(max_examples=400, deadline=None)
@given(
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=MAX_SAFE_INTEGER - 5, max_value=MAX_SAFE_INTEGER + 5),
    st.sampled_from(["dec", "hex", "oct"]),
    st.booleans(),
)
def test_source_scan__every_integer_beyond_2_53_is_flagged(
    value: int, base: str, separators: bool
) -> None:
    source = f"flag:\n  variants: {{a: {_spelled(value, base, separators)}}}\n".encode()
    try:
        parsed = yaml_rs.loads(source.decode(), parse_datetime=False)["flag"]["variants"]["a"]
    except yaml_rs.YAMLDecodeError:
        return
    if isinstance(parsed, int) and abs(parsed) > MAX_SAFE_INTEGER:
        assert may_hold_unsafe_number(source)
