"""The Typer application: consoles, exit codes, formats and command registration.

Every module in ``flagstone.cli`` registers its commands with ``@command`` when imported;
``main`` imports them all, so adding a command is adding a module. Command modules
import the core lazily inside the command so ``flagstone --help`` stays fast.

Nothing a user runs ends in a Python traceback: an expected error (``FlagstoneError``)
becomes one red line and exit 2 — and, under ``--format json``, the error envelope on
stdout; a usage error does the same; anything else is reported as an internal error in
one line (``FLAGSTONE_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Iterable, Sequence
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, overload

import typer
from typer.core import TyperGroup

from flagstone.cli.entry import (
    ends_with_os_exit,
    exit_now,
    interrupt_reported,
    mark_interrupt_reported,
    report_interrupt,
    runs_one_command,
)
from flagstone.errors import FlagstoneError, Problem

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

# typer 0.28 vendors click (typer._click) and older releases use click itself: take the
# exception base from what typer raises, so both are caught.
ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)

# The --format of the command being run, so an error raised deep inside it can still be
# written as the JSON error envelope.
_current_format: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "flagstone_format", default=None
)


class ExitCode(IntEnum):
    OK = 0
    FINDINGS = 1  # invalid, drift, unauthorized, failing spec
    ERROR = 2  # usage or environment; click uses 2 for usage errors too
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, what a shell reports for a job it stopped


class TextJson(StrEnum):
    text = "text"
    json = "json"


class Format(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


class ValidateFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"
    github = "github"


def _wants_json(args: Sequence[str]) -> bool:
    """Whether a command line asks for --format json (read before click could parse it)."""
    for i, arg in enumerate(args):
        if arg in ("--format", "-f", "--output-format") and args[i + 1 : i + 2] == ["json"]:
            return True
        if arg in ("--format=json", "-fjson", "--output-format=json"):
            return True
    return False


def abandon_stdout() -> None:
    """Stdout cannot be written (closed pipe, full disk): send the rest, and the flush at
    exit, to /dev/null so Python prints no "Exception ignored" of its own."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115


def _write_json_error(doc: dict[str, Any]) -> None:
    from flagstone.report import dumps

    try:
        sys.stdout.write(dumps(doc))
        sys.stdout.flush()
    except OSError:
        abandon_stdout()


def _print_error(message: str) -> None:
    from rich.text import Text

    from flagstone.secrets import redact_text

    err.print(Text.assemble(("error: ", "bold red"), redact_text(message)))


class FlagstoneGroup(TyperGroup):
    """The root command: turns every way a run can fail into one line and an exit code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(
                args=argv,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except ClickException as e:
            if _wants_json(argv):
                from flagstone.report import usage_error_document

                _write_json_error(usage_error_document(e.format_message()))  # type: ignore[attr-defined]
                _print_error(e.format_message())  # type: ignore[attr-defined]
            else:
                e.show()  # type: ignore[attr-defined]
            code = e.exit_code  # type: ignore[attr-defined]
        except typer.Abort:
            err.print("aborted")
            code = ExitCode.FINDINGS
        except KeyboardInterrupt:
            code = report_interrupt()
        except BrokenPipeError:
            # `flagstone flag list | head`: the reader left; say nothing more.
            abandon_stdout()
            code = ExitCode.FINDINGS
        except Exception as e:
            code = internal_error(e, wants_json=_wants_json(argv))
        if code == ExitCode.INTERRUPTED and not interrupt_reported():
            # typer turns a Ctrl-C while parsing into a silent Exit(130)
            report_interrupt()
        if not standalone_mode:
            return code
        sys.exit(code or 0)


def internal_error(exc: BaseException, *, wants_json: bool | None = None) -> ExitCode:
    """The last line of defence: one line, never a traceback — unless FLAGSTONE_DEBUG=1
    asks for it — and every secret this process has seen scrubbed from both."""
    import traceback

    from flagstone.secrets import redact_text

    if os.environ.get("FLAGSTONE_DEBUG"):
        sys.stderr.write(redact_text("".join(traceback.format_exception(exc))))
    code = "environment"
    if isinstance(exc, RecursionError):
        message = "the input is nested too deeply to process; flatten it"
    elif isinstance(exc, MemoryError):
        message = "out of memory: the input is too large"
    elif isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        message = f"{where}{exc.strerror or exc}"
    else:
        code = "internal"
        message = (
            f"internal error ({type(exc).__name__}: {exc}); this is a bug in flagstone: "
            "rerun with FLAGSTONE_DEBUG=1 for the traceback and report it"
        )
    message = redact_text(message)
    if _current_format.get() == "json" if wants_json is None else wants_json:
        _write_json_error({"ok": False, "error": {"code": code, "message": message}})
    _print_error(message)
    return ExitCode.ERROR


app = typer.Typer(
    name="flagstone",
    cls=FlagstoneGroup,
    help="Feature flags, experiments and per-environment configuration as YAML in git.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion, typer's own
    context_settings={"help_option_names": ["-h", "--help"]},
    # A traceback that printed its locals would print the secrets in them.
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


class _LazyConsole:
    """A rich Console created on first use: importing rich costs ~30 ms that
    ``--help`` and the json/github formats never need."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def _options(self) -> dict[str, Any]:
        stream = sys.stderr if self._stderr else sys.stdout
        options: dict[str, Any] = {"stderr": self._stderr, "soft_wrap": True, "highlight": False}
        if not _isatty(stream):
            # Not a terminal (CI logs, pipes, files): nothing is cropped or wrapped at 80.
            options["width"] = 1_000_000
        if os.environ.get("NO_COLOR"):
            # https://no-color.org asks for no colour; rich keeps bold and dim — drop them too.
            options["color_system"] = None
        return options

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options())
        return getattr(self._console, name)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


