"""The Typer application: consoles, exit codes and command registration.

Every module in ``flagstone.cli`` registers its commands with ``@command`` when imported;
``main`` imports them all, so adding a command is adding a module. Command modules
import the core lazily inside the command so ``flagstone --help`` stays fast.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterable
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, TypeVar, overload

import typer

from flagstone.errors import FlagstoneError, Problem

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="flagstone",
    help="Feature flags, experiments and per-environment configuration as YAML in git.",
    no_args_is_help=True,
    add_completion=False,
    # A traceback that printed its locals would print the secrets in them.
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """A rich Console created on first use: importing rich costs ~30 ms that
    ``--help`` and the json/github formats never need."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


# soft_wrap: never wrap file:line lines
out: Console = _LazyConsole(soft_wrap=True, highlight=False)  # type: ignore[assignment]
err: Console = _LazyConsole(stderr=True, soft_wrap=True, highlight=False)  # type: ignore[assignment]


class ExitCode(IntEnum):
    OK = 0
    FINDINGS = 1  # invalid, drift, unauthorized
    ERROR = 2  # usage or environment; click uses 2 for usage errors too


class Format(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


class ValidateFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"
    github = "github"


def _show_version(value: bool) -> None:
    if value:
        from flagstone import __version__

        out.print(f"flagstone {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Feature flags, experiments and per-environment configuration as YAML in git."""


def exit_code_for(problems: Iterable[Problem], *, strict: bool = False) -> ExitCode:
    failing = [p for p in problems if p.is_error or strict]
    return ExitCode.FINDINGS if failing else ExitCode.OK


def fail(message: str) -> typer.Exit:
    """Print one red line to stderr; return the Exit to raise (exit code 2)."""
    from rich.text import Text

    from flagstone.secrets import redact_text

    err.print(Text.assemble(("error: ", "bold red"), redact_text(message)))
    return typer.Exit(ExitCode.ERROR)


def internal_error(exc: BaseException) -> typer.Exit:
    """An unexpected exception: one line (the traceback with FLAGSTONE_DEBUG=1), every
    secret this process has seen scrubbed from both."""
    import os
    import traceback

    from flagstone.secrets import redact_text

    if os.environ.get("FLAGSTONE_DEBUG"):
        sys.stderr.write(redact_text("".join(traceback.format_exception(exc))))
    summary = redact_text(f"{type(exc).__name__}: {exc}")
    return fail(
        f"internal error ({summary}); this is a bug in flagstone: rerun with FLAGSTONE_DEBUG=1 "
        "for the traceback and report it"
    )


@overload
def command(fn: F) -> F: ...


@overload
def command(*, name: str | None = None, group: typer.Typer | None = None) -> Callable[[F], F]: ...


def command(
    fn: F | None = None, *, name: str | None = None, group: typer.Typer | None = None
) -> F | Callable[[F], F]:
    """Register a command; an expected error becomes one red line on stderr and exit 2."""

    def register(fn: F) -> F:
        @functools.wraps(fn)  # typer still sees the options
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except FlagstoneError as e:
                raise fail(str(e)) from None
            except Exception as e:
                if type(e).__module__.startswith(("typer", "click")):
                    raise  # Exit, Abort, usage errors: the CLI framework's own
                raise internal_error(e) from None

        (group or app).command(name=name)(wrapper)
        return fn

    return register(fn) if fn is not None else register


# The order `flagstone --help` lists commands in: a user's path through the tool.
HELP_ORDER = (
    "init",
    "validate",
    "test",
    "eval",
    "build",
    "diff",
    "promote",
    "history",
    "verify",
    "edit_commands",
)


def _load_commands() -> None:
    import flagstone.cli as package

    names = [
        i.name
        for i in pkgutil.iter_modules(package.__path__)
        if i.name not in ("app", "output") and not i.name.startswith("_")
    ]
    for name in sorted(
        names, key=lambda n: (HELP_ORDER.index(n) if n in HELP_ORDER else len(HELP_ORDER), n)
    ):
        importlib.import_module(f"flagstone.cli.{name}")


def main() -> None:
    _load_commands()
    app()
