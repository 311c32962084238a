"""The bad-input corpus: one small repository per defect, and the exact lines a user sees.

Each folder under tests/cases/invalid/ overlays tests/cases/valid/base (a file named
REMOVE lists base files to delete); ``expected.txt`` holds every problem as
``file:line:col: severity: message [code]``. Rewrite with ``pytest --update-golden``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from flagstone.validate import validate_repository

CASES = Path(__file__).parent / "cases"
INVALID = sorted(p.name for p in (CASES / "invalid").iterdir() if p.is_dir())
TODAY = dt.date(2026, 11, 25)


def build_case(name: str, dest: Path) -> Path:
    shutil.copytree(CASES / "valid" / "base", dest)
    case = CASES / "invalid" / name
    for path in case.rglob("*"):
        rel = path.relative_to(case)
        if path.is_dir() or rel.name in ("expected.txt", "REMOVE"):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)
    remove = case / "REMOVE"
    if remove.exists():
        for rel in remove.read_text().split():
            (dest / rel).unlink()
    return dest


def test_corpus__has_at_least_30_distinct_defects() -> None:
    codes = set()
    for name in INVALID:
        for line in (CASES / "invalid" / name / "expected.txt").read_text().splitlines():
            codes.add(line.rsplit("[", 1)[1].rstrip("]"))
    assert len([n for n in INVALID if not n.startswith("warn-")]) >= 30
    assert len(codes) >= 30, sorted(codes)


def test_base_case__is_valid(tmp_path: Path) -> None:
    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    assert validate_repository(root, today=TODAY) == []


@pytest.mark.parametrize("name", INVALID)
def test_invalid_case__reports_exact_problems(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    root = build_case(name, tmp_path / "repo")
    problems = validate_repository(root, today=TODAY)
    actual = "".join(f"{p}\n" for p in problems)
    expected_file = CASES / "invalid" / name / "expected.txt"
    if request.config.getoption("--update-golden"):
        expected_file.write_text(actual)
    assert expected_file.exists(), (
        f"{name}: no expected.txt; run pytest --update-golden and review it"
    )
    assert actual == expected_file.read_text()
    if name.startswith("warn-"):
        assert problems and all(not p.is_error for p in problems)
    else:
        assert any(p.is_error for p in problems)
