"""Which flagd implementations bucket like flagstone: the compatibility table in docs/flagd.md.

Python's flagd-core (the in-process provider) and npm's ``@openfeature/flagd-core`` (through
Node, pinned in tests/flagd_node/package-lock.json) evaluate the same exported rollout of 100
one-percent arms for 5,000 ASCII ids. Same buckets means the same arm for every id; an
implementation that hashes differently agrees on about 1 % of ids, by chance.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flagstone.flagd import export_environment
from flagstone.load import load_repository
from flagstone.runtime import Client
from tests.flagd_helpers import flagd_provider, provider_answer
from tests.runtime_helpers import bundle_from_yaml

NODE_DIR = Path(__file__).parent / "flagd_node"
NodeEvaluate = Callable[..., list[dict[str, Any]]]


def _installed_version(package: str) -> str | None:
    manifest = NODE_DIR / "node_modules" / package / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.exists() else None


def _locked_version(package: str) -> str:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    return str(lock["packages"][f"node_modules/{package}"]["version"])


@pytest.fixture(scope="session")
def node_flagd_core() -> NodeEvaluate:
    """Evaluate flagd documents with @openfeature/flagd-core in one Node process per call;
    ``npm ci`` installs the locked versions when node_modules is missing or stale."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("needs Node.js and npm: sudo apt-get install nodejs npm")
    package = "@openfeature/flagd-core"
    if _installed_version(package) != _locked_version(package):
        install = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "NPM_CONFIG_UPDATE_NOTIFIER": "false"},
        )
        if install.returncode != 0:
            message = f"npm ci in {NODE_DIR} failed: {install.stderr.strip()[-500:]}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message + " (needs the npm registry once)")

    def evaluate(
        flags: dict[str, Any],
        cases: list[dict[str, Any]],
        strict: bool = False,
        contexts: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        request = {"flags": flags, "cases": cases, "strict": strict, "contexts": contexts or []}
        run = subprocess.run(
            [node, str(NODE_DIR / "evaluate.mjs")],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stdout[:2000] + run.stderr
        results: list[dict[str, Any]] = json.loads(run.stdout)
        return results

    return evaluate


def test_node_flagd_core__is_the_locked_version() -> None:
    package = json.loads((NODE_DIR / "package.json").read_text())
    assert package["dependencies"]["@openfeature/flagd-core"] == "4.0.1"
    assert _locked_version("@openfeature/flagd-core") == "4.0.1"


@pytest.mark.slow
def test_flagd_buckets__python_flagd_core_same__npm_flagd_core_4_0_1_not(
    tmp_path: Path, node_flagd_core: NodeEvaluate
) -> None:
    arms = {f"v{i:02d}": 1 for i in range(100)}
    variants = ", ".join(f"{k}: {k}" for k in arms)
    rollout = ", ".join(f"{k}: {w}" for k, w in arms.items())
    bundle = bundle_from_yaml(
        tmp_path, f"split:\n  variants: {{{variants}}}\n  default: {{rollout: {{{rollout}}}}}\n"
    )
    repo, _ = load_repository(next(tmp_path.glob("repo-*")))
    document, warnings = export_environment(repo, "prod")
    assert warnings == []
    ids = [f"user-{i}@example.com" if i % 2 else f"u{i:x}" for i in range(5000)]
    ours = Client.from_dict(bundle)
    expected = [ours.variant("split", {"user_id": unit}) for unit in ids]
    assert len(set(expected)) == 100

    path = tmp_path / "prod.flagd.json"
    path.write_text(json.dumps(document))
    with flagd_provider(path) as client:
        python = [
            provider_answer(
                client.provider, "split", bundle["flags"]["split"]["variants"], {"user_id": u}
            )[0]
            for u in ids
        ]
    cases = [
        {"flag": "split", "type": "string", "default": "", "targetingKey": u, "attributes": {}}
        for u in ids
    ]
    node = [r["variant"] for r in node_flagd_core(document, cases)]
    assert all(v is not None for v in node)  # it evaluates the export, with its own hash

    same_python = sum(a == b for a, b in zip(expected, python, strict=True))
    same_node = sum(a == b for a, b in zip(expected, node, strict=True))
    assert same_python == 5000
    assert same_node < 150  # chance agreement is 1 % (50 ids): a different hash input


@pytest.mark.slow
def test_flagd_export__every_operator_and_experiment__is_valid_under_flagds_schemas(
    tmp_path: Path, node_flagd_core: NodeEvaluate
) -> None:
    """flagd validates a flag file against its published schemas (flags.json, targeting.json)
    before serving it; flagd-core's strict mode runs the same, so the guards the export adds
    (cat, substr, some, %, +) stay within what flagd accepts."""
    import random

    from tests.test_flagd_differential import SEED, generated_repository

    flags, segments, experiments = generated_repository(random.Random(SEED))
    bundle_from_yaml(
        tmp_path,
        json.dumps(flags),
        segments=json.dumps(segments),
        experiments=json.dumps(experiments),
    )
    repo, _ = load_repository(next(tmp_path.glob("repo-*")))
    document, _ = export_environment(repo, "prod")
    assert len(document["flags"]) > 20
    assert node_flagd_core(document, [], strict=True) == []
    conformance, _ = load_repository(Path(__file__).parent / "conformance" / "repository")
    assert node_flagd_core(export_environment(conformance, "prod")[0], [], strict=True) == []
    broken = {
        "flags": {
            "f": {
                "state": "ENABLED",
                "variants": {"a": 1},
                "defaultVariant": "a",
                "targeting": {"nope": [1]},
            }
        }
    }
    with pytest.raises(AssertionError, match="invalid flagd flag configuration"):
        node_flagd_core(broken, [], strict=True)
