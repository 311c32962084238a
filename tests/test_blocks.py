"""Top-level blocks: cut where the YAML parser would, refuse what cannot be cut safely,
and splice so that every byte outside the changed blocks stays as it was."""

from __future__ import annotations

import json
import operator
import string
import subprocess
from pathlib import Path

import pytest
import yaml_rs
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstone import blocks

TEXT = """\
# yaml-language-server: $schema=../../schemas/flags.schema.json
alpha:
  variants: {on: true, off: false}
  default: off   # trailing comment stays in the block

# beta is the banner
beta:
  variants:
    a: 1
# a column-0 comment inside the block
    b: 2
  default: a
"quoted key":
  default: x
"""


def test_split__spans_run_from_the_key_to_its_last_indented_line() -> None:
    found = blocks.split(TEXT)
    assert found is not None
    assert list(found.spans) == ["alpha", "beta", "quoted key"]
    assert found.text("alpha") == (
        "alpha:\n  variants: {on: true, off: false}\n  default: off   # trailing comment stays in the block\n"
    )
    assert found.text("beta").endswith("    b: 2\n  default: a\n")
    assert "# beta is the banner" not in found.text("beta")  # between blocks: neither's


@pytest.mark.parametrize(
    "text",
    [
        "a: &x {b: 1}\nc: *x\n",  # anchors and aliases tie blocks together
        "{a: 1, b: 2}\n",  # a flow document
        "- a\n- b\n",  # a sequence
        "a: 1\na: 2\n",  # a duplicate key: the parser's error to report
        "a:\n\tb: 1\n",  # tabs
        "---\na: 1\n",  # document markers
        "a: 1\r\nb: 2\r\n",  # CR line endings
        "  a: 1\n",  # indented content before any key
        "a: {b: 1,\n}\n",  # a flow mapping closed at column 0
        "a: !!str 1\n",  # tags
    ],
)
def test_split__refuses_what_it_cannot_cut_safely(text: str) -> None:
    assert blocks.split(text) is None


def test_splice__replaces_and_appends_keeping_every_other_byte() -> None:
    found = blocks.split(TEXT)
    assert found is not None
    out = found.splice({"beta": "beta:\n  default: b\n"}, ["gamma:\n  default: z"])
    assert (
        out
        == TEXT.replace(
            "beta:\n  variants:\n    a: 1\n# a column-0 comment inside the block\n    b: 2\n  default: a\n",
            "beta:\n  default: b\n",
        )
        + "gamma:\n  default: z\n"
    )


LOWER = string.ascii_lowercase
# st.text rather than st.from_regex: the same languages, drawn several times faster.
KEYS = st.builds(  # [a-z][a-z0-9-]{0,8}
    operator.add, st.sampled_from(LOWER), st.text(LOWER + string.digits + "-", max_size=8)
)
VALUES = st.one_of(  # an integer, a boolean or [a-z]{1,6}
    st.integers(-99, 99),
    st.booleans(),
    # true, false and null would read back as a boolean or None, not as text
    st.text(LOWER, min_size=1, max_size=6).filter(lambda s: s not in {"true", "false", "null"}),
)
BODIES = st.dictionaries(KEYS, VALUES, min_size=1, max_size=4)


def block_text(key: str, body: dict[str, object]) -> str:
    def show(v: object) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    return f"{key}:\n" + "".join(f"  {k}: {show(v)}\n" for k, v in body.items())


@settings(max_examples=150, deadline=None)
@given(
    docs=st.dictionaries(KEYS, BODIES, min_size=1, max_size=8),
    gaps=st.lists(
        st.sampled_from(["", "\n", "# note\n", "\n# about the next\n"]), min_size=8, max_size=8
    ),
    data=st.data(),
)
def test_splice__reads_back_as_the_parser_expects(docs, gaps, data) -> None:
    text = "".join(gap + block_text(k, v) for gap, (k, v) in zip(gaps, docs.items(), strict=False))
    found = blocks.split(text)
    assert found is not None
    assert list(found.spans) == list(docs)
    changed = data.draw(st.lists(st.sampled_from(list(docs)), unique=True))
    new = {k: data.draw(BODIES) for k in changed}
    out = found.splice({k: block_text(k, v) for k, v in new.items()})
    assert yaml_rs.loads(out) == {k: new.get(k, v) for k, v in docs.items()}
    for key in docs:  # untouched blocks keep their bytes
        if key not in new:
            assert found.text(key) in out


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(repo_from_case) -> Path:
    return repo_from_case("valid/base")


