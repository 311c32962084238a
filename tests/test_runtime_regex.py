"""`matches` keeps Python's `re` semantics and runs in bounded time whatever the pattern."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstone.runtime.regex import RegexError, compile_regex, regex_problem

ATOMS = [
    "a",
    "b",
    "x",
    ".",
    r"\d",
    r"\w",
    r"\s",
    r"\D",
    r"\W",
    r"\S",
    "[a-c]",
    r"[^\w]",
    r"[\d\s]",
    "é",
    "1",
    r"\n",
    "[^a]",
]
QUANTIFIERS = ["", "", "*", "+", "?", "{2}", "{1,3}", "*?", "+?", "{2,}"]
TEXT = st.text(alphabet="abx1 \n\t\u00a0١٢é日😀_-", max_size=12)


@st.composite
def patterns(draw, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            inner = "|".join(draw(patterns(depth + 1)) for _ in range(draw(st.integers(1, 3))))
            atom = f"({inner})"
        else:
            atom = draw(st.sampled_from(ATOMS))
        parts.append(atom + draw(st.sampled_from(QUANTIFIERS)))
    body = "".join(parts)
    if draw(st.booleans()):
        body = "^" + body
    if draw(st.booleans()):
        body += draw(st.sampled_from(["$", r"\Z"]))
    if draw(st.integers(0, 5)) == 0:
        body = draw(st.sampled_from(["(?i)", "(?s)", "(?m)", "(?a)"])) + body
    return body


@settings(max_examples=600, deadline=None)
@given(patterns(), st.lists(TEXT, min_size=1, max_size=8))
def test_any_pattern__same_answer_as_python_re(pattern, texts) -> None:
    try:
        search = compile_regex(pattern)
    except RegexError:
        return  # refused at load: nothing to compare
    for text in texts:
        assert (search(text) is not None) == (re.search(pattern, text) is not None), (
            pattern,
            text,
        )


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1+", "backreference"),
        (r"(?=a)b+", "lookaround"),
        (r"\bcat+\b", "word boundaries"),
        (r"a$b+", "`$` followed by more pattern"),
        (r"(?>a+)b", "atomic group"),
        ("a" * 300, "over the 256 allowed"),
        ("(unclosed", "does not compile"),
    ],
)
def test_pattern_that_cannot_be_bounded__refused_with_the_reason(pattern, why) -> None:
    assert why in (regex_problem(pattern) or "")


def test_non_repeating_patterns__keep_every_python_feature() -> None:
    """Without repetition Python's engine is linear, so lookaround, \\b and backrefs stay."""
    for pattern, text in [
        (r"\bcat\b", "the cat"),
        (r"(?<=a)b", "ab"),
        (r"(a)\1", "aa"),
        (r"\Aab\Z", "ab"),
    ]:
        assert regex_problem(pattern) is None
        assert compile_regex(pattern)(text) is not None


def test_catastrophic_patterns__answer_in_bounded_time() -> None:
    """Under backtracking each of these takes seconds to years; here the subprocess finishes."""
    code = (
        "from flagstone.runtime.regex import compile_regex\n"
        "for p, s in [('(a|a)+$', 'a' * 4096 + 'b'), ('.*x.*y', 'x' * 4096),"
        " (r'\\d+\\d+\\d+x', '1' * 4096), ('^(a|aa)+$', 'a' * 4095 + 'b')]:\n"
        "    assert compile_regex(p)(s) is None\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr
