"""Paths inside documents: the one home for dotted keys and leaves.

Config values are addressed by dotted keys (``api.timeout_ms``); findings and secrets by
document paths (``("db", "replicas", 0)``). Every module reads them through these few
functions, so "what is a leaf" and "what does a dotted key reach" mean the same thing in
diff, history, promote, policy, validate, secrets and the CLI.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

DocPath = tuple[str | int, ...]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # what a lookup returns for a path that is not there


def split_dotted(key: str | Sequence[str]) -> tuple[str, ...]:
    return tuple(key.split(".")) if isinstance(key, str) else tuple(key)


def dotted(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path)


def get_path(node: Any, key: str | Sequence[str]) -> Any:
    """The value a dotted key (or a sequence of mapping keys) reaches, or ``MISSING``."""
    for part in split_dotted(key):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def dotted_leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(``api.timeout_ms``, 500) for every config value that is not a mapping, in file
    order; a list is one value, and so is an empty mapping below the top."""
    if not isinstance(node, Mapping) or (not node and prefix):
        if prefix:
            yield prefix, node
        return
    for key, value in node.items():
        yield from dotted_leaves(value, f"{prefix}.{key}" if prefix else str(key))


def leaves(node: Any, path: DocPath = ()) -> Iterator[tuple[DocPath, Any]]:
    """Every scalar of a document with its document path, through lists too."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaves(v, (*path, i))
    else:
        yield path, node
