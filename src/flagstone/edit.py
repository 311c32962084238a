"""Comment-preserving YAML edits (ruamel.yaml round trip) and atomic writes.

Loading keeps comments, key order, quoting and flow/block style; dumping uses the
indentation detected in the original text, so an unchanged document dumps to the same
bytes and an edited one differs only where it was edited.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import tempfile
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from flagstone.errors import DocPath, FlagstoneError, format_path

_SEQUENCE_ITEM = re.compile(r"^( *)- ")
_MAPPING_KEY = re.compile(r"^( *)[^\s#-][^:]*:(\s|$)")
_OPENS_BLOCK = re.compile(
    r"^( *)[^\s#-][^:#]*:\s*(#.*)?$"
)  # "key:" with nothing after but a comment


@dataclass(frozen=True, slots=True)
class Indentation:
    mapping: int = 2
    sequence: int = 2
    offset: int = 0  # where "- " sits inside the sequence indentation


def detect_indentation(text: str) -> Indentation:
    """The file's own block indentation: mapping step, and where sequence dashes sit."""
    # Comments and blank lines do not show the structure: pair only content lines.
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    mapping = 0
    for previous, line in itertools.pairwise(lines):
        a, b = _OPENS_BLOCK.match(previous), _MAPPING_KEY.match(line)
        if a and b and len(b.group(1)) > len(a.group(1)):
            mapping = len(b.group(1)) - len(a.group(1))
            break
    mapping = mapping or 2
    offset = 0
    for previous, line in itertools.pairwise(lines):
        parent, item = _OPENS_BLOCK.match(previous), _SEQUENCE_ITEM.match(line)
        if parent and item:
            offset = max(0, len(item.group(1)) - len(parent.group(1)))
            break
    return Indentation(mapping=mapping, sequence=offset + 2, offset=offset)


def _yaml(indent: Indentation) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    yaml.indent(mapping=indent.mapping, sequence=indent.sequence, offset=indent.offset)
    return yaml


@dataclass
class Document:
    """A round-trip YAML document and the style to write it back in."""

    data: Any
    indentation: Indentation
    ends_with_newline: bool = True

    @classmethod
    def parse(cls, text: str) -> Document:
        indentation = detect_indentation(text)
        data = _yaml(indentation).load(text)
        return cls(
            CommentedMap() if data is None else data, indentation, text.endswith("\n") or not text
        )

    def dump(self) -> str:
        buffer = io.StringIO()
        _yaml(self.indentation).dump(self.data, buffer)
        text = buffer.getvalue()
        return text if self.ends_with_newline else text.rstrip("\n")

    def get(self, path: DocPath) -> Any:
        node = self.data
        for part in path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                raise FlagstoneError(f"{format_path(path)} does not exist") from None
        return node

    def set(self, path: DocPath, value: Any) -> None:
        """Set (or add) the value at ``path``; the parent must exist."""
        parent = self.get(path[:-1]) if len(path) > 1 else self.data
        key = path[-1]
        if isinstance(parent, CommentedMap):
            parent[key] = value
        elif isinstance(parent, CommentedSeq) and isinstance(key, int) and 0 <= key <= len(parent):
            if key == len(parent):
                parent.append(value)
            else:
                parent[key] = value
        else:
            raise FlagstoneError(
                f"cannot set {format_path(path)}: its parent is not a mapping or list"
            )

    def delete(self, path: DocPath) -> None:
        parent = self.get(path[:-1]) if len(path) > 1 else self.data
        try:
            del parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            raise FlagstoneError(f"{format_path(path)} does not exist") from None


def atomic_write(path: Path, text: str) -> None:
    """Write through a temp file in the same directory, then rename (keeps the file mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_all(changes: Sequence[tuple[Path, str]]) -> None:
    """Write several files so that a failure leaves every one of them as it was."""
    originals: list[tuple[Path, bytes | None]] = []
    try:
        for path, text in changes:
            originals.append((path, path.read_bytes() if path.exists() else None))
            atomic_write(path, text)
    except BaseException:
        for path, before in reversed(originals):
            if before is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, before.decode("utf-8"))
        raise


MISSING: Any = object()  # what get_path returns for a path that is not there


def get_path(node: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def set_path(node: Any, path: Sequence[str], value: Any, create: bool = False) -> None:
    """Set a nested mapping value; with ``create``, missing parents become mappings."""
    for part in path[:-1]:
        if part not in node or not isinstance(node[part], Mapping):
            if not create:
                return
            node[part] = CommentedMap()
        node = node[part]
    node[path[-1]] = value


def delete_path(node: Any, path: Sequence[str]) -> None:
    """Delete a nested key and any mapping the deletion leaves empty."""
    parents = []
    for part in path[:-1]:
        if not isinstance(node, Mapping) or part not in node:
            return
        parents.append((node, part))
        node = node[part]
    if isinstance(node, MutableMapping) and path[-1] in node:
        del node[path[-1]]
    for parent, part in reversed(parents):
        if (
            isinstance(parent, MutableMapping)
            and isinstance(parent[part], Mapping)
            and not parent[part]
        ):
            del parent[part]


def mapping(items: Any = (), *, flow: bool = False) -> CommentedMap:
    """A new round-trip mapping; ``flow`` writes it inline ({a: 1})."""
    node = CommentedMap(items)
    if flow:
        node.fa.set_flow_style()
    return node


def sequence(items: Any = (), *, flow: bool = False) -> CommentedSeq:
    node = CommentedSeq(items)
    if flow:
        node.fa.set_flow_style()
    return node


class DocumentSet:
    """Round-trip documents of one repository, each file read once; a missing file
    starts as an empty mapping."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.documents: dict[str, Document] = {}

    def __getitem__(self, rel: str) -> Document:
        if rel not in self.documents:
            path = self.root / rel
            self.documents[rel] = Document.parse(
                path.read_text(encoding="utf-8") if path.exists() else ""
            )
        return self.documents[rel]

    def texts(self, under: str = "") -> dict[str, str]:
        """The dumped text of every document under a folder (repository-relative)."""
        return {rel: doc.dump() for rel, doc in self.documents.items() if rel.startswith(under)}
