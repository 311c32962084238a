"""Read a flagstone repository into the model, fast, and find positions only when needed.

Reading goes through yaml-rs, a YAML 1.2 parser (``on``/``off`` stay strings, duplicate
keys are rejected, alias expansion is bounded) that reads the 2,000-flag workload about
80x faster than ruamel.yaml's round-trip mode. Positions (``file:line:col``) come from a
second, slower read of just the files that have findings (``attach_positions``); edits
use ruamel.yaml's round trip (``edit.py``) so comments survive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml_rs

from flagstone.errors import DocPath, LoadError, Problem, RepositoryNotFound
from flagstone.model import (
    ENVIRONMENTS_DIR,
    KEYED_KINDS,
    SETTINGS_FILE,
    YAML_SUFFIXES,
    Config,
    ConfigSchema,
    Environment,
    Experiment,
    Flag,
    Kind,
    KindLayout,
    Repository,
    Segment,
    Settings,
    check_environments,
    classify,
)
from flagstone.secrets import SECRETS_FILE, secrets_of

MAX_FILE_BYTES = 16 * 1024 * 1024
# Problems that mean a file could not be read at all: its objects are missing from the model.
UNREADABLE = frozenset(
    {
        "file-too-large",
        "encoding",
        "yaml-syntax",
        "duplicate-key",
        "alias-bomb",
        "multiple-documents",
        "not-a-mapping",
        "layout",
        "symlink",
    }
)
# Real configurations rarely use aliases; a "billion laughs" file hits this in milliseconds.
ALIAS_LIMITS = yaml_rs.AliasLimits(max_total_replayed_events=200_000, max_replay_stack_depth=32)

NODE_PROPERTY = re.compile(r"(?:^|[\s\[{,])[&*!][^\s]", re.M)  # anchors, aliases, tags
_POSITION = re.compile(r"line (\d+), column (\d+)")
_DOC_MARKER = re.compile(r"^---(?:\s|$)", re.M)
_ALIAS = re.compile(r"(?<![\w])\*[^\s,\[\]{}]+")


def find_root(start: Path) -> Path:
    """Walk up from ``start`` to the directory holding flagstone.yaml, as git does for .git."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / SETTINGS_FILE).is_file():
            return candidate
    raise RepositoryNotFound(
        f"no {SETTINGS_FILE} in {start} or any parent directory; "
        "run `flagstone init` to create a flagstone repository here"
    )


# --- parsing -------------------------------------------------------------------------


def too_large(file: str, size: int) -> Problem:
    return Problem(
        file,
        0,
        0,
        f"file is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit",
        "file-too-large",
        hint="split the kind into a folder of files (flags/*.yaml)",
    )


def refused_symlink(file: str, target: str) -> Problem:
    return Problem(
        file,
        1,
        1,
        f"symlink to {target!r} points outside {ENVIRONMENTS_DIR}/; flagstone follows "
        f"symlinks only between files inside {ENVIRONMENTS_DIR}/",
        "symlink",
        hint="copy the file instead of linking to it",
    )


def refused_folder_link(folder: str) -> Problem:
    return Problem(
        folder,
        1,
        1,
        f"{folder} is a symlink to a folder; flagstone does not follow folder links "
        "(git stores them as links, not as the folder's files)",
        "symlink",
        hint="make it a real folder",
    )


def parse_yaml(content: bytes | str, file: str) -> Any:
    """Parse one YAML 1.2 document; raise ``LoadError`` with its position and a hint."""
    if isinstance(content, bytes):
        if len(content) > MAX_FILE_BYTES:
            raise LoadError(too_large(file, len(content)))
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as e:
            line, col = _line_col(content, e.start)
            raise LoadError(
                Problem(
                    file,
                    line,
                    col,
                    f"not UTF-8: byte 0x{content[e.start]:02x} cannot be decoded",
                    "encoding",
                    hint="save the file as UTF-8",
                )
            ) from None
    else:
        text = content
    text = text.removeprefix("\ufeff")
    try:
        data = _loads(text)
    except yaml_rs.YAMLDecodeError as e:
        raise LoadError(_decode_problem(str(e), text, file)) from None
    if isinstance(data, list) and _is_multi_document(text):
        line = _nth_doc_marker_line(text)
        raise LoadError(
            Problem(
                file,
                line,
                1,
                "more than one YAML document in the file",
                "multiple-documents",
                hint="keep one document per file: remove the '---' separator",
            )
        )
    return data


