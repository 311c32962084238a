"""The ``flagstone`` console script.

A plain ``flagstone build ...`` (only the options build documents, each written out) runs
without importing typer and rich, which cost a build about a sixth of its time; any other
command line goes to the Typer app (cli/app.py) untouched, so help, usage errors and every
other command read and fail exactly as there. Both paths run the same ``building.build``
and report its result and failures through the same functions.

What a run holds until it ends (``keep_until_exit``) lives here, typer-free, for both.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from flagstone.cli.building import BuildOptions

# build's options as cli/build.py declares them: the BuildOptions field each one sets.
BUILD_OPTIONS = {
    "--env": "envs",
    "-e": "envs",
    "--all": "all_envs",
    "--out": "out_dir",
    "-o": "out_dir",
    "--format": "bundle_format",
    "-f": "bundle_format",
    "--sign": "sign",
    "--include-secrets": "include_secrets",
    "--dry-run": "dry_run",
    "--recipient": "recipients",
    "--output-format": "output_format",
    "--root": "root",
}
_FLAGS = frozenset({"all_envs", "include_secrets", "dry_run"})
_REPEATABLE = frozenset({"envs", "recipients"})
_PATHS = frozenset({"out_dir", "sign", "root"})
_CHOICES = {"bundle_format": ("flagstone", "flagd"), "output_format": ("text", "json")}


def read_build_args(argv: list[str]) -> BuildOptions | None:
    """The options of a plain ``build`` command line, or None for anything else: another
    command, help, a typo, a value that looks like an option, ``-eVALUE`` or ``--``.
    Whatever this declines, typer reads (and explains) instead."""
    if not argv or argv[0] != "build":
        return None
    values: dict[str, Any] = {}
    args = iter(argv[1:])
    for arg in args:
        name, has_value, value = arg.partition("=")
        if not name.startswith("--"):
            name, has_value = arg, ""  # short options take their value from the next word
        field = BUILD_OPTIONS.get(name)
        if field is None:
            return None
        if field in _FLAGS:
            if has_value:
                return None
            values[field] = True
            continue
        if not has_value:
            value = next(args, "")
        if not value or value.startswith("-") or value not in _CHOICES.get(field, (value,)):
            return None
        if field in _REPEATABLE:
            values.setdefault(field, []).append(value)
        else:  # the last one counts, as click has it
            values[field] = value
    from pathlib import Path

    from flagstone.cli.building import BuildOptions

    for field in _PATHS & values.keys():
        values[field] = Path(str(values[field]))
    return BuildOptions(**values)


def main() -> None:
    # A run reads a whole repository into long-lived objects: collecting them again and
    # again finds nothing and cost build ~15 % of its time on 6,000 flags. A larger first
    # generation keeps the collector for what a short process does create and drop.
    import gc

    gc.set_threshold(100_000, 50, 100)
    try:
        quick = None if "_FLAGSTONE_COMPLETE" in os.environ else read_build_args(sys.argv[1:])
        if quick is not None:
            _build(quick)
        from flagstone.cli import app
    except KeyboardInterrupt:  # before or after the command's own handling (imports, exit)
        exit_now(report_interrupt())
    app.main()


def _build(options: BuildOptions) -> NoReturn:
    """Run build as the Typer command would, and end the process as ``app.main`` does."""
    global _exits_after_command
    _exits_after_command = True
    fmt = options.output_format
    try:
        from flagstone.cli.building import build, plain_output

        result = build(options)
        text = plain_output(result, fmt)
        if text is None:  # problems to show: rich renders them
            from flagstone.cli.app import finish

            finish(result, fmt)
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except OSError as e:
            from flagstone.cli.output import output_failed

            output_failed(e)
        code = 0 if result.ok else 1
    except (Exception, KeyboardInterrupt) as e:
        from flagstone.cli.app import exit_code_after

        code = exit_code_after(e, fmt)
    if ends_with_os_exit():
        exit_now(code)
    sys.exit(code)


# --- the end of a run --------------------------------------------------------------------

# What a command asked to hold until the process ends (``keep_until_exit``).
_kept_until_exit: list[object] = []
# Whether this process runs one command and ends (``main``), not a test's in-process runner.
_exits_after_command = False
_interrupt_reported = False


def runs_one_command() -> None:
    """This process runs one command and ends: what it keeps is never freed."""
    global _exits_after_command
    _exits_after_command = True


def exits_after_command() -> bool:
    """Whether this process ends once its command returns (a test's runner goes on)."""
    return _exits_after_command


def keep_until_exit(*objects: object) -> None:
    """Hold ``objects`` to the end of the run and end it with ``os._exit`` once the output
    is flushed: freeing a build's repository and bundles one object at a time, as leaving
    the command and then the interpreter's shutdown do, took ~50 ms of a 0.3 s build."""
    _kept_until_exit[:] = objects


def ends_with_os_exit() -> bool:
    """Whether the process ends with ``os._exit`` once the command returns: it held its
    objects (``keep_until_exit``) and runs under ``main``, so nothing is freed after it."""
    return _exits_after_command and bool(_kept_until_exit)


def exit_now(code: object) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def mark_interrupt_reported() -> None:
    global _interrupt_reported
    _interrupt_reported = True


def interrupt_reported() -> bool:
    return _interrupt_reported


def report_interrupt() -> int:
    """Ctrl-C, from any command at any point: one line, once, and exit 130."""
    global _interrupt_reported
    if not _interrupt_reported:
        _interrupt_reported = True
        with contextlib.suppress(OSError, ValueError):  # plain: rich may not be imported yet
            sys.stderr.write("aborted\n")
            sys.stderr.flush()
    return 130  # 128 + SIGINT, what a shell reports for a job it stopped
