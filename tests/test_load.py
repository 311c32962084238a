from __future__ import annotations

import operator
import string
import time
from pathlib import Path

import pytest
import yaml_rs
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstone.errors import LoadError, Problem, RepositoryNotFound
from flagstone.load import (
    MAX_FILE_BYTES,
    BlockCache,
    attach_positions,
    find_root,
    load_repository,
    parse_yaml,
    read_environment,
)


def test_parse_yaml__variant_names_on_off_yes_no__stay_strings() -> None:
    data = parse_yaml("variants: {on: true, off: false, yes: 1, no: 0, y: 2, n: 3}\n", "f.yaml")
    assert list(data["variants"]) == ["on", "off", "yes", "no", "y", "n"]
    assert data["variants"]["on"] is True


def test_parse_yaml__dates__stay_strings_for_json_schema() -> None:
    assert parse_yaml("expires: 2027-03-01\n", "f.yaml") == {"expires": "2027-03-01"}


def test_parse_yaml__billion_laughs__fails_fast_with_position() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 10)}]")
    started = time.perf_counter()
    with pytest.raises(LoadError) as info:
        parse_yaml("\n".join(lines) + "\n", "bomb.yaml")
    assert time.perf_counter() - started < 20  # a generous bound: the point is "not minutes"
    problem = info.value.problem
    assert problem.code == "alias-bomb"
    assert (problem.line, problem.col) == (2, 8)


def test_parse_yaml__tab_indentation__names_line_and_column() -> None:
    with pytest.raises(LoadError) as info:
        parse_yaml("flag:\n\tvariants: {}\n", "f.yaml")
    p = info.value.problem
    assert (p.code, p.line, p.col) == ("yaml-syntax", 2, 2)
    assert p.hint is not None and "tabs" in p.hint


def test_parse_yaml__duplicate_key__points_at_second_occurrence() -> None:
    with pytest.raises(LoadError) as info:
        parse_yaml("a:\n  x: 1\nb: 2\na:\n  x: 2\n", "f.yaml")
    p = info.value.problem
    assert (p.code, p.line, p.col) == ("duplicate-key", 4, 1)


def test_parse_yaml__nested_duplicate_key__points_at_it() -> None:
    with pytest.raises(LoadError) as info:
        parse_yaml("a:\n  x: 1\n  y: 2\n  x: 3\n", "f.yaml")
    assert (info.value.problem.line, info.value.problem.col) == (4, 3)


def test_parse_yaml__not_utf8__reports_byte_position() -> None:
    with pytest.raises(LoadError) as info:
        parse_yaml(b"a: 1\nb: caf\xe9\n", "f.yaml")
    p = info.value.problem
    assert (p.code, p.line, p.col) == ("encoding", 2, 7)


def test_parse_yaml__oversized_file__is_refused_before_parsing() -> None:
    with pytest.raises(LoadError) as info:
        parse_yaml(b"#" * (MAX_FILE_BYTES + 1), "big.yaml")
    assert info.value.problem.code == "file-too-large"


def test_parse_yaml__byte_order_mark__is_accepted() -> None:
    assert parse_yaml("\ufeffa: 1\n".encode(), "f.yaml") == {"a": 1}


def test_parse_yaml__leading_document_marker__is_one_document() -> None:
    assert parse_yaml("# comment\n---\na: 1\n", "f.yaml") == {"a": 1}


def test_parse_yaml__two_documents__are_refused() -> None:
    with pytest.raises(LoadError) as info:
        parse_yaml("a: 1\n---\nb: 2\n", "f.yaml")
    assert (info.value.problem.code, info.value.problem.line) == ("multiple-documents", 2)


def test_find_root__walks_up_like_git(tmp_path: Path) -> None:
    (tmp_path / "flagstone.yaml").write_text("environments: [dev]\n")
    nested = tmp_path / "environments" / "dev"
    nested.mkdir(parents=True)
    assert find_root(nested) == tmp_path.resolve()


