"""``flagstone.Client``: evaluate a bundle inside the application, hot-reloading it.

Evaluation never raises into the app: a missing flag, a bad context (even one whose
``get`` raises) or an unhashable key returns the caller's default with a reason. A new
bundle is read, checked and prepared on a background thread, then swapped in with one
reference assignment, so readers never see a half-built bundle and the hot path takes no
lock. ``client.status`` tells the app the truth about reloads: READY, STALE (the source
cannot be read: HTTP errors, timeouts, a deleted file) or ERROR (the source delivered a
bundle that was refused), with the last error and its time, the live bundle's revision
and age, and counters.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flagstone.runtime.errors import BundleError, BundleUnavailable
from flagstone.runtime.evaluate import (
    CompiledBundle,
    CompiledExperiment,
    Resolution,
    compile_bundle,
    evaluate,
    explain,
    resolve,
)
from flagstone.runtime.format import (
    DISABLED,
    ERROR,
    FLAG_NOT_FOUND,
    PREREQUISITE_FAILED,
    TARGET_MATCH,
)
from flagstone.runtime.loader import LoadTask, collector_paused, load_bundle_bytes, load_identity
from flagstone.runtime.sinks import Analytics, JsonLinesSink, Sink

if TYPE_CHECKING:
    from flagstone.runtime.reload import FileWatcher

logger = logging.getLogger("flagstone")
Listener = Callable[["CompiledBundle", "CompiledBundle | None"], None]
StatusListener = Callable[["Status"], None]
State = Literal["READY", "STALE", "ERROR"]
_MISSING: Any = object()
_dict_get = dict.get  # the compiled entries of a FlagTable, at C speed (see FlagTable)
# Evaluations between two looks at a watched file from an evaluating thread: about a
# millisecond of evaluation; a look is a stat that keeps the GIL (reload.GilKeepingFile).
CHECK_EVERY = 1024
EVERY_EVALUATION: Iterator[int] = itertools.repeat(0)


def beat() -> Iterator[int]:
    return itertools.cycle((1,) * (CHECK_EVERY - 1) + (0,))


# Answers decided before the flag's experiment is consulted: no consent was asked for.
_BEFORE_EXPERIMENT = frozenset((DISABLED, PREREQUISITE_FAILED, TARGET_MATCH, FLAG_NOT_FOUND))

__all__ = [
    "BundleError",
    "BundleUnavailable",
    "Client",
    "Resolution",
    "Status",
    "load_bundle_bytes",
    "load_identity",
]


@dataclass(frozen=True, slots=True)
class Status:
    """The client's health: what is live, and whether the source could be followed."""

    state: State  # READY, STALE (source unreadable) or ERROR (a new bundle was refused)
    last_error: str | None  # cleared only by a successful load
    last_error_at: float | None  # epoch seconds
    hash: str | None  # of the live bundle
    revision: str | None  # the commit the live bundle was built from
    environment: str | None
    loaded_at: float  # epoch seconds the live bundle went live
    reloads: int  # new bundles that went live after the first
    refusals: int  # bundles refused: corrupt, invalid, wrongly signed
    source_errors: int  # failed reads of the source: HTTP errors, timeouts, a missing file

    @property
    def age(self) -> float:
        """Seconds since the live bundle went live."""
        return max(0.0, time.time() - self.loaded_at)

    @property
    def ready(self) -> bool:
        return self.state == "READY"

    def __str__(self) -> str:
        return self.state


