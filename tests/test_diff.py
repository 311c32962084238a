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
        "new-checkout: rule added at position 2 (when country = DE → off)",
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


# --- the pull-request comment -------------------------------------------------------------

HOSTILE = """\
new-checkout:
  variants: {on: true, off: false}
  default: off
"x`y":
  description: "# Heading\\n<img src=x onerror=alert(1)> @octocat <!-- flagstone-diff --> [link](http://e.test)"
  variants: {on: "`code` **bold** <b>x</b> ```", "off": "@everyone\\n## injected\\n- item"}
  default: "off"
  rules:
    - when: {email: {ends_with: "@example.com"}, plan: {in: [pro, "a]b(c)"]}}
      serve: {rollout: {on: 20, "off": 80}}
"""


def rendered_html(markdown: str) -> str:
    """The comment as HTML, by a CommonMark parser with raw HTML enabled (as GitHub's)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).render(markdown)


def text_outside_code(html: str) -> str:
    import re

    return re.sub(r"<code>.*?</code>", "", html, flags=re.S)


def test_markdown__added_flag__shows_what_it_serves_in_words() -> None:
    from flagstone.report_diff import changes_markdown

    after = FLAG.replace(
        "default: {rollout", "description: Redesigned checkout\n  default: {rollout"
    )
    md = changes_markdown(diff_environments(env("{}\n"), env(after)), ["prod"])
    assert (
        "- ➕ flag `new-checkout`: flag added\n"
        "  - variants `on` = `true`, `off` = `false`\n"
        "  - targets `on`: 2 units\n"
        "  - rule 1: segment `staff` → `on`\n"
        "  - default rollout `on` 20%, `off` 80%\n"
    ) in md.replace("  - description `Redesigned checkout`\n", "")
    assert "description `Redesigned checkout`" in md


def test_markdown__hostile_keys_and_values__cannot_inject_markup() -> None:
    from flagstone.report_diff import MARKER, changes_markdown

    changes = diff_environments(env("{}\n", "{}\n"), env(HOSTILE, "'@admin <b>': 1\n"))
    md = changes_markdown(changes, ["prod"], title="flagstone diff <script>@x</script>")
    assert md.startswith(MARKER + "\n") and md.count(MARKER) == 1
    html = rendered_html(md)
    outside = text_outside_code(html)
    assert "<img" not in html and "<b>" not in outside and "<script>" not in outside
    assert "<h1>" not in html and "<h2>" not in html
    assert [tag for tag in ("<h3>", "<h4>") if tag in html] == ["<h3>", "<h4>"]
    assert "<a " not in html
    import re

    assert not re.search(r"@\w", outside), outside  # no mention outside code
    # every value is there, visibly
    assert "<code>@everyone\\n## injected\\n- item</code>" in html
    assert "`code` **bold** &lt;b&gt;x&lt;/b&gt; ```" in html


def test_markdown__huge_change__capped_below_githubs_limit_with_a_pointer() -> None:
    from flagstone.report_diff import MARKER, changes_markdown

    flags = "".join(
        f"flag-{i}:\n  description: {'long text ' * 20}\n  variants: {{on: true, off: false}}\n"
        f"  default: off\n"
        for i in range(3000)
    )
    changes = diff_environments(env("{}\n"), env(flags))
    md = changes_markdown(changes, ["prod"])
    assert len(md) < 65_536 - 5_000
    assert md.startswith(MARKER) and md.count(MARKER) == 1
    last = md.rstrip().splitlines()[-1]
    assert "more changes not shown" in last and "flagstone-diff" in last and "report.txt" in last
    shown = md.count("\n- ➕")
    assert 10 < shown < 3000 and f"… {3000 - shown} more changes" in last
    assert "<details>" not in rendered_html(md) or "</details>" in md


def test_markdown__kill_switch_released__warned_first() -> None:
    from flagstone.diff import review_warnings
    from flagstone.report_diff import changes_markdown

    disabled = FLAG.replace("enabled: true", "enabled: false\n  off_variant: off")
    changes = diff_environments(env(disabled), env(FLAG.replace("targets", "owner: x\n  targets")))
    assert [w.message for w in review_warnings(changes)] == [
        "flag new-checkout is disabled in prod (kill switch pulled) and this change enables it again"
    ]
    md = changes_markdown(changes, ["prod"])
    warning = "> ⚠️ **prod**: flag `new-checkout` is disabled in `prod` (kill switch pulled)"
    assert warning in md and md.index(warning) < md.index("#### ")
    # pulling it is no warning
    assert review_warnings(diff_environments(env(FLAG), env(disabled))) == []


def test_promote_preview__kill_switch_pulled_in_the_target__warned_in_every_format(
    cli, repo_from_case, commit
) -> None:
    from tests.cli_schemas import validator

    root = repo_from_case("valid/base")
    prod = (root / "environments/prod/flags.yaml").read_text()
    commit({"environments/prod/flags.yaml": prod.replace("enabled: true", "enabled: false", 1)})
    warning = "flag new-checkout is disabled in prod (kill switch pulled) and this change enables it again"

    text = cli(["promote", "dev", "prod", "--dry-run"], cwd=root)
    assert text.exit_code == 0, text.stderr
    assert f"warning: prod: {warning}" in text.stdout

    as_json = cli(["promote", "dev", "prod", "--dry-run", "--format", "json"], cwd=root)
    doc = json.loads(as_json.stdout)
    assert doc["warnings"] == [
        {"env": "prod", "kind": "flags", "key": "new-checkout", "message": warning}
    ]
    validator("promote").validate(doc)

    markdown = cli(["promote", "dev", "prod", "--dry-run", "--format", "markdown"], cwd=root)
    assert "> ⚠️ **prod**: flag `new-checkout` is disabled in `prod`" in markdown.stdout


def test_diff_text__added_flag__lists_what_it_serves(cli, repo_from_case, commit) -> None:
    root = repo_from_case("valid/base")
    prod = root / "environments/prod/flags.yaml"
    commit({"environments/prod/flags.yaml": prod.read_text().split("banner-text:")[0]})
    result = cli(["diff", "prod", "dev"], cwd=root)
    assert "flag added" in result.stdout
    assert "variants short = Hi, long = Hello there" in result.stdout
    assert "requires new-checkout to serve on" in result.stdout