def test_find_root__no_settings__says_where_it_looked_and_suggests_init(tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFound, match=r"flagstone init") as info:
        find_root(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_read_environment__folder_of_files__merges_keys() -> None:
    files = {
        "environments/dev/flags/a.yaml": b"one: {variants: {on: true}, default: on}\n",
        "environments/dev/flags/b.yaml": b"two: {variants: {on: true}, default: on}\n",
        "environments/dev/README.md": b"not yaml",
    }
    env, problems = read_environment("dev", files)
    assert problems == []
    assert list(env.flags) == ["one", "two"]
    assert env.flags["two"].file == "environments/dev/flags/b.yaml"
    assert env.layout["flags"] == "folder"
    assert env.file_for("flags", "three") == "environments/dev/flags/three.yaml"


def test_read_environment__single_file__new_keys_go_to_it() -> None:
    env, _ = read_environment("dev", {"environments/dev/flags.yaml": b"{}\n"})
    assert env.file_for("flags", "new") == "environments/dev/flags.yaml"


def test_load_repository__subset_of_environments__reads_only_those(tmp_path: Path) -> None:
    (tmp_path / "flagstone.yaml").write_text("environments: [dev, prod]\n")
    for env in ("dev", "prod"):
        (tmp_path / "environments" / env).mkdir(parents=True)
        (tmp_path / "environments" / env / "flags.yaml").write_text("{}\n")
    repo, _ = load_repository(tmp_path, ["prod"])
    assert list(repo.environments) == ["prod"]


def test_attach_positions__reads_only_files_with_findings() -> None:
    read: list[str] = []

    def reader(rel: str) -> str:
        read.append(rel)
        return "flag:\n  rules:\n    - serve: on\n      segment: beta\n"

    problems = [
        Problem("a.yaml", 0, 0, "m", "c", path=("flag", "rules", 0, "segment")),
        Problem("b.yaml", 3, 4, "m", "c"),
    ]
    positioned = attach_positions(problems, reader)
    assert read == ["a.yaml"]
    assert [(p.file, p.line, p.col) for p in positioned] == [("a.yaml", 4, 16), ("b.yaml", 3, 4)]


def test_classify__one_layout_rule_for_load_history_and_diff() -> None:
    from flagstone.model import classify, env_of

    assert classify("environments/dev/flags.yaml", "dev") == ("flags", "file")
    assert classify("environments/dev/segments.yml", "dev") == ("segments", "file")
    assert classify("environments/dev/flags/new-checkout.yaml", "dev") == ("flags", "folder")
    assert classify("environments/dev/config.yaml", "dev") == ("config", "file")
    for other in (
        "environments/dev/README.md",
        "environments/dev/secrets.sops.yaml",
        "environments/dev/flags/deeper/x.yaml",
        "environments/dev/notes.yaml",
        "environments/prod/flags.yaml",
        "flagstone.yaml",
    ):
        assert classify(other, "dev") is None, other
    assert env_of("environments/prod/flags/x.yaml") == "prod"
    assert env_of("environments/prod") is None and env_of("schemas/a.json") is None


DEV_FLAGS = """\
# flags of dev
alpha:
  owner: web
  variants: {on: true, off: false}
  default: on
beta:
  owner: web
  variants:
    a: 1
    b: 2
  default: a
"""


@pytest.mark.parametrize(
    ("prod", "expected"),
    [
        # a syntax error in an entry written as in dev, and in a new one
        (DEV_FLAGS.replace("  default: a\n", "  default: [a\n"), ("yaml-syntax", 11, 12)),
        (DEV_FLAGS.replace("    b: 2\n", "    b: 2\n\tc: 3\n"), ("yaml-syntax", 10, 8)),
        (DEV_FLAGS + "alpha:\n  default: off\n", ("duplicate-key", 12, 1)),
        (
            DEV_FLAGS.replace("  default: a\n", "  default: a\n  owner: db\n"),
            ("duplicate-key", 12, 3),
        ),
    ],
)
def test_load_repository__an_error_after_entries_met_before__is_the_whole_files_error(
    tmp_path: Path, prod: str, expected: tuple[str, int, int]
) -> None:
    (tmp_path / "flagstone.yaml").write_text("environments: [dev, prod]\n")
    for env, text in (("dev", DEV_FLAGS), ("prod", prod)):
        (tmp_path / "environments" / env).mkdir(parents=True)
        (tmp_path / "environments" / env / "flags.yaml").write_text(text)
    repo, problems = load_repository(tmp_path)
    with pytest.raises(LoadError) as info:
        parse_yaml(prod, "environments/prod/flags.yaml")
    assert problems == [info.value.problem]
    assert (problems[0].code, problems[0].line, problems[0].col) == expected
    assert list(repo.env("dev").flags) == ["alpha", "beta"]


def test_load_repository__entries_written_alike__share_one_value(tmp_path: Path) -> None:
    (tmp_path / "flagstone.yaml").write_text("environments: [dev, prod]\n")
    for env, text in (("dev", DEV_FLAGS), ("prod", DEV_FLAGS.replace("default: a", "default: b"))):
        (tmp_path / "environments" / env).mkdir(parents=True)
        (tmp_path / "environments" / env / "flags.yaml").write_text(text)
    repo, problems = load_repository(tmp_path)
    assert problems == []
    dev, prod = repo.env("dev").flags, repo.env("prod").flags
    assert dict(prod["beta"].raw) == {"owner": "web", "variants": {"a": 1, "b": 2}, "default": "b"}
    assert prod["beta"].raw["variants"] is dev["beta"].raw["variants"]
    assert prod["alpha"].raw == dev["alpha"].raw


# --- BlockCache: each distinct entry parsed once, the same value as the whole file ------

LOWER = string.ascii_lowercase
KEYS = st.builds(  # [a-z][a-z0-9-]{0,8}
    operator.add, st.sampled_from(LOWER), st.text(LOWER + string.digits + "-", max_size=8)
)


def loads(text: str) -> object:
    return yaml_rs.loads(text, parse_datetime=False)


def whole(text: str) -> object:
    """What the parser says of the whole file: its value, or that it refused it."""
    try:
        return ("value", loads(text))
    except Exception:
        return ("error", None)


def same(a: object, b: object) -> bool:
    """Equal, with the same types and key order all the way down (True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)  # type: ignore[index]
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))  # type: ignore[arg-type]
    return a == b or (a != a and b != b)  # NaN reads as NaN


def assert_split_reads_as_whole(texts: list[str]) -> None:
    cache = BlockCache()
    for text in texts:
        split = cache.parse(text, loads)
        if split is None:
            continue  # the caller parses the whole file: its value or its error
        kind, value = whole(text)
        assert kind == "value", f"the split read a file the parser refuses:\n{text}"
        assert same(split, value), f"\n{text}\nsplit: {split!r}\nwhole: {value!r}"


def test_block_cache__shares_entries_written_alike_and_parses_only_new_ones() -> None:
    dev = "a:\n  owner: x\n  rules: [1, 2]\n  default: on\nb:\n  owner: x\n  default: off\n"
    prod = dev.replace("default: on", "default: off")
    documents: list[str] = []

    def counting(text: str) -> object:
        documents.append(text)
        return loads(text)

    cache = BlockCache()
    first, second = cache.parse(dev, counting), cache.parse(prod, counting)
    assert first == loads(dev) and second == loads(prod)
    assert documents == [
        "a:\n  owner: x\n  rules: [1, 2]\n  default: on\nb:\n  default: off\n",
        "a:\nb:\n",  # every entry of prod was met in dev
    ]
    assert first is not None and second is not None
    assert second["a"]["rules"] is first["a"]["rules"]  # one object for one text


@pytest.mark.parametrize(
    "text",
    [
        "a:\n  x: 1\n  x: 2\n",  # a key repeated in one mapping
        "a:\n  x: 1\n  y: 2\nb:\n  x: 1\n  x: 1\n",  # an entry met before, twice in a mapping
        "a:\n  x: 1\na:\n  y: 2\n",  # a repeated top-level key
        "a:\n  x: &v 1\n  y: *v\n",  # an anchor and its alias
        "a:\n  x: !!set {1, 2}\n",  # a tag
        'a:\n  x: "one\n  y: two"\n',  # a quoted scalar over a line that looks like a key
        "a:\n  x: [1,\n  y: 2]\n",  # a flow sequence likewise
        "a: 1\n  x: 2\n",  # a value on the key's line, then an entry
        "a:\n  x: 1\nb: 1\n  x: 1\n",  # likewise, the entry met before
        '"a":\n  x: 1\n',  # a quoted key: left to the whole file
        "a:\n  1: x\n",  # a key the parser reads as a number
        "a:\n  true: x\n",
        "a:\n  x: 1\n y: 2\n",  # a line indented by one space
        # an empty block scalar: "" before a line, "\n" at the end of the text
        "b:\n  a: |+\nc:\n",
        "b:\n  a: |\n  c: 1\n",
        "b:\n  a:\n    x: >\n",
        "---\na:\n  x: 1\n",  # document markers
        "a:\n  x: 1\n...\n",
        "%YAML 1.2\n---\na:\n  x: 1\n",
        "a:\n\tx: 1\n",  # a tab
        "a:\r\n  x: 1\r\n",  # CR line endings
        "\ufeffa:\n  x: 1\n",  # a BOM
        "a:\n  x: 1",  # no newline at the end
        "  a: 1\n",  # indented content before any key
        "- a\n- b\n",  # a sequence
        "{a: 1}\n",  # a flow mapping
        "? a\n: 1\n",  # a complex key
    ],
)
def test_block_cache__leaves_to_the_whole_file_what_it_cannot_cut(text: str) -> None:
    assert BlockCache().parse(text, loads) is None


@pytest.mark.parametrize(
    "text",
    [
        "a:\n  x: 1\nb:\n  y: 2\n  -z: 3\n",  # a key that starts with "-"
        "a:\n  tags:\n  - x\n  - y\n  z: 1\n",  # a sequence at its key's indentation
        "a:  # about a\n  x: |+\n    kept\n\n# between\nb:\n  x: 1\n",
        "a:\n  x: 1\nb: {x: 1}\nc:\n    x: 1\n",  # blocks that are not cut
    ],
)
def test_block_cache__reads_what_it_cuts_as_the_whole_file(text: str) -> None:
    assert_split_reads_as_whole([text, text.replace("1", "2"), text])
    assert BlockCache().parse(text, loads) is not None


def test_block_cache__an_empty_block_scalar__is_read_in_its_own_context() -> None:
    # "|" with no content reads "\n" at the end of a text and "" before a line: learned at
    # the end of one file, it would be wrong before the next key of another
    assert_split_reads_as_whole(["b:\n  x: 1\n  a: |\n", "b:\n  x: 2\n  a: |\nc: 1\n"])


SCALARS = st.one_of(
    st.integers(-99, 99).map(str),
    st.sampled_from(
        ["true", "off", "null", "~", "1.5", "0x1F", ".inf", ".nan", "'q'", '"d"', "''", "x y"]
    ),
    st.text(LOWER, min_size=1, max_size=5),
)
HOSTILE = st.sampled_from(
    [
        "",
        "\n",
        "# note\n",
        "  # indented note\n",
        "    # deeper note\n",
        ' "a: b"\n',
        "  x: 'one\n  y: two'\n",
        '  x: "one\n  y: two"\n',
        "  x: [1,\n  y]\n",
        "  x: {a: 1,\n  y: 2}\n",
        "  x: |\n    text\n  y: 2\n",
        "  x: |+\n    kept\n\n",
        "  x: >-\n    folded\n    text\n",
        "  x: |\n",  # empty block scalars
        "  x: |+\n",
        "    x: >\n",
        "  x:\n  - 1\n  - 2\n",
        "  - item\n",
        "  -x: 1\n",
        "  ? k\n  : v\n",
        "  x: 1\n",
        "  x: 2\n",
        " one: space\n",
        "  'q': 1\n",
        '  "d": 2\n',
        "q: 'multi\ny: line'\n",
        "z:\n",
        "z: [1,\n2]\n",
        "z: |\n  block\n",
        "---\n",
        "...\n",
        "  x: a # c\n",
        "  x:    \n",
        "zz:  # about zz\n",
    ]
)


def entry_text(key: str, value: str) -> str:
    return f"  {key}: {value}\n"


FILES = st.lists(
    st.tuples(
        KEYS,
        st.lists(
            st.one_of(st.tuples(KEYS, SCALARS).map(lambda kv: entry_text(*kv)), HOSTILE),
            max_size=6,
        ),
    ),
    min_size=1,
    max_size=6,
).map(lambda blocks: "".join(f"{k}:\n" + "".join(body) for k, body in blocks))


@settings(max_examples=400, deadline=None)
@given(texts=st.lists(FILES, min_size=1, max_size=3))
def test_block_cache__reads_generated_and_hostile_files_as_the_whole_parse(texts) -> None:
    assert_split_reads_as_whole(texts)


@settings(max_examples=200, deadline=None)
@given(base=FILES, data=st.data())
def test_block_cache__reads_environments_written_almost_alike_as_the_whole_parse(
    base, data
) -> None:
    # the same file three times, a few lines changed in each: most entries come from the cache
    lines = base.splitlines(keepends=True)
    texts = [base]
    for _ in range(2):
        changed = list(lines)
        for _ in range(data.draw(st.integers(0, 3))):
            at = data.draw(st.integers(0, len(changed)))
            changed.insert(
                at, data.draw(HOSTILE | st.tuples(KEYS, SCALARS).map(lambda kv: entry_text(*kv)))
            )
        texts.append("".join(changed))
    assert_split_reads_as_whole(texts)


def test_block_cache__reads_the_example_repository_as_the_whole_parse() -> None:
    root = Path(__file__).resolve().parent.parent / "environments"
    texts = [p.read_text() for p in sorted(root.rglob("*.yaml"))]
    cache = BlockCache()
    assert all(same(cache.parse(t, loads) or loads(t), loads(t)) for t in texts)
