"""RFC 8785 (JCS) canonical JSON, and the bundle hash and signature message built on it.

JCS is what every language can reproduce: object members sorted by their UTF-16 code
units, no whitespace, strings escaped minimally (only ``"``, ``\\`` and control
characters, as ``\\b \\f \\n \\r \\t`` or lowercase ``\\u00xx``), numbers as ECMAScript's
``Number.prototype.toString`` writes the IEEE double (``1.0`` is ``1``, ``1e21`` is
``1e+21``, ``1e-7`` stays ``1e-7``, ``-0`` is ``0``).

Python's C ``json`` encoder with ``sort_keys`` and compact separators already writes
exactly that, except for three cases: floats whose ``repr`` differs from ECMAScript's
(integral floats such as ``1.0``, and exponent forms), keys outside the Basic
Multilingual Plane (code-point order differs from UTF-16 order against U+E000..U+FFFF),
and integers beyond 2**53 (JavaScript cannot hold them; RFC 8785 refuses them). So the C
encoder runs first, and only a text that might contain one of those goes through the
exact Python encoder below: most bundles hash at C speed, and every bundle hashes right.
Held equal to the independent ``rfc8785`` package by tests (vectors and hypothesis).
The build encodes with msgspec where it can (``flagstone.bundle``), screened by the
same ``may_differ_from_jcs``; this module stays on the standard library.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from flagstone.runtime.format import (
    HASH_EXCLUDED_FIELDS,
    HASH_PREFIX,
    MAX_SAFE_INTEGER,
    SIGNATURE_CONTEXT,
)

# Anything the fast encoders may write differently from JCS: an integral float ("1.0",
# "-0.0"), an exponent ("1e+16" from json, "1e16" from msgspec, "5e-324"), a long
# integer (possibly beyond 2**53).
# Matches inside strings are harmless: they only send the text the exact way. The
# scan runs on the UTF-8 bytes (where no multi-byte character holds an ASCII byte):
# each pattern starts with a literal the engine finds at memchr speed and looks back
# for the digit before it; digit runs are a run of one byte in a translated copy; a
# character beyond the Basic Multilingual Plane is a 4-byte sequence, lead byte
# F0..F4. ~4 ms for a 700 kB bundle, where one pattern starting with \d took ~6 ms
# (at load average 5).
_INTEGRAL_FLOAT = re.compile(rb"\.0(?=[,\]}]|$)(?<=\d\.0)")
# An exponent ("1e16" from msgspec, "1e+16" from json): of the places "9e" is in the
# copy with digits as nines (hex in salts has it too), only a number token, first or
# after ":", "," or "[", sends the text the exact way. A mantissa has at most 17
# digits, a point and a sign; a longer run before "e" counts as one (only slower).
_NUMBER_BEFORE_EXPONENT = re.compile(rb"(?:^|[:,\[])-?\d+(?:\.\d+)?$")
_MANTISSA_REACH = 24
_DIGITS_AS_NINES = bytes.maketrans(b"012345678", b"999999999")
_LONG_INTEGER = b"9" * 15
_ASTRAL_LEAD_BYTE = re.compile(rb"[\xf0-\xf4]")
_ESCAPES = {chr(i): f"\\u{i:04x}" for i in range(0x20)} | {
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
    '"': '\\"',
    "\\": "\\\\",
}
_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\]')


class CanonicalJSONError(ValueError):
    """A value RFC 8785 cannot represent: NaN, Infinity, integers beyond 2**53, lone surrogates."""


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value (dicts, lists, str, int, float, bool, None)."""
    try:
        text = json.dumps(
            value,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            check_circular=False,  # a cycle recurses until RecursionError, below
        )
    except ValueError as e:  # NaN or Infinity
        raise CanonicalJSONError(f"{e}; JSON has no NaN or Infinity") from None
    except TypeError as e:  # a set, bytes, a non-string key mixed with strings...
        raise CanonicalJSONError(f"not a JSON value: {e}") from None
    except RecursionError:
        raise CanonicalJSONError(
            "the value is nested too deeply or contains itself; flatten it"
        ) from None
    try:
        data = text.encode("utf-8")
        if may_differ_from_jcs(data):
            data = exact_canonical_json(value)
    except UnicodeEncodeError:
        raise CanonicalJSONError(
            "a string holds a lone UTF-16 surrogate, which RFC 8785 cannot encode"
        ) from None
    return data


