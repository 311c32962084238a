"""Bytes to a live bundle: parse, verify, check, compile — or a ``BundleError``.

Each flag's JSON text is sliced out of the file while it is parsed (the C scanner reads
one value at a time and says where it ended), so after the load-time checks the parsed
objects are dropped and a bundle keeps only its flags' texts — about the file's size —
plus what has been compiled. Comparing a flag's text with the previous bundle's is the
fingerprint that lets a reload reuse what did not change.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gc
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from json import decoder as _json_decoder
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from flagstone.runtime.canonical import bundle_hash, signed_message
from flagstone.runtime.check import (
    bundle_members,
    check_context,
    check_format,
    check_shape,
    shape_validator,
)
from flagstone.runtime.errors import BundleError
from flagstone.runtime.evaluate import (
    MALFORMED,
    CompiledBundle,
    Source,
    assemble_bundle,
    malformed,
    parse_source,
    share_unchanged,
)

if TYPE_CHECKING:
    from flagstone.runtime.flag_shape import References

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
    task = LoadTask(data, public_key, previous, identity, free_later=free_later)
    task.run()
    return task.result()


class _CollectorPause:
    """The garbage collector off while any thread is inside ``collector_paused()``.

    A load allocates tens of thousands of containers (the decoded flags) that are all
    freed once the new bundle is live. With the collector on, they trigger collections
    mid-load and, when it is switched back on, one more that walks them all — and every
    hundredth of those is a full collection of the app's heap (60 ms measured), all
    before the bundle goes live. Kept off until they are freed, the young generation's
    count falls back as they go and nothing is walked. The app's own setting is what
    the first thread in found, restored by the last one out.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._restore = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._restore = gc.isenabled()
                gc.disable()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._restore:
                    gc.enable()


collector_paused = _CollectorPause()


Step = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Split:
    """The first step's product: the bundle without its flags, each flag's text (sharing
    the previous bundle's copy when unchanged), the flags decoded so far, the keys of
    those to check, and whether segments and experiments are unchanged."""

    meta: dict[str, Any]
    sources: dict[str, Source]
    parsed: dict[str, Mapping[str, Any]]
    changed: list[str]
    same_context: bool


# Changed flags per step: decoded in one C call (each flag's variants, rules and default
# kept raw), then judged (flag_shape.References): ~1 ms.
_FLAG_BATCH = 250


