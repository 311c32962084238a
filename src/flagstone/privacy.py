"""Privacy in experimentation and analytics: the ``privacy:`` settings, the checks that keep
personal data out of bundles and logs, and the erasure and retention of local logs.

``flagstone.yaml``::

    privacy:
      pii: [email, ip]            # context attributes that are personal data
      consent_attribute: consent.experiments
      retention_days: 90          # `privacy retention` deletes older rows

The runtime never writes a ``pii`` attribute to a log (the bundle carries the list;
``dimensions`` drop them) and pseudonymizes unit ids with HMAC-SHA256 under the pseudonym
key, which is a flagstone secret (``secret set prod analytics.pseudonym_key``) so that every
process, and ``privacy pseudonymize`` for the metrics join, hashes the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flagstone.errors import FlagstoneError, Problem
from flagstone.runtime.format import DEFAULT_CONSENT_ATTRIBUTE

PSEUDONYM_KEY_PATH = "analytics.pseudonym_key"
LOG_SUFFIXES = (".jsonl", ".ndjson", ".log")
_TEMPLATE = re.compile(r"\$\{\s*([\w.-]+)\s*\}|\{\{\s*([\w.-]+)\s*\}\}")


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    pii: frozenset[str] = frozenset()
    consent_attribute: str = DEFAULT_CONSENT_ATTRIBUTE
    retention_days: int | None = None

    @classmethod
    def of(cls, settings_raw: Mapping[str, Any]) -> PrivacySettings:
        raw = settings_raw.get("privacy") or {}
        if not isinstance(raw, Mapping):
            return cls()
        pii = raw.get("pii") or ()
        days = raw.get("retention_days")
        return cls(
            frozenset(str(a) for a in pii) if isinstance(pii, list | tuple) else frozenset(),
            str(raw.get("consent_attribute") or DEFAULT_CONSENT_ATTRIBUTE),
            int(days) if isinstance(days, int) and not isinstance(days, bool) else None,
        )


# --- validate ---------------------------------------------------------------------------


def check_privacy(settings_raw: Mapping[str, Any], env: Any) -> Iterator[Problem]:
    """PII copied where the runtime would log or ship it: an experiment's ``dimensions``
    (written into every exposure) or a variant payload that names or templates it."""
    pii = PrivacySettings.of(settings_raw).pii
    if not pii:
        return
    for key, experiment in env.experiments.items():
        for i, dimension in enumerate(experiment.raw.get("dimensions") or ()):
            if dimension in pii:
                yield Problem(
                    experiment.file,
                    0,
                    0,
                    f"experiment {key!r} records dimension {dimension!r}, which privacy.pii lists as personal data",
                    "pii-dimension",
                    path=(key, "dimensions", i),
                    hint="remove it: exposures must not carry personal data",
                )
    for key, flag in env.flags.items():
        variants = flag.raw.get("variants")
        if not isinstance(variants, Mapping):
            continue
        for variant, value in variants.items():
            for path, name in _pii_references(value, pii, ()):
                yield Problem(
                    flag.file,
                    0,
                    0,
                    f"variant {variant!r} of flag {key!r} copies the personal attribute {name!r} into its payload",
                    "pii-in-payload",
                    path=(key, "variants", variant, *path),
                    hint="variant payloads reach every client and log; keep personal data out of them",
                )


def _pii_references(
    value: Any, pii: frozenset[str], path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        for m in _TEMPLATE.finditer(value):
            name = m.group(1) or m.group(2)
            if name in pii:
                yield path, name
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if k in pii:
                yield (*path, k), str(k)
            yield from _pii_references(v, pii, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _pii_references(v, pii, (*path, i))


# --- pseudonyms ---------------------------------------------------------------------------


def pseudonymizer(key: bytes | str) -> Callable[[str], str]:
    """The runtime's own pseudonym function, so ids mapped here join with its exposures."""
    from flagstone.runtime.sinks import Pseudonymizer

    return Pseudonymizer(key, True)


