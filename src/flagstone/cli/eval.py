from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flagstone.cli.app import Format, command, out
from flagstone.errors import FlagstoneError

if TYPE_CHECKING:
    from flagstone.runtime.evaluate import CompiledBundle


def parse_context(text: str) -> dict[str, Any]:
    try:
        context = json.loads(text)
    except json.JSONDecodeError as e:
        raise FlagstoneError(
            f"--context is not valid JSON ({e.msg} at column {e.colno}); "
            """pass an object such as '{"user_id": "u1"}'"""
        ) from None
    if not isinstance(context, dict):
        raise FlagstoneError('--context must be a JSON object, such as \'{"user_id": "u1"}\'')
    return context


def working_tree_bundle(root: Path | None, env: str) -> CompiledBundle:
    """Build the environment's bundle in memory from the working tree and compile it."""
    from flagstone.bundle import build_bundle
    from flagstone.load import find_root, load_repository
    from flagstone.runtime.evaluate import BundleError, compile_bundle

    repo_root = find_root(root or Path.cwd())
    repo, problems = load_repository(repo_root)
    repo.env(env)
    unreadable = [p for p in problems if p.file.startswith(f"environments/{env}/")]
    if unreadable:
        raise FlagstoneError(f"{unreadable[0]}; run `flagstone validate --env {env}`")
    try:
        return compile_bundle(build_bundle(repo, env))
    except (BundleError, KeyError, TypeError) as e:
        raise FlagstoneError(
            f"{env} cannot be compiled ({e}); run `flagstone validate --env {env}`"
        ) from None


@command(name="eval")
def eval_(
    flag: Annotated[
        str | None, typer.Argument(help="The flag to evaluate (omit with --all).")
    ] = None,
    env: Annotated[str, typer.Option("--env", "-e", help="Environment to evaluate in.")] = "dev",
    context: Annotated[
        str, typer.Option("--context", "-c", help="The evaluation context as a JSON object.")
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
    from flagstone.runtime.evaluate import explain as explain_flag
    from flagstone.runtime.evaluate import resolve

    ctx = parse_context(context)
    bundle = working_tree_bundle(root, env)
    if all_flags == (flag is not None):
        raise FlagstoneError("name one FLAG, or pass --all to evaluate every flag")
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
        else:
            resolution, trace = resolve(bundle, key, ctx), []
        results.append((key, resolution, trace))
    if fmt is Format.json:
        doc = [
            {
                "flag": k,
                "value": r.value,
                "variant": r.variant,
                "reason": r.reason,
                "rule": r.rule_index,
                "bucket": r.bucket,
                "experiment": r.experiment,
                "message": r.message,
                **({"trace": t} if explain else {}),
            }
            for k, r, t in results
        ]
        sys.stdout.write(json.dumps(doc if all_flags else doc[0], sort_keys=True, indent=2) + "\n")
        return
    if fmt is Format.markdown:
        lines = ["| flag | variant | value | reason |", "|---|---|---|---|"]
        lines += [
            f"| `{k}` | `{r.variant}` | `{json.dumps(r.value)}` | {r.reason} |"
            for k, r, _ in results
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        return
    from rich.text import Text

    for key, r, trace in results:
        detail = f" rule {r.rule_index}" if r.rule_index is not None else ""
        detail += f" bucket {r.bucket}" if r.bucket is not None else ""
        detail += f" experiment {r.experiment}" if r.experiment else ""
        detail += f" ({r.message})" if r.message else ""
        out.print(
            Text.assemble(
                (key, "bold"),
                " = ",
                (json.dumps(r.value), "cyan"),
                f"  variant {r.variant}  ",
                (r.reason, "green"),
                detail,
            )
        )
        for line in trace:
            out.print(Text("  " + line, style="dim"))