def _loads(text: str) -> Any:
    return yaml_rs.loads(text, parse_datetime=False, alias_limits=ALIAS_LIMITS)


def parse_mapping_file(content: bytes | str, file: str, cache: BlockCache) -> Any:
    """``parse_yaml(content, file)``, parsing only the entries ``cache`` has not met in
    the files read before: the same value, or the same error at the same position."""
    if isinstance(content, bytes) and len(content) <= MAX_FILE_BYTES:
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        data = cache.parse(text, _loads) if text is not None else None
        if data is not None:
            return data
    return parse_yaml(content, file)


def _decode_problem(message: str, text: str, file: str) -> Problem:
    first, _, rest = message.partition("\n")
    m = _POSITION.search(first)
    if m:
        reason = rest.strip().splitlines()[-1] if rest.strip() else first
        line, col = int(m.group(1)), int(m.group(2))
        hint = (
            "indent with spaces: YAML does not allow tabs in indentation"
            if "tab" in reason
            else "fix the YAML syntax at this position"
        )
        return Problem(file, line, col, f"YAML syntax error: {reason}", "yaml-syntax", hint=hint)
    if first.startswith("duplicate mapping key"):
        key = first.split(":", 1)[1].strip().strip("'\"")
        line, col = _find_duplicate_key(text, key)
        return Problem(
            file,
            line,
            col,
            f"duplicate key {key!r}",
            "duplicate-key",
            hint="a key may appear once per mapping: remove or rename one of them",
        )
    if "alias" in first:
        m2 = _ALIAS.search(text)
        line, col = _line_col(text, m2.start()) if m2 else (1, 1)
        return Problem(
            file,
            line,
            col,
            f"YAML aliases expand beyond the safe bound ({first})",
            "alias-bomb",
            hint="write the values out instead of nesting aliases",
        )
    return Problem(file, 1, 1, f"cannot read YAML: {first}", "yaml-syntax")


def _is_multi_document(text: str) -> bool:
    return len(_DOC_MARKER.findall(text)) >= 1 and _nth_doc_marker_line(text) > 0


def _nth_doc_marker_line(text: str) -> int:
    """Line of the marker that starts a second document, or 0 when there is none."""
    seen_content = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if _DOC_MARKER.match(line):
            if seen_content:
                return number
            seen_content = True  # a leading '---' starts the first document
            continue
        if stripped and not stripped.startswith("#"):
            seen_content = True
    return 0


def _line_col(content: bytes | str, offset: int) -> tuple[int, int]:
    before = content[:offset]
    nl = b"\n" if isinstance(before, bytes) else "\n"
    line = before.count(nl) + 1  # type: ignore[arg-type]
    col = offset - (before.rfind(nl) + 1) + 1  # type: ignore[arg-type]
    return line, col


def _find_duplicate_key(text: str, key: str) -> tuple[int, int]:
    """Position of the second occurrence of ``key`` in one mapping."""
    try:
        root = _compose(text)
    except Exception:
        return 1, 1
    stack = [root]
    while stack:
        node = stack.pop()
        if node.id == "mapping":
            seen = set()
            for k, v in node.value:
                if k.id == "scalar":
                    if k.value == key and k.value in seen:
                        return k.start_mark.line + 1, k.start_mark.column + 1
                    seen.add(k.value)
                stack.append(v)
        elif node.id == "sequence":
            stack.extend(node.value)
    return 1, 1


