"""The repository's own example (the Isometry app) is a working flagstone repository."""

from __future__ import annotations

import json
from pathlib import Path

from flagstone.load import load_repository

ROOT = Path(__file__).resolve().parent.parent


def test_example__validates_without_errors(flagstone_exe) -> None:
    result = flagstone_exe(["validate", "--format", "json"], cwd=ROOT)
    doc = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout
    assert doc["errors"] == 0
    assert {p["code"] for p in doc["problems"]} == {"flag-expired"}


def test_example__meets_the_documented_shape() -> None:
    repo, problems = load_repository(ROOT)
    assert problems == []
    dev = repo.env("dev")
    kinds = {type(v).__name__ for f in dev.flags.values() for v in f.variants.values()}
    assert kinds >= {"bool", "str", "int", "dict"}
    assert len(dev.flags) >= 8 and len(dev.segments) >= 3
    assert {e.status for e in dev.experiments.values()} >= {"running", "concluded"}
    assert any(f.prerequisites for f in dev.flags.values())
    assert any(f.targets for f in dev.flags.values())
    assert any(not f.enabled for f in dev.flags.values())
    assert repo.env("prod").config is not None
    assert repo.env("prod").config.get("api.base_url") != dev.config.get("api.base_url")  # type: ignore[union-attr]


def test_example__variant_names_on_and_off_stay_strings() -> None:
    repo, _ = load_repository(ROOT)
    assert list(repo.env("prod").flags["cloudkit-sync-v2"].variants) == ["on", "off"]


def test_example__eval_through_the_real_cli(flagstone_exe) -> None:
    ctx = {"user_id": "u-1", "platform": "web", "browser": "chrome", "plan": "pro"}
    result = flagstone_exe(
        ["eval", "--all", "--env", "prod", "--context", json.dumps(ctx), "--format", "json"],
        cwd=ROOT,
    )
    served = {d["flag"]: d["value"] for d in json.loads(result.stdout)["flags"]}
    assert served["graph-renderer"] == "webgl"
    assert served["max-graph-nodes"] == 2000
    assert served["ai-summaries"] is False
