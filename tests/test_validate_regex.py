"""The `unsafe-regex` check: a corpus of patterns known to backtrack catastrophically and
of patterns known to be safe, taken from the ReDoS literature (OWASP, the Weideman et al.
and recheck papers, published CVEs) and from the patterns flag targeting really uses."""

from __future__ import annotations

import re

import pytest

from flagstone.redos import analyze

# (pattern, kind): exponential = some text matches a repetition in two ways; polynomial =
# two repetitions side by side can share a text.
CATASTROPHIC = [
    (r"(a|a)+$", "exponential"),
    (r"(a|aa)+$", "exponential"),
    (r"(a+)+", "exponential"),
    (r"(a+)+$", "exponential"),
    (r"^(a+)+$", "exponential"),
    (r"(\w|\d)+", "exponential"),  # Python merges the branch into one class; JavaScript does not
    (r"(\w|\d)+$", "exponential"),
    (r"(.*a){12}", "exponential"),
    (r"(.*a){3}$", "exponential"),
    (r"^(a|a?)+$", "exponential"),
    (r"^([a-zA-Z]+)*$", "exponential"),
    (r"(a*)*$", "exponential"),
    (r"^(\w+\s?)*$", "exponential"),
    (r"^(a|b|ab)*c$", "exponential"),
    (r"(x+x+)+y", "exponential"),
    (r"^(([a-z])+.)+[A-Z]([a-z])+$", "exponential"),  # the Wikipedia/OWASP "Java class name"
    (r"(.|\s)*$", "exponential"),  # CVE-2017-16119 shape
    (r"(a|a){20}$", "exponential"),  # finite, but 2**20 ways
    (r"^(\d+)*$", "exponential"),
    (r"(?i)(a|A)+$", "exponential"),  # the same letter once case is ignored
    (r"(?i)(é|É)+$", "exponential"),
    (r"(\d|٣)+$", "exponential"),  # ARABIC-INDIC DIGIT THREE is a \d
    (r"(\s*,\s*)*$", "exponential"),
    (r"(?x) ( a | a ) + $", "exponential"),  # verbose syntax
    (r"^(?:a|a)+$", "exponential"),
    (r"^(?P<x>a|a)+$", "exponential"),
    (r"^(a|a)+?$", "exponential"),  # lazy loops backtrack the same ways
    (r"^(?=(a+)+$)x", "exponential"),  # inside a lookahead: it runs at every position
    (
        r"^([a-zA-Z0-9])(([\-.]|[_]+)?([a-zA-Z0-9]+))*(@){1}[a-z0-9]+[.]{1}"
        r"(([a-z]{2,3})|([a-z]{2,3}[.]{1}[a-z]{2,3}))$",
        "exponential",
    ),  # the OWASP e-mail validation pattern
    (r"\d*\d*x", "polynomial"),
    (r"^.*a.*a.*b$", "polynomial"),
    (r"^.*\..*$", "polynomial"),
    (r"^\s*#?\s*$", "polynomial"),
    (r"a*a*$", "polynomial"),
    (r"(a)\1", "backreference"),
    (r"(?P<x>a)(?P=x)", "backreference"),
]

SAFE = [
    r"^[a-z0-9-]+$",
    r"^(a|b)+$",
    r"^\d{3}-\d{4}$",
    r"^[^@]+@example\.com$",
    r"^(foo|bar)*$",
    r"^v\d+\.\d+$",
    r"^(ab)+$",
    r"(a+b)+$",
    r".*beta.*",  # the last .* always succeeds: nothing after it to backtrack into
    r"^.*@example\.com$",
    r"@(example|test)\.com$",
    r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$",
    r"^(\d{1,3}\.){3}\d{1,3}$",
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    r"^\+?[1-9]\d{1,14}$",
    r"^https?://",
    r"(?i)^(iphone|ipad)",
    r"^[A-Z]{2}$",
    r"^.*\.(png|jpg)$",
    r"^(?:[a-z0-9-]+\.)*example\.com$",
    r"^[a-z]+(-[a-z]+)*$",
    r"^(\s*,\s*\w+)*$",
    r"\w{3,}\d{2}",
    r"^(DE|FR|IT)$",
    r"^(\w|-)+$",
    r"^(\d|\.)+$",
    r"(é|ü)+$",
    r"(é|É)+$",  # different letters unless case is ignored
    r"^\s+|\s+$",
    r"\bfoo\b",
    r"(\W|\d)+$",  # \W and \d are disjoint, in Unicode too
    r"^(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}$",
    r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}$",
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$",
    r"^beta-(?!internal)",
    r"(?<=@)example\.com$",
]


@pytest.mark.parametrize(("pattern", "kind"), CATASTROPHIC)
def test_redos__known_catastrophic_pattern__refused(pattern: str, kind: str) -> None:
    re.compile(pattern)
    finding = analyze(pattern)
    assert finding is not None, pattern
    assert finding.kind == kind


@pytest.mark.parametrize("pattern", SAFE)
def test_redos__known_safe_pattern__accepted(pattern: str) -> None:
    re.compile(pattern)
    assert analyze(pattern) is None, analyze(pattern)


def test_redos__finding__names_the_repetition_and_a_text_it_matches_twice() -> None:
    finding = analyze(r"^user-(a|aa)+$")
    assert finding is not None
    assert finding.where == "(a|aa)+"
    assert re.fullmatch(finding.where, finding.text)  # the text really is one of its matches
    assert "exponential" in finding.describe()


def test_redos__polynomial_finding__names_both_repetitions() -> None:
    finding = analyze(r"^.*\..*$")
    assert finding is not None and finding.where == r".*\..*"


def test_redos__pattern_too_large_to_analyse__refused_not_slow() -> None:
    pattern = "(?:" + "|".join(["ab?c?d?e?"] * 20) + ")*x"
    assert len(pattern) <= 256
    finding = analyze(pattern)
    assert finding is not None and finding.kind in ("too-complex", "exponential")


def test_validate__catastrophic_regex_in_a_segment__refused_with_position(
    cli, tmp_path, repo_from_case
) -> None:
    import json

    repo = repo_from_case("valid/base")
    (repo / "environments/dev/segments.yaml").write_text(
        "internal:\n  when: {email: {matches: '^(a|aa)+@x$'}}\n"
    )
    result = cli(["validate", "--format", "json"], cwd=repo)
    assert result.exit_code == 1
    problems = [p for p in json.loads(result.stdout)["problems"] if p["code"] == "unsafe-regex"]
    assert [(p["file"], p["line"], p["column"]) for p in problems] == [
        ("environments/dev/segments.yaml", 2, 27)
    ]
    assert "(a|aa)+" in problems[0]["message"] and problems[0]["hint"]
