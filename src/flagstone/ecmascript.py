"""``matches`` patterns as ECMAScript sees them, worked out once at build time.

The bundle format defines ``matches`` as Python's ``re.search``. A browser evaluates it
with its own engine, so ``flagstone build`` writes each pattern's ECMAScript ``u``-mode
equivalent beside it (the condition's ``ecmascript`` field, ``[source, flags]``): the
TypeScript runtime then carries no regex translator. The Python runtime ignores the field.

The translation: Unicode ``\\d \\w \\s \\b`` as Python defines them, ``$`` also before a
final newline, ``.`` everything but ``"\\n"``, ``(?P<name>…)``, leading ``(?aims)`` flags,
literal braces. A construct ECMAScript cannot express (atomic groups, possessive
quantifiers, scoped or verbose flags, conditionals) gives None: that condition answers
ERROR in the TypeScript runtime.
"""

from __future__ import annotations

import re

__all__ = ["ecmascript_regex"]

# Python's str.isspace() characters, in ECMAScript class syntax.
PY_SPACE = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
_WORD = "\\p{L}\\p{N}_"  # Python's \w: str.isalnum() or "_"
_CLASS_ESCAPES = {"d": "\\p{Nd}", "D": "\\P{Nd}", "w": _WORD, "s": PY_SPACE, "b": "\\x08"}
_SYNTAX = "^$\\.*+?()[]{}|/"
_LEAD = re.compile(r"\(\?([aiLmsux]+)\)")
_GROUP = re.compile(r"\(\?(P<|P=(\w+)\)|#[^)]*\)|[:=!]|<[=!]|<)", re.ASCII)
_REPEAT = re.compile(r"\{(\d*)(,?)(\d*)\}", re.ASCII)
_WIDE = re.compile(r"U([0-9a-fA-F]{8})")
_OCTAL = re.compile(r"0[0-7]{0,2}|[1-7][0-7]{2}")


class _Untranslatable(Exception):
    pass


def ecmascript_regex(pattern: str) -> list[str] | None:
    """``[source, flags]`` for ``new RegExp(source, flags)``, or None when untranslatable."""
    try:
        return _translate(pattern)
    except _Untranslatable:
        return None


def _translate(pattern: str) -> list[str]:
    flags = ""
    lead = _LEAD.match(pattern)
    if lead:
        flags = lead[1]
        pattern = pattern[lead.end() :]
    if "x" in flags or "L" in flags:
        raise _Untranslatable("verbose and locale flags")
    ascii_only = "a" in flags
    multiline = "m" in flags
    w = "a-zA-Z0-9_" if ascii_only else _WORD
    space = "\\t-\\r " if ascii_only else PY_SPACE
    outside = {
        "d": "[0-9]" if ascii_only else "\\p{Nd}",
        "D": "[^0-9]" if ascii_only else "\\P{Nd}",
        "w": f"[{w}]",
        "W": f"[^{w}]",
        "s": f"[{space}]",
        "S": f"[^{space}]",
        "b": f"(?:(?<=[{w}])(?![{w}])|(?<![{w}])(?=[{w}]))",
        "B": f"(?:(?<=[{w}])(?=[{w}])|(?<![{w}])(?![{w}]))",
        "A": "^",
        "Z": "$",
        "a": "\\x07",
    }
    out: list[str] = []
    in_class = False
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 1
            if i >= n:
                raise _Untranslatable("trailing backslash")
            e = pattern[i]
            if in_class and e in _CLASS_ESCAPES and not ascii_only:
                out.append(_CLASS_ESCAPES[e])
            elif in_class and e in "WS":
                raise _Untranslatable(f"\\{e} inside a character class")
            elif not in_class and e in outside:
                out.append(outside[e])
            elif m := _WIDE.match(pattern, i):
                out.append(f"\\u{{{m[1]}}}")
                i += 8
            elif m := _OCTAL.match(pattern, i):
                out.append(f"\\u{{{int(m[0], 8):x}}}")
                i += len(m[0]) - 1
            elif (e.isascii() and e.isalnum()) or e in _SYNTAX or (in_class and e == "-"):
                out.append("\\" + e)
            else:
                out.append(f"\\u{{{ord(e):x}}}")
        elif in_class:
            if c == "]":
                in_class = False
            out.append("\\[" if c == "[" else c)
        elif c == "[":
            in_class = True
            negated = pattern[i + 1 : i + 2] == "^"
            out.append("[^" if negated else "[")
            if negated:
                i += 1
            if pattern[i + 1 : i + 2] == "]":
                out.append("\\]")
                i += 1
        elif c == "(" and pattern[i + 1 : i + 2] == "?":
            g = _GROUP.match(pattern, i)
            if not g or g[1] == "<":
                raise _Untranslatable(f"group {pattern[i : i + 4]}")
            if g[1] == "P<":
                out.append("(?<")
            elif g[2]:
                out.append(f"\\k<{g[2]}>")
            elif not g[1].startswith("#"):
                out.append(g[0])
            i = g.end() - 1
        elif c == "{":
            r = _REPEAT.match(pattern, i)
            if r and (r[1] or (r[2] and r[3])):
                out.append(f"{{{r[1] or 0}{r[2]}{r[3]}}}")
                i = r.end() - 1
                if pattern[i + 1 : i + 2] == "+":
                    raise _Untranslatable("possessive quantifier")
            else:
                out.append("\\{")
        elif c in "}]":
            out.append("\\" + c)
        # No lookaround at the edges: V8 lets `(?<![\s\S])` match inside a surrogate pair.
        elif c == "$":
            out.append("(?=\\n|$)" if multiline else "(?=\\n?$)")
        elif c == "^":
            out.append("(?:^|(?<=\\n))" if multiline else "^")
        elif c == ".":
            out.append("[\\s\\S]" if "s" in flags else "[^\\n]")
        elif c in "*+?" and pattern[i + 1 : i + 2] == "+":
            raise _Untranslatable("possessive quantifier")
        else:
            out.append(c)
        i += 1
    return ["".join(out), "iu" if "i" in flags else "u"]