# --- each distinct entry parsed once ---------------------------------------------------

# Where a piece starts, after the newline that ends the one before: a line at column 0 (a
# top-level key, or a line to refuse), or a line indented by two spaces that may open an
# entry of its block's mapping (not a comment, nor a sequence's item: "- ").
_PIECE = re.compile(r"\n(?=[^ \n#]|  (?:[^ \n#-]|-[^ \n]))")
_BLANK_OR_COMMENTS = re.compile(r"(?:\n[ ]*(?:#[^\n]*)?)*")  # lines, each after its newline
_ONE_SPACE = re.compile(r"\n [^ \n#]")
# A block scalar with no content line before the next piece or the end: the parser reads
# it as "" before a line and as "\n" at the end of the text, so its value hangs on what
# follows its piece.
_EMPTY_BLOCK_SCALAR = re.compile(
    r"[|>][0-9+-]*[ ]*(?:#[^\n]*)?\n(?:[ ]*(?:#[^\n]*)?\n)*(?:[^ \n#]|  [^ \n#]|\Z)"
)
_HEADER_ONLY = re.compile(r"[ ]*(?:#[^\n]*)?(?:\n[ ]*(?:#[^\n]*)?)*")  # after `key:`


class BlockCache:
    """What each entry of a block-mapping file parses to, kept across the files of one load
    of a repository so that an entry is parsed once however often it is written.

    Much of a repository repeats itself: a segment written alike in three environments,
    flags that differ between environments only in their rollout, the same owner and
    variants under many flags. ``parse`` cuts a file into pieces at every line that opens a
    top-level key and at every line indented by two spaces that may open an entry of its
    mapping, then parses, in one parser call, a document made of every top-level key's
    line and the entries not met before (once each); an entry met before shares its value.

    An entry's value depends on its text alone: no anchor, alias or tag reaches across
    entries (files with them are refused), and every key of that document must come out
    exactly as the cut read it, in order and in number, so a piece the cut misread (a
    quoted or flow scalar running onto a line that looks like a key, a key the parser
    resolves to a number) never enters the cache and the file is parsed whole instead.
    """

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, Any]] = {}  # an entry's text: its key and value

    def parse(self, text: str, loads: Callable[[str], Any]) -> dict[str, Any] | None:
        """The mapping ``loads(text)`` returns, or None where only a parse of the whole
        text can say what it holds (its value, or the error and its position)."""
        if "\t" in text or "\r" in text or text.startswith("\ufeff") or not text.endswith("\n"):
            return None
        if any(c in text for c in "&*!") and NODE_PROPERTY.search(text) is not None:
            return None  # an anchor, alias or tag: pieces that depend on one another
        # Each piece stands for its text and the newline after it (the split drops it).
        pieces = _PIECE.split("\n" + text[:-1])
        if (
            len(pieces) < 2
            or pieces[1][0] == " "
            or _BLANK_OR_COMMENTS.fullmatch(pieces[0]) is None
        ):
            return None
        del pieces[0]
        entries = self.entries
        fresh: set[str] = set()
        add = fresh.add
        # every key's line, and each entry not parsed before (the first time it appears)
        document = [p for p in pieces if p[0] != " " or not (p in entries or p in fresh or add(p))]
        source = "\n".join(document) + "\n"
        if _ONE_SPACE.search(source) is not None:
            return None  # a line indented by one space: which mapping it ends is not ours to say
        if ("|" in source or ">" in source) and _EMPTY_BLOCK_SCALAR.search(source) is not None:
            return None
        try:
            parsed = loads(source)
        except Exception:
            return None
        if type(parsed) is not dict:
            return None
        learned: dict[str, tuple[str, Any]] = {}
        keys = iter(parsed.items())
        items: Any = iter(())
        try:
            # Each key must come out of the line that opens its piece, written plain: the
            # cut counts as a key every line at column 0 or 2 that can hold one, so a key
            # the parser read elsewhere (in a scalar running over lines) upsets the count.
            for piece in document:
                if piece[0] != " ":
                    if next(items, None) is not None:
                        return None  # more entries came out than were cut
                    key, value = next(keys)
                    if type(key) is not str or not piece.startswith(key):
                        return None
                    end = len(key)
                    if not piece.startswith(":", end):
                        return None
                    opens = len(piece) == end + 1 or _HEADER_ONLY.fullmatch(piece, end + 1)
                    items = iter(value.items()) if opens and type(value) is dict else iter(())
                    continue
                key, value = next(items)
                if type(key) is not str or not piece.startswith(key, 2):
                    return None
                if not piece.startswith(":", len(key) + 2):
                    return None
                learned[piece] = (key, value)
        except StopIteration:
            return None  # fewer keys came out than were cut
        if next(items, None) is not None or next(keys, None) is not None:
            return None
        entries.update(learned)
        get = entries.__getitem__
        tops = [i for i, p in enumerate(pieces) if p[0] != " "]
        tops.append(len(pieces))
        out: dict[str, Any] = {}
        for (key, value), start, end in zip(parsed.items(), tops, tops[1:], strict=False):
            if end == start + 1:
                out[key] = value  # a key with no entries cut from its block
                continue
            top = pieces[start]
            if len(top) != len(key) + 1 and not _HEADER_ONLY.fullmatch(top, len(key) + 1):
                return None  # a value on the key's line, then indented entries
            block = dict(map(get, pieces[start + 1 : end]))
            if len(block) != end - start - 1:
                return None  # a key repeated in one mapping: the parser's error to report
            out[key] = block
        return out


