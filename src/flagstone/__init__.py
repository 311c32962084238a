"""flagstone: feature flags, experiments and configuration as YAML in git.

Importing the package stays cheap: it exposes the runtime only, and the runtime
imports nothing of the CLI (typer, rich), ruamel, jsonschema, scipy or git.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from flagstone.runtime.client import Client


def __getattr__(name: str) -> Any:
    if name == "Client":
        from flagstone.runtime.client import Client

        return Client
    raise AttributeError(name)
