"""Round trips keep every byte: comments, order, quoting, indentation."""

from __future__ import annotations

import json
import operator
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstone.edit import Document, apply_files, atomic_write, detect_indentation

LOWER = string.ascii_lowercase
LETTERS = string.ascii_letters
# Built from st.text rather than st.from_regex: the same languages, drawn several times
# faster (from_regex spent most of this module's run generating keys).
KEYS = st.builds(  # [a-z][a-z0-9-]{0,12}
    operator.add, st.sampled_from(LOWER), st.text(LOWER + string.digits + "-", max_size=12)
)
PLAIN = st.builds(  # [A-Za-z][A-Za-z0-9 ._/-]{0,20}[A-Za-z0-9]
    lambda first, middle, last: first + middle + last,
    st.sampled_from(LETTERS),
    st.text(LETTERS + string.digits + " ._/-", max_size=20),
    st.sampled_from(LETTERS + string.digits),
).filter(
    lambda s: s.lower() not in {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}
)
SCALARS = st.one_of(
    st.integers(-10_000, 10_000),
    st.booleans(),
    PLAIN,
    # Double-quoted text, unicode included. (ruamel writes an escape such as "\u00a0" back
    # as the character itself, so generated strings carry characters, not escapes.)
    st.text(
        st.characters(
            codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"), exclude_characters='"\\'
        ),
        max_size=20,
    ).map(lambda t: json.dumps(t, ensure_ascii=False)),
)
COMMENTS = st.one_of(  # None or [A-Za-z0-9 ,.()%-]{1,30}
    st.none(), st.text(LETTERS + string.digits + " ,.()%-", min_size=1, max_size=30)
)


def scalar_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """YAML text in one consistent style: block mappings, lists, flow lists, comments."""
    mapping = draw(st.sampled_from([2, 4]))
    offset = draw(st.sampled_from([0, 2]))
    lines: list[str] = []
    if draw(st.booleans()):
        lines.append("# yaml-language-server: $schema=../../schemas/flags.schema.json")
    for key in draw(st.lists(KEYS, min_size=1, max_size=5, unique=True)):
        comment = draw(COMMENTS)
        if comment:
            lines.append(f"# {comment}")
        lines.append(f"{key}:")
        for child in draw(st.lists(KEYS, min_size=1, max_size=5, unique=True)):
            pad = " " * mapping
            kind = draw(st.sampled_from(["scalar", "list", "flow", "map"]))
            trailing = draw(COMMENTS)
            suffix = f"  # {trailing}" if trailing else ""
            if kind == "scalar":
                lines.append(f"{pad}{child}: {scalar_text(draw(SCALARS))}{suffix}")
            elif kind == "flow":
                items = draw(st.lists(st.integers(0, 99), min_size=1, max_size=4))
                lines.append(f"{pad}{child}: [{', '.join(map(str, items))}]{suffix}")
            elif kind == "list":
                lines.append(f"{pad}{child}:{suffix}")
                for item in draw(st.lists(SCALARS, min_size=1, max_size=3)):
                    lines.append(f"{pad}{' ' * offset}- {scalar_text(item)}")
            else:
                lines.append(f"{pad}{child}:{suffix}")
                for grandchild in draw(st.lists(KEYS, min_size=1, max_size=3, unique=True)):
                    lines.append(f"{pad}{' ' * mapping}{grandchild}: {scalar_text(draw(SCALARS))}")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(documents())
def test_round_trip__any_valid_document__is_byte_for_byte_identical(text: str) -> None:
    assert Document.parse(text).dump() == text


def test_round_trip__the_example_repository__is_byte_for_byte_identical() -> None:
    root = Path(__file__).resolve().parent.parent
    files = [
        root / "flagstone.yaml",
        *sorted((root / "environments").rglob("*.yaml")),
        *sorted((root / "specs").glob("*.yaml")),
    ]
    for path in files:
        text = path.read_text()
        assert Document.parse(text).dump() == text, path


FLAGS = """\
# Checkout flags
new-checkout:
  description: Redesigned checkout   # the big one
  variants: {on: true, off: false}
  rules:
    # staff first
    - segment: internal
      serve: on
    - when: {country: {in: [DE, FR]}}
      serve: {rollout: {on: 20, off: 80}}
  default: off
other:
  variants: {a: 1, b: 2}
  default: a  # keep
"""


def test_set__changes_only_the_edited_value() -> None:
    doc = Document.parse(FLAGS)
    doc.set(("new-checkout", "rules", 1, "serve", "rollout", "on"), 50)
    doc.set(("new-checkout", "rules", 1, "serve", "rollout", "off"), 50)
    assert doc.dump() == FLAGS.replace("{on: 20, off: 80}", "{on: 50, off: 50}")


def test_set__new_key__is_added_without_touching_the_rest() -> None:
    doc = Document.parse(FLAGS)
    doc.set(("other", "enabled"), False)
    assert doc.dump() == FLAGS + "  enabled: false\n"


def test_delete__removes_the_key_and_keeps_comments_elsewhere() -> None:
    doc = Document.parse(FLAGS)
    doc.delete(("other",))
    assert doc.dump() == FLAGS.split("other:")[0]


def test_detect_indentation__indented_sequences() -> None:
    style = detect_indentation("a:\n    b:\n        - x\n")
    assert (style.mapping, style.sequence, style.offset) == (4, 6, 4)
    style = detect_indentation("a:\n  - x\n")
    assert (style.mapping, style.sequence, style.offset) == (2, 4, 2)
    style = detect_indentation("a:\n- x\n")
    assert (style.offset, style.sequence) == (0, 2)


def test_atomic_write__keeps_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text("a: 1\n")
    path.chmod(0o600)
    atomic_write(path, "a: 2\n")
    assert path.read_text() == "a: 2\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["flags.yaml"]


def test_apply_files__a_failure__restores_every_file_and_removes_created_folders(
    tmp_path: Path,
) -> None:
    first, new = tmp_path / "a.yaml", tmp_path / "sub" / "new.yaml"
    first.write_text("a: 1\n")
    first.chmod(0o640)
    gone = tmp_path / "gone.yaml"
    gone.write_bytes(b"g: 1\r\n")
    occupied = tmp_path / "occupied.yaml"
    occupied.mkdir()  # a directory where a file should go: the last write fails
    with pytest.raises(OSError):
        apply_files(
            tmp_path,
            {
                "a.yaml": "a: 2\n",
                "sub/new.yaml": "n: 1\n",
                "gone.yaml": None,
                "occupied.yaml": "c: 1\n",
            },
        )
    assert first.read_text() == "a: 1\n" and first.stat().st_mode & 0o777 == 0o640
    assert gone.read_bytes() == b"g: 1\r\n"
    assert not new.exists() and not new.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "gone.yaml", "occupied.yaml"]


@pytest.mark.parametrize("rel", ["../outside.yaml", "/etc/x.yaml", "link/x.yaml"])
def test_apply_files__a_path_leaving_the_repository__is_refused(tmp_path: Path, rel: str) -> None:
    from flagstone.errors import FlagstoneError

    root = tmp_path / "repo"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(FlagstoneError, match="refusing to write"):
        apply_files(root, {rel: "x: 1\n"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
