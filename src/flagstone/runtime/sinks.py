"""Analytics: exposure events and evaluation counts, off the hot path, exactly.

- **Counts** go to a per-thread dictionary (no lock, no lost update: only its own thread
  writes it). The writer thread reads each one with a single ``dict.copy()`` — atomic
  under the GIL — and writes the difference from what it wrote last, so every
  evaluation is counted exactly once.
- **Consent refusals** of a ``consent: required`` experiment are counted, never logged:
  each unit once per process, written as ``{"type": "consent_not_given", "experiment",
  "flag", "environment", "units", "from", "to"}`` with no unit in it, so ``analyze`` can
  say how many units were left out without anyone's id reaching a log.
- **Exposures** are logged once per unit and experiment in this process (as GrowthBook's
  SDK does); a repeat costs one dictionary lookup. New ones go to a bounded queue: when
  it is full the oldest is dropped and ``dropped`` counts it, so memory never grows
  without bound. Pseudonymization (HMAC-SHA256) runs on the writer thread, not the
  caller's.
- A background thread writes every ``interval`` seconds; ``flush()`` writes now; the
  interpreter's exit (normal, ``sys.exit``, an uncaught exception) flushes through
  ``atexit``; ``close(timeout)`` flushes and returns within ``timeout`` even when the
  sink is stuck. Only ``os._exit`` and signals that kill the process lose events.

Unit ids are pseudonymized with HMAC-SHA256 before they leave the process
(``pseudonymize=False`` turns it off). The key comes from the ``pseudonym_key`` argument
or the ``FLAGSTONE_PSEUDONYM_KEY`` environment variable; without either, a random
per-process key is used (ids stay private, but cannot be joined across processes), with
a warning.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flagstone.runtime.evaluate import CompiledExperiment

logger = logging.getLogger("flagstone")
CountKey = tuple[str, "str | None", str]
# (experiment, arm, raw unit, flag, environment, ts, dimensions)
Exposure = tuple[str, str, str, str, "str | None", float, dict[str, Any]]
MAX_DIMENSION_TEXT = 256


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
            "".join(
                json.dumps(r, sort_keys=True, separators=(",", ":"), default=str) + "\n"
                for r in records
            )
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
    """Buffers exposures and per-(flag, variant, reason) counts; a thread writes them."""

    def __init__(
        self,
        sink: Sink,
        *,
        interval: float = 10.0,
        pseudonymize: bool = True,
        pseudonym_key: bytes | str | None = None,
        max_queue: int = 100_000,
        dedup_limit: int = 100_000,
        pii: Iterable[str] = (),
        close_timeout: float = 5.0,
    ) -> None:
        self.sink = sink
        self.interval = interval
        self.pseudonym = Pseudonymizer(pseudonym_key, pseudonymize)
        self.max_queue = max_queue
        self.dedup_limit = dedup_limit
        self.pii = frozenset(pii)  # never written, whatever an experiment declares
        self.close_timeout = close_timeout
        self.dropped = 0  # exposures dropped because the queue was full
        self.failed = 0  # records a sink failed to write
        self._queue: deque[Exposure] = deque()
        # (experiment, unit) -> the arm logged: a caller that finds its arm here skips expose()
        self.logged: dict[tuple[str, str], str] = {}
        self._refused: set[tuple[str, str]] = set()  # (experiment, unit) counted, in memory only
        self._refusals: dict[tuple[str, str, str | None], int] = {}  # units per experiment
        self._exposure_lock = threading.Lock()  # only on a unit's first exposure
        self._local = threading.local()
        self._thread_counts: list[tuple[weakref.ref[threading.Thread], dict[CountKey, int]]] = []
        self._written: dict[int, dict[CountKey, int]] = {}  # id(counts) -> counts already written
        self._registry_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time, never taken on the hot path
        self._window_start = time.time()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="flagstone-analytics", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    # --- the calling thread ------------------------------------------------------------

    def count(self, flag: str, variant: str | None, reason: str) -> None:
        try:
            counts = self._local.counts
        except AttributeError:
            counts = self._register_thread()
        key = (flag, variant, reason)
        counts[key] = counts.get(key, 0) + 1

    def _register_thread(self) -> dict[CountKey, int]:
        counts: dict[CountKey, int] = {}
        self._local.counts = counts
        with self._registry_lock:
            self._thread_counts.append((weakref.ref(threading.current_thread()), counts))
        return counts

    def expose(
        self,
        experiment: CompiledExperiment,
        arm: str,
        context: Mapping[str, Any],
        environment: str | None,
    ) -> None:
        """Log that the context's unit was served ``arm`` (once per unit and experiment)."""
        raw = context.get(experiment.unit)
        unit = raw if type(raw) is str else (str(raw) if type(raw) is int else None)
        if unit is None:
            return
        key = (experiment.key, unit)
        if self.logged.get(key) == arm:
            return
        dimensions = {
            d: _dimension_value(context.get(d)) for d in experiment.dimensions if d not in self.pii
        }
        with self._exposure_lock:
            if self.logged.get(key) == arm:
                return
            if len(self.logged) >= self.dedup_limit:
                self.logged.clear()  # bounded memory; `analyze` keeps each unit's first exposure
            self.logged[key] = arm
            if len(self._queue) >= self.max_queue:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(
                (experiment.key, arm, unit, experiment.flag, environment, time.time(), dimensions)
            )

    def refuse(
        self, experiment: CompiledExperiment, context: Mapping[str, Any], environment: str | None
    ) -> None:
        """Count the context's unit as left out of ``experiment`` for lacking consent (once
        per unit and experiment in this process); the count never carries the unit."""
        raw = context.get(experiment.unit)
        unit = raw if type(raw) is str else (str(raw) if type(raw) is int else None)
        if unit is None:
            return
        key = (experiment.key, unit)
        if key in self._refused:
            return
        with self._exposure_lock:
            if key in self._refused:
                return
            if len(self._refused) >= self.dedup_limit:
                self._refused.clear()  # bounded memory: a unit may then be counted again
            self._refused.add(key)
            count = (experiment.key, experiment.flag, environment)
            self._refusals[count] = self._refusals.get(count, 0) + 1

    def exposure(
        self, experiment: str, arm: str, unit: str, flag: str, environment: str | None
    ) -> None:
        """Log one exposure as given (no dedup): for apps that assign outside the client."""
        with self._exposure_lock:
            if len(self._queue) >= self.max_queue:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append((experiment, arm, unit, flag, environment, time.time(), {}))

    # --- the writer thread -------------------------------------------------------------

    def flush(self) -> None:
        """Write everything buffered now (on the calling thread)."""
        with self._flush_lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        records: list[Mapping[str, Any]] = []
        pseudonym = self.pseudonym
        queue = self._queue
        while queue:
            experiment, arm, unit, flag, environment, ts, dimensions = queue.popleft()
            records.append(
                {
                    "type": "exposure",
                    "experiment": experiment,
                    "arm": arm,
                    "unit": pseudonym(unit),
                    "flag": flag,
                    "environment": environment,
                    "ts": round(ts, 3),
                    "dimensions": dimensions,
                }
            )
        start, end = self._window_start, time.time()
        self._window_start = end
        with self._exposure_lock:
            refusals, self._refusals = self._refusals, {}
        for (experiment, flag, environment), units in sorted(
            refusals.items(), key=lambda kv: (kv[0][0], kv[0][1], str(kv[0][2]))
        ):
            records.append(
                {
                    "type": "consent_not_given",
                    "experiment": experiment,
                    "flag": flag,
                    "environment": environment,
                    "units": units,
                    "from": round(start, 3),
                    "to": round(end, 3),
                }
            )
        for (flag, variant, reason), n in sorted(
            self._count_deltas().items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2])
        ):
            records.append(
                {
                    "type": "evaluations",
                    "flag": flag,
                    "variant": variant,
                    "reason": reason,
                    "count": n,
                    "from": round(start, 3),
                    "to": round(end, 3),
                }
            )
        if records:
            try:
                self.sink.write(records)
            except Exception:
                self.failed += len(records)
                logger.exception(
                    "flagstone: analytics sink failed; %d records dropped", len(records)
                )

    def _count_deltas(self) -> dict[CountKey, int]:
        totals: dict[CountKey, int] = {}
        with self._registry_lock:
            registered = list(self._thread_counts)
        finished = []
        for thread_ref, counts in registered:
            alive = (t := thread_ref()) is not None and t.is_alive()
            snapshot = counts.copy()  # one C call: atomic with respect to the owner's updates
            written = self._written.get(id(counts), {})
            for key, n in snapshot.items():
                delta = n - written.get(key, 0)
                if delta:
                    totals[key] = totals.get(key, 0) + delta
            if alive:
                self._written[id(counts)] = snapshot
            else:  # a finished thread writes no more: everything it counted is now written
                finished.append(counts)
                self._written.pop(id(counts), None)
        if finished:
            with self._registry_lock:
                self._thread_counts = [
                    (r, c) for r, c in self._thread_counts if not any(c is f for f in finished)
                ]
        return totals

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the writer thread must never die
                logger.exception("flagstone: analytics flush failed")

    # --- shutdown ----------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Flush and close the sink, returning within ``timeout`` seconds even if it is stuck."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._at_exit)
        timeout = self.close_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        done = threading.Event()

        def final() -> None:
            try:
                if self._flush_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    try:
                        self._flush_locked()
                        self.sink.close()
                    finally:
                        self._flush_lock.release()
            except Exception:
                logger.exception("flagstone: closing the analytics sink failed")
            finally:
                done.set()

        try:
            closer = threading.Thread(target=final, name="flagstone-analytics-close", daemon=True)
            closer.start()
        except RuntimeError:  # no new threads at interpreter shutdown (3.12+): flush inline
            final()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            logger.error(
                "flagstone: the analytics sink did not finish within %.1f s; %d exposures unwritten",
                timeout,
                len(self._queue),
            )

    def _at_exit(self) -> None:
        self.close()


def _dimension_value(value: Any) -> Any:
    """A JSON-safe value for an exposure's dimensions (strings are capped)."""
    t = type(value)
    if value is None or t is bool or t is int:
        return value
    if t is float:
        return value if math.isfinite(value) else None
    text = value if t is str else str(value)
    return text if len(text) <= MAX_DIMENSION_TEXT else text[:MAX_DIMENSION_TEXT]
