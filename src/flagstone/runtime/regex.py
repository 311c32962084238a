"""`matches`: Python ``re`` semantics, evaluated in bounded time whatever the pattern (#16).

The bundle format defines ``matches`` as Python's ``re.search`` (the TypeScript runtime
reproduces it, held by the conformance vectors). Python's engine backtracks: ``(a|a)+$``
takes seconds on 24 characters, ``.*x.*y`` tens of seconds on 4,096, and even
``\\w+@x`` is quadratic. So each pattern is parsed by Python's own parser and then:

1. **No variable repetition** (no ``*``, ``+``, ``?``, ``{m,n}`` with m < n) and at most
   ``MAX_BRANCH_PRODUCT`` ways through its alternations: Python's ``re`` runs it, in
   time linear in the input for a fixed pattern. Exact by construction.
2. **Otherwise** the parsed tree is written out in RE2 syntax and run by RE2
   (google-re2), whose time is linear in the input for every pattern. Python's
   Unicode classes are spelt out as the code-point ranges Python itself matches
   (``\\d`` = ``str.isdecimal``, ``\\w`` = ``str.isalnum`` or ``_``, ``\\s`` =
   ``str.isspace``), ``$`` as "end, or before a final newline", ``\\Z`` as ``\\z``.
   A hypothesis test holds the two engines to the same answers.
3. **A repeating pattern that uses what RE2 cannot express** — backreferences,
   lookaround, atomic groups or possessive repeats, Unicode ``\\b``/``\\B``, ``$``
   followed by more pattern — is refused at load with that reason (``validate``
   refuses it too), so no pattern can stall the app.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

# The parser and constants Python's own `re` uses (private, stable since 3.11).
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser as _sre_parse  # type: ignore[attr-defined]
from typing import Any

from flagstone.runtime.format import MAX_REGEX_INPUT, MAX_REGEX_PATTERN

MAX_BRANCH_PRODUCT = 64
Ranges = list[tuple[int, int]]

__all__ = ["MAX_REGEX_INPUT", "RegexError", "compile_regex", "regex_problem"]


class RegexError(ValueError):
    """A ``matches`` pattern the runtime refuses."""


class _Untranslatable(Exception):
    pass


@functools.lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> Callable[[str], object]:
    """A search: ``search(text) is not None`` exactly when ``re.search(pattern, text)`` matches.

    For a pattern Python's engine runs, this is that pattern's own ``search`` (the hot
    path calls it directly); for RE2, a function answering True or None."""
    if type(pattern) is not str:
        raise RegexError(f"a `matches` pattern is a string, not {type(pattern).__name__}")
    if len(pattern) > MAX_REGEX_PATTERN:
        raise RegexError(
            f"pattern is {len(pattern)} characters, over the {MAX_REGEX_PATTERN} allowed"
        )
    try:
        compiled = re.compile(pattern)
        tree = _sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as e:
        raise RegexError(f"pattern {pattern!r} does not compile: {e}") from None
    if compiled.flags & re.LOCALE:
        raise RegexError(f"pattern {pattern!r} uses the locale flag, which no runtime supports")
    if _is_linear_under_backtracking(tree):
        return compiled.search
    try:
        translated = _Translator(compiled.flags).pattern(list(tree), top=True)
        if compiled.flags & re.IGNORECASE:
            translated = f"(?i:{translated})"
    except _Untranslatable as e:
        raise RegexError(
            f"pattern {pattern!r} repeats (or branches more than {MAX_BRANCH_PRODUCT} ways), "
            f"so Python's backtracking engine could take seconds on one input, and it uses {e}, "
            "which the linear-time engine (RE2) cannot reproduce: rewrite it without that"
        ) from None
    return _re2_search(pattern, translated)


def regex_problem(pattern: Any) -> str | None:
    """Why a ``matches`` operand cannot be used, or None (for load-time checks and validate)."""
    try:
        compile_regex(pattern)
    except RegexError as e:
        return str(e)
    except TypeError:
        return f"a `matches` pattern is a string, not {type(pattern).__name__}"
    return None


# --- which patterns Python's engine runs in linear time ---------------------------------


def _is_linear_under_backtracking(tree: Any) -> bool:
    """No variable-width repetition, and few ways through the alternations."""
    ways = _ways(list(tree))
    return ways is not None and ways <= MAX_BRANCH_PRODUCT


def _ways(items: list[Any]) -> int | None:
    """How many paths backtracking can try through ``items`` from one position (None: unbounded)."""
    total = 1
    for op, av in items:
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            low, high, sub = av
            inner = _ways(list(sub))
            if low != high or inner is None:
                return None
            factor = inner**low if inner > 1 else 1
        elif op is C.BRANCH:
            counts = [_ways(list(b)) for b in av[1]]
            if any(n is None for n in counts):
                return None
            factor = sum(n for n in counts if n is not None)
        elif op is C.SUBPATTERN:
            inner = _ways(list(av[-1]))
            if inner is None:
                return None
            factor = inner
        elif op in (C.ASSERT, C.ASSERT_NOT):
            inner = _ways(list(av[1]))
            if inner is None:
                return None
            factor = inner
        elif op is C.ATOMIC_GROUP:
            inner = _ways(list(av))
            if inner is None:
                return None
            factor = inner
        elif op is C.GROUPREF_EXISTS:
            return None
        else:  # literals, classes, anchors, backreferences: one way each
            factor = 1
        total *= factor
        if total > MAX_BRANCH_PRODUCT:
            return total
    return total


# --- Python's tree in RE2 syntax ---------------------------------------------------------


@functools.cache
def _category_ranges(name: str) -> tuple[tuple[int, int], ...]:
    """The code points Python's ``\\d``, ``\\w`` or ``\\s`` match, as ranges (computed once,
    at C speed, from Python itself: exactly its Unicode tables)."""
    everything = _every_code_point()

    def offset(i: int) -> int:  # positions past the skipped surrogates
        return i if i < 0xD800 else i + 0x800

    pattern = {"digit": r"\d+", "word": r"\w+", "space": r"\s+"}[name]
    out: list[tuple[int, int]] = []
    for m in re.finditer(pattern, everything):
        start, end = offset(m.start()), offset(m.end() - 1)
        if out and out[-1][1] + 1 == start:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return tuple(out)


@functools.cache
def _every_code_point() -> str:
    return "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))


_ASCII_CATEGORIES = {
    "digit": ((0x30, 0x39),),
    "word": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "space": ((0x09, 0x0D), (0x20, 0x20)),
}


def _complement(ranges: Ranges) -> Ranges:
    out, start = [], 0
    for low, high in sorted(ranges):
        if low > start:
            out.append((start, low - 1))
        start = max(start, high + 1)
    if start <= 0x10FFFF:
        out.append((start, 0x10FFFF))
    return out


def _merge(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for low, high in sorted(ranges):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return out


def _class(ranges: Ranges) -> str:
    if not ranges:
        return r"[^\x00-\x{10FFFF}]"  # matches nothing
    parts = (f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return "[" + "".join(parts) + "]"


class _Translator:
    def __init__(self, flags: int) -> None:
        self.ascii = bool(flags & re.ASCII)
        self.flags = flags

    def category(self, name: str) -> Ranges:
        base, negated = name.replace("CATEGORY_", "").lower(), False
        if base.startswith("not_"):
            base, negated = base[4:], True
        if base not in ("digit", "word", "space"):
            raise _Untranslatable(f"the character category {name}")
        ranges = list(_ASCII_CATEGORIES[base] if self.ascii else _category_ranges(base))
        return _complement(ranges) if negated else ranges

    def in_class(self, items: Any) -> str:
        ranges: Ranges = []
        negate = False
        for op, av in items:
            if op is C.NEGATE:
                negate = True
            elif op is C.LITERAL:
                ranges.append((av, av))
            elif op is C.RANGE:
                ranges.append(av)
            elif op is C.CATEGORY:
                ranges += self.category(str(av))
            else:
                raise _Untranslatable(f"{op} inside a character class")
        merged = _merge(ranges)
        if negate and self.flags & re.IGNORECASE and merged:
            # Negate after case folding, as Python does: (?i)[^a] matches neither a nor A.
            return "[^" + _class(merged)[1:]
        return _class(_complement(merged) if negate else merged)

    def pattern(self, items: list[Any], *, top: bool = False) -> str:
        out = []
        for index, (op, av) in enumerate(items):
            last = index == len(items) - 1
            out.append(self.item(op, av, at_end=top and last))
        return "".join(out)

    def item(self, op: Any, av: Any, *, at_end: bool = False) -> str:
        if op is C.LITERAL:
            return f"\\x{{{av:X}}}"
        if op is C.NOT_LITERAL:
            if self.flags & re.IGNORECASE:
                return "[^" + _class([(av, av)])[1:]
            return _class(_complement([(av, av)]))
        if op is C.ANY:
            return "(?s:.)" if self.flags & re.DOTALL else "[^\\n]"
        if op is C.IN:
            return self.in_class(av)
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            low, high, sub = av
            if high == C.MAXREPEAT:
                bounds = "*" if low == 0 else ("+" if low == 1 else f"{{{low},}}")
            elif low == high:
                bounds = f"{{{low}}}"
            else:
                bounds = "?" if (low, high) == (0, 1) else f"{{{low},{high}}}"
            if (high != C.MAXREPEAT and high > 1000) or low > 1000:
                raise _Untranslatable("a repeat count over 1,000")
            lazy = "?" if op is C.MIN_REPEAT else ""
            return f"(?:{self.pattern(list(sub))}){bounds}{lazy}"
        if op is C.SUBPATTERN:
            _group, add, remove, sub = av
            inner = _Translator(self.flags | add & ~remove).pattern(list(sub), top=at_end)
            if add & re.IGNORECASE:
                return f"(?i:{inner})"
            if remove & re.IGNORECASE:
                return f"(?-i:{inner})"
            return f"(?:{inner})"
        if op is C.BRANCH:
            return "(?:" + "|".join(self.pattern(list(b), top=at_end) for b in av[1]) + ")"
        if op is C.AT:
            return self.at(str(av), at_end)
        if op is C.CATEGORY:
            return _class(self.category(str(av)))
        raise _Untranslatable(
            {
                "GROUPREF": "a backreference",
                "GROUPREF_EXISTS": "a conditional group",
                "ASSERT": "lookaround",
                "ASSERT_NOT": "negative lookaround",
                "ATOMIC_GROUP": "an atomic group",
                "POSSESSIVE_REPEAT": "a possessive repeat",
            }.get(str(op), str(op))
        )

    def at(self, where: str, at_end: bool) -> str:
        multiline = bool(self.flags & re.MULTILINE)
        if where == "AT_BEGINNING":
            return "(?m:^)" if multiline else r"\A"
        if where == "AT_BEGINNING_STRING":
            return r"\A"
        if where == "AT_END_STRING":
            return r"\z"
        if where == "AT_END":
            if multiline:
                return "(?m:$)"
            if not at_end:
                raise _Untranslatable("`$` followed by more pattern")
            return r"\n?\z"  # at the end, or before a final newline: as Python's `$`
        if where in ("AT_BOUNDARY", "AT_NON_BOUNDARY"):
            if self.ascii:
                return r"\b" if where == "AT_BOUNDARY" else r"\B"
            raise _Untranslatable(r"Unicode word boundaries (\b, \B)")
        raise _Untranslatable(where)


def _re2_search(original: str, translated: str) -> Callable[[str], object]:
    try:
        import re2  # type: ignore[import-untyped]
        from re2 import _re2
    except ImportError:  # pragma: no cover - google-re2 is a dependency
        raise RegexError(
            f"pattern {original!r} needs the linear-time engine: pip install google-re2"
        ) from None
    options = re2.Options()
    options.never_capture = True  # a yes/no answer needs no groups
    options.log_errors = False  # a refused pattern becomes a BundleError, not a line on stderr
    options.max_mem = 64 << 20
    compiled = _re2.RE2(translated.encode("utf-8"), options)
    if not compiled.ok():
        raise RegexError(
            f"pattern {original!r} cannot run in the linear-time engine: "
            f"{compiled.error().decode(errors='replace')}"
        )
    match, unanchored = compiled.Match, _re2.RE2.Anchor.UNANCHORED

    def search(text: str) -> bool | None:
        data = text.encode("utf-8", "surrogatepass")
        return True if match(unanchored, data, 0, len(data))[0][0] >= 0 else None

    return search