# --- positions -----------------------------------------------------------------------


def _compose(text: str) -> Any:
    from ruamel.yaml import YAML

    # The safe loader's compose uses the C parser when present: nodes with marks, no
    # construction; a few times faster than the round-trip loader, and enough for positions.
    return YAML(typ="safe").compose(text)


def locate(root_node: Any, path: DocPath) -> tuple[int, int]:
    """1-based line and column of ``path`` in a composed document.

    Points at the value when it is a scalar, else at its key, so that a block value
    reads as "the key that holds it". Walks as far as the path exists.
    """
    node = root_node
    position = (1, 1) if node is None else (node.start_mark.line + 1, node.start_mark.column + 1)
    for part in path:
        if node is None:
            break
        if node.id == "mapping":
            for k, v in node.value:
                if k.id == "scalar" and k.value == str(part):
                    target = v if v.id == "scalar" else k
                    position = (target.start_mark.line + 1, target.start_mark.column + 1)
                    node = v
                    break
            else:
                break
        elif node.id == "sequence" and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            position = (node.start_mark.line + 1, node.start_mark.column + 1)
        else:
            break
    return position


def attach_positions(
    problems: Iterable[Problem], read_text: Callable[[str], str | None]
) -> list[Problem]:
    """Fill in line:col for problems that only know their document path.

    Files without findings are never re-read. In a file with findings, only the
    top-level block each finding sits in (one flag, say: a few dozen lines) is composed,
    so one typo in a 2,000-flag file costs milliseconds, not a second or two for the
    whole file; the whole file is composed when a block cannot stand alone.
    ``read_text`` returns a file's text by repository-relative path.
    """
    problems = list(problems)
    locators: dict[str, _Locator | None] = {}
    out = []
    for p in problems:
        if p.line == 0 and p.path:
            if p.file not in locators:
                text = read_text(p.file)
                locators[p.file] = _Locator(text) if text is not None else None
            locator = locators[p.file]
            line, col = locator.locate(p.path) if locator is not None else (1, 1)
            p = replace(p, line=line, col=col)
        elif p.line == 0:
            p = replace(p, line=1, col=1)
        out.append(p)
    return sorted(out)


