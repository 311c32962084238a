"""Regenerate the bundle-hash conformance vectors: tests/conformance/hash-vectors.json.

    python tests/conformance/generate_hashes.py

Every runtime that verifies bundles must reproduce each vector:
- ``canonical``: parse ``json`` (JSON text), write it as RFC 8785 canonical JSON; the
  UTF-8 bytes must equal ``canonical`` and their sha256 ``sha256``. The cases are the
  RFC's own examples (§3.2.2, §3.2.3, Appendix B's numbers) plus floats, exponents,
  escapes, unicode and astral-plane keys that sort differently by code point than by
  UTF-16 code unit.
- ``bundles``: ``file`` is a bundle file's text (as `flagstone build` writes it); its
  ``hash`` member must equal ``"sha256:" + sha256(JCS(bundle without hash and
  signature))``, and ``signature`` must verify as Ed25519 over ``"flagstone-bundle:" +
  hash`` under ``public_key`` (raw 32 bytes, hex). The signing key is a published test
  key (``private_key_seed``): never use it for anything else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "src"))

from flagstone.bundle import content_hash, dump_bundle  # noqa: E402
from flagstone.runtime.canonical import canonical_json, signed_message  # noqa: E402

# RFC 8785 Appendix B: IEEE 754 bit patterns and ECMAScript's text for them.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]

# (name, JSON text). Inputs are text so every language parses the very same bytes.
CASES: list[tuple[str, str]] = [
    (
        "rfc8785-3.2.2-example",
        r'{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],'
        r'"string":"\u20ac$\u000F\u000aA\u0027\u0042\u0022\u005c\\\"\/",'
        r'"literals":[null,true,false]}',
    ),
    (
        "rfc8785-3.2.3-sorting",
        r'{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh",'
        r'"1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control",'
        r'"\u00f6":"Latin Small Letter O With Diaeresis"}',
    ),
    ("integral-floats", "[1.0, -1.0, 0.0, -0.0, 100.0, 1e2, 1E+2, 2.50, 10.000]"),
    ("exponents", "[1e21, 1e20, 1e-6, 1e-7, 1.5e-7, 123e-20, 1e+300, -4.2E-10, 5E-324]"),
    ("shortest-digits", "[0.1, 0.2, 0.30000000000000004, 3.141592653589793, 2.718281828459045]"),
    ("integers", "[0, -1, 42, 9007199254740991, -9007199254740991, 123456789]"),
    (
        "escapes",
        r'["\u0000\u0001\u001f", "\b\f\n\r\t", "\"quoted\" \\back\\", "\u007f del", "/ slash \/",'
        r' "\u2028\u2029 line separators", "caf\u00e9", "\u65e5\u672c"]',
    ),
    (
        "astral-plane-keys",
        r'{"\uffff":1,"\ud800\udc00":2,"\ue000":3,"\ud83d\ude00":4,"z":5,"\u00e9":6,"":7}',
    ),
    (
        "astral-plane-values-and-nesting",
        r'{"b":[{"y":"\ud83d\udc4d","x":1.0},[],{}],"a":{"\ud834\udd1e":"clef","\ufb01":"fi"}}',
    ),
    ("empty-string-key-and-deep-nesting", r'{"":{"":[[[[{"k":[1.25,"v",null,false]}]]]]}}'),
]


def appendix_b_cases() -> list[tuple[str, str, str]]:
    """(name, input text, expected canonical) for each Appendix B number."""
    out = []
    for bits, expected in APPENDIX_B:
        value = struct.unpack(">d", bytes.fromhex(bits))[0]
        out.append((f"rfc8785-appendix-b-{bits}", json.dumps([value]), f"[{expected}]"))
    return out


def vector_bundle() -> dict[str, Any]:
    """A small valid bundle whose hash depends on every JCS rule: floats, exponents,
    unicode and astral-plane keys in flags, targets, conditions and config."""
    bundle: dict[str, Any] = {
        "format": "flagstone-bundle",
        "version": 1,
        "project": "hash-vectors",
        "environment": "prod",
        "source": {"commit": "0" * 40, "dirty": False},
        "default_unit": "user_id",
        "flags": {
            "price-test": {
                "variants": {"low": 9.0, "mid": 9.99, "high": 1e21, "tiny": 1e-7},
                "enabled": True,
                "unit": "user_id",
                "salt": "price-test",
                "prerequisites": [],
                "targets": {"user-\U0001f600": "high", "user-\ufb33": "tiny"},
                "rules": [
                    {
                        "name": "adults in Zürich",
                        "when": {
                            "all": [
                                {"attr": "age", "op": "gte", "value": 18.0},
                                {"attr": "city", "op": "eq", "value": "Zürich"},
                            ]
                        },
                        "serve": {"variant": "mid"},
                    }
                ],
                "default": {
                    "rollout": [{"variant": "low", "end": 5000}, {"variant": "mid", "end": 10000}]
                },
            },
            "日本": {
                "variants": {"on": {"ratio": 0.5, "big": -0.0, "\U0001d11e": "clef"}, "off": {}},
                "enabled": False,
                "off_variant": "off",
                "unit": "user_id",
                "salt": "日本",
                "prerequisites": [{"flag": "price-test", "variants": ["mid"]}],
                "targets": {},
                "rules": [],
                "default": {"variant": "on"},
            },
        },
        "segments": {},
        "experiments": {},
        "config": {
            "\ufb33": "dalet",
            "\U0001f600": "grinning",
            "z": 1.0,
            "timeouts": {"connect_s": 0.25, "read_s": 30.0, "backoff": 1e-6},
            "text": 'tab\tnewline\n"quote" \\ \u007f \u2028',
        },
    }
    bundle["hash"] = content_hash(bundle)
    return bundle


def main() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    canonical = []
    cases = [(name, text, None) for name, text in CASES] + appendix_b_cases()
    for name, text, expected in cases:
        out = canonical_json(json.loads(text))
        if expected is not None and out.decode() != expected:
            raise SystemExit(f"{name}: {out.decode()} != {expected}")
        canonical.append(
            {
                "name": name,
                "json": text,
                "canonical": out.decode(),
                "sha256": hashlib.sha256(out).hexdigest(),
            }
        )
    seed = hashlib.sha256(b"flagstone conformance test key: never use it to sign anything").digest()
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    bundle = vector_bundle()
    bundle["signature"] = base64.b64encode(key.sign(signed_message(bundle["hash"]))).decode()
    doc = {
        "description": "RFC 8785 canonical JSON and bundle-hash vectors; see tests/conformance/generate_hashes.py",
        "canonical": canonical,
        "bundles": [
            {
                "name": "floats-unicode-astral",
                "file": dump_bundle(bundle).decode(),
                "hash": bundle["hash"],
                "signature": bundle["signature"],
                "public_key": public.hex(),
                "private_key_seed": seed.hex(),
            }
        ],
    }
    (HERE / "hash-vectors.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"{len(canonical)} canonical vectors, {len(doc['bundles'])} bundle vector")


if __name__ == "__main__":
    main()