out: Console = _LazyConsole()  # type: ignore[assignment]
err: Console = _LazyConsole(stderr=True)  # type: ignore[assignment]


def _show_version(value: bool) -> None:
    if value:
        from flagstone import __version__

        out.print(f"flagstone {__version__}")
        raise typer.Exit()


def _change_directory(value: Path | None) -> None:
    if value is None:
        return
    try:
        os.chdir(value)
    except OSError as e:
        raise typer.BadParameter(f"cannot change to {value}: {e.strerror}") from None


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    ),
    directory: Annotated[
        Path | None,
        typer.Option(
            "-C",
            callback=_change_directory,
            is_eager=True,
            metavar="DIR",
            help="Run as if flagstone was started in DIR (like git -C).",
        ),
    ] = None,
) -> None:
    """Feature flags, experiments and per-environment configuration as YAML in git."""


def exit_code_for(problems: Iterable[Problem], *, strict: bool = False) -> ExitCode:
    failing = [p for p in problems if p.is_error or strict]
    return ExitCode.FINDINGS if failing else ExitCode.OK


def report_error(error: FlagstoneError) -> None:
    """One red line on stderr, plus the JSON error envelope on stdout under --format json."""
    if _current_format.get() == "json":
        from flagstone.report import error_document

        _write_json_error(error_document(error))
    _print_error(str(error))
    details = getattr(error, "details", None)
    if details:  # a hook's or git's own output, below the one-sentence error
        from rich.text import Text

        from flagstone.secrets import redact_text

        err.print(Text(redact_text(details.rstrip()), style="dim"))


def fail(message: str) -> typer.Exit:
    """Report an expected error; return the Exit to raise (exit code 2)."""
    report_error(FlagstoneError(message))
    return typer.Exit(ExitCode.ERROR)


R = TypeVar("R")
# Rich-text renderers by result type; registering one costs no import of rich or report,
# so command modules can do it at import time and `flagstone --help` stays fast.
TEXT_RENDERERS: dict[type, Callable[[Any], None]] = {}


def text_renderer(kind: type[R]) -> Callable[[Callable[[R], None]], Callable[[R], None]]:
    """Register the rich-text renderer of a result type (see cli/output.py)."""

    def register(fn: Callable[[R], None]) -> Callable[[R], None]:
        TEXT_RENDERERS[kind] = fn
        return fn

    return register


@dataclasses.dataclass
class Outcome:
    """What a command did when no result type of its own fits: ``data`` are its JSON
    keys, ``note`` the line for people (stderr), ``shown`` what stdout gets in text."""

    data: dict[str, Any]
    note: str = ""
    shown: list[str] = dataclasses.field(default_factory=list)
    ok: bool = True

    def payload(self) -> dict[str, Any]:
        return dict(self.data)


@text_renderer(Outcome)
def _render_outcome(outcome: Outcome) -> None:
    for line in outcome.shown:
        out.print(line, markup=False)
    if outcome.note:
        err.print(outcome.note, markup=False)


def finish(result: Any, fmt: str) -> NoReturn:
    """Render a result in ``fmt`` and exit 0 when it is ok, 1 when it has findings."""
    from flagstone.cli.output import emit

    emit(result, fmt)
    raise typer.Exit(ExitCode.OK if result.ok else ExitCode.FINDINGS)


@overload
def command(fn: F) -> F: ...


@overload
def command(*, name: str | None = None, group: typer.Typer | None = None) -> Callable[[F], F]: ...