def pseudonym_key(root: Path, env: str | None) -> str | None:
    """The pseudonym key: FLAGSTONE_PSEUDONYM_KEY, else ``analytics.pseudonym_key`` from
    ``env``'s secrets (decrypted with the user's identity)."""
    if os.environ.get("FLAGSTONE_PSEUDONYM_KEY"):
        return os.environ["FLAGSTONE_PSEUDONYM_KEY"]
    if env is None:
        return None
    from flagstone.secrets import remember
    from flagstone.sops import find_identities, open_env

    opened = open_env(root, env, find_identities(root))
    if opened is None:
        return None
    try:
        key = opened.get(PSEUDONYM_KEY_PATH)
    except KeyError:
        return None
    remember([str(key)])
    return str(key)


# --- logs ---------------------------------------------------------------------------------


@dataclass
class Rewrite:
    file: str
    removed: int
    kept: int
    unreadable: int = 0  # lines that are not JSON objects: kept as they are


@dataclass
class LogReport:
    files: list[Rewrite] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return sum(f.removed for f in self.files)


def log_files(data: Path) -> list[Path]:
    if not data.is_dir():
        raise FlagstoneError(f"{data} is not a directory of exposure and usage logs")
    return sorted(p for p in data.rglob("*") if p.is_file() and p.name.endswith(LOG_SUFFIXES))


def rewrite_logs(
    data: Path, drop: Callable[[Mapping[str, Any]], bool], *, dry_run: bool = False
) -> LogReport:
    """Remove the rows ``drop`` selects from every log under ``data``; each file is
    rewritten through a temp file and a rename, so a reader sees it whole, before or after."""
    report = LogReport()
    for path in log_files(data):
        kept_lines: list[bytes] = []
        removed = unreadable = 0
        with path.open("rb") as handle:
            for line in handle:
                record = _record(line)
                if record is None:
                    unreadable += bool(line.strip())
                    kept_lines.append(line)
                elif drop(record):
                    removed += 1
                else:
                    kept_lines.append(line)
        report.files.append(Rewrite(str(path), removed, len(kept_lines), unreadable))
        if removed and not dry_run:
            _replace(path, b"".join(kept_lines))
    return report


def _record(line: bytes) -> Mapping[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, Mapping) else None


def _replace(path: Path, content: bytes) -> None:
    mode = path.stat().st_mode & 0o777
    import tempfile  # only a rewrite needs it: validate and build import this module

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def forget(data: Path, unit: str, key: bytes | str | None, *, dry_run: bool = False) -> LogReport:
    """Right to erasure: every row about ``unit``, stored raw or pseudonymized."""
    ids = {unit}
    if key:
        ids.add(pseudonymizer(key)(unit))
    return rewrite_logs(
        data, lambda r: str(r.get("unit")) in ids if "unit" in r else False, dry_run=dry_run
    )


def retain(
    data: Path, days: int, *, now: dt.datetime | None = None, dry_run: bool = False
) -> LogReport:
    """Delete rows older than ``days``: an exposure by its ``ts``, a count by its ``to``."""
    cutoff = (now or dt.datetime.now(dt.UTC)).timestamp() - days * 86_400

    def old(record: Mapping[str, Any]) -> bool:
        stamp = record.get("ts", record.get("to"))
        return isinstance(stamp, int | float) and not isinstance(stamp, bool) and stamp < cutoff

    return rewrite_logs(data, old, dry_run=dry_run)


def read_ids(lines: Iterable[str]) -> Iterator[str]:
    """Raw ids from CSV-ish input: the first column of each non-empty line (a header
    named id, unit or user_id is skipped)."""
    for number, line in enumerate(lines):
        text = line.strip()
        if not text:
            continue
        first = text.split(",", 1)[0].strip().strip('"')
        if number == 0 and first.lower() in ("id", "unit", "unit_id", "user_id"):
            continue
        yield first
