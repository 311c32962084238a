"""What is secret, decided in one place, and how a secret is shown: never.

A config value is secret when its path is marked ``x-flagstone-secret: true`` in the app's
schema, when it lives in an environment's ``secrets.sops.yaml``, or when it is stored
encrypted (``ENC[...]``). ``Secrets`` is computed once when a repository is loaded
(``load.load_repository``) and travels on the ``Repository``; every reporter — problems,
changes, history, drift, errors and tracebacks — asks it before a value becomes text.

Two nets, so that one mistake is not a leak:
- by path: a secret path is rendered ``<secret>`` (``<secret: changed>`` in a diff),
  whatever its value, in every environment and every revision;
- by value: the plaintext strings found at secret paths (a secret committed unencrypted
  by mistake) are scrubbed from any message text, so an explanation that embeds a value
  (``'hunter2' is too short``) cannot carry it out either.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from flagstone.errors import DocPath, Problem
from flagstone.paths import dotted, leaves

SECRET = "<secret>"
SECRET_CHANGED = "<secret: changed>"
SECRET_MARKER = "x-flagstone-secret"
SECRETS_FILE = "secrets.sops.yaml"  # environments/<env>/secrets.sops.yaml
# Shorter plaintexts are not scrubbed from free text: "on" or "42" would shred every message.
MIN_SCRUB_LENGTH = 4
_ENCRYPTED = re.compile(r"ENC\[AES256_GCM,data:[^\]]*\]")


def is_encrypted(value: Any) -> bool:
    """A SOPS-encrypted value (``ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]``)."""
    return isinstance(value, str) and value.startswith("ENC[")


@dataclass(frozen=True, slots=True)
class Secrets:
    """The secret config paths of a repository and the plaintexts to keep out of text."""

    paths: frozenset[str] = frozenset()  # dotted config paths ("db.password")
    plaintexts: tuple[str, ...] = ()  # longest first, so a longer secret is scrubbed whole
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def build(cls, paths: Iterable[str], plaintexts: Iterable[Any] = ()) -> Secrets:
        texts = {_text(v) for v in plaintexts}
        kept = tuple(
            sorted((t for t in texts if len(t) >= MIN_SCRUB_LENGTH), key=lambda t: (-len(t), t))
        )
        pattern = re.compile("|".join(re.escape(t) for t in kept)) if kept else None
        remember(kept)
        return cls(frozenset(paths), kept, pattern)

    def with_plaintexts(self, values: Iterable[Any]) -> Secrets:
        """These secrets plus more plaintexts (values just decrypted, say)."""
        return Secrets.build(self.paths, (*self.plaintexts, *values))

    def is_secret(self, path: str | DocPath, value: Any = None) -> bool:
        """Whether the config value at ``path`` (dotted, or a document path) is secret."""
        key = path if isinstance(path, str) else dotted(path)
        if is_encrypted(value):
            return True
        if key in self.paths:
            return True
        return any(key.startswith(p + ".") for p in self.paths)

    def covers(self, path: str | DocPath) -> bool:
        """Whether ``path`` is a secret path or holds one (``db`` holds ``db.password``)."""
        key = path if isinstance(path, str) else dotted(path)
        return self.is_secret(key) or any(p.startswith(key + ".") for p in self.paths)

    def show(self, path: str | DocPath, value: Any) -> Any:
        """The value as it may be shown: ``<secret>`` for a secret, else itself (scrubbed)."""
        if self.is_secret(path, value):
            return SECRET
        return self.redact_value(value)

    def redact(self, text: str) -> str:
        """``text`` with every known secret plaintext and ciphertext replaced by ``<secret>``."""
        if self._pattern is not None:
            text = self._pattern.sub(SECRET, text)
        return redact_text(_ENCRYPTED.sub(SECRET, text))

    def redact_value(self, value: Any) -> Any:
        """A JSON-like value with secrets scrubbed from every string in it."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {k: self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(v) for v in value]
        return value

    def redact_problem(self, problem: Problem) -> Problem:
        message = self.redact(problem.message)
        hint = self.redact(problem.hint) if problem.hint is not None else None
        if message == problem.message and hint == problem.hint:
            return problem
        return replace(problem, message=message, hint=hint)

    def redact_problems(self, problems: Iterable[Problem]) -> list[Problem]:
        return [self.redact_problem(p) for p in problems]


NO_SECRETS = Secrets()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return ""  # true/false are never worth scrubbing
    return str(value) if value is not None else ""


# Every plaintext any Secrets in this process has seen: the last net, used where no
# repository is at hand (an error message at the CLI's edge, a traceback).
_known: set[str] = set()
_known_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def remember(plaintexts: Iterable[str]) -> None:
    """Add decrypted plaintexts to the last net (every decryption calls this, so it stays
    cheap: the pattern is compiled when text is next scrubbed)."""
    global _known_pattern
    new = {t for t in plaintexts if len(t) >= MIN_SCRUB_LENGTH} - _known
    if not new:
        return
    with _lock:
        _known.update(new)
        _known_pattern = None


