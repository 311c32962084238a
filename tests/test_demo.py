from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo__tours_every_step_and_leaves_the_checkout_untouched() -> None:
    before = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    result = subprocess.run(
        [sys.executable, "-m", "flagstone.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for marker in (
        "== 1. Validate",
        "rollout weights sum to 110",
        "RULE_MATCH rule 1",
        "42 passed, 0 failed",
        "wrote",
        "hot reload: new bundle live",
        "Done. The checkout was not touched.",
    ):
        assert marker in result.stdout, marker
    after = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert after == before
