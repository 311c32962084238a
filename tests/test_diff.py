from __future__ import annotations

import json
import textwrap
from pathlib import Path

from flagstone.diff import diff_environments
from flagstone.load import read_environment

FLAG = """\
new-checkout:
  variants: {on: true, off: false}
  enabled: true
  targets: {on: [a, b]}
  rules:
    - segment: staff
      serve: on
  default: {rollout: {on: 20, off: 80}}
"""


def env(flags: str, config: str = "{}\n", name: str = "prod", folder: dict[str, str] | None = None):
    files = {f"environments/{name}/config.yaml": config.encode()}
    if folder is not None:
        files.update(
            {
                f"environments/{name}/flags/{k}": textwrap.dedent(v).encode()
                for k, v in folder.items()
            }
        )
    else:
        files[f"environments/{name}/flags.yaml"] = textwrap.dedent(flags).encode()
    return read_environment(name, files)[0]


def summaries(a, b) -> list[str]:
    return [f"{c.key}: {c.summary}" for c in diff_environments(a, b)]


def test_diff__speaks_the_domain() -> None:
    after = (
        FLAG.replace("on: 20, off: 80", "on: 50, off: 50")
        .replace("enabled: true", "enabled: false")
        .replace("on: [a, b]", "on: [b, c, d]")
        .replace(
            "      serve: on\n", "      serve: on\n    - when: {country: DE}\n      serve: off\n"
        )
    )
    assert summaries(env(FLAG), env(after)) == [
        "new-checkout: disabled (kill switch pulled)",
        "new-checkout: default rollout on 20% → 50%, off 80% → 50%",
        'new-checkout: rule added at position 2 (when {"country": "DE"} → off)',
        "new-checkout: targets on +2 −1",
    ]


def test_diff__added_and_removed_flags_and_variant_values() -> None:
    after = (
        FLAG.replace("{on: true, off: false}", "{on: true, off: false, maybe: null}")
        + "other:\n  variants: {x: 1}\n  default: x\n"
    )
    assert summaries(env(FLAG), env(after)) == [
        "new-checkout: variant maybe added (null)",
        "other: flag added",
    ]
    assert summaries(env(after), env(FLAG))[-1] == "other: flag removed"


def test_diff__moving_a_flag_between_files_of_a_folder__is_no_change() -> None:
    before = env("", folder={"a.yaml": FLAG, "b.yaml": "{}\n"})
    after = env("", folder={"a.yaml": "{}\n", "b.yaml": FLAG})
    assert diff_environments(before, after) == []


def test_diff__secrets__never_show_their_values() -> None:
    before = env(
        FLAG, "db:\n  password: ENC[AES256_GCM,data:AAAA,iv:BB,tag:CC,type:str]\n  host: a\n"
    )
    after = env(
        FLAG, "db:\n  password: ENC[AES256_GCM,data:ZZZZ,iv:YY,tag:XX,type:str]\n  host: b\n"
    )
    changes = diff_environments(before, after)
    assert [(c.key, c.summary) for c in changes] == [
        ("db.host", "a → b"),
        ("db.password", "<secret: changed>"),
    ]
    assert "AAAA" not in json.dumps([c.as_dict() for c in changes])


def test_diff_cli__environments_markdown_and_exit_code(cli, tmp_path: Path) -> None:
    from tests.test_validate_corpus import build_case

    root = build_case("warn-skipped-promotion", tmp_path / "repo")
    result = cli(["diff", "dev", "prod", "--format", "markdown", "--exit-code"], cwd=root)
    assert result.exit_code == 1
    assert result.stdout.startswith("<!-- flagstone-diff -->\n### flagstone diff dev prod\n")
    assert "- ➕ flag `hotfix`: flag added" in result.stdout
    assert cli(["diff", "dev", "dev", "--exit-code"], cwd=root).exit_code == 0


def test_diff_cli__revisions_from_git_objects(cli, git_repo, commit) -> None:
    import shutil

    from tests.test_validate_corpus import CASES

    root = Path(git_repo.working_dir)
    shutil.copytree(CASES / "valid" / "base", root, dirs_exist_ok=True)
    first = commit(message="base")
    flags = root / "environments" / "prod" / "flags.yaml"
    flags.write_text(flags.read_text().replace("on: 20, off: 80", "on: 50, off: 50"))
    second = commit(message="ramp")
    flags.write_text(flags.read_text().replace("on: 50, off: 50", "on: 90, off: 10"))  # uncommitted
    result = cli(["diff", "--rev", f"{first}..{second}", "--format", "json"], cwd=root)
    doc = json.loads(result.stdout)
    assert [c["summary"] for c in doc["changes"]] == ["rule 2 rollout on 20% → 50%, off 80% → 50%"]
    worktree = json.loads(
        cli(["diff", "--rev", f"{second}..", "--format", "json"], cwd=root).stdout
    )
    assert [c["summary"] for c in worktree["changes"]] == [
        "rule 2 rollout on 50% → 90%, off 50% → 10%"
    ]
