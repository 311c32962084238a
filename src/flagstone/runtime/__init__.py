"""The flagstone runtime: evaluates bundles inside applications (stdlib + small C deps)."""

from __future__ import annotations

from flagstone.runtime.client import Client, Status
from flagstone.runtime.errors import BundleError, BundleUnavailable
from flagstone.runtime.evaluate import Resolution
from flagstone.runtime.format import REASONS
from flagstone.runtime.sinks import Analytics, JsonLinesSink, MemorySink, Sink

__all__ = [
    "REASONS",
    "Analytics",
    "BundleError",
    "BundleUnavailable",
    "Client",
    "JsonLinesSink",
    "MemorySink",
    "Resolution",
    "Sink",
    "Status",
]
