"""Top-level blocks of a YAML mapping file: which lines hold each key.

A flags.yaml of 3,000 flags is 3,000 top-level blocks, and finding them is a scan of the
lines. Locating a finding (load.py), reading one key's history, or promoting 500 objects
then touches only their blocks: round-trip YAML reads about 6,000 lines a second, so
parsing a whole 1 MB file to change a few objects would take seconds.

A block runs from its key's line to the last indented line before the next top-level
key; blank lines and comments at column 0 between blocks belong to neither. ``split``
refuses (returns None) any file it cannot cut safely — anchors and aliases, tabs, BOMs,
CR line endings, documents markers, flow or sequence documents, duplicate keys — and the
caller falls back to reading the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flagstone.load import NODE_PROPERTY

if TYPE_CHECKING:
    from flagstone.edit import Document

TOP_LEVEL_KEY = re.compile(
    r"""^(?:"((?:[^"\\]|\\.)*)"|'((?:[^']|'')*)'|([^\s#'"{\[\]}&*!|>%@`-][^:#]*?|-[^\s:#][^:#]*?))[ \t]*:(?:[ \t]|$)"""
)
_MARKERS = re.compile(r"\n(?:---|\.\.\.)(?=\s|\Z)")  # after a newline: a fast search


def _unsafe(text: str) -> bool:
    if "\t" in text or "\r" in text or text.startswith("\ufeff"):
        return True
    if ("\n---" in text or "\n..." in text) and _MARKERS.search(text):
        return True
    if text.startswith(("---", "...")) and _MARKERS.match("\n" + text[:4]):
        return True
    # the costly search only when one of its characters appears at all
    return any(c in text for c in "&*!") and NODE_PROPERTY.search(text) is not None


def top_level_key(line: str) -> str | None:
    """The key a column-0 ``key:`` line opens, unquoted; None for any other line."""
    m = TOP_LEVEL_KEY.match(line)
    if m is None:
        return None
    if m.group(1) is not None:
        return m.group(1).encode().decode("unicode_escape") if "\\" in m.group(1) else m.group(1)
    if m.group(2) is not None:
        return m.group(2).replace("''", "'")
    return m.group(3).rstrip()


def starts(lines: Iterable[str]) -> list[tuple[str, int]]:
    """(key, line index) of every line that opens a top-level block."""
    out = []
    for number, line in enumerate(lines):
        key = top_level_key(line) if line[:1] not in ("", " ", "#", "\n") else None
        if key is not None:
            out.append((key, number))
    return out


@dataclass(frozen=True, slots=True)
class Blocks:
    lines: list[str]  # the file's lines, line endings kept
    spans: dict[str, tuple[int, int]]  # key -> [first line, end line), 0-based

    def text(self, key: str) -> str:
        start, end = self.spans[key]
        return "".join(self.lines[start:end])

    def splice(self, replace: Mapping[str, str], append: Iterable[str] = ()) -> str:
        """The file with the blocks of ``replace``'s keys swapped for new block texts and
        ``append``'s block texts added at the end; every other byte as it was."""
        out: list[str] = []
        cut = 0
        for key, (start, end) in sorted(
            ((k, self.spans[k]) for k in replace), key=lambda item: item[1]
        ):
            out += self.lines[cut:start]
            if replace[key]:  # "" deletes the block
                out.append(_ending(replace[key]))
            cut = end
        out += self.lines[cut:]
        added = [_ending(block) for block in append]
        if added and out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        text = "".join(out + added)
        unterminated = bool(self.lines) and not self.lines[-1].endswith("\n")
        return text[:-1] if unterminated and not added and text.endswith("\n") else text


def _ending(block: str) -> str:
    return block if block.endswith("\n") else block + "\n"


def split(text: str) -> Blocks | None:
    """The blocks of a plain block-mapping file, or None when it cannot be cut safely."""
    if _unsafe(text):
        return None
    lines = text.splitlines(keepends=True)
    opened: list[tuple[str, int]] = []
    seen: set[str] = set()
    last_content = -1
    ends: dict[str, int] = {}
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or (line.startswith("#")):
            continue
        if line.startswith(" "):
            if not opened:
                return None  # indented content before any key
            last_content = number
            continue
        key = top_level_key(line)
        if key is None or key in seen:
            return None  # a flow or sequence document, or a duplicate key
        seen.add(key)
        if opened:
            ends[opened[-1][0]] = last_content + 1
        opened.append((key, number))
        last_content = number
    if opened:
        ends[opened[-1][0]] = last_content + 1
    return Blocks(lines, {key: (start, ends[key]) for key, start in opened})


@dataclass
class ObjectDocument:
    """One object's round-trip document: the block of its top-level key alone when the
    file can be cut (an edit of one flag in a 3,000-flag file parses a dozen lines), else
    the whole file. ``data`` is the mapping to edit; ``text()`` is the new file."""

    key: str
    raw: bytes | None  # the file as read; None when it does not exist
    document: Document
    cut: Blocks | None  # None: ``document`` is the whole file

    @property
    def data(self) -> Any:
        return self.document.data

    def text(self) -> str:
        if self.cut is None:
            return self.document.dump()
        block = self.document.dump() if self.document.data else ""
        if self.key in self.cut.spans:
            return self.cut.splice({self.key: block})
        return self.cut.splice({}, [block] if block else [])

    def is_empty(self) -> bool:
        """Whether the file would hold no key at all."""
        if self.cut is None:
            return not self.document.data
        return not self.document.data and set(self.cut.spans) <= {self.key}


def open_object(root: Path, rel: str, key: str, keys_in_file: Iterable[str]) -> ObjectDocument:
    """Read ``key``'s object from ``rel`` for editing. ``keys_in_file`` are the top-level
    keys the YAML parser found there: a cut that disagrees falls back to the whole file."""
    from flagstone.edit import Document, detect_indentation
    from flagstone.errors import FlagstoneError
    from flagstone.load import MAX_FILE_BYTES

    path = root / rel
    size = path.stat().st_size if path.is_file() else 0
    if size > MAX_FILE_BYTES:
        # before any parse: a round trip of a huge file costs minutes and gigabytes
        raise FlagstoneError(
            f"{rel} is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit; "
            "split the kind into a folder of files (flags/*.yaml)"
        )
    raw = path.read_bytes() if path.is_file() else None
    try:
        text = (raw or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise FlagstoneError(f"{rel} is not UTF-8: save it as UTF-8 first") from None
    found = split(text)
    if found is None or set(found.spans) != set(keys_in_file):
        return ObjectDocument(key, raw, Document.parse_bytes(raw or b"", rel), None)
    document = Document.parse(found.text(key) if key in found.spans else "")
    document.indentation = detect_indentation(text) if text else document.indentation
    return ObjectDocument(key, raw, document, found)
