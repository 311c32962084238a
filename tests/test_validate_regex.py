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


# --- soundness, differentially: what the analysis accepts, Python's engine runs in linear time


class _Exploded(Exception):
    pass


def backtracking_steps(pattern: str, text: str, limit: int = 60_000) -> int:
    """Steps a backtracking matcher takes to try ``pattern`` at the start of ``text``,
    over Python's own parse tree (re._parser) with sre's rules: greedy and lazy repeats,
    an iteration that matches nothing ends the loop, ``$`` also before a final newline."""
    import re._constants as sre
    import re._parser

    steps = 0
    n = len(text)

    def seq(items, i, pos, then):
        nonlocal steps
        steps += 1
        if steps > limit:
            raise _Exploded
        if i == len(items):
            return then(pos)
        op, av = items[i]

        def rest(p):
            return seq(items, i + 1, p, then)

        if op is sre.LITERAL:
            return pos < n and text[pos] == chr(av) and rest(pos + 1)
        if op is sre.NOT_LITERAL:
            return pos < n and text[pos] != chr(av) and rest(pos + 1)
        if op is sre.ANY:
            return pos < n and text[pos] != "\n" and rest(pos + 1)
        if op is sre.IN:
            return pos < n and in_class(av, text[pos]) and rest(pos + 1)
        if op is sre.BRANCH:
            return any(seq(list(alt), 0, pos, rest) for alt in av[1])
        if op is sre.SUBPATTERN:
            return seq(list(av[3]), 0, pos, rest)
        if op is sre.AT:
            if av is sre.AT_BEGINNING:
                return pos == 0 and rest(pos)
            if av is sre.AT_END:
                return (pos == n or (pos == n - 1 and text[pos] == "\n")) and rest(pos)
            raise AssertionError(av)
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, body = av[0], av[1], list(av[2])
            greedy = op is sre.MAX_REPEAT

            def repeat(count, p):
                def again(q):
                    return (q != p or count + 1 <= low) and repeat(count + 1, q)

                more = lambda: count < high and seq(body, 0, p, again)  # noqa: E731
                done = lambda: count >= low and rest(p)  # noqa: E731
                return (more() or done()) if greedy else (done() or more())

            return repeat(0, pos)
        raise AssertionError(op)

    categories = {sre.CATEGORY_DIGIT: r"\d", sre.CATEGORY_WORD: r"\w", sre.CATEGORY_SPACE: r"\s"}
    categories |= {sre.CATEGORY_NOT_DIGIT: r"\D", sre.CATEGORY_NOT_WORD: r"\W"}
    categories |= {sre.CATEGORY_NOT_SPACE: r"\S"}

    def in_class(items, ch):
        negated = bool(items) and items[0][0] is sre.NEGATE
        for op, av in items[1:] if negated else items:
            if (
                (op is sre.LITERAL and ch == chr(av))
                or (op is sre.RANGE and av[0] <= ord(ch) <= av[1])
                or (op is sre.CATEGORY and re.fullmatch(categories[av], ch))
            ):
                return not negated
        return negated

    seq(list(re._parser.parse(pattern).data), 0, 0, lambda p: True)
    return steps


def _patterns():
    from hypothesis import strategies as st

    atom = st.sampled_from(["a", "b", ".", "[ab]", "[^b]"])

    def extend(inner):
        group = inner.map(lambda x: f"(?:{x})")
        quantified = st.tuples(
            st.one_of(atom, group), st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "*?", "+?"])
        ).map("".join)
        sequence = st.lists(st.one_of(atom, group, quantified), min_size=1, max_size=3).map("".join)
        branch = st.lists(sequence, min_size=2, max_size=3).map("|".join)
        return st.one_of(sequence, branch.map(lambda x: f"(?:{x})"))

    body = st.recursive(atom, extend, max_leaves=8)
    return st.tuples(st.booleans(), body, st.booleans()).map(
        lambda t: ("^" if t[0] else "") + t[1] + ("$" if t[2] else "")
    )


def test_redos__accepted_patterns__backtrack_in_linear_time_differentially() -> None:
    """Random patterns over {a, b}: every one the analysis accepts takes at most about
    twice the steps on twice the text, on texts made to make it fail late."""
    from hypothesis import HealthCheck, given, settings

    pumps = ["a", "b", "ab", "aab", "abb", "ba"]

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_patterns())
    def check(pattern: str) -> None:
        re.compile(pattern)
        if analyze(pattern) is not None:
            return
        for pump in pumps:
            for tail in ("c", "\nc"):
                try:
                    short = backtracking_steps(pattern, pump * (24 // len(pump)) + tail)
                    long = backtracking_steps(pattern, pump * (48 // len(pump)) + tail)
                except _Exploded:
                    raise AssertionError(f"{pattern!r} explodes on {pump!r}×n{tail!r}") from None
                assert long <= 3 * short + 20, (pattern, pump, tail, short, long)

    check()


def test_reference_matcher__sees_the_blow_up_the_analysis_predicts() -> None:
    """The reference matcher is not blind: on a pattern the analysis refuses it explodes,
    and on the accepted rewrite it does not."""
    assert analyze(r"^(a|ab|aab)*$") is not None
    with pytest.raises(_Exploded):
        backtracking_steps(r"^(a|ab|aab)*$", "aab" * 20 + "c")  # "aab" is (a)(ab) or (aab)
    assert backtracking_steps(r"^a+$", "a" * 40 + "c") < 200
    short = backtracking_steps(r"^\d*\d*x", "1" * 20 + "c", limit=10**7)
    long = backtracking_steps(r"^\d*\d*x", "1" * 40 + "c", limit=10**7)
    assert long > 3.5 * short  # quadratic: the polynomial finding is real


@pytest.mark.parametrize("pattern", [r"^(?=a)b+$", r"\bfoo(?!bar)\w+"])
def test_validate__pattern_the_runtime_refuses__is_a_bad_regex(
    cli, tmp_path, repo_from_case, pattern: str
) -> None:
    import json

    from flagstone.runtime.regex import regex_problem

    assert regex_problem(pattern) is not None  # the runtime would refuse the bundle
    repo = repo_from_case("valid/base")
    (repo / "environments/dev/segments.yaml").write_text(
        f"internal:\n  when: {{email: {{matches: {json.dumps(pattern)}}}}}\n"
    )
    result = cli(["validate", "--format", "json"], cwd=repo)
    assert result.exit_code == 1
    problems = [p for p in json.loads(result.stdout)["problems"] if p["code"] == "bad-regex"]
    assert len(problems) == 1 and "cannot run in the runtime" in problems[0]["message"]
    assert problems[0]["file"] == "environments/dev/segments.yaml"