def command(
    fn: F | None = None, *, name: str | None = None, group: typer.Typer | None = None
) -> F | Callable[[F], F]:
    """Register a command; an expected error becomes one red line on stderr and exit 2
    (and the JSON error envelope on stdout when the command was asked for ``--format json``,
    read from its ``fmt`` parameter)."""

    def register(fn: F) -> F:
        @functools.wraps(fn)  # typer still sees the options
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            fmt = kwargs.get("fmt")
            token = _current_format.set(None if fmt is None else str(fmt))
            try:
                return fn(*args, **kwargs)
            except (Exception, KeyboardInterrupt) as e:
                if type(e).__module__.startswith(("typer", "click")):
                    raise  # Exit, Abort, usage errors: the CLI framework's own
                raise typer.Exit(_report_failure(e)) from None
            finally:
                _current_format.reset(token)

        (group or app).command(name=name)(wrapper)
        return fn

    return register(fn) if fn is not None else register


def _report_failure(exc: Exception | KeyboardInterrupt) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return report_interrupt()
    if isinstance(exc, FlagstoneError):
        report_error(exc)
        # a write stopped by a signal says what it kept, and exits as the shell would
        signum = getattr(exc, "signum", None)
        if signum is not None:
            mark_interrupt_reported()
            return 128 + int(signum)
        return ExitCode.ERROR
    return internal_error(exc)


def exit_code_after(exc: Exception | KeyboardInterrupt, fmt: str) -> int:
    """The exit code of a command run outside typer (cli/entry.py's build) that raised
    ``exc``, reported as ``command`` reports it: an Exit keeps its code."""
    if isinstance(exc, typer.Exit):
        return int(exc.exit_code)
    if type(exc).__module__.startswith(("typer", "click")):
        raise exc
    token = _current_format.set(fmt)
    try:
        return _report_failure(exc)
    finally:
        _current_format.reset(token)


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


# Modules of flagstone.cli that register no command.
NOT_COMMANDS = ("app", "building", "entry", "output")


def _command_modules() -> list[str]:
    import flagstone.cli as package

    return [
        i.name
        for i in pkgutil.iter_modules(package.__path__)
        if i.name not in NOT_COMMANDS and not i.name.startswith("_")
    ]


def _load_commands() -> None:
    names = _command_modules()
    for name in sorted(
        names, key=lambda n: (HELP_ORDER.index(n) if n in HELP_ORDER else len(HELP_ORDER), n)
    ):
        importlib.import_module(f"flagstone.cli.{name}")


def _invoked(argv: Sequence[str]) -> str | None:
    """The top-level command an argument list runs, if it names one plainly."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-C":
            i += 2
            continue
        if arg.startswith("-C"):  # -CDIR
            i += 1
            continue
        return None if arg.startswith("-") else arg
    return None


def command_name(info: Any) -> str:
    """The name a registered command is run by (typer's rule for an unnamed function)."""
    return info.name or info.callback.__name__.lower().replace("_", "-")  # type: ignore[no-any-return]


def _only(name: str, *, groups_too: bool = True) -> typer.Typer | None:
    """The app with just the command or group ``name``: typer builds click's tree for every
    command on each run (~0.1 s for flagstone's), though a run uses one of them."""
    import copy

    commands = [c for c in app.registered_commands if command_name(c) == name]
    groups = [g for g in app.registered_groups if g.name == name] if groups_too else []
    if not commands and not groups:
        return None  # let the full app say the command does not exist
    trimmed = copy.copy(app)
    trimmed.registered_commands = commands
    trimmed.registered_groups = groups
    return trimmed


def main() -> None:
    """Run the command line through the Typer app (the console script, cli/entry.py,
    sends here everything but a plain build)."""
    # A run reads a whole repository into long-lived objects: collecting them again and
    # again finds nothing and cost build ~15 % of its time on 6,000 flags. A larger first
    # generation keeps the collector for what a short process does create and drop.
    import gc

    gc.set_threshold(100_000, 50, 100)
    try:
        _run(sys.argv[1:])
    except KeyboardInterrupt:  # before or after typer's own handling (imports, exit)
        exit_now(report_interrupt())


def _run(argv: list[str]) -> None:
    runs_one_command()  # a command that keeps its objects ends with os._exit below
    name = _invoked(argv)
    # shell completion needs every command; so does anything else than a plain command line
    if name is None or "_FLAGSTONE_COMPLETE" in os.environ:
        _load_commands()
        app()
        return
    trimmed = _only_from_its_module(name)
    if trimmed is None:
        _load_commands()
        trimmed = _only(name)
    try:
        (trimmed or app)()
    except SystemExit as e:
        if not ends_with_os_exit():
            raise
        exit_now(e.code)


def _only_from_its_module(name: str) -> typer.Typer | None:
    """The app with just command ``name``, importing only the module named after it
    (``build`` is in flagstone.cli.build): importing all twenty command modules costs a
    run ~15 ms. Groups are left to the full load: their subcommands span modules."""
    module = name.replace("-", "_")
    if module not in _command_modules():
        return None
    importlib.import_module(f"flagstone.cli.{module}")
    return _only(name, groups_too=False)