def may_differ_from_jcs(data: bytes) -> bool:
    """Whether compact JSON with sorted keys, as Python's or msgspec's encoder writes it,
    may differ from RFC 8785 (then ``exact_canonical_json`` says what it is)."""
    as_nines = data.translate(_DIGITS_AS_NINES)
    return (
        _INTEGRAL_FLOAT.search(data) is not None
        or _has_exponent(data, as_nines)
        or _LONG_INTEGER in as_nines
        or (not data.isascii() and _ASTRAL_LEAD_BYTE.search(data) is not None)
    )


def _has_exponent(data: bytes, as_nines: bytes) -> bool:
    at = as_nines.find(b"9e")
    while at != -1:
        # a slice: its start counts as "^", so a run longer than the reach counts too
        if _NUMBER_BEFORE_EXPONENT.search(data[max(0, at + 1 - _MANTISSA_REACH) : at + 1]):
            return True
        at = as_nines.find(b"9e", at + 2)
    return False


def exact_canonical_json(value: Any) -> bytes:
    """RFC 8785 written by the Python encoder below: the reference, slow."""
    return "".join(_encode(value, [])).encode("utf-8")


def bundle_hash(bundle: Mapping[str, Any]) -> str:
    """``sha256:`` + hex digest of the canonical JSON of the bundle without hash and signature."""
    body = {k: v for k, v in bundle.items() if k not in HASH_EXCLUDED_FIELDS}
    return HASH_PREFIX + hashlib.sha256(canonical_json(body)).hexdigest()


def signed_message(content_hash: str) -> bytes:
    """The bytes an Ed25519 bundle signature signs."""
    return SIGNATURE_CONTEXT + content_hash.encode("ascii")


def utf16_key(text: str) -> bytes:
    """Sort key giving RFC 8785's member order: UTF-16 code units, compared unsigned."""
    return text.encode("utf-16-be", "surrogatepass")


def ecmascript_number(x: float) -> str:
    """A finite double as ECMAScript's Number.prototype.toString writes it (ECMA-262 §6.1.6.1.20)."""
    if not math.isfinite(x):
        raise CanonicalJSONError(f"{x!r} is not a JSON number; JSON has no NaN or Infinity")
    if x == 0:
        return "0"  # -0 too
    text = repr(x)  # the shortest digits that round-trip: the same digits ECMAScript picks
    sign = "-" if text[0] == "-" else ""
    mantissa, _, exponent = text.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    raw = whole + fraction
    digits = raw.lstrip("0")
    n = len(whole) + int(exponent or 0) - (len(raw) - len(digits))  # x = 0.digits * 10**n
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * -n + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        out = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + out


def _string(text: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()], text) + '"'


def _encode(value: Any, out: list[str]) -> list[str]:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalJSONError(
                f"integer {value} is beyond 2**53, which JSON numbers (IEEE doubles) cannot hold "
                "exactly; write it as a string"
            )
        out.append(str(value))
    elif isinstance(value, float):
        out.append(ecmascript_number(value))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, key in enumerate(sorted(value, key=_member_key)):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise CanonicalJSONError(f"{type(value).__name__} is not a JSON value")
    return out


def _member_key(key: Any) -> bytes:
    if not isinstance(key, str):
        raise CanonicalJSONError(f"object keys must be strings, not {type(key).__name__}")
    return utf16_key(key)
