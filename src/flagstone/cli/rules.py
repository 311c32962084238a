"""`flag rule add|remove|move`: a flag's targeting rules without hand-editing YAML.

Rules are numbered from 1, as `eval --explain`, `diff`, `history` and `flag rollout --rule`
number them.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from flagstone.cli.app import TextJson, command
from flagstone.cli.edit_commands import (
    Commit,
    DryRun,
    Env,
    Fmt,
    Message,
    Root,
    _flag,
    apply_edit,
    parse_condition,
)
from flagstone.cli.groups import rule_app
from flagstone.errors import FlagstoneError, UsageError

RuleNumber = Annotated[
    int, typer.Option("--rule", "-r", help="The rule's number (1 is the first).")
]


def parse_rollout(text: str) -> dict[str, int | float]:
    """``on=20,off=80`` → {"on": 20, "off": 80}."""
    weights: dict[str, int | float] = {}
    for item in (p.strip() for p in text.split(",")):
        name, sep, pct = item.partition("=")
        try:
            value = float(pct)
        except ValueError:
            value = float("nan")
        if not sep or not name.strip() or value != value:
            raise UsageError(
                f"--rollout {text!r}: write variant=percent pairs, e.g. --rollout on=20,off=80"
            )
        if name.strip() in weights:
            raise UsageError(f"--rollout names {name.strip()!r} twice")
        weights[name.strip()] = int(value) if value.is_integer() else value
    if len(weights) < 2:
        raise UsageError("a rollout shares units between two or more variants: on=20,off=80")
    return weights


def _rules(flag: Any, key: str) -> Any:
    rules = flag.get("rules")
    if not rules:
        raise FlagstoneError(f"flag {key!r} has no rules")
    return rules


def _check_number(number: int, count: int, key: str, option: str) -> None:
    if not 1 <= number <= count:
        raise UsageError(f"flag {key!r} has {count} rule(s); {option} takes 1..{count}")


@command(name="add", group=rule_app)
def rule_add(
    key: Annotated[str, typer.Argument(help="The flag.")],
    when: Annotated[
        str | None,
        typer.Option("--when", help="""Match a condition (JSON), e.g. '{"plan": "pro"}'."""),
    ] = None,
    segment: Annotated[
        str | None, typer.Option("--segment", help="Match the units in a segment.")
    ] = None,
    serve: Annotated[
        str | None, typer.Option("--serve", help="The variant matching units get.")
    ] = None,
    rollout: Annotated[
        str | None,
        typer.Option("--rollout", help="Or share them between variants: on=20,off=80."),
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="The attribute a rollout buckets by.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name for the rule.")] = None,
    at: Annotated[
        int | None,
        typer.Option("--at", help="Insert as this rule number (default: after the last)."),
    ] = None,
    env: Env = "dev",
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Add a rule: --segment S or --when JSON, serving --serve V or --rollout a=50,b=50."""
    from flagstone.edit import mapping
    from flagstone.report import rule_words

    if (when is None) == (segment is None):
        raise UsageError("give the rule one of --segment NAME or --when JSON")
    if (serve is None) == (rollout is None):
        raise UsageError("give the rule one of --serve VARIANT or --rollout a=50,b=50")
    if by is not None and rollout is None:
        raise UsageError("--by only applies to a --rollout")
    rule = mapping()
    if name:
        rule["name"] = name
    if segment is not None:
        rule["segment"] = segment
    else:
        rule["when"] = mapping(parse_condition(when or "{}"), flow=True)
    if rollout is not None:
        served = mapping({"rollout": mapping(parse_rollout(rollout), flow=True)}, flow=True)
        if by:
            served["by"] = by
        rule["serve"] = served
    else:
        rule["serve"] = serve

    def change(data: Any) -> str:
        from flagstone.edit import sequence

        flag = _flag(data, key)
        variants = flag.get("variants") or {}
        wanted = [serve] if serve is not None else list(rule["serve"]["rollout"])
        for variant in wanted:
            if variant not in variants:
                raise UsageError(
                    f"flag {key!r} has no variant {variant!r}; its variants are "
                    + ", ".join(map(str, variants))
                )
        if flag.get("rules") is None:
            # rules go before the default, in the order the format documents them
            keys = list(flag)
            flag.pop("rules", None)
            flag.insert(
                keys.index("default") if "default" in keys else len(flag), "rules", sequence()
            )
        rules = flag["rules"]
        position = len(rules) + 1 if at is None else at
        if not 1 <= position <= len(rules) + 1:
            raise UsageError(
                f"flag {key!r} has {len(rules)} rule(s); --at takes 1..{len(rules) + 1}"
            )
        rules.insert(position - 1, rule)
        return f"flag {key} rule {position} added: {rule_words(rule)}"

    apply_edit(root, env, "flags", key, change, commit, message, dry_run=dry_run, fmt=fmt)


@command(name="remove", group=rule_app)
def rule_remove(
    key: Annotated[str, typer.Argument(help="The flag.")],
    number: RuleNumber,
    env: Env = "dev",
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Remove rule N (as `flag show` and `eval --explain` number them)."""
    from flagstone.report import rule_words

    def change(data: Any) -> str:
        flag = _flag(data, key)
        rules = _rules(flag, key)
        _check_number(number, len(rules), key, "--rule")
        removed = rules.pop(number - 1)
        if not rules:
            del flag["rules"]
        return f"flag {key} rule {number} removed: {rule_words(removed)}"

    apply_edit(root, env, "flags", key, change, commit, message, dry_run=dry_run, fmt=fmt)


@command(name="move", group=rule_app)
def rule_move(
    key: Annotated[str, typer.Argument(help="The flag.")],
    number: RuleNumber,
    to: Annotated[int, typer.Option("--to", help="The rule's new number.")],
    env: Env = "dev",
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Move rule N to position --to M; first match wins, so order is precedence."""

    def change(data: Any) -> str:
        flag = _flag(data, key)
        rules = _rules(flag, key)
        _check_number(number, len(rules), key, "--rule")
        _check_number(to, len(rules), key, "--to")
        rules.insert(to - 1, rules.pop(number - 1))
        return f"flag {key} rule {number} moved to {to}"

    apply_edit(root, env, "flags", key, change, commit, message, dry_run=dry_run, fmt=fmt)