class LoadTask:
    """One load split into short steps that any thread may run, in any interleaving.

    Under threads that evaluate without pause, a thread that is time-sliced out of the
    GIL waits for every other thread's turn (5 ms each) before it runs again, so a load
    done by one thread takes several times its CPU. Here whichever thread holds the GIL
    advances the load: ``run()`` takes the next step nobody has started (or, when all are
    started, one not yet finished), and a thread sliced out mid-step leaves the rest to
    the others. Steps are idempotent and store what they produce with single atomic
    operations, so a step run twice is only work done twice. The costly steps are single
    C calls, which hold the GIL, and short Python passes: the top-level scan (msgspec,
    with each flag kept as its raw bytes), the Rust schema check of the bundle without
    its flags, the segments and experiments, then the changed flags in batches of
    ``_FLAG_BATCH``: decoded in one C call into the types of ``flag_shape`` (which check
    their shape as they decode, leaving the parts flags repeat raw), then judged with
    the cross-references and the shape checks no type expresses, each distinct
    variants, rules and serve text once per load (``flag_shape.References``). Then the
    assembly.

    Stages run in order; the steps of one stage are independent. A refusal is the
    ``BundleError`` of the first failing step of its stage, whichever thread ran it.
    """

    def __init__(
        self,
        data: bytes,
        public_key: bytes | None = None,
        previous: CompiledBundle | None = None,
        identity: Any = None,
        *,
        free_later: bool = False,
    ) -> None:
        self.data = data
        self.public_key = public_key
        self.previous = previous
        self.identity = identity
        self.free_later = free_later
        self._stage = 0
        self._plans: dict[int, list[Step]] = {}
        self._started: set[tuple[int, int]] = set()
        self._finished: set[tuple[int, int]] = set()
        self._refusals: dict[tuple[int, int], BundleError] = {}
        self._outcome: list[CompiledBundle | BaseException] = []  # first one counts
        # What the split produced, published once (setdefault): a thread sliced out of the
        # GIL mid-split, finishing after another thread redid it, must not replace it.
        self._products: dict[str, Split] = {}
        self._memo: dict[str, Any] = {}  # what the C calls of the steps computed

    @property
    def done(self) -> bool:
        return bool(self._outcome)

    def result(self) -> CompiledBundle:
        """The prepared bundle; raises the refusal (or failure) if the load ended in one."""
        if not self._outcome:
            raise RuntimeError("the load has not finished")
        outcome = self._outcome[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def run(self) -> None:
        """Run steps until the load has finished (by this thread or others)."""
        with collector_paused():
            while not self._outcome:
                self._step()

    def _step(self) -> None:
        stage = self._stage
        if stage >= len(_STAGES):
            return  # the last step is storing the outcome
        plan = self._plans.get(stage)
        if plan is None:
            try:
                built = _STAGES[stage](self)
            except Exception as e:
                self._end(e)
                return
            plan = self._plans.setdefault(stage, built)
        index = self._pick(stage, len(plan))
        if index is None:  # every step of the stage has finished
            refusals = [e for (s, i), e in sorted(self._refusals.items()) if s == stage]
            if refusals:
                self._end(refusals[0])
            elif self._stage == stage:
                self._stage = stage + 1
            return
        self._started.add((stage, index))
        try:
            plan[index]()
        except BundleError as e:
            self._refusals.setdefault((stage, index), e)
        except Exception as e:
            self._end(e)
            return
        self._finished.add((stage, index))

    def _pick(self, stage: int, count: int) -> int | None:
        fallback = None
        for index in range(count):
            if (stage, index) not in self._finished:
                if (stage, index) not in self._started:
                    return index
                if fallback is None:
                    fallback = index
        return fallback

    def _end(self, outcome: CompiledBundle | BaseException) -> None:
        if isinstance(outcome, RecursionError):
            outcome = BundleError("not a usable bundle: nested too deeply")
        elif isinstance(outcome, MALFORMED) and not isinstance(outcome, BundleError):
            outcome = malformed(outcome)
        if not self._outcome:
            self._outcome.append(outcome)
            # The steps refer to the task: drop them (and the input) so that nothing but
            # the outcome outlives the load, without waiting for the garbage collector.
            self._plans.clear()
            self._products.clear()
            self._memo.clear()
            self.data = b""

    # --- the stages ----------------------------------------------------------------

    def _split_stage(self) -> list[Step]:
        return [self._split]

    @property
    def split(self) -> Split:
        return self._products["split"]

    def _split(self) -> None:
        parts = _split_fast(self.data, self._memo)
        if parts is None:
            meta, parsed, sources = _parse_stdlib(self.data)
        else:
            meta, sources = parts
            parsed = {}
        check_format(meta)
        if parsed is None:
            check_shape(meta)  # names what is wrong with "flags"
            raise BundleError("flags must be an object", field="flags")
        if self.identity is not None and "secrets" in meta:
            meta = _with_secrets(meta, self.identity)
        changed, same_context = share_unchanged(meta, sources, self.previous)
        self._products.setdefault("split", Split(meta, sources, parsed, changed, same_context))

    def _shape_stage(self) -> list[Step]:
        steps = [self._check_shape]
        if self.public_key is not None:
            steps.append(self._verify_signature)
        return steps

    def _check_shape(self) -> None:
        # The bundle without its flags: each changed flag is checked in its batch (_check).
        bundle = {**self.split.meta, "flags": {}}
        if "shape" not in self._memo:
            _store(self._memo, "shape", shape_validator().is_valid, bundle)
        if not self._memo["shape"]:
            check_shape(bundle)  # raises, naming what is wrong

    def _verify_signature(self) -> None:
        # A signature covers every flag: all are decoded to dicts, for the hash.
        assert self.public_key is not None
        split = self.split
        try:
            flags = {
                k: split.parsed[k] if k in split.parsed else _msgspec_decode()(text)
                for k, text in split.sources.items()
            }
        except Exception:
            _meta, everything, _sources = _parse_stdlib(self.data)
            assert everything is not None  # the fast split found an object of flags
            flags = everything
        verify_signature({**_sealed(split.meta, self.data), "flags": flags}, self.public_key)

    def _context_stage(self) -> list[Step]:
        return [self._check_context]

    def _check_context(self) -> None:
        # Segments and experiments; of the changed flags, check_context reads the variants
        # of those an experiment runs on.
        split = self.split
        meta = split.meta
        run_on = {e["flag"] for e in meta["experiments"].values()}
        context_flags = {}
        for key in run_on.intersection(split.changed) if run_on else ():
            context_flags[key] = {"variants": self._variants(key)}
        check_context(meta, context_flags, split.sources)

    def _variants(self, key: str) -> Mapping[str, Any]:
        from flagstone.runtime.flag_shape import variants_of

        self._decode([key])
        split = self.split
        flag = split.parsed[key]
        variants = variants_of(flag)
        if type(flag) is dict or variants is None:
            # Not of the typed shape: the schema check names what is wrong.
            check_shape({**split.meta, "flags": {key: parse_source(split.sources[key])}})
        if variants is None:
            raise BundleError("variants must be an object", kind="flag", key=key)
        return variants

    def _flag_stage(self) -> list[Step]:
        from flagstone.runtime.flag_shape import References

        split = self.split
        meta, keys = split.meta, split.changed
        references = References(meta["segments"], meta["experiments"], split.sources)
        return [
            functools.partial(self._check_flags, keys[i : i + _FLAG_BATCH], references)
            for i in range(0, len(keys), _FLAG_BATCH)
        ]

    def _check_flags(self, keys: list[str], references: References) -> None:
        from flagstone.runtime.flag_shape import check_flag_sources

        self._decode(keys)
        split = self.split
        parsed = split.parsed
        batch = {k: parsed[k] for k in keys}
        check_flag_sources(split.meta, batch, split.sources, parse_source, references)

    def _decode(self, keys: list[str]) -> None:
        parsed = self.split.parsed
        keys = [k for k in keys if k not in parsed]  # not done by a thread sliced out
        if not keys:
            return
        texts = list(map(self.split.sources.__getitem__, keys))
        typed = _typed_decode()
        try:
            # Decoded, shape-checked and stored in one C call (see _store); twice stores
            # equal values.
            parsed.update(zip(keys, map(typed, texts), strict=True))
            return
        except Exception:
            pass
        # Some flag is not of the typed shape: those go to dicts and the schema check.
        decode = _msgspec_decode()
        for key, text in zip(keys, texts, strict=True):
            try:
                parsed[key] = typed(text)
            except Exception:
                try:
                    parsed[key] = decode(text)
                except Exception:
                    self._decode_stdlib([key])

    def _decode_stdlib(self, keys: list[str]) -> None:
        # Numbers out of a double's range, or bytes that are not UTF-8: the standard
        # library decides, exactly as when the whole file is read with it.
        _meta, everything, _sources = _parse_stdlib(self.data)
        assert everything is not None  # the fast split found an object of flags
        self.split.parsed.update((k, everything[k]) for k in keys)

    def _assemble_stage(self) -> list[Step]:
        return [self._assemble]

    def _assemble(self) -> None:
        split = self.split
        bundle = assemble_bundle(split.meta, split.sources, self.previous, split.same_context)
        if self.free_later:
            bundle.leftovers.append(split.parsed)
        self._end(bundle)


_STAGES: list[Callable[[LoadTask], list[Step]]] = [
    LoadTask._split_stage,
    LoadTask._shape_stage,
    LoadTask._context_stage,
    LoadTask._flag_stage,
    LoadTask._assemble_stage,
]


def _sealed(meta: dict[str, Any], data: bytes) -> dict[str, Any]:
    """The bundle's members as signed: with secrets still sealed (they are opened into
    ``config`` after the split, and the signature covers the sealed form)."""
    if "secrets" not in meta:
        return meta
    parts = _split_fast(data)
    return parts[0] if parts is not None else _parse_stdlib(data)[0]


@functools.cache
def _msgspec_decode() -> Callable[[Any], Any]:
    import msgspec

    return msgspec.json.decode


@functools.cache
def _typed_decode() -> Callable[[Any], Any]:
    from flagstone.runtime.flag_shape import decode_flag

    return decode_flag


@functools.cache
def _top_level() -> tuple[Callable[[Any], Any], tuple[str, ...]]:
    """(a decoder of a bundle's top level, the members it reads besides ``flags``).

    One C call over the file: each member the schema lists decoded (UNSET when absent),
    the flags kept as raw texts. It refuses an unknown member and a missing or
    non-object ``flags``: the standard library then reads the file, and the checks name
    what is wrong."""
    import msgspec

    members = tuple(name for name in bundle_members() if name != "flags")
    top = msgspec.defstruct(
        "BundleTop",
        [("flags", dict[str, msgspec.Raw]), *((name, Any, msgspec.UNSET) for name in members)],
        forbid_unknown_fields=True,
        gc=False,
    )
    return msgspec.json.Decoder(top).decode, members


def _split_fast(
    data: bytes, memo: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Source]] | None:
    """(the bundle without its flags, each flag's JSON bytes), in one C call; None when
    the standard library must read the file (not an object of objects, a BOM, NaN, lone
    surrogates...: msgspec refuses some JSON that json.loads accepts).

    ``memo`` keeps the scan's result for a thread that redoes the split after the one
    that began it was sliced out of the GIL."""
    memo = {} if memo is None else memo
    decode, members = _top_level()
    try:
        if "top" not in memo:
            _store(memo, "top", decode, data)
    except Exception:
        return None
    top = memo["top"]
    absent = _unset()
    meta = {name: value for name in members if (value := getattr(top, name)) is not absent}
    flags = top.flags
    # Copies: a slice would keep the whole file alive for as long as one flag is reused.
    # (b"" + raw makes one at half the cost of bytes(raw).)
    return meta, {key: b"" + raw for key, raw in flags.items()}


@functools.cache
def _unset() -> Any:
    import msgspec

    return msgspec.UNSET


def _store(memo: dict[str, Any], key: str, function: Callable[[Any], Any], argument: Any) -> None:
    """``memo[key] = function(argument)``, stored by the same C call that makes the call:
    a thread may be sliced out of the GIL as soon as a long C call returns to Python,
    and what it computed must not be lost (and computed again) meanwhile."""
    memo.update(zip((key,), map(function, (argument,)), strict=True))


def _parse_stdlib(
    data: bytes,
) -> tuple[dict[str, Any], dict[str, Mapping[str, Any]] | None, dict[str, Source]]:
    try:
        text = data.decode("utf-8-sig")
        return parse_bundle_text(text)
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
