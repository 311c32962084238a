"""Findings and failures.

Core functions return ``list[Problem]`` for findings and raise a ``FlagstoneError``
only when they cannot go on; the CLI turns both into output at the very edge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal

Severity = Literal["error", "warning"]
DocPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    file: str  # repository-relative, forward slashes
    line: int  # 1-based; 0 when the finding is about the file as a whole
    col: int  # 1-based
    message: str = field(compare=False)
    code: str = field(compare=False)  # stable id: "schema", "unknown-segment", ...
    severity: Severity = field(default="error", compare=False)
    path: DocPath = field(default=(), compare=False)  # ("new-checkout", "rules", 0, "serve")
    hint: str | None = field(default=None, compare=False)  # what to do about it

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message} [{self.code}]"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def format_path(path: DocPath) -> str:
    """Render a document path the way users write it: ``new-checkout.rules[0].serve``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


class FlagstoneError(Exception):
    """An expected failure the user can act on: one plain sentence, exit code 2.

    ``code`` is the stable id that ``--format json`` reports (``{"ok": false, "error":
    {"code": ...}}``); a subclass gets one from its name (``GitError`` → ``git``)
    unless it sets its own.
    """

    code: ClassVar[str] = "error"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            words = re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__).lower()
            cls.code = words.removesuffix("-error") or "error"


class UsageError(FlagstoneError):
    """The command line asks for something that cannot be: exit 2, like click's usage errors."""

    code = "usage"


class UnknownEnvironment(UsageError):
    code = "unknown-environment"


class RepositoryNotFound(FlagstoneError):
    pass


class LoadError(FlagstoneError):
    """A file that cannot be read at all; carries the problem for file:line:col output."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class GitError(FlagstoneError):
    """A git command failed; ``details`` holds git's (and its hooks') output, shown below
    the one-sentence message."""

    def __init__(self, message: str, *, details: str | None = None) -> None:
        super().__init__(message)
        self.details = details


class ConflictError(FlagstoneError):
    """A write that would clobber someone's work (dirty tree, moved target, existing file)."""
