from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flagstone.cli.app import Format, command, finish
from flagstone.errors import FlagstoneError, UsageError

if TYPE_CHECKING:
    from flagstone.runtime.evaluate import CompiledBundle


CONTEXT_EXAMPLE = """'{"user_id": "u1"}'"""


def read_context(value: str) -> dict[str, Any]:
    """``--context``: inline JSON, ``@file.json``, or ``-`` for standard input (as curl reads data)."""
    if value == "-":
        return parse_context(sys.stdin.read(), "standard input")
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FlagstoneError(f"--context {value}: no such file") from None
        except IsADirectoryError:
            raise FlagstoneError(f"--context {value}: is a directory, not a JSON file") from None
        except UnicodeDecodeError:
            raise FlagstoneError(f"--context {value}: not UTF-8 text") from None
        except OSError as e:
            raise FlagstoneError(f"--context {value}: {e.strerror}") from None
        return parse_context(text, str(path))
    return parse_context(value, "--context")


class _NotFinite(ValueError):
    def __init__(self, word: str) -> None:
        super().__init__(word)
        self.word = word


def _refuse_constant(word: str) -> Any:
    raise _NotFinite(word)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotFinite(text)
    return value


def _position(text: str, word: str) -> tuple[int, int]:
    """Line and column (1-based) of ``word``'s first occurrence outside a JSON string."""
    quoted = escaped = False
    for i, ch in enumerate(text):
        if quoted:
            escaped, quoted = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            quoted = True
        elif text.startswith(word, i):
            return text.count("\n", 0, i) + 1, i - text.rfind("\n", 0, i)
    return 1, 1


def parse_context(text: str, source: str = "--context") -> dict[str, Any]:
    try:
        # Standard JSON only: NaN and Infinity (or 1e999) are no attribute value a client
        # can send, and they compare unlike any number.
        context = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotFinite as e:
        line, column = _position(text, e.word)
        raise FlagstoneError(
            f"{source} holds {e.word} at line {line} column {column}, which is not a JSON "
            f"number; pass finite numbers, such as {CONTEXT_EXAMPLE}"
        ) from None
    except json.JSONDecodeError as e:
        raise FlagstoneError(
            f"{source} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
            f"pass an object such as {CONTEXT_EXAMPLE}"
        ) from None
    except RecursionError:
        raise FlagstoneError(
            f"{source} is nested too deeply to read; a context is a flat object of attributes "
            f"such as {CONTEXT_EXAMPLE}"
        ) from None
    if not isinstance(context, dict):
        raise FlagstoneError(
            f"{source} must be a JSON object, such as {CONTEXT_EXAMPLE}, not {_json_type(context)}"
        )
    return context


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"


def working_tree_bundle(root: Path | None, env: str | None) -> tuple[str, CompiledBundle]:
    """Build the environment's bundle in memory from the working tree and compile it."""
    from flagstone.bundle import build_bundle
    from flagstone.load import find_root, load_repository, load_settings
    from flagstone.model import SETTINGS_FILE
    from flagstone.runtime.evaluate import BundleError, compile_bundle

    repo_root = find_root(root or Path.cwd())
    if env is None:
        env = load_settings((repo_root / SETTINGS_FILE).read_bytes()).environments[0]
    repo, problems = load_repository(repo_root, [env])
    unreadable = [p for p in problems if p.file.startswith(f"environments/{env}/") and p.is_error]
    if unreadable:
        raise FlagstoneError(f"{unreadable[0]}; run `flagstone validate --env {env}`")
    try:
        return env, compile_bundle(build_bundle(repo, env))
    except (BundleError, KeyError, TypeError, ValueError) as e:
        raise FlagstoneError(
            f"{env} cannot be compiled ({type(e).__name__}: {e}); "
            f"run `flagstone validate --env {env}`"
        ) from None


@command(name="eval")
def eval_(
    flag: Annotated[
        str | None, typer.Argument(help="The flag to evaluate (omit with --all).")
    ] = None,
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", help="Environment to evaluate in (default: the first)."),
    ] = None,
    context: Annotated[
        str,
        typer.Option(
            "--context",
            "-c",
            help="The evaluation context: a JSON object, @file.json, or - to read standard input.",
        ),
    ] = "{}",
    explain: Annotated[
        bool, typer.Option("--explain", help="Show each evaluation step and why.")
    ] = False,
    all_flags: Annotated[
        bool, typer.Option("--all", help="Evaluate every flag for this context.")
    ] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """What a unit gets from a flag in an environment, and why."""
    from flagstone.report import Evaluation, FlagEvaluation
    from flagstone.runtime.evaluate import explain as explain_flag
    from flagstone.runtime.evaluate import resolve

    if all_flags == (flag is not None):
        raise UsageError("name one FLAG, or pass --all to evaluate every flag")
    ctx = read_context(context)
    env, bundle = working_tree_bundle(root, env)
    keys = sorted(bundle.flags) if all_flags else [flag or ""]
    if not all_flags and keys[0] not in bundle.flags:
        import difflib

        close = difflib.get_close_matches(keys[0], list(bundle.flags), n=1)
        suggestion = f"; did you mean {close[0]!r}?" if close else ""
        raise FlagstoneError(f"no flag {keys[0]!r} in {env}{suggestion}")
    results = []
    for key in keys:
        if explain:
            resolution, trace = explain_flag(bundle, key, ctx)
            results.append(FlagEvaluation(key, resolution, tuple(trace)))
        else:
            results.append(FlagEvaluation(key, resolve(bundle, key, ctx)))
    finish(Evaluation(env, results, every_flag=all_flags), fmt)
