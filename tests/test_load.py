from __future__ import annotations

import time
from pathlib import Path

import pytest

from flagstone.errors import LoadError, Problem, RepositoryNotFound
from flagstone.load import (
    MAX_FILE_BYTES,
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