def test_promote__by_blocks__touches_only_the_moved_blocks(cli, repo: Path) -> None:
    dev = repo / "environments" / "dev" / "flags.yaml"
    prod = repo / "environments" / "prod" / "flags.yaml"
    prod.write_text("# prod flags: reviewed\n\n" + prod.read_text() + "\n# trailing note\n")
    dev.write_text(
        dev.read_text().replace("long: Hello there", "long: Hello, friend")
        + "extra:\n  variants: {a: 1, b: 2}\n  default: a\n"
    )
    git(repo, "commit", "-qam", "edits")
    before = prod.read_text()
    result = cli(["promote", "dev", "prod", "--yes"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    after = prod.read_text()
    assert after == before.replace("long: Hello there", "long: Hello, friend") + (
        "extra:\n  variants: {a: 1, b: 2}\n  default: a\n"
    )
    differences = json.loads(cli(["diff", "dev", "prod", "-f", "json"], cwd=repo).stdout)
    assert [c["kind"] for c in differences["changes"]] == ["config"]  # the pinned base_url


def test_promote__a_file_it_cannot_cut__takes_the_whole_file_path(cli, repo: Path) -> None:
    prod = repo / "environments" / "prod" / "flags.yaml"
    dev = repo / "environments" / "dev" / "flags.yaml"
    # an anchor in the target: blocks refuse it, the round-trip path still promotes
    prod.write_text(
        prod.read_text().replace(
            "variants: {on: true, off: false}", "variants: &onoff {on: true, off: false}"
        )
    )
    dev.write_text(dev.read_text().replace("long: Hello there", "long: Hello, friend"))
    git(repo, "commit", "-qam", "anchor")
    result = cli(["promote", "dev", "prod", "--only", "banner-text", "--yes"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    promoted = yaml_rs.loads(prod.read_text())
    assert promoted["banner-text"]["variants"]["long"] == "Hello, friend"
    assert promoted["new-checkout"]["variants"] == {"on": True, "off": False}


def test_promote__comments_inside_the_target_object__merged_in_place(cli, repo: Path) -> None:
    prod = repo / "environments" / "prod" / "flags.yaml"
    dev = repo / "environments" / "dev" / "flags.yaml"
    prod.write_text(
        prod.read_text().replace(
            "    long: Hello there\n", "    long: Hello there  # legal approved\n"
        )
    )
    dev.write_text(dev.read_text().replace("    short: Hi\n", "    short: Hey\n"))
    git(repo, "commit", "-qam", "comments")
    before = prod.read_text()
    assert (
        cli(["promote", "dev", "prod", "--only", "banner-text", "--yes"], cwd=repo).exit_code == 0
    )
    assert prod.read_text() == before.replace("    short: Hi\n", "    short: Hey\n")


def apply_patch(before: list[str], patch: str) -> list[str]:
    """Apply a unified diff (as `patch` would) to a list of lines."""
    import re

    out, at = [], 0
    lines = patch.splitlines(keepends=True)[2:]
    i = 0
    while i < len(lines):
        m = re.match(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", lines[i])
        assert m, lines[i]
        start = int(m[1]) - (0 if m[2] == "0" else 1)
        out += before[at:start]
        at = start
        i += 1
        while i < len(lines) and not lines[i].startswith("@@"):
            tag, text = lines[i][0], lines[i][1:]
            if tag in " -":
                assert before[at] == text
                at += 1
            if tag in " +":
                out.append(text)
            i += 1
    return out + before[at:]


@settings(max_examples=200, deadline=None)
@given(
    before=st.lists(st.sampled_from(["a\n", "b\n", "c\n"]), max_size=30),
    edits=st.lists(
        st.tuples(st.integers(0, 30), st.sampled_from(["x\n", None, "y\n"])), min_size=1, max_size=3
    ),
)
def test_unified_diff__of_the_trimmed_middle__applies_back_to_the_new_text(before, edits) -> None:
    from flagstone.cli.edit_commands import unified_diff

    after = list(before)
    for index, line in edits:
        index = min(index, len(after))
        if line is None:
            del after[index : index + 1]
        else:
            after.insert(index, line)
    patch = unified_diff("f", "".join(before), "".join(after))
    if before == after:
        assert patch == ""
    else:
        assert apply_patch(before, patch) == after
