"""`matches` patterns in ECMAScript form: written into every bundle, for runtimes without `re`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flagstone.bundle import compile_condition
from flagstone.ecmascript import ecmascript_regex

VECTORS = Path(__file__).parent / "conformance" / "vectors.json"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"^\d+$", [r"^\p{Nd}+(?=\n?$)", "u"]),
        (r"(?i)^staff@", ["^staff@", "iu"]),
        (r"(?a)\w", ["[a-zA-Z0-9_]", "u"]),
        (r"^(?P<word>[a-z]+)(?P=word)", ["^(?<word>[a-z]+)\\k<word>", "u"]),
        (r"x{2}|{json}|y{,2}", ["x{2}|\\{json\\}|y{0,2}", "u"]),
        (r"\Aab\Z", ["^ab$", "u"]),
        ("a.c", ["a[^\\n]c", "u"]),
        ("(?s)a.c", ["a[\\s\\S]c", "u"]),
        (r"\😀", ["\\u{1f600}", "u"]),  # an escaped astral character stays one code point
    ],
)
def test_ecmascript_regex__translates_python_syntax(pattern: str, expected: list[str]) -> None:
    assert ecmascript_regex(pattern) == expected


@pytest.mark.parametrize("pattern", ["(?>a)", "a*+", "a{2}+", "(?x) a", "(?<name>a)", "a\\"])
def test_ecmascript_regex__is_none_for_what_ecmascript_cannot_express(pattern: str) -> None:
    assert ecmascript_regex(pattern) is None


def test_bundle__every_matches_leaf_carries_its_ecmascript_form() -> None:
    leaf = compile_condition({"email": {"matches": "^[a-z]+@x\\.app$"}})
    assert leaf == {
        "attr": "email",
        "op": "matches",
        "value": "^[a-z]+@x\\.app$",
        "ecmascript": ["^[a-z]+@x\\.app(?=\\n?$)", "u"],
    }
    assert "ecmascript" not in compile_condition({"email": {"ends_with": "@x.app"}})
    bundle = json.loads(VECTORS.read_text())["bundle"]
    leaves = [
        node
        for flag in bundle["flags"].values()
        for rule in flag["rules"]
        for node in [rule["when"]]
        if node.get("op") == "matches"
    ]
    assert leaves and all(n["ecmascript"] == ecmascript_regex(n["value"]) for n in leaves)
