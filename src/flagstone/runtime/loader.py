"""Bytes to a live bundle: parse, verify, check, compile — or a ``BundleError``.

Each flag's JSON text is sliced out of the file while it is parsed (the C scanner reads
one value at a time and says where it ended), so after the load-time checks the parsed
objects are dropped and a bundle keeps only its flags' texts — about the file's size —
plus what has been compiled. Comparing a flag's text with the previous bundle's is the
fingerprint that lets a reload reuse what did not change.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import re
from collections.abc import Callable, Mapping
from json import decoder as _json_decoder
from pathlib import Path
from typing import Any, cast

from flagstone.runtime.canonical import bundle_hash, signed_message
from flagstone.runtime.check import check_format, check_shape
from flagstone.runtime.errors import BundleError
from flagstone.runtime.evaluate import CompiledBundle, Source, build_bundle

_WHITESPACE = re.compile(r"[ \t\n\r]*")
# The C scanner and string decoder json.loads itself uses (untyped in typeshed).
_scan_value = cast(Callable[[str, int], tuple[Any, int]], json.JSONDecoder().scan_once)  # type: ignore[attr-defined]
scanstring = cast(Callable[[str, int], tuple[str, int]], _json_decoder.scanstring)  # type: ignore[attr-defined]


_SPACE = frozenset(" \t\n\r")


def _skip(text: str, i: int) -> int:
    match = _WHITESPACE.match(text, i)
    return match.end() if match is not None else i


class _Malformed(Exception):
    """The fast walk met something it does not expect; json.loads explains it."""


Parts = tuple[dict[str, Any], dict[str, Mapping[str, Any]] | None, dict[str, Source]]


def parse_bundle_text(text: str) -> Parts:
    """(bundle without flags, parsed flags, each flag's JSON text), as ``json.loads`` reads it.

    The parsed flags are None when ``flags`` is missing or not an object (then the first
    part keeps whatever ``flags`` was, for the shape check to name)."""
    try:
        return _walk(text)
    except (_Malformed, StopIteration, IndexError, ValueError):
        pass
    doc = json.loads(text)  # raises the precise JSONDecodeError, with line and column
    if not isinstance(doc, dict):
        raise BundleError(f"a bundle is a JSON object, not {type(doc).__name__}")
    flags = doc.get("flags")
    if not isinstance(flags, dict):
        return doc, None, {}
    del doc["flags"]
    return doc, flags, {k: json.dumps(v, ensure_ascii=False) for k, v in flags.items()}


def _walk(text: str) -> Parts:
    meta: dict[str, Any] = {}
    parsed: dict[str, Mapping[str, Any]] | None = None
    sources: dict[str, Source] = {}
    i = _skip(text, 0)
    if text[i] != "{":
        raise _Malformed
    i = _skip(text, i + 1)
    if text[i] == "}":
        i += 1
    else:
        while True:
            if text[i] != '"':
                raise _Malformed
            key, i = scanstring(text, i + 1)
            i = _skip(text, i)
            if text[i] != ":":
                raise _Malformed
            i = _skip(text, i + 1)
            if key == "flags" and text[i] == "{":
                meta.pop("flags", None)
                parsed, sources, i = _walk_flags(text, i)
            else:
                meta[key], i = _scan_value(text, i)
                if key == "flags":  # not an object: the shape check names it
                    parsed, sources = None, {}
            i = _skip(text, i)
            if text[i] == ",":
                i = _skip(text, i + 1)
                continue
            if text[i] != "}":
                raise _Malformed
            i += 1
            break
    if _skip(text, i) != len(text):
        raise _Malformed
    return meta, parsed, sources


def _walk_flags(text: str, i: int) -> tuple[dict[str, Mapping[str, Any]], dict[str, Source], int]:
    # The per-flag loop of every load: whitespace is tested by one character before any
    # regex call, since `flagstone build` writes none.
    parsed: dict[str, Mapping[str, Any]] = {}
    sources: dict[str, Source] = {}
    scan, skip = _scan_value, _skip
    i = skip(text, i + 1)
    if text[i] == "}":
        return parsed, sources, i + 1
    while True:
        if text[i] != '"':
            raise _Malformed
        key, i = scanstring(text, i + 1)
        if text[i] != ":":
            i = skip(text, i)
            if text[i] != ":":
                raise _Malformed
        start = i + 1
        if text[start] in _SPACE:
            start = skip(text, start)
        value, i = scan(text, start)
        parsed[key] = value
        sources[key] = text[start:i]
        if text[i] in _SPACE:
            i = skip(text, i)
        if text[i] == ",":
            i += 1
            if text[i] in _SPACE:
                i = skip(text, i)
            continue
        if text[i] != "}":
            raise _Malformed
        return parsed, sources, i + 1


def load_bundle_bytes(
    data: bytes,
    public_key: bytes | None = None,
    previous: CompiledBundle | None = None,
    identity: Any = None,
    *,
    free_later: bool = False,
) -> CompiledBundle:
    """Parse, verify (hash, signature), open sealed secrets (with ``identity``), check and
    compile; raise BundleError when unusable. ``free_later``: keep the parsed flags in
    the bundle's ``leftovers``, for the caller to drop once the bundle is live."""
    # Building thousands of objects would trigger full collections mid-load and double
    # the reload time; collect once afterwards instead.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(data, public_key, previous, identity, free_later)
    finally:
        if was_enabled:
            gc.enable()


def _load(
    data: bytes,
    public_key: bytes | None,
    previous: CompiledBundle | None,
    identity: Any,
    free_later: bool = False,
) -> CompiledBundle:
    try:
        text = data.decode("utf-8-sig")
        meta, parsed, sources = parse_bundle_text(text)
    except UnicodeDecodeError as e:
        raise BundleError(f"not UTF-8 JSON (truncated or corrupt): {e}", incomplete=True) from None
    except BundleError:
        raise
    except ValueError as e:
        raise BundleError(f"not valid JSON (truncated or corrupt): {e}", incomplete=True) from None
    except RecursionError:
        raise BundleError(
            "not a usable bundle: JSON nested too deeply to read (truncated, corrupt or hostile)"
        ) from None
    del text
    check_format(meta)
    if parsed is None:
        check_shape(meta)  # names what is wrong with "flags"
        raise BundleError("flags must be an object", field="flags")
    if public_key is not None:
        verify_signature({**meta, "flags": parsed}, public_key)
    if identity is not None and "secrets" in meta:
        meta = _with_secrets(meta, identity)
    try:
        bundle = build_bundle(meta, parsed, sources, previous)
    except RecursionError:
        raise BundleError("not a usable bundle: nested too deeply") from None
    if free_later:
        bundle.leftovers.append(parsed)
    return bundle


def verify_signature(raw: Mapping[str, Any], public_key: bytes) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    signature = raw.get("signature")
    if not isinstance(signature, str):
        raise BundleError("bundle is not signed, and this client requires a signature")
    try:
        expected = bundle_hash(raw)
    except ValueError as e:
        raise BundleError(f"bundle cannot be hashed: {e}") from None
    if raw.get("hash") != expected:
        raise BundleError("bundle content does not match its hash (modified after it was built)")
    try:
        key = (
            load_pem_public_key(public_key)
            if public_key.lstrip().startswith(b"-----")
            else Ed25519PublicKey.from_public_bytes(public_key)
        )
    except ValueError as e:
        raise BundleError(f"cannot read the public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError("the public key is not an Ed25519 key")
    try:
        key.verify(base64.b64decode(signature, validate=True), signed_message(expected))
    except (InvalidSignature, ValueError):
        raise BundleError("bundle signature is not valid for this public key") from None


def load_identity(identity: str | os.PathLike[str]) -> Any:
    """An age identity (``AGE-SECRET-KEY-1…``) or a key file holding one; pyrage is
    imported here only, for services that load sealed secrets."""
    try:
        from pyrage import x25519
    except ImportError:  # pragma: no cover - pyrage ships with flagstone
        raise BundleError("sealed secrets need pyrage: pip install pyrage") from None
    text = str(identity)
    if not text.startswith("AGE-SECRET-KEY-"):
        try:
            text = Path(identity).read_text(encoding="utf-8")
        except OSError as e:
            raise BundleError(f"cannot read the identity file {identity}: {e.strerror}") from None
    keys = [
        line.strip() for line in text.splitlines() if line.strip().startswith("AGE-SECRET-KEY-")
    ]
    if not keys:
        raise BundleError("the identity holds no age secret key (AGE-SECRET-KEY-1…)")
    try:
        return [x25519.Identity.from_str(k) for k in keys]
    except Exception:
        raise BundleError("the identity is not a valid age secret key") from None


def _with_secrets(raw: dict[str, Any], identities: Any) -> dict[str, Any]:
    """The bundle with its sealed secrets decrypted into ``config`` (after the hash and
    signature were checked over the sealed form)."""
    import pyrage

    sealed = raw["secrets"]
    if not isinstance(sealed, Mapping) or sealed.get("format") != "age-json":
        raise BundleError("the bundle's secrets are in an unknown format")
    try:
        values = json.loads(pyrage.decrypt(str(sealed["age"]).encode(), identities))
    except Exception:
        raise BundleError(
            "this identity cannot decrypt the bundle's secrets (sealed for "
            + ", ".join(map(str, sealed.get("recipients", [])))
            + ")"
        ) from None
    return {**raw, "config": _merged(raw.get("config", {}), values)}


def _merged(config: Mapping[str, Any], secrets: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(config)
    for key, value in secrets.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out
