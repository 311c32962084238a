"""``flagstone.Client``: evaluate a bundle inside the application, hot-reloading it.

Evaluation never raises into the app: a missing flag, a bad context or a broken bundle
returns the caller's default with a reason. A new bundle is read, verified and compiled
on a background thread, then swapped in with one reference assignment, so readers never
see a half-built bundle and the hot path takes no lock.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flagstone.runtime.canonical import bundle_hash, signed_message
from flagstone.runtime.evaluate import (
    BundleError,
    CompiledBundle,
    Resolution,
    compile_bundle,
    evaluate,
    explain,
    resolve,
    unit_string,
)
from flagstone.runtime.format import ERROR, FLAG_NOT_FOUND
from flagstone.runtime.sinks import Analytics, JsonLinesSink, Sink

logger = logging.getLogger("flagstone")
Listener = Callable[["CompiledBundle", "CompiledBundle | None"], None]
_MISSING: Any = object()


def canonical_hash(bundle: Mapping[str, Any]) -> str:
    try:
        return bundle_hash(bundle)
    except ValueError as e:
        raise BundleError(f"bundle cannot be hashed: {e}") from None


def load_bundle_bytes(
    data: bytes,
    public_key: bytes | None = None,
    previous: CompiledBundle | None = None,
    identity: Any = None,
) -> CompiledBundle:
    """Parse, check (hash, signature) and compile; raise BundleError when unusable."""
    # Building thousands of closures would trigger full collections mid-load and double
    # the reload time; collect once afterwards instead.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise BundleError(f"not valid JSON (truncated or corrupt): {e}") from None
        if not isinstance(raw, dict):
            raise BundleError("a bundle is a JSON object")
        if public_key is not None:
            verify_signature(raw, public_key)
        if identity is not None and "secrets" in raw:
            raw = _with_secrets(raw, identity)
        return compile_bundle(raw, previous)
    finally:
        if was_enabled:
            gc.enable()


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


def verify_signature(raw: Mapping[str, Any], public_key: bytes) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    signature = raw.get("signature")
    if not isinstance(signature, str):
        raise BundleError("bundle is not signed, and this client requires a signature")
    expected = canonical_hash(raw)
    if raw.get("hash") != expected:
        raise BundleError("bundle content does not match its hash (modified after it was built)")
    key = (
        load_pem_public_key(public_key)
        if public_key.lstrip().startswith(b"-----")
        else Ed25519PublicKey.from_public_bytes(public_key)
    )
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError("the public key is not an Ed25519 key")
    try:
        key.verify(base64.b64decode(signature), signed_message(expected))
    except (InvalidSignature, ValueError):
        raise BundleError("bundle signature is not valid for this public key") from None


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
        self._closers: list[Callable[[], None]] = []
        self.last_error: str | None = None

    # --- construction --------------------------------------------------------------

    @classmethod
    def from_dict(cls, bundle: Mapping[str, Any], **options: Any) -> Client:
        return cls(compile_bundle(bundle), **_client_options(options))

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        watch: bool = False,
        poll_interval: float = 0.002,
        public_key: bytes | None = None,
        identity: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> Client:
        """Load a bundle file; with ``watch=True`` reload it when it changes.

        ``identity`` (an age secret key, or a file holding one) decrypts the secrets a
        server bundle carries sealed (``build --include-secrets --recipient``) into
        ``config`` at load, so the file at rest never holds them in plain text.

        The watcher stats the path every ``poll_interval`` seconds (a few microseconds
        each), following symlinks, so in-place writes, atomic renames and Kubernetes
        ConfigMap symlink swaps are all seen within milliseconds.
        """
        path = Path(path)
        identities = load_identity(identity) if identity is not None else None
        client = cls(
            load_bundle_bytes(path.read_bytes(), public_key, identity=identities),
            public_key=public_key,
            **_client_options(options),
        )
        client._identity = identities
        if watch:
            from flagstone.runtime.reload import FileWatcher

            watcher = FileWatcher(path, client._reload_bytes, poll_interval)
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
        data = poller.fetch()
        if data is None:
            raise BundleError(f"{url} returned no bundle")
        client = cls(
            load_bundle_bytes(data, public_key), public_key=public_key, **_client_options(options)
        )
        poller.start(client._reload_bytes, poll_interval)
        client._closers.append(poller.stop)
        return client

    # --- reload --------------------------------------------------------------------

    def _reload_bytes(self, data: bytes) -> bool:
        try:
            new = load_bundle_bytes(data, self._public_key, self._bundle, self._identity)
        except BundleError as e:
            self.last_error = str(e)
            logger.error("flagstone: refused a new bundle, keeping %s: %s", self._bundle.hash, e)
            return False
        return self.swap(new)

    def swap(self, new: CompiledBundle) -> bool:
        """Make ``new`` the live bundle and notify listeners; False if it is the same."""
        old = self._bundle
        if new.hash is not None and new.hash == old.hash:
            return False
        self._bundle = new  # one reference assignment: atomic for readers
        self.last_error = None
        for listener in list(self._listeners):
            try:
                listener(new, old)
            except Exception:
                logger.exception("flagstone: a bundle listener failed")
        return True

    def on_change(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(new_bundle, old_bundle)`` after each reload; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @property
    def bundle(self) -> CompiledBundle:
        return self._bundle

    # --- evaluation ----------------------------------------------------------------

    def variant(
        self, flag: str, context: Mapping[str, Any], default: str | None = None
    ) -> str | None:
        bundle = self._bundle
        compiled = bundle.flags.get(flag)
        if compiled is None:
            return default
        try:
            outcome = evaluate(bundle, compiled, context)
        except Exception:
            return default
        if self._analytics is not None:
            self._analytics.count(flag, outcome[0], outcome[1])
        return outcome[0] if outcome[0] is not None else default

    def value(self, flag: str, context: Mapping[str, Any], default: Any = None) -> Any:
        bundle = self._bundle
        compiled = bundle.flags.get(flag)
        if compiled is None:
            return default
        try:
            variant = evaluate(bundle, compiled, context)[0]
        except Exception:
            return default
        if self._analytics is not None:
            self._analytics.count(flag, variant, "VALUE")
        return compiled.variants[variant] if variant is not None else default

    def enabled(self, flag: str, context: Mapping[str, Any], default: bool = False) -> bool:
        value = self.value(flag, context, _MISSING)
        return default if value is _MISSING else value is True

    def details(self, flag: str, context: Mapping[str, Any], default: Any = None) -> Resolution:
        resolution = resolve(self._bundle, flag, context, default)
        if self._analytics is not None and resolution.reason != FLAG_NOT_FOUND:
            self._analytics.count(flag, resolution.variant, resolution.reason)
        return resolution

    def explain(self, flag: str, context: Mapping[str, Any]) -> tuple[Resolution, list[str]]:
        try:
            return explain(self._bundle, flag, context)
        except Exception as e:
            return Resolution(None, None, ERROR, message=f"{type(e).__name__}: {e}"), [
                f"error: {e}"
            ]

    def assign(self, experiment: str, context: Mapping[str, Any]) -> str | None:
        """The unit's arm, or None (not running, not in audience/traffic/layer, no consent).

        Logs one exposure event per call that returns an arm.
        """
        bundle = self._bundle
        compiled = bundle.experiments.get(experiment)
        if compiled is None:
            return None
        try:
            arm = compiled.assign(context)[0]
        except Exception:
            return None
        if arm is not None and self._analytics is not None:
            unit = unit_string(context.get(compiled.unit)) or ""
            self._analytics.exposure(experiment, arm, unit, compiled.flag, bundle.environment)
        return arm

    def config(self, key: str, default: Any = None) -> Any:
        """A config value by dotted key (``api.timeout_ms``)."""
        node: Any = self._bundle.config
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def flush(self) -> None:
        if self._analytics is not None:
            self._analytics.flush()

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()
        if self._analytics is not None:
            self._analytics.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


__all__ = ["BundleError", "Client", "Resolution"]