def forget_remembered() -> None:
    """Empty the last net, as a fresh process starts: for running commands in-process
    one after another (a test suite), so one command's secrets do not mask another's words."""
    global _known_pattern
    with _lock:
        _known.clear()
        _known_pattern = None


def _pattern() -> re.Pattern[str] | None:
    global _known_pattern
    with _lock:
        if _known_pattern is None and _known:
            ordered = sorted(_known, key=lambda t: (-len(t), t))
            _known_pattern = re.compile("|".join(re.escape(t) for t in ordered))
        return _known_pattern


def redact_text(text: str) -> str:
    """Scrub every plaintext secret this process has seen from ``text``."""
    pattern = _known_pattern if _known_pattern is not None else _pattern()
    return pattern.sub(SECRET, text) if pattern is not None else text


# --- deciding what is secret -----------------------------------------------------------


def marked_paths(schema: Mapping[str, Any], marker: str, prefix: str = "") -> Iterator[str]:
    """Dotted config paths whose schema property carries ``marker: true``."""
    for name, sub in schema.get("properties", {}).items():
        if not isinstance(sub, Mapping):
            continue
        path = f"{prefix}{name}"
        if sub.get(marker) is True:
            yield path
        yield from marked_paths(sub, marker, path + ".")


def secrets_of(
    schema: Mapping[str, Any] | None,
    configs: Iterable[Mapping[str, Any]],
    secret_files: Iterable[Mapping[str, Any]] = (),
) -> Secrets:
    """Decide what is secret: marked paths, every key of a secrets file, every encrypted
    value; and remember the plaintexts found at those paths (a secret not yet encrypted)."""
    paths = set(marked_paths(schema, SECRET_MARKER)) if schema is not None else set()
    configs = list(configs)
    for tree in secret_files:
        paths.update(dotted(p) for p, _ in leaves(tree) if p)
    for tree in configs:
        paths.update(dotted(p) for p, v in leaves(tree) if is_encrypted(v))
    probe = Secrets(frozenset(paths))
    plaintexts = [
        v
        for tree in configs
        for p, v in leaves(tree)
        if v is not None and not is_encrypted(v) and probe.is_secret(p)
    ]
    return Secrets.build(paths, plaintexts)


# --- credentials written in plain text ----------------------------------------------------

_CANDIDATE_MIN = 16  # shorter strings are rarely credentials and never high-entropy enough
# detect-secrets' plugins that read a value alone; the keyword and IP plugins need the
# surrounding line, which a config value does not have.
_CONTEXT_PLUGINS = {
    "keyword",
    "ip_public",
    "base",
    "high_entropy_strings",
    "cloudant",
    "softlayer",
    "ibm_cos_hmac",
}


def _is_candidate(value: str) -> bool:
    if "-----BEGIN" in value:
        return True
    if len(value) < _CANDIDATE_MIN or any(c.isspace() for c in value):
        return False
    return "://" not in value or "@" in value  # a URL only when it carries credentials


@functools.cache
def _detectors() -> tuple[Any, ...]:
    import importlib
    import pkgutil

    import detect_secrets.plugins as plugins
    from detect_secrets.plugins.base import RegexBasedDetector

    found = []
    for module in pkgutil.iter_modules(plugins.__path__):
        if module.name in _CONTEXT_PLUGINS:
            continue
        loaded = importlib.import_module(f"{plugins.__name__}.{module.name}")
        for obj in vars(loaded).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, RegexBasedDetector)
                and obj is not RegexBasedDetector
                and obj.__module__ == loaded.__name__
            ):
                found.append(obj())
    return tuple(sorted(found, key=lambda d: d.secret_type))


def credential_kind(value: str) -> str | None:
    """What a plaintext value looks like, by detect-secrets' rules (token prefixes of AWS,
    GitHub, Slack, Stripe, …, private-key blocks), or a high-entropy string; None when it
    looks like an ordinary value. Only long, unspaced strings are looked at."""
    if not _is_candidate(value):
        return None
    for detector in _detectors():
        if any(True for _ in detector.analyze_string(value)):
            return str(detector.secret_type)
    from detect_secrets.plugins.high_entropy_strings import (
        Base64HighEntropyString,
        HexHighEntropyString,
    )

    if len(value) >= 20 and re.fullmatch(r"[A-Za-z0-9+/=_-]+", value):
        if re.fullmatch(r"[0-9a-fA-F]+", value):
            if (
                len(value) >= 32
                and HexHighEntropyString(limit=3.0).calculate_shannon_entropy(value) > 3.0
            ):
                return "high-entropy hex string"
        elif Base64HighEntropyString(limit=4.5).calculate_shannon_entropy(value) > 4.5:
            return "high-entropy string"
    return None
