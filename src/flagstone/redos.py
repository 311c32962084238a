"""Catastrophic backtracking (ReDoS) in the patterns of ``matches`` conditions.

A backtracking engine (Python's ``re``, JavaScript's ``RegExp``) tries the ways a pattern
can match one after another. It takes exponential time when some text can be matched in
two different ways inside a repetition (``(a|aa)+$``: "aa" is one ``aa`` or two ``a``),
and polynomial time when two repetitions in a row can share the same text
(``\\d*\\d*x``, ``(.*a){12}``). The analysis is the one of Weideman, van der Merwe, Berglund
and Watson, "Analyzing Matching Time Behavior of Backtracking Regular Expression
Matchers" (2016), which recheck and RegexStaticAnalysis implement:

- the pattern is parsed *as written*, not as Python's ``re`` optimizes it (``(\\w|\\d)+`` is
  harmless in Python, which merges the branch into one class, and exponential in
  JavaScript, and the TypeScript runtime evaluates the same bundle);
- it becomes an ε-free automaton whose states are the pattern's character positions and
  whose edges count the distinct ways (up to 2) of getting from one position to the next:
  ``(a+)+`` has two edges from ``a`` back to itself, one per loop;
- **exponential** (EDA): in the product of the automaton with itself, a strongly
  connected component holds a pair ``(q, q)`` and a pair ``(p, r)`` with ``p != r`` (or a
  doubled edge), so two different paths lead from ``q`` back to ``q`` on the same text;
- **polynomial** (IDA): positions ``p != q`` and a text ``v`` with paths ``p→p``, ``p→q``
  and ``q→q`` all reading ``v``. Positions after which the match is certain to succeed are
  left out of this check: a backtracking engine that reaches one never backtracks past it,
  which is why ``.*beta.*`` is fine and ``^.*\\..*$`` is not.

The analysis over-approximates where it must (lookarounds and anchors count as always
passing, atomic groups and possessive quantifiers as ordinary ones, a counted repetition
``x{2,9}`` as ``x+`` for the exponential check), so a pattern it accepts cannot blow up;
backreferences are refused outright. Character classes have Python's meaning (\\d, \\w
and \\s are Unicode-aware unless ``(?a)``), exact on ASCII and by Unicode region beyond.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

# Work allowed per pattern (product-automaton edges examined); a pattern that needs more
# is refused as too complex to prove safe, rather than slowing `validate` down.
BUDGET = 200_000
# Counted repetitions are expanded exactly for the polynomial check up to this many
# character positions; beyond it, x{n,m} is checked as x+ (more paths, never fewer).
MAX_POSITIONS = 400

Intervals = tuple[tuple[int, int], ...]
Verdict = Literal["exponential", "polynomial", "backreference", "too-complex"]


@dataclass(frozen=True, slots=True)
class Finding:
    """Why a pattern is refused: the kind, the repetition at fault and a text it struggles with."""

    kind: Verdict
    where: str  # the part of the pattern at fault, as written ("(a|aa)+")
    text: str  # a text matched in more than one way ("aa"), or "" when not computed

    def describe(self) -> str:
        if self.kind == "backreference":
            return "it uses a backreference, which backtracking engines cannot match in linear time"
        if self.kind == "too-complex":
            return "it is too complex to prove free of catastrophic backtracking"
        if self.kind == "exponential":
            return (
                f"{self.where} can match {self.text!r} in more than one way, so each "
                "repetition doubles the work (exponential time)"
            )
        return (
            f"the repetitions in {self.where} can share the same text ({self.text!r} …), "
            "so the work grows as a power of the input's length (polynomial time)"
        )


def analyze(pattern: str) -> Finding | None:
    """None if ``pattern`` (valid for Python's ``re``) cannot backtrack catastrophically."""
    return _analyze(pattern)


@functools.lru_cache(maxsize=1024)
def _analyze(pattern: str) -> Finding | None:
    try:
        parsed = _Parser(pattern).parse()
    except _Backreference:
        return Finding("backreference", pattern, "")
    try:
        for root in parsed.roots:
            finding = _check(pattern, root)
            if finding is not None:
                return finding
    except _OverBudget:
        return Finding("too-complex", pattern, "")
    return None


# --- character sets ------------------------------------------------------------------
# A class is exact on ASCII (a 128-bit mask). Beyond ASCII it is a set of regions — the
# non-ASCII digits (\d), other word characters (\w), white space (\s) and the rest, each
# of which has members — plus the non-ASCII characters it names one by one. Whether a
# named character lies in a region is Python's own answer (``re.fullmatch(r"\d", c)``).
# Negated classes and case-insensitive letters over-approximate their non-ASCII part
# (more overlap, never less), so nothing is ever judged disjoint that is not.

ASCII_ALL = (1 << 128) - 1
DIGIT, WORD, SPACE, OTHER = 1, 2, 4, 8  # non-ASCII regions
ALL_REGIONS = DIGIT | WORD | SPACE | OTHER
REGION_SAMPLE = {DIGIT: "\u0663", WORD: "\u00e9", SPACE: "\u3000", OTHER: "\u00a1"}
MAX_NAMED = 20_000  # named non-ASCII characters examined one by one; past that, assume overlap


def _mask(chars: Iterable[int]) -> int:
    out = 0
    for c in chars:
        out |= 1 << c
    return out


ASCII_DIGIT = _mask(range(0x30, 0x3A))
ASCII_WORD = ASCII_DIGIT | _mask(range(0x41, 0x5B)) | _mask(range(0x61, 0x7B)) | 1 << 0x5F
ASCII_SPACE = _mask([*range(0x09, 0x0E), *range(0x1C, 0x21)])  # str.isspace() in ASCII
UPPER, LOWER = _mask(range(0x41, 0x5B)), _mask(range(0x61, 0x7B))
# non-ASCII letters that (?i) folds onto ASCII ones: long s, Kelvin sign, dotted/dotless i
FOLDS_TO_ASCII = {0x17F: "sS", 0x212A: "kK", 0x130: "iI", 0x131: "iI"}
CATEGORIES = {"d": (ASCII_DIGIT, DIGIT), "w": (ASCII_WORD, DIGIT | WORD), "s": (ASCII_SPACE, SPACE)}


@dataclass(frozen=True, slots=True)
class CharClass:
    ascii: int  # bit c set: ASCII character c matches
    regions: int  # non-ASCII regions it may match any member of
    named: Intervals  # non-ASCII characters it matches, named one by one


def _norm(ranges: Iterable[tuple[int, int]]) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(r for r in ranges if r[0] <= r[1]):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _from_ranges(ranges: Iterable[tuple[int, int]]) -> CharClass:
    ascii_bits = 0
    named: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if lo < 0x80:
            ascii_bits |= _mask(range(lo, min(hi, 0x7F) + 1))
        if hi >= 0x80:
            named.append((max(lo, 0x80), hi))
    return CharClass(ascii_bits, 0, _norm(named))


def _union(classes: Iterable[CharClass]) -> CharClass:
    ascii_bits = regions = 0
    named: list[tuple[int, int]] = []
    for c in classes:
        ascii_bits |= c.ascii
        regions |= c.regions
        named += c.named
    return CharClass(ascii_bits, regions, _norm(named))


def _negate(c: CharClass) -> CharClass:
    # Beyond ASCII, "not these" may be anything but the regions wholly inside the class.
    return CharClass(~c.ascii & ASCII_ALL, ALL_REGIONS & ~c.regions, ())


def _fold(c: CharClass) -> CharClass:
    """(?i): ASCII letters gain their other case; any letter may fold onto non-ASCII ones."""
    letters = c.ascii & (UPPER | LOWER)
    ascii_bits = c.ascii | (letters & UPPER) << 32 | (letters & LOWER) >> 32
    regions = c.regions | (WORD if letters or c.named or c.regions & WORD else 0)
    for code, targets in FOLDS_TO_ASCII.items():
        if _named_contains(c.named, code) or c.regions & WORD:
            ascii_bits |= _mask(map(ord, targets))
    return CharClass(ascii_bits, regions, c.named)


def _named_contains(named: Intervals, code: int) -> bool:
    return any(lo <= code <= hi for lo, hi in named)


@functools.lru_cache(maxsize=4096)
def _region(code: int) -> int:
    c = chr(code)
    if re.fullmatch(r"\d", c):
        return DIGIT
    if re.fullmatch(r"\w", c):
        return WORD
    return SPACE if re.fullmatch(r"\s", c) else OTHER


def _contains(c: CharClass, code: int) -> bool:
    if code < 0x80:
        return bool(c.ascii >> code & 1)
    return bool(c.regions & _region(code)) or _named_contains(c.named, code)


PREFERRED = [ord(x) for x in "a0A_-.x1 !"]


@functools.lru_cache(maxsize=4096)
def _witness(classes: tuple[CharClass, ...]) -> str | None:
    """A character every class matches, or None if they are disjoint."""
    common = ASCII_ALL
    for c in classes:
        common &= c.ascii
    if common:
        for code in PREFERRED:
            if common >> code & 1:
                return chr(code)
        printable = common & ~(_mask(range(0x20)) | 1 << 0x7F)
        best = printable or common
        return chr((best & -best).bit_length() - 1)
    regions = ALL_REGIONS
    for c in classes:
        regions &= c.regions
    if regions:
        return REGION_SAMPLE[regions & -regions]
    named = _norm(r for c in classes for r in c.named)
    if sum(hi - lo + 1 for lo, hi in named) > MAX_NAMED:
        return chr(named[0][0])  # too many to examine: assume they overlap
    for lo, hi in named:
        for code in range(lo, hi + 1):
            if all(_contains(c, code) for c in classes):
                return chr(code)
    return None


# --- parsing -------------------------------------------------------------------------


class _Backreference(Exception):
    pass


class _OverBudget(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Char:
    cls: CharClass


@dataclass(frozen=True, slots=True)
class Empty:
    certain: bool  # an empty group always passes; an anchor or lookaround may fail


@dataclass(frozen=True, slots=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Alt:
    options: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Repeat:
    body: Node
    min: int
    max: int | None  # None: unbounded
    span: tuple[int, int]  # where it is written in the pattern


Node = Char | Empty | Seq | Alt | Repeat


@dataclass
class Parsed:
    roots: list[Node] = field(default_factory=list)  # the pattern, then each lookaround body


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_FLAG_BITS = {"i": re.IGNORECASE, "s": re.DOTALL, "x": re.VERBOSE, "a": re.ASCII, "m": re.MULTILINE}


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.s = pattern
        self.i = 0
        self.parsed = Parsed()
        self.global_flags = re.compile(pattern).flags

    def parse(self) -> Parsed:
        root = self._alternation(self.global_flags)
        self.parsed.roots.insert(0, root)
        return self.parsed

    # structure

    def _alternation(self, flags: int) -> Node:
        options = [self._sequence(flags)]
        while self._peek() == "|":
            self.i += 1
            options.append(self._sequence(flags))
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def _sequence(self, flags: int) -> Node:
        items: list[Node] = []
        while True:
            self._skip_verbose(flags)
            if self.i >= len(self.s) or self.s[self.i] in "|)":
                break
            start = self.i
            atom = self._atom(flags)
            if atom is None:
                continue
            while True:
                self._skip_verbose(flags)
                bounds = self._quantifier()
                if bounds is None:
                    break
                atom = Repeat(atom, bounds[0], bounds[1], (start, self.i))
            items.append(atom)
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def _quantifier(self) -> tuple[int, int | None] | None:
        c = self._peek()
        bounds: tuple[int, int | None]
        if c == "*":
            bounds, self.i = (0, None), self.i + 1
        elif c == "+":
            bounds, self.i = (1, None), self.i + 1
        elif c == "?":
            bounds, self.i = (0, 1), self.i + 1
        elif c == "{":
            m = re.compile(r"\{(\d*)(,?)(\d*)\}").match(self.s, self.i)
            if m is None or (not m.group(1) and not m.group(3) and m.group(2)) or m.group() == "{}":
                return None  # a literal "{"
            low = int(m.group(1) or 0)
            high = None if m.group(2) and not m.group(3) else int(m.group(3) or low)
            bounds, self.i = (low, high), m.end()
        else:
            return None
        if self._peek() in ("?", "+"):  # lazy or possessive: the same paths, or fewer
            self.i += 1
        return bounds

    def _atom(self, flags: int) -> Node | None:
        c = self.s[self.i]
        if c == "(":
            return self._group(flags)
        if c == "[":
            return Char(self._class(flags))
        self.i += 1
        if c == ".":
            newline = 0 if flags & re.DOTALL else 1 << 10
            return Char(CharClass(ASCII_ALL & ~newline, ALL_REGIONS, ()))
        if c in "^$":
            return Empty(certain=False)
        if c == "\\":
            return self._escape(flags)
        return Char(_literal(ord(c), flags))

    def _group(self, flags: int) -> Node | None:
        s = self.s
        self.i += 1
        look = False
        if s.startswith("?", self.i):
            self.i += 1
            if s.startswith("P=", self.i):
                raise _Backreference
            if s.startswith("#", self.i):
                self.i = s.index(")", self.i) + 1
                return None
            if s.startswith(("=", "!"), self.i):
                self.i += 1
                look = True
            elif s.startswith(("<=", "<!"), self.i):
                self.i += 2
                look = True
            elif s.startswith(("P<", "<"), self.i):
                self.i = s.index(">", self.i) + 1
            elif s.startswith((":", ">"), self.i):
                self.i += 1
            elif s.startswith("(", self.i):  # (?(group)yes|no): either branch
                self.i = s.index(")", self.i) + 1
            else:
                m = re.compile(r"([aiLmsux]*)(?:-([imsx]*))?([:)])").match(s, self.i)
                assert m is not None, s  # re.compile accepted the pattern
                self.i = m.end()
                if m.group(3) == ")":
                    return None  # global flags: already in self.global_flags
                for letter in m.group(1):
                    flags |= _FLAG_BITS.get(letter, 0)
                for letter in m.group(2) or "":
                    flags &= ~_FLAG_BITS.get(letter, 0)
        body = self._alternation(flags)
        self.i += 1  # ")"
        if look:
            self.parsed.roots.append(body)  # checked on its own: it runs at every position
            return Empty(certain=False)
        return body

    def _escape(self, flags: int) -> Node:
        s = self.s
        c = s[self.i]
        if c in "AZbB":
            self.i += 1
            return Empty(certain=False)
        if c.lower() in CATEGORIES:
            self.i += 1
            return Char(_category(c, flags))
        if c.isdigit():
            octal = re.compile(r"0[0-7]{0,2}|[0-7]{3}").match(s, self.i)
            if octal is None:
                raise _Backreference
            self.i = octal.end()
            return Char(_literal(int(octal.group(), 8), flags))
        return Char(_literal(self._code_point(), flags))

    def _code_point(self) -> int:
        """The character an escape (after its backslash) stands for, outside or in a class."""
        s = self.s
        c = s[self.i]
        self.i += 1
        if c == "x":
            self.i += 2
            return int(s[self.i - 2 : self.i], 16)
        if c == "u":
            self.i += 4
            return int(s[self.i - 4 : self.i], 16)
        if c == "U":
            self.i += 8
            return int(s[self.i - 8 : self.i], 16)
        if c == "N":
            end = s.index("}", self.i)
            name, self.i = s[self.i + 1 : end], end + 1
            return ord(unicodedata.lookup(name))
        return ord(_ESCAPES.get(c, c))

    def _class(self, flags: int) -> CharClass:
        s = self.s
        self.i += 1
        negated = self._peek() == "^"
        if negated:
            self.i += 1
        parts: list[CharClass] = []
        first = True
        while first or s[self.i] != "]":
            first = False
            item = self._class_item(flags)
            if isinstance(item, CharClass):
                parts.append(item)
                continue
            low = high = item
            if s[self.i] == "-" and s[self.i + 1] != "]":
                self.i += 1
                upper = self._class_item(flags)
                assert isinstance(upper, int), s  # re.compile refuses a range to a class
                high = upper
            parts.append(_from_ranges([(low, high)]))
        self.i += 1
        cls = _union(parts)
        if flags & re.IGNORECASE:
            cls = _fold(cls)
        return _negate(cls) if negated else cls

    def _class_item(self, flags: int) -> int | CharClass:
        c = self.s[self.i]
        if c != "\\":
            self.i += 1
            return ord(c)
        self.i += 1
        e = self.s[self.i]
        if e.lower() in CATEGORIES:
            self.i += 1
            return _category(e, flags)
        if e == "b":
            self.i += 1
            return 8
        if e.isdigit():
            octal = re.compile(r"[0-7]{1,3}").match(self.s, self.i)
            assert octal is not None, self.s
            self.i = octal.end()
            return int(octal.group(), 8)
        return self._code_point()

    def _peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def _skip_verbose(self, flags: int) -> None:
        if not flags & re.VERBOSE:
            return
        while self.i < len(self.s):
            c = self.s[self.i]
            if c.isspace():
                self.i += 1
            elif c == "#":
                end = self.s.find("\n", self.i)
                self.i = len(self.s) if end < 0 else end + 1
            else:
                return


def _literal(code: int, flags: int) -> CharClass:
    cls = _from_ranges([(code, code)])
    return _fold(cls) if flags & re.IGNORECASE else cls


def _category(letter: str, flags: int) -> CharClass:
    ascii_bits, regions = CATEGORIES[letter.lower()]
    cls = CharClass(ascii_bits, 0 if flags & re.ASCII else regions, ())
    return _negate(cls) if letter.isupper() else cls


# --- the automaton -------------------------------------------------------------------


@dataclass
class _Automaton:
    """Positions 1..n (0 is the start); follow[p][q] counts the ways from p to q (max 2)."""

    labels: list[CharClass | None] = field(default_factory=lambda: [None])
    follow: list[dict[int, int]] = field(default_factory=lambda: [{}])
    # each repetition built: its range of positions, where it is written, and whether its
    # body is plain characters (such a loop is never the ambiguous one by itself)
    loops: list[tuple[int, int, tuple[int, int], bool]] = field(default_factory=list)
    certain: set[int] = field(default_factory=set)  # success is certain after these

    def new_position(self, cls: CharClass) -> int:
        self.labels.append(cls)
        self.follow.append({})
        if len(self.labels) > MAX_POSITIONS * 4:
            raise _OverBudget
        return len(self.labels) - 1

    def link(self, last: dict[int, int], first: dict[int, int]) -> None:
        for p, a in last.items():
            edges = self.follow[p]
            for q, b in first.items():
                edges[q] = min(2, edges.get(q, 0) + a * b)


@dataclass(frozen=True, slots=True)
class _Fragment:
    first: dict[int, int]
    last: dict[int, int]
    nullable: int  # ways of matching the empty text (max 2)
    certain_last: frozenset[int]  # last positions whose way out passes no anchor or lookaround
    certain_empty: bool


def _add(a: dict[int, int], b: dict[int, int], times: int = 1) -> dict[int, int]:
    out = dict(a)
    if times:
        for k, v in b.items():
            out[k] = min(2, out.get(k, 0) + v * times)
    return out


def _build(node: Node, nfa: _Automaton, exact_counts: bool) -> _Fragment:
    if isinstance(node, Char):
        p = nfa.new_position(node.cls)
        return _Fragment({p: 1}, {p: 1}, 0, frozenset([p]), False)
    if isinstance(node, Empty):
        return _Fragment({}, {}, 1, frozenset(), node.certain)
    if isinstance(node, Seq):
        frag = _Fragment({}, {}, 1, frozenset(), True)
        for item in node.items:
            frag = _concat(frag, _build(item, nfa, exact_counts), nfa)
        return frag
    if isinstance(node, Alt):
        parts = [_build(option, nfa, exact_counts) for option in node.options]
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for part in parts:
            first, last = _add(first, part.first), _add(last, part.last)
        return _Fragment(
            first,
            last,
            min(2, sum(p.nullable for p in parts)),
            frozenset().union(*(p.certain_last for p in parts)),
            any(p.certain_empty for p in parts),
        )
    return _build_repeat(node, nfa, exact_counts)


def _concat(a: _Fragment, b: _Fragment, nfa: _Automaton) -> _Fragment:
    nfa.link(a.last, b.first)
    return _Fragment(
        _add(a.first, b.first, a.nullable),
        _add(b.last, a.last, b.nullable),
        min(2, a.nullable * b.nullable),
        b.certain_last | (a.certain_last if b.certain_empty else frozenset()),
        a.certain_empty and b.certain_empty,
    )


def _build_repeat(node: Repeat, nfa: _Automaton, exact_counts: bool) -> _Fragment:
    low, high = node.min, node.max
    start = len(nfa.labels)
    if high is not None and high <= 1:
        body = _build(node.body, nfa, exact_counts)
        frag = body if low == 1 else _optional(body)
    elif exact_counts and _fits(node, nfa):
        # x{n,m} = x … x (x (x …)?)? : one path per number of repetitions
        frag = _Fragment({}, {}, 1, frozenset(), True)
        for _ in range(low):
            frag = _concat(frag, _build(node.body, nfa, exact_counts), nfa)
        if high is None:
            frag = _concat(frag, _loop(_build(node.body, nfa, exact_counts), nfa, 0), nfa)
        else:
            tail: _Fragment | None = None
            for _ in range(high - low):
                body = _build(node.body, nfa, exact_counts)
                tail = _optional(body if tail is None else _concat(body, tail, nfa))
            if tail is not None:
                frag = _concat(frag, tail, nfa)
    else:
        frag = _loop(_build(node.body, nfa, exact_counts), nfa, min(low, 1))
    nfa.loops.append((start, len(nfa.labels), node.span, _is_plain(node.body)))
    return frag


def _is_plain(node: Node) -> bool:
    if isinstance(node, Seq):
        return all(isinstance(i, Char | Empty) for i in node.items)
    return isinstance(node, Char | Empty)


def _fits(node: Repeat, nfa: _Automaton) -> bool:
    copies = max(node.min, (node.max or 0)) + (1 if node.max is None else 0)
    return len(nfa.labels) + copies * _positions(node.body) <= MAX_POSITIONS


def _positions(node: Node) -> int:
    if isinstance(node, Char):
        return 1
    if isinstance(node, Empty):
        return 0
    if isinstance(node, Seq):
        return sum(_positions(i) for i in node.items)
    if isinstance(node, Alt):
        return sum(_positions(o) for o in node.options)
    copies = 1 if node.max is not None and node.max <= 1 else max(node.min, node.max or 0) + 1
    return copies * _positions(node.body)


def _optional(body: _Fragment) -> _Fragment:
    return _Fragment(body.first, body.last, min(2, 1 + body.nullable), body.certain_last, True)


def _loop(body: _Fragment, nfa: _Automaton, low: int) -> _Fragment:
    # An iteration that matches nothing ends the loop in both Python and JavaScript, so
    # the only way back is from a last position of the body to a first one.
    nfa.link(body.last, body.first)
    if low:
        return body
    return _Fragment(body.first, body.last, min(2, 1 + body.nullable), body.certain_last, True)


def _automaton(root: Node, exact_counts: bool) -> _Automaton:
    nfa = _Automaton()
    frag = _build(root, nfa, exact_counts)
    nfa.follow[0] = dict(frag.first)
    nfa.certain = set(frag.certain_last)
    return nfa


# --- the checks ----------------------------------------------------------------------


class _Work:
    def __init__(self) -> None:
        self.left = BUDGET

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise _OverBudget


class _Labels:
    """The automaton's classes as small integers, with a table of which ones overlap."""

    def __init__(self, nfa: _Automaton) -> None:
        ids: dict[CharClass, int] = {}
        self.classes: list[CharClass] = []
        self.of = [0]
        for label in nfa.labels[1:]:
            assert label is not None
            if label not in ids:
                ids[label] = len(self.classes)
                self.classes.append(label)
            self.of.append(ids[label])
        n = len(self.classes)
        self.overlap = [
            [_witness(tuple(dict.fromkeys((a, b)))) is not None for b in self.classes]
            for a in self.classes
        ]
        self.n = n

    def char(self, *positions: int) -> str:
        found = _witness(tuple(dict.fromkeys(self.classes[self.of[p]] for p in positions)))
        assert found is not None
        return found


def _check(pattern: str, root: Node) -> Finding | None:
    work = _Work()
    nfa = _automaton(root, exact_counts=False)
    found = _exponential(nfa, _Labels(nfa), work)
    if found is not None:
        positions, text = found
        return Finding("exponential", _where(pattern, nfa, positions), text)
    nfa = _automaton(root, exact_counts=True)
    poly = _polynomial(nfa, _Labels(nfa), work)
    if poly is not None:
        positions, text = poly
        return Finding("polynomial", _where(pattern, nfa, positions), text)
    return None


Pair = tuple[int, int]
Edges = dict[Pair, list[tuple[Pair, bool]]]


def _exponential(nfa: _Automaton, labels: _Labels, work: _Work) -> tuple[set[int], str] | None:
    """Two different paths from a position back to itself on the same text. Both stay in
    the position's strongly connected component, so the product is built per component;
    (p, r) and (r, p) are mirror images and kept once, as (min, max)."""
    graph = {p: list(nfa.follow[p]) for p in range(len(nfa.labels))}
    for component in _node_components(graph):
        inside = set(component)
        follow = {p: [q for q in nfa.follow[p] if q in inside] for p in component}
        edges: Edges = {}
        todo = deque((q, q) for q in component)
        while todo:
            node = todo.popleft()
            if node in edges:
                continue
            p, r = node
            out: dict[Pair, bool] = {}
            work.spend(len(follow[p]) * len(follow[r]))
            for i, p2 in enumerate(follow[p]):
                row = labels.overlap[labels.of[p2]]
                # from (q, q), (p2, r2) and (r2, p2) are the same pair: look at one
                for r2 in follow[r][i:] if p == r else follow[r]:
                    if row[labels.of[r2]]:
                        target = (p2, r2) if p2 <= r2 else (r2, p2)
                        doubled = p == r and p2 == r2 and nfa.follow[p][p2] > 1
                        out[target] = out.get(target, False) or doubled
                        if target not in edges:
                            todo.append(target)
            edges[node] = list(out.items())
        for cycle in _components(edges):
            members = set(cycle)
            apart = [n for n in cycle if n[0] != n[1]]
            doubles = [(n, t) for n in cycle for t, d in edges[n] if d and t in members]
            homes = [n for n in cycle if n[0] == n[1]][:8]
            if not homes or not (apart or doubles):
                continue
            texts = [_cycle_text(edges, members, labels, home, apart, doubles) for home in homes]
            return {x for n in cycle for x in n}, min(texts, key=len)
    return None


def _cycle_text(
    edges: Edges,
    members: set[Pair],
    labels: _Labels,
    home: Pair,
    apart: list[Pair],
    doubles: list[tuple[Pair, Pair]],
) -> str:
    """The text read along a cycle from ``home`` through the place the two paths part."""
    if doubles:
        (node, target) = doubles[0]
        path = [*_path(edges, members, home, node), target]
        path += _path(edges, members, target, home)[1:]
    else:
        path = _path(edges, members, home, apart[0])
        path += _path(edges, members, apart[0], home)[1:]
    return "".join(labels.char(*n) for n in path[1:])


def _path(edges: Edges, members: set[Pair], src: Pair, dst: Pair) -> list[Pair]:
    """The shortest path from src to dst inside a component (both ends included)."""
    came: dict[Pair, Pair | None] = {src: None}
    queue = deque([src])
    while queue and dst not in came:
        node = queue.popleft()
        for target, _ in edges[node]:
            if target in members and target not in came:
                came[target] = node
                queue.append(target)
    path: list[Pair] = []
    step: Pair | None = dst
    while step is not None:
        path.append(step)
        step = came[step]
    return path[::-1]


def _components(edges: Edges) -> Iterator[list[Pair]]:
    """Strongly connected components (Tarjan, iterative) that contain a cycle."""
    index: dict[Pair, int] = {}
    low: dict[Pair, int] = {}
    on_stack: set[Pair] = set()
    stack: list[Pair] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work: list[tuple[Pair, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            out = edges[node]
            if i < len(out):
                work.append((node, i + 1))
                target = out[i][0]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or any(t == node for t, _ in out):
                    yield component
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])


def _node_components(graph: dict[int, list[int]]) -> Iterator[list[int]]:
    pairs: Edges = {(p, p): [((q, q), False) for q in targets] for p, targets in graph.items()}
    for component in _components(pairs):
        yield [p for p, _ in component]


def _polynomial(nfa: _Automaton, labels: _Labels, work: _Work) -> tuple[set[int], str] | None:
    """Positions p != q, and a text v with paths p→p, p→q and q→q all reading v."""
    live = [q for q in range(1, len(nfa.labels)) if q not in nfa.certain]
    graph = {p: [q for q in nfa.follow[p] if q not in nfa.certain] for p in live}
    reverse: dict[int, list[int]] = {p: [] for p in live}
    for p, targets in graph.items():
        for q in targets:
            reverse[q].append(p)
    loop_of: dict[int, frozenset[int]] = {}
    for component in _node_components(graph):
        members = frozenset(component)
        for q in component:
            loop_of[q] = members
    after_loop: dict[frozenset[int], set[int]] = {}
    before_loop: dict[frozenset[int], set[int]] = {}
    for p, loop_p in loop_of.items():
        if loop_p not in after_loop:
            after_loop[loop_p] = _reachable(graph, p)
        after = after_loop[loop_p]
        for q in after:
            loop_q = loop_of.get(q)
            if loop_q is None or loop_q is loop_p:
                continue
            if loop_q not in before_loop:
                before_loop[loop_q] = _reachable(reverse, q)
            middle = after & before_loop[loop_q]
            text = _three_paths(nfa, labels, graph, (loop_p, middle, loop_q), p, q, work)
            if text is not None:
                return {p, q}, text
    return None


def _reachable(graph: dict[int, list[int]], start: int) -> set[int]:
    seen = {start}
    queue = deque([start])
    while queue:
        for q in graph.get(queue.popleft(), ()):
            if q not in seen:
                seen.add(q)
                queue.append(q)
    return seen


def _three_paths(
    nfa: _Automaton,
    labels: _Labels,
    graph: dict[int, list[int]],
    allowed: tuple[frozenset[int], set[int], frozenset[int]],
    p: int,
    q: int,
    work: _Work,
) -> str | None:
    """BFS in the triple product from (p, p, q) to (p, q, q)."""
    follow = [{x: [y for y in graph[x] if y in allowed[k]] for x in allowed[k]} for k in range(3)]
    start, goal = (p, p, q), (p, q, q)
    came: dict[tuple[int, int, int], tuple[int, int, int] | None] = {start: None}
    queue = deque([start])
    of, overlap = labels.of, labels.overlap
    while queue and goal not in came:
        a, b, c = queue.popleft()
        work.spend(len(follow[0][a]) * len(follow[1][b]) * len(follow[2][c]))
        for a2 in follow[0][a]:
            row = overlap[of[a2]]
            for b2 in follow[1][b]:
                if not row[of[b2]]:
                    continue
                for c2 in follow[2][c]:
                    target = (a2, b2, c2)
                    if target in came or not (row[of[c2]] and overlap[of[b2]][of[c2]]):
                        continue
                    if _witness(tuple(dict.fromkeys(labels.classes[of[x]] for x in target))):
                        came[target] = (a, b, c)
                        queue.append(target)
    if goal not in came:
        return None
    steps: list[tuple[int, int, int]] = []
    node: tuple[int, int, int] | None = goal
    while node is not None and node != start:
        steps.append(node)
        node = came[node]
    return "".join(labels.char(*n) for n in reversed(steps))


def _where(pattern: str, nfa: _Automaton, positions: set[int]) -> str:
    """The innermost repetition that holds every position of the finding, as written
    (skipping loops of plain characters: in (a+)+ the outer loop is the ambiguous one)."""
    positions = {p for p in positions if p}
    holding = [
        (span, plain)
        for lo, hi, span, plain in nfa.loops
        if positions and all(lo <= p < hi for p in positions)
    ]
    candidates = [span for span, plain in holding if not plain] or [span for span, _ in holding]
    if candidates:
        best = min(candidates, key=lambda span: span[1] - span[0])
        return pattern[best[0] : best[1]]
    # two repetitions side by side: from the first to the last
    spans = [span for lo, hi, span, _ in nfa.loops if any(lo <= p < hi for p in positions)]
    if not spans:
        return pattern
    return pattern[min(s[0] for s in spans) : max(s[1] for s in spans)]


__all__ = ["Finding", "analyze"]
