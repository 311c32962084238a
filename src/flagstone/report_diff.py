"""Semantic changes rendered as plain strings: markdown for pull requests, json (pure)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import groupby

from flagstone.diff import Change, count

MARKER = "<!-- flagstone-diff -->"
COLLAPSE_AFTER = 12  # changes per environment shown before the rest folds into <details>


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


def _object_lines(changes: Sequence[Change]) -> list[str]:
    lines = []
    for (kind, key), group in groupby(changes, key=lambda c: (c.kind, c.key)):
        items = list(group)
        label = f"`{key}`" if kind != "config" else f"config `{key}`"
        kind_word = kind[:-1] if kind != "config" else ""
        icon = {"added": "➕", "removed": "➖"}.get(items[0].action, "✏️")
        if len(items) == 1:
            lines.append(f"- {icon} {kind_word} {label}: {items[0].summary}".replace("  ", " "))
        else:
            lines.append(f"- {icon} {kind_word} {label}".replace("  ", " "))
            lines += [f"  - {c.summary}" for c in items]
    return lines


def changes_markdown(
    changes: Sequence[Change], env_order: Sequence[str], title: str = "flagstone diff"
) -> str:
    out = [MARKER, f"### {title}", "", f"**{summary_line(changes)}**"]
    if not changes:
        return "\n".join(out) + "\n"
    by_env: dict[str, list[Change]] = {}
    for c in changes:
        by_env.setdefault(c.env, []).append(c)
    order = [e for e in reversed(env_order) if e in by_env] + sorted(
        e for e in by_env if e not in env_order
    )
    for env in order:
        lines = _object_lines(by_env[env])
        out += ["", f"#### {env} ({summary_line(by_env[env], where=False)})", ""]
        if len(lines) > COLLAPSE_AFTER:
            out += lines[:COLLAPSE_AFTER]
            out += [
                "",
                f"<details><summary>{len(lines) - COLLAPSE_AFTER} more</summary>",
                "",
                *lines[COLLAPSE_AFTER:],
                "",
                "</details>",
            ]
        else:
            out += lines
    return "\n".join(out) + "\n"
