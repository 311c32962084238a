"""Semantic changes rendered as plain strings: markdown for pull requests, json (pure).

The markdown is posted as a pull-request comment, so everything that comes from the
repository — keys, variant names, values, descriptions, environment names — is shown as
inline code or escaped: no value can add a heading, HTML, an ``@mention`` or a second
hidden marker. GitHub refuses comments over 65,536 characters; the comment stops below
that with a summary of what it leaves out and a pointer to the full report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from itertools import groupby

from flagstone.diff import Change, Quoted, ReviewWarning, Words, count, describe, review_warnings

MARKER = "<!-- flagstone-diff -->"
COLLAPSE_AFTER = 12  # changes per environment shown before the rest folds into <details>
# Below GitHub's 65,536, leaving room for the footer the comment workflow adds.
COMMENT_LIMIT = 60_000
VALUE_LIMIT = 200  # characters of one value shown in a comment (the full report has all)
FULL_REPORT = (
    "the full report is `report.txt` (and `report.json`) in this run's `flagstone-diff` artifact"
)


def changes_json(changes: Sequence[Change]) -> str:
    return (
        json.dumps(
            {
                "equal": not changes,
                "counts": count(changes),
                "changes": [c.as_dict() for c in changes],
            },
            sort_keys=True,
            indent=2,
            default=str,
            allow_nan=False,
        )
        + "\n"
    )


def summary_line(changes: Sequence[Change], *, where: bool = True) -> str:
    if not changes:
        return "no changes"
    counts = count(changes)
    envs = sorted({c.env for c in changes})
    parts = [
        f"{n} {word}"
        for word, n in (
            ("added", counts["added"]),
            ("changed", counts["changed"]),
            ("removed", counts["removed"]),
        )
        if n
    ]
    return f"{', '.join(parts)}" + (f" in {', '.join(envs)}" if where else "")


# --- markdown that values cannot escape ---------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
# inline markdown only: the text never starts a line, so list and heading marks are inert
_PUNCTUATION = re.compile(r"([\\`*_\[\]!~|])")


def code(value: str) -> str:
    """``value`` as inline code: control and bidirectional characters made visible, long
    values cut, and a backtick fence longer than any run of backticks inside."""
    text = _CONTROL.sub(lambda m: json.dumps(m.group())[1:-1], value).replace("<!--", "<!\\--")
    if len(text) > VALUE_LIMIT:
        text = text[: VALUE_LIMIT - 1] + "…"
    if not text.strip():
        text = json.dumps(text)
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" or (text[0] == " " and text[-1] == " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def escape(text: str) -> str:
    """Plain text that markdown and GitHub render as written: punctuation escaped, HTML as
    entities, mentions broken with a word joiner."""
    text = _CONTROL.sub(" ", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _PUNCTUATION.sub(r"\\\1", text).replace("@", "@\u2060")


def render(words: Words) -> str:
    return "".join(code(w.text) if isinstance(w, Quoted) else escape(w) for w in words)


def _summary(change: Change) -> str:
    return render(change.words) if change.words else code(change.summary)


def _object_blocks(changes: Sequence[Change]) -> list[list[str]]:
    """One list item per object, its changes (or, when added, what it is) nested below."""
    blocks = []
    for (kind, key), group in groupby(changes, key=lambda c: (c.kind, c.key)):
        items = list(group)
        label = code(key) if kind != "config" else f"config {code(key)}"
        kind_word = kind[:-1] if kind != "config" else ""
        icon = {"added": "➕", "removed": "➖"}.get(items[0].action, "✏️")
        head = f"- {icon} {kind_word} {label}".replace("  ", " ")
        first = items[0]
        details: list[str] = []
        if first.action == "added" and first.field is None and isinstance(first.new, dict):
            details = [render(words) for words in describe(kind, first.new)]
        if details:
            blocks.append([f"{head}: {_summary(first)}", *(f"  - {d}" for d in details)])
        elif len(items) == 1:
            blocks.append([f"{head}: {_summary(first)}"])
        else:
            blocks.append([head, *(f"  - {_summary(c)}" for c in items)])
    return blocks


def warning_lines(warnings: Sequence[ReviewWarning]) -> list[str]:
    return [f"> ⚠️ **{escape(w.env)}**: {render(w.words)}" for w in warnings]


def changes_markdown(
    changes: Sequence[Change],
    env_order: Sequence[str],
    title: str = "flagstone diff",
    *,
    limit: int = COMMENT_LIMIT,
    full_report: str = FULL_REPORT,
) -> str:
    """The pull-request comment: starts with the marker the comment workflow finds it by,
    warnings first, then each environment, latest first; at most ``limit`` characters."""
    head = [MARKER, f"### {escape(title)}", "", f"**{escape(summary_line(changes))}**"]
    if not changes:
        return "\n".join(head) + "\n"
    warnings = warning_lines(review_warnings(changes))
    if warnings:
        head += ["", *warnings]
    by_env: dict[str, list[Change]] = {}
    for c in changes:
        by_env.setdefault(c.env, []).append(c)
    order = [e for e in reversed(env_order) if e in by_env] + sorted(
        e for e in by_env if e not in env_order
    )
    sections: list[tuple[str, list[str]]] = []
    for env in order:
        blocks = _object_blocks(by_env[env])
        title_line = f"#### {code(env)} ({escape(summary_line(by_env[env], where=False))})"
        body = [line for block in blocks[:COLLAPSE_AFTER] for line in block]
        if len(blocks) > COLLAPSE_AFTER:
            body += [
                "",
                f"<details><summary>{len(blocks) - COLLAPSE_AFTER} more</summary>",
                "",
                *(line for block in blocks[COLLAPSE_AFTER:] for line in block),
                "",
                "</details>",
            ]
        sections.append((title_line, body))
    return _capped(head, sections, limit, full_report)


def _capped(
    head: list[str], sections: list[tuple[str, list[str]]], limit: int, full_report: str
) -> str:
    whole = "\n".join([*head, *(x for t, body in sections for x in ("", t, "", *body))]) + "\n"
    if len(whole) <= limit:
        return whole
    # Keep whole lines, in order, while they fit, with room for the closing summary.
    out = list(head)
    size = sum(len(x) + 1 for x in out)
    budget = limit - 600
    left_out = 0
    full = False
    for title_line, body in sections:
        for line in [
            "",
            title_line,
            "",
            *(x for x in body if not x.startswith(("<details", "</details"))),
        ]:
            full = full or size + len(line) + 1 > budget
            if not full:
                out.append(line)
                size += len(line) + 1
            elif line.startswith("- "):
                left_out += 1
    out += [
        "",
        f"**… {left_out} more change{'s' * (left_out != 1)} not shown: this comment stops below "
        f"GitHub's 65,536-character limit; {full_report}.**",
    ]
    return "\n".join(out) + "\n"