class Client:
    """Evaluates flags, experiments and config from one environment's bundle."""

    def __init__(
        self,
        bundle: CompiledBundle,
        *,
        analytics: Analytics | None = None,
        public_key: bytes | None = None,
    ) -> None:
        self._bundle = bundle
        self._analytics = analytics
        self._public_key = public_key
        self._identity: Any = None  # age identities for sealed secrets (from_file)
        self._listeners: list[Listener] = []
        self._status_listeners: list[StatusListener] = []
        self._closers: list[Callable[[], None]] = []
        self._health_lock = threading.Lock()
        self._state: State = "READY"
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._logged_cause: str | None = None
        self._loaded_at = time.time()
        self._reloads = self._refusals = self._source_errors = 0
        # 0 once every CHECK_EVERY evaluations (every evaluation while a load is under way):
        # then the evaluation calls _tick. One C call, the cheapest such counter (~20 ns).
        self._beat: Iterator[int] = beat()
        self._watcher: FileWatcher | None = None  # when evaluating threads take part

    # --- construction --------------------------------------------------------------

    @classmethod
    def from_dict(cls, bundle: Mapping[str, Any], **options: Any) -> Client:
        return cls(compile_bundle(bundle), **_client_options(options))

    @classmethod
    def from_bytes(cls, data: bytes, *, public_key: bytes | None = None, **options: Any) -> Client:
        return cls(
            load_bundle_bytes(data, public_key), public_key=public_key, **_client_options(options)
        )

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        watch: bool = False,
        poll_interval: float = 0.002,
        settle: float = 0.25,
        cooperative_reload: bool = True,
        public_key: bytes | None = None,
        identity: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> Client:
        """Load a bundle file; with ``watch=True`` reload it when it changes.

        The watcher stats the path every ``poll_interval`` seconds (a few microseconds
        each), following symlinks, so in-place writes, atomic renames and Kubernetes
        ConfigMap symlink swaps are all seen within milliseconds. A file read half-written
        is retried quietly for ``settle`` seconds before it counts as refused.

        ``cooperative_reload`` (Linux): the threads that evaluate flags also look at the
        file, every ``CHECK_EVERY`` evaluations, and advance a load under way, so that a
        reload does not wait for their GIL turns; the thread that completes the load swaps
        it in and calls the ``on_change`` listeners. False: the watcher's thread alone.

        ``identity`` (an age secret key, or a file holding one) decrypts the secrets a
        server bundle carries sealed (``build --include-secrets --recipient``) into
        ``config`` at load, so the file at rest never holds them in plain text.
        """
        path = Path(path)
        identities = load_identity(identity) if identity is not None else None
        try:
            data = path.read_bytes()
        except OSError as e:
            raise BundleUnavailable(f"cannot read {path}: {e.strerror or e}") from None
        compiled = load_bundle_bytes(data, public_key, identity=identities)
        if identities is not None and "pseudonym_key" not in options:
            # The pseudonym key is a flagstone secret: every process hashes units alike.
            analytics_config = compiled.config.get("analytics")
            if isinstance(analytics_config, Mapping) and analytics_config.get("pseudonym_key"):
                options = {**options, "pseudonym_key": str(analytics_config["pseudonym_key"])}
        client = cls(compiled, public_key=public_key, **_client_options(options))
        client._identity = identities
        if watch:
            from flagstone.runtime.reload import FileWatcher

            watcher = FileWatcher(
                path, client, poll_interval, settle, cooperative=cooperative_reload
            )
            client._closers.append(watcher.stop)
        return client

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        poll_interval: float = 30.0,
        timeout: float = 10.0,
        public_key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Client:
        """Fetch a bundle over HTTP(S) and poll it with If-None-Match (ETag)."""
        from flagstone.runtime.reload import UrlPoller

        poller = UrlPoller(url, timeout=timeout, headers=headers)
        try:
            fetched = poller.fetch()
        except Exception as e:
            raise BundleUnavailable(f"cannot fetch {url}: {describe_error(e)}") from None
        if fetched is None:
            raise BundleUnavailable(f"{url} answered 304 Not Modified to a first request")
        body, etag = fetched
        client = cls(
            load_bundle_bytes(body, public_key), public_key=public_key, **_client_options(options)
        )
        poller.etag = etag
        poller.start(client, poll_interval)
        client._closers.append(poller.stop)
        return client

    # --- reload --------------------------------------------------------------------

    def load(self, data: bytes) -> CompiledBundle:
        """Prepare ``data`` as the next bundle (raises BundleError); does not make it live."""
        return load_bundle_bytes(
            data, self._public_key, self._bundle, self._identity, free_later=True
        )

    def load_task(self, data: bytes) -> LoadTask:
        """``load`` as steps that any thread may advance (``LoadTask.run``)."""
        return LoadTask(data, self._public_key, self._bundle, self._identity, free_later=True)

    def _tick(self) -> None:
        """Every ``CHECK_EVERY`` evaluations (every evaluation while a load is under way):
        let the file watcher look from this thread. Never raises."""
        watcher = self._watcher
        if watcher is None:
            return
        try:
            watcher.look()
        except Exception as e:
            try:
                watcher.failed(e)
            except Exception:
                logger.debug("flagstone: reporting a reload failure failed", exc_info=True)
        finally:
            self._beat = EVERY_EVALUATION if watcher.loading else beat()

    def reload_bytes(self, data: bytes) -> bool:
        """Load ``data`` and make it live; on refusal keep the current bundle and say why."""
        with collector_paused():  # until the load's parsed objects are freed by swap
            try:
                new = self.load(data)
            except BundleError as e:
                self.refused(e)
                return False
            self.swap(new)
        return True

    _reload_bytes = reload_bytes  # the name earlier releases used

    def swap(self, new: CompiledBundle) -> bool:
        """Make ``new`` the live bundle and notify listeners; False if it is the same."""
        old = self._bundle
        changed = new.hash is None or new.hash != old.hash
        # READY first: a thread that already evaluates on the new bundle must not read
        # the status (or last_error) of the refusal it replaces.
        was = self._mark_ready()
        if changed:
            self._bundle = new  # one reference assignment: atomic for readers
            self._loaded_at = time.time()
            self._reloads += 1
        self._announce_recovery(was)
        if changed:
            for listener in list(self._listeners):
                try:
                    listener(new, old)
                except Exception:
                    logger.exception("flagstone: a bundle listener failed")
        new.leftovers.clear()  # the load's parsed objects, freed now that it is live
        return changed

    def refused(self, error: BundleError) -> None:
        """Record a refused bundle: status ERROR, the last good bundle stays live."""
        self._failed("ERROR", f"refused a new bundle: {error}", refusal=True)

    def source_failed(self, message: str) -> None:
        """Record a failure to read the source: status STALE, the last good bundle stays live."""
        self._failed("STALE", message, refusal=False)

    def source_unchanged(self) -> None:
        """The source confirmed the live bundle is current (an HTTP 304)."""
        self._recovered()

    def _failed(self, state: State, message: str, *, refusal: bool) -> None:
        with self._health_lock:
            if refusal:
                self._refusals += 1
            else:
                self._source_errors += 1
            self._last_error, self._last_error_at = message, time.time()
            changed = self._state != state
            self._state = state
            if message != self._logged_cause:  # once per distinct cause, not once per poll
                self._logged_cause = message
                logger.error("flagstone: %s; keeping bundle %s", message, self._bundle.hash)
        if changed:
            self._notify_status()

    def _recovered(self) -> None:
        self._announce_recovery(self._mark_ready())

    def _mark_ready(self) -> State:
        """Set status READY and clear the last error; returns the state it replaced."""
        with self._health_lock:
            was = self._state
            self._state, self._last_error, self._last_error_at = "READY", None, None
            self._logged_cause = None
        return was

    def _announce_recovery(self, was: State) -> None:
        if was != "READY":
            logger.warning("flagstone: recovered; bundle %s is live", self._bundle.hash)
            self._notify_status()

    def _notify_status(self) -> None:
        status = self.status
        for listener in list(self._status_listeners):
            try:
                listener(status)
            except Exception:
                logger.exception("flagstone: a status listener failed")

    def on_change(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(new_bundle, old_bundle)`` after each reload; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: _remove(self._listeners, listener)

    def on_status(self, listener: StatusListener) -> Callable[[], None]:
        """Call ``listener(status)`` whenever the state changes; returns an unsubscribe."""
        self._status_listeners.append(listener)
        return lambda: _remove(self._status_listeners, listener)

    @property
    def status(self) -> Status:
        bundle = self._bundle
        with self._health_lock:
            return Status(
                state=self._state,
                last_error=self._last_error,
                last_error_at=self._last_error_at,
                hash=bundle.hash,
                revision=bundle.revision,
                environment=bundle.environment,
                loaded_at=self._loaded_at,
                reloads=self._reloads,
                refusals=self._refusals,
                source_errors=self._source_errors,
            )

    @property
    def last_error(self) -> str | None:
        """Why the last reload failed; None once a bundle has loaded since."""
        return self._last_error

    @property
    def bundle(self) -> CompiledBundle:
        return self._bundle

    @property
    def analytics(self) -> Analytics | None:
        return self._analytics

    # --- evaluation ----------------------------------------------------------------

    def variant(
        self, flag: str, context: Mapping[str, Any], default: str | None = None
    ) -> str | None:
        if not next(self._beat):
            self._tick()
        bundle = self._bundle
        try:
            compiled = _dict_get(bundle.flags, flag)
            if compiled is None:
                compiled = bundle.flags.get(flag)  # compiles on first use
                if compiled is None:
                    self._count_failure(flag, FLAG_NOT_FOUND)
                    return default
            outcome = evaluate(bundle, compiled, context)
        except Exception:
            self._count_failure(flag, ERROR)
            return default
        analytics = self._analytics
        if analytics is not None:
            self._record(analytics, bundle, compiled, outcome, context)
        variant = outcome[0]
        return variant if variant is not None else default

    def value(self, flag: str, context: Mapping[str, Any], default: Any = None) -> Any:
        if not next(self._beat):
            self._tick()
        bundle = self._bundle
        try:
            compiled = _dict_get(bundle.flags, flag)
            if compiled is None:
                compiled = bundle.flags.get(flag)
                if compiled is None:
                    self._count_failure(flag, FLAG_NOT_FOUND)
                    return default
            outcome = evaluate(bundle, compiled, context)
            variant = outcome[0]
            value = compiled.variants[variant] if variant is not None else default
        except Exception:
            self._count_failure(flag, ERROR)
            return default
        analytics = self._analytics
        if analytics is not None:
            self._record(analytics, bundle, compiled, outcome, context)
        return value

    def enabled(self, flag: str, context: Mapping[str, Any], default: bool = False) -> bool:
        value = self.value(flag, context, _MISSING)
        return default if value is _MISSING else value is True

    def details(self, flag: str, context: Mapping[str, Any], default: Any = None) -> Resolution:
        if not next(self._beat):
            self._tick()
        bundle = self._bundle
        resolution = resolve(bundle, flag, context, default)
        analytics = self._analytics
        if analytics is not None and type(flag) is str:
            try:
                analytics.count(flag, resolution.variant, resolution.reason)
                if resolution.experiment is not None and resolution.variant is not None:
                    experiment = bundle.experiments.get(resolution.experiment)
                    if experiment is not None:
                        analytics.expose(
                            experiment, resolution.variant, context, bundle.environment
                        )
                elif resolution.reason not in _BEFORE_EXPERIMENT:
                    compiled = bundle.flags.get(flag)
                    if compiled is not None and compiled.experiment is not None:
                        _count_refusal(analytics, compiled.experiment, context, bundle)
            except Exception:
                logger.debug("flagstone: analytics failed for %r", flag, exc_info=True)
        return resolution

    def explain(self, flag: str, context: Mapping[str, Any]) -> tuple[Resolution, list[str]]:
        try:
            return explain(self._bundle, flag, context)
        except Exception as e:
            message = f"{type(e).__name__}: {e}"
            return Resolution(None, None, ERROR, message=message), [f"error: {message}"]

    def assign(self, experiment: str, context: Mapping[str, Any]) -> str | None:
        """The unit's arm, or None (not running, not in audience/traffic/layer, no consent).

        An arm returned logs an exposure (once per unit and experiment in this process).
        """
        if not next(self._beat):
            self._tick()
        bundle = self._bundle
        try:
            compiled = bundle.experiments.get(experiment)
            if compiled is None:
                return None
            arm = compiled.assign(context)[0]
        except Exception:
            return None
        analytics = self._analytics
        if analytics is not None:
            try:
                if arm is not None:
                    # A unit's repeat exposure is one lookup, here, rather than a call.
                    unit = context.get(compiled.unit)
                    if type(unit) is not str or analytics.logged.get((compiled.key, unit)) != arm:
                        analytics.expose(compiled, arm, context, bundle.environment)
                else:
                    _count_refusal(analytics, compiled, context, bundle)
            except Exception:
                logger.debug("flagstone: exposure logging failed for %r", experiment, exc_info=True)
        return arm

    def config(self, key: str, default: Any = None) -> Any:
        """A config value by dotted key (``api.timeout_ms``)."""
        try:
            node: Any = self._bundle.config
            for part in key.split("."):
                if not isinstance(node, Mapping) or part not in node:
                    return default
                node = node[part]
            return node
        except Exception:
            return default

    def _record(
        self,
        analytics: Analytics,
        bundle: CompiledBundle,
        compiled: Any,
        outcome: tuple[Any, ...],
        context: Mapping[str, Any],
    ) -> None:
        try:
            analytics.count(compiled.key, outcome[0], outcome[1])
            experiment: CompiledExperiment | None = compiled.experiment
            if experiment is not None:
                if outcome[4] is not None:  # an experiment arm was served
                    unit = context.get(experiment.unit)
                    if (
                        type(unit) is not str
                        or analytics.logged.get((experiment.key, unit)) != outcome[0]
                    ):
                        analytics.expose(experiment, outcome[0], context, bundle.environment)
                elif outcome[1] not in _BEFORE_EXPERIMENT:
                    _count_refusal(analytics, experiment, context, bundle)
        except Exception:
            logger.debug("flagstone: analytics failed for %r", compiled.key, exc_info=True)

    def _count_failure(self, flag: Any, reason: str) -> None:
        analytics = self._analytics
        if analytics is not None and type(flag) is str:
            try:
                analytics.count(flag, None, reason)
            except Exception:
                logger.debug("flagstone: analytics failed for %r", flag, exc_info=True)

    # --- lifecycle -----------------------------------------------------------------

    def flush(self) -> None:
        if self._analytics is not None:
            self._analytics.flush()

    def close(self, timeout: float = 5.0) -> None:
        """Stop reloading and flush analytics, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for close in self._closers:
            try:
                close()
            except Exception:
                logger.exception("flagstone: stopping a reload thread failed")
        self._closers.clear()
        if self._analytics is not None:
            self._analytics.close(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _count_refusal(
    analytics: Analytics,
    experiment: CompiledExperiment,
    context: Mapping[str, Any],
    bundle: CompiledBundle,
) -> None:
    """A unit the experiment left out for lacking consent is counted, never logged."""
    if experiment.consent_required and experiment.lacks_consent(context):
        analytics.refuse(experiment, context, bundle.environment)


def describe_error(error: BaseException) -> str:
    """One line for a failed fetch: ``HTTP 500 Internal Server Error``, ``timed out``, ..."""
    import http.client
    import urllib.error

    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return (
            describe_error(error.reason)
            if isinstance(error.reason, BaseException)
            else str(error.reason)
        )
    if isinstance(error, http.client.IncompleteRead):
        return f"the response was cut short ({len(error.partial)} bytes read, more expected)"
    if isinstance(error, http.client.BadStatusLine):
        return f"the server did not answer HTTP ({error!r})"
    if isinstance(error, TimeoutError):
        return "timed out"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _remove(items: list[Any], item: Any) -> None:
    with contextlib.suppress(ValueError):
        items.remove(item)


def _client_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Accept ``analytics=`` or the shorthand ``analytics_file=`` / ``sink=`` keywords."""
    options = dict(options)
    analytics = options.pop("analytics", None)
    sink: Sink | None = options.pop("sink", None)
    path = options.pop("analytics_file", None)
    pseudonymize = options.pop("pseudonymize", True)
    key = options.pop("pseudonym_key", None)
    interval = options.pop("flush_interval", 10.0)
    if analytics is None and (sink is not None or path is not None):
        analytics = Analytics(
            sink or JsonLinesSink(path),
            interval=interval,
            pseudonymize=pseudonymize,
            pseudonym_key=key,
        )
    public_key = options.pop("public_key", None)
    if options:
        raise TypeError(f"unexpected options: {', '.join(sorted(options))}")
    out: dict[str, Any] = {"analytics": analytics}
    if public_key is not None:
        out["public_key"] = public_key
    return out