_TOP_LEVEL_KEY = re.compile(
    r"""^(?:"((?:[^"\\]|\\.)*)"|'((?:[^']|'')*)'|([^\s#'"{\[\]}&*!|>%@`-][^:#]*?|-[^\s:#][^:#]*?))[ \t]*:(?:[ \t]|$)"""
)


class _Locator:
    """Positions of document paths in one file, composing as little as possible."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.blocks: dict[
            str, tuple[int, int]
        ] = {}  # top-level key -> (first line, end line), 0-based
        starts: list[tuple[str, int]] = []
        for number, line in enumerate(self.lines):
            m = _TOP_LEVEL_KEY.match(line)
            if m:
                key = (
                    m.group(1)
                    if m.group(1) is not None
                    else (
                        m.group(2).replace("''", "'")
                        if m.group(2) is not None
                        else m.group(3).rstrip()
                    )
                )
                starts.append((key, number))
        for i, (key, start) in enumerate(starts):
            end = starts[i + 1][1] if i + 1 < len(starts) else len(self.lines)
            self.blocks.setdefault(key, (start, end))
        self._trees: dict[str, Any] = {}
        self._whole: Any = _MISSING

    def locate(self, path: DocPath) -> tuple[int, int]:
        block = self.blocks.get(str(path[0])) if path else None
        if block is not None:
            tree = self._block_tree(str(path[0]), *block)
            if tree is not None:
                line, col = locate(tree, path)
                return line + block[0], col
        whole = self._whole_tree()
        return locate(whole, path) if whole is not None else (1, 1)

    def _block_tree(self, key: str, start: int, end: int) -> Any:
        if key not in self._trees:
            try:
                self._trees[key] = _compose("".join(self.lines[start:end]))
            except Exception:  # an alias to another block, say: compose the whole file instead
                self._trees[key] = None
        return self._trees[key]

    def _whole_tree(self) -> Any:
        if self._whole is _MISSING:
            try:
                self._whole = _compose(self.text)
            except Exception:
                self._whole = None
        return self._whole


_MISSING: Any = object()


# --- repository ------------------------------------------------------------------------


def load_settings(content: bytes | str, file: str = SETTINGS_FILE) -> Settings:
    data = parse_yaml(content, file)
    if not isinstance(data, dict):
        raise LoadError(
            Problem(
                file,
                1,
                1,
                "flagstone.yaml must be a mapping of settings",
                "settings",
                hint="see `flagstone init` for an example",
            )
        )
    envs = data.get("environments")
    if not isinstance(envs, list) or not envs or not all(isinstance(e, str) for e in envs):
        raise LoadError(
            Problem(
                file,
                1,
                1,
                "flagstone.yaml needs `environments:`, a list of environment names in promotion order",
                "settings",
                hint="add e.g. `environments: [dev, staging, prod]`",
            )
        )
    return Settings(environments=tuple(envs), raw=data, file=file)


def read_environment(
    name: str, files: Mapping[str, bytes | Problem], cache: BlockCache | None = None
) -> tuple[Environment, list[Problem]]:
    """Build one environment from its files (repository-relative path -> content, or the
    Problem a reader met instead: a symlink leaving the repository, an oversized file).

    The same function serves the working tree and git revisions (``gitio`` hands it blobs).
    ``cache``, shared by the environments of one repository, parses an entry written
    alike in several files once; without one, each file is parsed whole.
    """
    problems: list[Problem] = []
    base = f"{ENVIRONMENTS_DIR}/{name}/"
    keyed: dict[Kind, dict[str, Any]] = {k: {} for k in KEYED_KINDS}
    layout: dict[Kind, KindLayout] = {k: "absent" for k in (*KEYED_KINDS, "config")}
    config: Config | None = None
    read: list[str] = []
    secret_values: dict[str, Any] | None = None
    for rel in sorted(files):
        if rel.startswith(base) and rel.endswith("/") and isinstance(files[rel], Problem):
            problems.append(files[rel])  # type: ignore[arg-type]  # a refused folder link
            continue
        if not rel.startswith(base):
            continue
        if rel == base + SECRETS_FILE:
            read.append(rel)
            secrets_content = files[rel]
            if isinstance(secrets_content, Problem):
                problems.append(secrets_content)
            else:
                secret_values = _read_secrets_file(secrets_content, rel, problems)
            continue
        found = classify(rel, name)
        if found is None:
            continue  # other files (README.md, specs) are not ours to read here
        kind, this_layout = found
        if layout[kind] not in ("absent", this_layout):
            problems.append(
                Problem(
                    rel,
                    1,
                    1,
                    f"{kind} is both a file and a folder in {name}",
                    "layout",
                    hint=f"keep either {kind}.yaml or {kind}/, not both",
                )
            )
        layout[kind] = this_layout
        read.append(rel)
        content = files[rel]
        if isinstance(content, Problem):
            problems.append(content)
            continue
        try:
            data = (
                parse_yaml(content, rel)
                if cache is None
                else parse_mapping_file(content, rel, cache)
            )
        except LoadError as e:
            problems.append(e.problem)
            continue
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.append(
                Problem(
                    rel,
                    1,
                    1,
                    f"expected a mapping of {kind} by key, found a {_yaml_type(data)}",
                    "not-a-mapping",
                    path=(),
                )
            )
            continue
        if kind == "config":
            if this_layout == "folder":
                problems.append(
                    Problem(rel, 1, 1, "config must be one file, config.yaml", "layout")
                )
                continue
            config = Config(values=data, file=rel)
            continue
        bucket = keyed[kind]
        for key, raw in data.items():
            if key in bucket:
                first = bucket[key][1]
                problems.append(
                    Problem(
                        rel,
                        0,
                        0,
                        f"{kind[:-1]} {key!r} is already defined in {first}",
                        "duplicate-definition",
                        path=(key,),
                        hint="define each key once per environment",
                    )
                )
                continue
            bucket[key] = (raw, rel)
    if secret_values:
        merged = _merge_secrets(dict(config.values) if config else {}, secret_values)
        config = Config(values=merged, file=config.file if config else base + "config.yaml")
    env = Environment(
        name=name,
        flags={k: Flag(k, raw, f) for k, (raw, f) in keyed["flags"].items()},
        segments={k: Segment(k, raw, f) for k, (raw, f) in keyed["segments"].items()},
        experiments={k: Experiment(k, raw, f) for k, (raw, f) in keyed["experiments"].items()},
        config=config,
        layout=layout,
        files=tuple(read),
        secret_values=secret_values,
    )
    return env, problems


def _read_secrets_file(content: bytes, rel: str, problems: list[Problem]) -> dict[str, Any] | None:
    """The values of secrets.sops.yaml (still encrypted) without the ``sops:`` block."""
    try:
        data = parse_yaml(content, rel)
    except LoadError as e:
        problems.append(e.problem)
        return None
    if data is None:
        return None
    if not isinstance(data, dict):
        problems.append(
            Problem(
                rel,
                1,
                1,
                f"expected a mapping of secrets, found a {_yaml_type(data)}",
                "not-a-mapping",
            )
        )
        return None
    if not isinstance(data.get("sops"), dict):
        problems.append(
            Problem(
                rel,
                1,
                1,
                f"{rel} has no sops: metadata: its values are not encrypted",
                "secrets-not-encrypted",
                hint="write secrets with `flagstone secret set`, never by hand",
            )
        )
        return None
    return {k: v for k, v in data.items() if k != "sops"}


def _merge_secrets(config: dict[str, Any], secrets: Mapping[str, Any]) -> dict[str, Any]:
    """The config view: config.yaml's values with the secrets file's merged in by key
    (a key in both keeps the secret; validate reports the clash)."""
    out = dict(config)
    for key, value in secrets.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge_secrets(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _yaml_type(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), "scalar"
    )


def environment_files(root: Path, name: str) -> dict[str, bytes | Problem]:
    """The YAML files of one environment folder in the working tree.

    As ``gitio.tree_files`` does for a revision: a file symlink is followed while it stays
    inside ``environments/`` and refused when it points elsewhere (a folder symlink is
    refused: git stores it as a link); an oversized file is not read.
    """
    folder = root / ENVIRONMENTS_DIR / name
    out: dict[str, bytes | Problem] = {}
    base = f"{ENVIRONMENTS_DIR}/{name}"
    if folder.is_symlink():
        return {f"{base}/": refused_folder_link(f"{base}/")}
    if not folder.is_dir():
        return out
    inside = (root / ENVIRONMENTS_DIR).resolve()
    for path in sorted(folder.iterdir()):
        if path.suffix in YAML_SUFFIXES and (path.is_file() or path.is_symlink()):
            out[f"{base}/{path.name}"] = _read_worktree_file(path, f"{base}/{path.name}", inside)
        elif path.is_dir() and path.name in KEYED_KINDS:
            if path.is_symlink():
                out[f"{base}/{path.name}/"] = refused_folder_link(f"{base}/{path.name}/")
                continue
            for child in sorted(path.iterdir()):
                if child.suffix in YAML_SUFFIXES and (child.is_file() or child.is_symlink()):
                    rel = f"{base}/{path.name}/{child.name}"
                    out[rel] = _read_worktree_file(child, rel, inside)
    return out


def _read_worktree_file(path: Path, rel: str, inside: Path) -> bytes | Problem:
    if path.is_symlink():
        target = str(path.readlink())
        if not path.resolve().is_relative_to(inside):
            return refused_symlink(rel, target)
        if not path.is_file():
            return Problem(rel, 1, 1, f"symlink to {target!r} is not a file", "symlink")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        return too_large(rel, size)
    return path.read_bytes()


def load_repository(
    root: Path, envs: Iterable[str] | None = None
) -> tuple[Repository, list[Problem]]:
    """Read settings and environments from the working tree.

    Raises ``LoadError`` only for an unreadable flagstone.yaml; every other file's
    problems come back as findings so that one run reports them all.
    """
    return assemble_worktree(read_worktree(root, envs))


@dataclass(frozen=True, slots=True)
class WorktreeFiles:
    """A working tree's repository files as read, before any is parsed: what
    ``assemble_worktree`` builds the same repository from, in any process."""

    root: Path
    settings: Settings
    settings_bytes: bytes
    environments: dict[str, tuple[dict[str, bytes | Problem], bool]]  # files, folder exists
    others: dict[str, bytes | None]  # the config schema, by its path


def read_worktree(root: Path, envs: Iterable[str] | None = None) -> WorktreeFiles:
    """The files ``load_repository`` reads (settings parsed: they say which files)."""
    settings_path = root / SETTINGS_FILE
    try:
        settings_bytes = settings_path.read_bytes()
    except FileNotFoundError:
        raise RepositoryNotFound(
            f"no {SETTINGS_FILE} in {root}; run `flagstone init` to create one"
        ) from None
    settings = load_settings(settings_bytes)
    wanted = list(envs) if envs is not None else list(settings.environments)
    check_environments(wanted, settings.environments)
    environments = {
        name: (environment_files(root, name), (root / ENVIRONMENTS_DIR / name).is_dir())
        for name in settings.environments
        if name in wanted
    }
    others = {}
    if settings.config_schema is not None:
        path = root / settings.config_schema
        try:
            others[settings.config_schema] = path.read_bytes() if path.is_file() else None
        except OSError:
            others[settings.config_schema] = None
    return WorktreeFiles(root, settings, settings_bytes, environments, others)


def assemble_worktree(files: WorktreeFiles) -> tuple[Repository, list[Problem]]:
    return assemble_repository(
        files.root,
        files.settings,
        files.settings_bytes,
        list(files.environments),
        files.environments.__getitem__,
        files.others.get,
    )


def load_revision(
    root: Path, rev: str, envs: Iterable[str] | None = None
) -> tuple[Repository, list[Problem]]:
    """The repository as it was at a git revision, read from git objects alone: its
    settings, environments and config schema, nothing checked out."""
    from flagstone import gitio

    sha = gitio.resolve(root, rev)
    settings_bytes = gitio.show(root, sha, SETTINGS_FILE)
    if settings_bytes is None:
        raise RepositoryNotFound(f"no {SETTINGS_FILE} at {rev}: pick a later revision")
    settings = load_settings(settings_bytes)

    def env_files(name: str) -> tuple[dict[str, bytes | Problem], bool]:
        files = gitio.tree_files(root, sha, f"{ENVIRONMENTS_DIR}/{name}")
        return files, bool(files)  # git keeps no empty folders

    return assemble_repository(
        root, settings, settings_bytes, envs, env_files, lambda rel: gitio.show(root, sha, rel)
    )


def assemble_repository(
    root: Path,
    settings: Settings,
    settings_bytes: bytes,
    envs: Iterable[str] | None,
    env_files: Callable[[str], tuple[dict[str, bytes | Problem], bool]],
    read: Callable[[str], bytes | None],
) -> tuple[Repository, list[Problem]]:
    """One repository from its files, wherever they come from (the tree or a revision)."""
    wanted = list(envs) if envs is not None else list(settings.environments)
    check_environments(wanted, settings.environments)
    problems: list[Problem] = []
    environments: dict[str, Environment] = {}
    sources: dict[str, bytes | Problem] = {SETTINGS_FILE: settings_bytes}
    # What environments write alike is parsed once; a file read alone gains little from
    # the cut (its own repeated entries) and loses most where nothing repeats.
    cache = BlockCache() if len(set(wanted) & set(settings.environments)) > 1 else None
    for name in settings.environments:
        if name not in wanted:
            continue
        files, present = env_files(name)
        env, found = read_environment(name, files, cache)
        environments[name] = replace(env, present=present) if not present else env
        sources.update(files)
        problems.extend(found)
    schema = None
    if settings.config_schema is not None:
        content = read(settings.config_schema)
        schema = read_config_schema(settings.config_schema, content)
        if content is not None:
            sources[settings.config_schema] = content
    secrets = secrets_of(
        schema.data if schema is not None else None,
        [e.config.values for e in environments.values() if e.config is not None],
        [e.secret_values for e in environments.values() if e.secret_values],
    )
    repo = Repository(
        root=root,
        settings=settings,
        environments=environments,
        secrets=secrets,
        config_schema=schema,
        sources=sources,
    )
    return repo, problems


def read_config_schema(name: str, content: bytes | None) -> ConfigSchema:
    """The app's config schema from its bytes (JSON, or YAML for a .yaml/.yml name)."""
    import json

    if content is None:
        return ConfigSchema(name, None, "does not exist")
    try:
        data = (
            json.loads(content) if not name.endswith(YAML_SUFFIXES) else parse_yaml(content, name)
        )
    except LoadError as e:
        return ConfigSchema(name, None, f"cannot be read: {e.problem.message}")
    except ValueError as e:
        return ConfigSchema(name, None, f"is not valid JSON: {e}")
    if not isinstance(data, Mapping):
        return ConfigSchema(name, None, "is not a JSON Schema (expected an object)")
    return ConfigSchema(name, data)


def app_schema(root: Path, settings: Settings) -> Mapping[str, Any] | None:
    """The app's config schema in the working tree, or None when there is none usable."""
    name = settings.config_schema
    if name is None:
        return None
    path = root / name
    try:
        content = path.read_bytes() if path.is_file() else None
    except OSError:
        content = None
    return read_config_schema(name, content).data


def read_worktree_text(root: Path) -> Callable[[str], str | None]:
    def read(rel: str) -> str | None:
        try:
            return (root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    return read
