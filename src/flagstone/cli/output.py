"""Rendering every result: ``emit(result, fmt)`` picks json, markdown, github or rich text.

JSON, markdown and GitHub annotations are plain strings from ``flagstone.report``,
written with ``sys.stdout.write``; text goes through rich (``out`` for results, ``err``
for summaries and diagnostics). One text renderer per result type, registered with
``@text_renderer`` (from ``cli.app``, so registering imports nothing heavy); a result offers markdown or github only if it has that method, and
a command offers only the formats its result renders.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from itertools import groupby
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from flagstone import report
from flagstone.cli.app import (
    TEXT_RENDERERS,
    ExitCode,
    ValidateFormat,
    abandon_stdout,
    err,
    out,
    text_renderer,
)
from flagstone.errors import FlagstoneError, Problem

if TYPE_CHECKING:
    from rich.text import Text

    from flagstone.diff import Change

_TEXT = TEXT_RENDERERS


def renders(result: Any, fmt: str) -> bool:
    """Whether ``result`` can be rendered in ``fmt`` (a command offers only those)."""
    if fmt == "text":
        return type(result) in _TEXT
    if fmt == "json":
        return isinstance(result, report.Result)
    return callable(getattr(result, str(fmt), None))


def emit(result: Any, fmt: str) -> None:
    """Write ``result`` in ``fmt``: the JSON envelope, markdown, annotations or text."""
    fmt = str(fmt)
    if not renders(result, fmt):
        raise TypeError(f"{type(result).__name__} has no {fmt} rendering")
    text = report.dumps(report.document(result)) if fmt == "json" else None
    try:
        if text is not None:
            sys.stdout.write(text)
        elif fmt in ("markdown", "github"):
            sys.stdout.write(getattr(result, fmt)())
        else:
            _TEXT[type(result)](result)
        sys.stdout.flush()
    except OSError as e:
        output_failed(e)


def output_failed(e: OSError) -> NoReturn:
    """Stdout took no more: a reader that left (`| head`) ends the run with nothing more
    to say (exit 1); a full disk or the like is an error (exit 2)."""
    abandon_stdout()
    if isinstance(e, BrokenPipeError):
        raise typer.Exit(ExitCode.FINDINGS) from None
    raise FlagstoneError(
        f"cannot write the output: {e.strerror or e}; free some space or send it elsewhere (> file)"
    ) from None


def default_validate_format() -> ValidateFormat:
    """Inside GitHub Actions, annotations are what a reviewer sees (as yamllint does)."""
    return (
        ValidateFormat.github if os.environ.get("GITHUB_ACTIONS") == "true" else ValidateFormat.text
    )


# --- problems -------------------------------------------------------------------------


def render_problem(p: Problem, *, strict: bool = False) -> Text:
    # Text.assemble, not markup: messages may contain "[...]".
    from rich.text import Text

    fails = p.is_error or strict
    text = Text.assemble(
        (f"{p.file}:{p.line}:{p.col}", "bold"),
        ": ",
        (p.severity, "red" if fails else "yellow"),
        f": {p.message} ",
        (f"[{p.code}]", "dim"),
    )
    if p.hint:
        text.append(f"\n    hint: {p.hint}", style="dim")
    return text


def print_problems(problems: Sequence[Problem], *, strict: bool = False) -> None:
    for p in problems:
        out.print(render_problem(p, strict=strict))


def summary(ok: bool, text: str) -> Text:
    from rich.text import Text

    return Text.assemble(("✓ " if ok else "✗ ", "bold green" if ok else "bold red"), text)


@text_renderer(report.Validation)
def _validation(r: report.Validation) -> None:
    print_problems(r.problems, strict=r.strict)
    counts = (
        f"{r.errors} error{'s' * (r.errors != 1)}, {r.warnings} warning{'s' * (r.warnings != 1)}"
    )
    where = f" in {r.checked}" if r.checked else ""
    strictly = " (--strict: warnings fail)" if r.strict and r.warnings and not r.errors else ""
    err.print(summary(r.ok, counts + where + strictly))


def emit_problems(problems: Sequence[Problem], fmt: str, *, checked: str = "") -> None:
    emit(report.Validation(problems, checked=checked), fmt)


def refused(problems: Sequence[Problem], message: str) -> None:
    """The findings that stopped a writer, and one line saying nothing was written."""
    from rich.text import Text

    print_problems([p for p in problems if p.is_error])
    err.print(Text.assemble(("error: ", "bold red"), message))


# --- test -----------------------------------------------------------------------------


@text_renderer(report.SpecRun)
def _spec_run(run: report.SpecRun) -> None:
    from rich.text import Text

    r = run.report
    print_problems(r.problems)
    for c in r.failed:
        out.print(
            Text.assemble(
                (f"{c.file}:{c.line}:{c.col}", "bold"),
                ": ",
                ("FAIL", "bold red"),
                f" [{c.env}] {c.name}",
            )
        )
        for failure in c.failures:
            out.print(Text(f"    {failure}"))
        for line in c.trace:
            out.print(Text(f"      {line}", style="dim"))
    passed = sum(c.passed for c in r.results)
    unreadable = f", {len(r.problems)} unreadable spec problem(s)" if r.problems else ""
    err.print(summary(r.ok, f"{passed} passed, {len(r.failed)} failed{unreadable}"))


# --- eval -----------------------------------------------------------------------------


@text_renderer(report.Evaluation)
def _evaluation(e: report.Evaluation) -> None:
    from rich.text import Text

    for item in e.results:
        r = item.resolution
        detail = f" rule {r.rule_index + 1}" if r.rule_index is not None else ""
        detail += f" bucket {r.bucket}" if r.bucket is not None else ""
        detail += f" experiment {r.experiment}" if r.experiment else ""
        detail += f" ({r.message})" if r.message else ""
        out.print(
            Text.assemble(
                (item.flag, "bold"),
                " = ",
                (json.dumps(r.value, default=str), "cyan"),
                f"  variant {r.variant}  ",
                (r.reason, "green"),
                detail,
            )
        )
        for line in item.trace or ():
            out.print(Text("  " + line, style="dim"))


# --- build ----------------------------------------------------------------------------


@text_renderer(report.BuildResult)
def _build(b: report.BuildResult) -> None:
    errors = [p for p in b.problems if p.is_error]
    if errors:
        refused(
            errors, f"refusing to build: fix the {len(errors)} error(s) above (flagstone validate)"
        )
        return
    print_problems(b.problems)
    # Unstyled lines, written as they are: rich would only add ~25 ms of imports (and
    # read "[...]" in a path as markup).
    sys.stdout.write(b.built_lines())


# --- diff, promote, drift -------------------------------------------------------------


def print_changes(changes: Sequence[Change], title: str) -> None:
    from rich.text import Text
    from rich.tree import Tree

    from flagstone.diff import describe, plain, review_warnings
    from flagstone.report_diff import summary_line

    tree = Tree(Text.assemble((title, "bold"), f"  ({summary_line(changes)})"))
    colours = {"added": "green", "removed": "red", "changed": "yellow"}
    for env, env_changes in groupby(changes, key=lambda c: c.env):
        branch = tree.add(Text(env, style="bold cyan"))
        for (kind, key), group in groupby(env_changes, key=lambda c: (c.kind, c.key)):
            items = list(group)
            label = f"{kind[:-1]} {key}" if kind != "config" else f"config {key}"
            node = branch.add(Text.assemble((label, colours[items[0].action])))
            for c in items:
                node.add(Text(c.summary))
                if c.action == "added" and c.field is None and isinstance(c.new, dict):
                    for words in describe(kind, c.new):  # what it will serve
                        node.add(Text(plain(words), style="dim"))
    out.print(tree)
    for w in review_warnings(changes):
        out.print(Text.assemble(("warning: ", "bold yellow"), f"{w.env}: {w.message}"))


@text_renderer(report.DiffResult)
def _diff(d: report.DiffResult) -> None:
    print_problems(d.problems)
    print_changes(d.changes, d.title)
    if d.problems:
        err.print(
            f"{len(d.problems)} file(s) could not be read: their changes are not shown; "
            "fix them and diff again"
        )


@text_renderer(report.PromotionResult)
def _promotion(p: report.PromotionResult) -> None:
    if p.plan is None:
        refused(p.problems, p.refusal or f"promote {p.src} → {p.dst} refused; nothing was written")
        return
    plan = p.plan
    print_changes(plan.changes, f"promote {p.src} → {p.dst}")
    for move in plan.moves:
        if move.reason != "selected":
            out.print(f"also promoting {move.kind[:-1]} {move.key}: {move.reason}")
    if plan.kept:
        out.print(f"kept in {p.dst}: {', '.join(plan.kept)}")
    if plan.empty:
        err.print(f"{p.dst} already matches {p.src} for this selection: nothing to promote")
    elif p.written:
        written = ", ".join(sorted(plan.files))
        err.print(
            f"promoted {p.src} → {p.dst}: wrote {written}"
            + (f"; committed {p.commit[:12]}" if p.commit else "")
        )
    elif p.dry_run:
        err.print("dry run: nothing written")


@text_renderer(report.DriftResult)
def _drift(d: report.DriftResult) -> None:
    from rich.text import Text

    for item in d.found:
        out.print(
            Text.assemble(
                (f"{report.kind_word(item.kind)} {item.key}", "bold"),
                f": {item.state}",
                (f" ({'; '.join(item.changes)})", "dim"),
            )
        )
    err.print(
        f"{len(d.found)} difference(s) between {d.earlier} and {d.later}"
        if d.found
        else f"{d.later} matches {d.earlier} (pinned values aside)"
    )


# --- history, rollback, revert, verify ------------------------------------------------


@text_renderer(report.HistoryResult)
def _history(h: report.HistoryResult) -> None:
    from rich.text import Text

    for e in h.entries:
        promotion = e.commit.trailers.get("Flagstone-Promote")
        where = f"{e.env}: " if e.env else ""
        what = "" if h.key else f"{e.key}: "
        out.print(
            Text.assemble(
                (f"{e.commit.date:%Y-%m-%d %H:%M}", "bold"),
                "  ",
                (e.commit.sha[:12], "yellow"),
                f"  {e.commit.author_name} <{e.commit.author_email}>  ",
                (report.signature_words(e.commit.signature), "dim"),
                (f"  promotion {promotion}" if promotion else "", "cyan"),
                "\n  ",
                (f"{where}{what}{'; '.join(e.changes)}", "red" if e.problem else ""),
                (f"   ({e.commit.subject})", "dim"),
            )
        )
    if not h.entries:
        what = f"changed {h.key!r}" if h.key else "changed these environments"
        err.print(f"no commit {what}" + (f" in {', '.join(h.envs)}" if h.envs else ""))
    broken = sum(1 for e in h.entries if e.problem is not None)
    if broken:
        err.print(
            f"{broken} file error(s) in the history: those revisions could not be read, "
            "so their changes are not shown as changes"
        )


@text_renderer(report.RestorationResult)
def _restoration(r: report.RestorationResult) -> None:
    if r.problems:
        refused(r.problems, r.refusal or "the restoration was refused; nothing was written")
        return
    for plan in r.plans:
        print_changes(plan.changes, plan.message.splitlines()[0])
    if not any(p.changes for p in r.plans):
        err.print("nothing to change: the environment already matches")
    elif r.written:
        for plan in r.plans:
            sha = r.commits.get(plan.env)
            err.print(
                plan.message.splitlines()[0]
                + (f": committed {sha[:12]}" if sha else ": written, not committed")
            )
    elif r.dry_run:
        err.print("dry run: nothing written")


@text_renderer(report.VerifyResult)
def _verify(v: report.VerifyResult) -> None:
    from rich.text import Text

    for item in v.violations:
        out.print(
            Text.assemble(
                (item.commit[:12], "yellow"),
                f" {json.dumps(item.subject, ensure_ascii=False)} by {item.author}: ",
                (f"[{item.rule}]", "red"),
                f" {item.reason}",
            )
        )
    err.print(
        summary(
            v.ok,
            f"{len(v.violations)} violation(s) in {v.range}"
            if v.violations
            else f"every commit in {v.range} follows the policy",
        )
    )


# --- init and the edit commands -------------------------------------------------------


@text_renderer(report.InitReport)
def _init(i: report.InitReport) -> None:
    from rich.text import Text

    where = f" in {i.result.root.resolve()}:"
    if i.result.dry_run:
        out.print(Text.assemble(("dry run:", "bold"), " init would write", where))
    else:
        out.print(Text.assemble(("Created a flagstone repository", "bold green"), where))
    for rel in i.result.written:
        out.print(f"  {rel}")
    if i.result.dry_run:
        out.print("nothing written")
        return
    if i.result.git_initialized:
        out.print("Initialized a git repository (git init).")
    out.print(Text.assemble(("\nNext: ", "bold"), i.next_steps))


@text_renderer(report.EditResult)
def _edit(e: report.EditResult) -> None:
    from rich.text import Text

    if not e.ok:
        files = ", ".join(e.files)
        default = f"the edit would leave {e.env} invalid; {files} not changed"
        refused(e.problems, e.refusal or default)
        return
    if not e.changed:
        err.print(f"{', '.join(e.files)}: already so, nothing to change")
        return
    if e.dry_run:
        if e.diff:
            out.print(Text(e.diff.rstrip("\n")))
        err.print(f"dry run: {e.description}; nothing written")
        return
    out.print(f"{', '.join(e.files)}: {e.description}")
    if e.commit:
        err.print(f"committed {e.commit[:12]}")


@text_renderer(report.ConfigValue)
def _config_value(c: report.ConfigValue) -> None:
    # Plain JSON on stdout, so `$(flagstone config get api.timeout_ms)` is the value itself.
    sys.stdout.write(("<secret>" if c.secret else json.dumps(c.value, sort_keys=True)) + "\n")


# --- list and show ---------------------------------------------------------------------


def _side_by_side(first: str, envs: Sequence[str]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column(first, style="bold", no_wrap=True)
    for env in envs:
        table.add_column(env, overflow="fold")
    return table


def _row(values: Sequence[str | None]) -> list[Text]:
    # a value that differs between environments stands out
    from rich.text import Text

    differs = len({v for v in values}) > 1
    return [
        Text("—", style="dim") if v is None else Text(v, style="yellow" if differs else "")
        for v in values
    ]


@text_renderer(report.Listing)
def _listing(listing: report.Listing) -> None:
    from rich.text import Text

    if not listing.items:
        err.print(f"no {listing.kind} in {', '.join(listing.envs)}")
        return
    table = _side_by_side(report.kind_word(listing.kind), listing.envs)
    for item in listing.items:
        table.add_row(Text(item.key), *_row(listing.states(item)))
    out.print(table)
    err.print(
        f"{len(listing.items)} {listing.kind if len(listing.items) != 1 else report.kind_word(listing.kind)}"
    )


@text_renderer(report.ObjectView)
def _object_view(view: report.ObjectView) -> None:
    from rich.text import Text

    table = _side_by_side(f"{report.kind_word(view.kind)} {view.key}", view.envs)
    for label, values in view.rows():
        table.add_row(Text(label), *_row(values))
    out.print(table)


@text_renderer(report.ConfigListing)
def _config_listing(listing: report.ConfigListing) -> None:
    from rich.text import Text

    if not listing.entries:
        err.print(f"no config values in {', '.join(listing.envs)}")
        return
    table = _side_by_side("key", listing.envs)
    for entry in listing.entries:
        label = Text(entry.key)
        if entry.pinned:
            label.append(" (pinned)", style="dim")
        table.add_row(label, *_row(listing.cells(entry)))
    out.print(table)
