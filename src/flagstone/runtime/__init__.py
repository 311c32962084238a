"""The flagstone runtime: evaluates bundles inside applications (stdlib + small C deps).

The names below load on first use (PEP 562): ``flagstone build`` reads only
``runtime.format`` and ``runtime.canonical``, and need not import the client to do so.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flagstone.runtime.client import Client, Status
    from flagstone.runtime.errors import BundleError, BundleUnavailable
    from flagstone.runtime.evaluate import Resolution
    from flagstone.runtime.format import REASONS
    from flagstone.runtime.sinks import Analytics, JsonLinesSink, MemorySink, Sink

# public name -> the module that defines it
_HOMES = {
    "REASONS": "format",
    "Analytics": "sinks",
    "BundleError": "errors",
    "BundleUnavailable": "errors",
    "Client": "client",
    "JsonLinesSink": "sinks",
    "MemorySink": "sinks",
    "Resolution": "evaluate",
    "Sink": "sinks",
    "Status": "client",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
