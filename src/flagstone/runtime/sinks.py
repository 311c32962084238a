"""Analytics: exposure events and evaluation counts, off the hot path.

Evaluation only appends to an in-memory structure; a background thread writes. Unit ids
are pseudonymized with HMAC-SHA256 before they leave the process (``pseudonymize=False``
turns it off). The key comes from the ``pseudonym_key`` argument or the
``FLAGSTONE_PSEUDONYM_KEY`` environment variable; without either, a random per-process
key is used (ids stay private, but cannot be joined across processes), with a warning.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger("flagstone")


class Sink(Protocol):
    """Where analytics go. ``write`` receives already pseudonymized records."""

    def write(self, records: list[Mapping[str, Any]]) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """Appends one JSON object per line to a file (the format `flagstone analyze` reads)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, records: list[Mapping[str, Any]]) -> None:
        self._file.write(
            "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records)
        )
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class MemorySink:
    """Keeps records in a list: for tests and for apps that forward them elsewhere."""

    def __init__(self) -> None:
        self.records: list[Mapping[str, Any]] = []

    def write(self, records: list[Mapping[str, Any]]) -> None:
        self.records.extend(records)

    def close(self) -> None:
        pass


class Pseudonymizer:
    def __init__(self, key: bytes | str | None, enabled: bool = True) -> None:
        self.enabled = enabled
        key = key if key is not None else os.environ.get("FLAGSTONE_PSEUDONYM_KEY")
        if enabled and not key:
            logger.warning(
                "flagstone: no pseudonym key configured; unit ids are hashed with a random per-process key"
            )
            key = secrets.token_bytes(32)
        self._key = key.encode() if isinstance(key, str) else (key or b"")

    def __call__(self, unit: str) -> str:
        if not self.enabled:
            return unit
        return hmac.new(self._key, unit.encode(), hashlib.sha256).hexdigest()[:32]


class Analytics:
    """Buffers exposures and per-(flag, variant) counts; a daemon thread flushes them."""

    def __init__(
        self,
        sink: Sink,
        *,
        interval: float = 10.0,
        pseudonymize: bool = True,
        pseudonym_key: bytes | str | None = None,
    ) -> None:
        self.sink = sink
        self.interval = interval
        self.pseudonym = Pseudonymizer(pseudonym_key, pseudonymize)
        self._events: queue.SimpleQueue[Mapping[str, Any]] = queue.SimpleQueue()
        self._counts: dict[tuple[str, str | None, str], int] = {}
        self._window_start = time.time()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # serialises flushes, never taken on the hot path
        self._thread = threading.Thread(target=self._run, name="flagstone-analytics", daemon=True)
        self._thread.start()

    def count(self, flag: str, variant: str | None, reason: str) -> None:
        key = (flag, variant, reason)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1

    def exposure(
        self, experiment: str, arm: str, unit: str, flag: str, environment: str | None
    ) -> None:
        self._events.put(
            {
                "type": "exposure",
                "experiment": experiment,
                "arm": arm,
                "unit": self.pseudonym(unit),
                "flag": flag,
                "environment": environment,
                "ts": round(time.time(), 3),
            }
        )

    def flush(self) -> None:
        with self._lock:
            records: list[Mapping[str, Any]] = []
            while True:
                try:
                    records.append(self._events.get_nowait())
                except queue.Empty:
                    break
            counts, self._counts = self._counts, {}
            start, self._window_start = self._window_start, time.time()
            for (flag, variant, reason), n in sorted(
                counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2])
            ):
                records.append(
                    {
                        "type": "evaluations",
                        "flag": flag,
                        "variant": variant,
                        "reason": reason,
                        "count": n,
                        "from": round(start, 3),
                        "to": round(self._window_start, 3),
                    }
                )
            if records:
                try:
                    self.sink.write(records)
                except Exception:
                    logger.exception(
                        "flagstone: analytics sink failed; %d records dropped", len(records)
                    )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
        self.sink.close()
