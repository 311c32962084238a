"""`flag …`, `segment …`, `config …`: edits that keep comments, validate, and can commit."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from flagstone.cli.app import TextJson, command, finish
from flagstone.cli.groups import config_app, flag_app, segment_app
from flagstone.errors import FlagstoneError, UsageError

if TYPE_CHECKING:
    from flagstone.edit import Document
    from flagstone.model import Repository


Env = Annotated[str, typer.Option("--env", "-e", help="The environment to change.")]
Commit = Annotated[bool, typer.Option("--commit", help="Commit the change.")]
Message = Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Show the change as a diff; write nothing.")
]
Fmt = Annotated[TextJson, typer.Option("--format", "-f")]
Root = Annotated[Path | None, typer.Option("--root", help="Repository root.")]


def apply_edit(
    root: Path | None,
    env: str,
    kind: str,
    key: str | None,
    change: Callable[[Any], str],
    commit: bool,
    message: str | None,
    *,
    dry_run: bool = False,
    fmt: str = "text",
) -> NoReturn:
    """Under the repository's write lock: read the file that holds ``key``, let ``change``
    edit it (returning a description), check that the edit adds no error, then write it
    (and maybe commit) all or nothing. Reading under the lock means two edits at once
    both land, one after the other."""
    from flagstone.blocks import open_object
    from flagstone.edit import repository_lock
    from flagstone.load import find_root, load_repository

    repo_root = find_root(root or Path.cwd())
    with repository_lock(repo_root):
        repo, _ = load_repository(repo_root, [env])
        target = repo.env(env)
        rel = target.file_for(kind, key)  # type: ignore[arg-type]
        if key is None or kind == "config":
            before, doc = read_document(repo_root, rel)
            description, after = change(doc.data), doc.dump()
        else:
            # one object: edit its block alone, not the whole file (see blocks.py)
            objects = target.objects(kind)  # type: ignore[arg-type]
            obj = open_object(repo_root, rel, key, (k for k, o in objects.items() if o.file == rel))
            try:
                description = change(obj.data)
            except FlagstoneError as e:
                raise _with_suggestion(e, key, objects) from None
            before, after = obj.raw, obj.text()
        write_change(
            repo,
            {env: {rel: (before, after)}},
            description,
            commit=commit,
            message=message,
            dry_run=dry_run,
            fmt=fmt,
        )


def _with_suggestion(error: FlagstoneError, key: str, known: Mapping[str, Any]) -> FlagstoneError:
    """An edited object's block holds no other key to suggest: suggest from the model."""
    import difflib

    if key in known or "did you mean" in str(error) or f"no flag {key!r}" not in str(error):
        return error
    close = difflib.get_close_matches(key, list(known), n=1)
    return FlagstoneError(f"{error}; did you mean {close[0]!r}?") if close else error


def read_document(root: Path, rel: str) -> tuple[bytes | None, Document]:
    """A file's bytes (None if it does not exist) and its round-trip document; the size
    limit is checked first, since a round-trip parse of a huge file takes minutes and
    gigabytes."""
    from flagstone.edit import Document
    from flagstone.load import MAX_FILE_BYTES

    path = root / rel
    size = path.stat().st_size if path.is_file() else 0
    if size > MAX_FILE_BYTES:
        raise FlagstoneError(
            f"{rel} is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit; "
            "split the kind into a folder of files (flags/*.yaml)"
        )
    raw = path.read_bytes() if path.is_file() else None
    return raw, Document.parse_bytes(raw or b"", rel)


FileChange = tuple[bytes | None, str | None]  # (bytes before, text after); None: no such file


def write_change(
    repo: Repository,
    changes: Mapping[str, Mapping[str, FileChange]],
    description: str,
    *,
    commit: bool,
    message: str | None,
    dry_run: bool,
    fmt: str,
) -> NoReturn:
    """Check every environment with its changed files — only errors the change adds refuse
    it (the kill switch must work during an incident) — then write them all or none (and
    commit with --commit); --dry-run stops after showing the diff. Call it holding the
    repository lock, with the files read under it."""
    from flagstone.cli.app import err
    from flagstone.cli.output import render_problem
    from flagstone.edit import apply_files, check_write
    from flagstone.report import EditResult

    envs = ", ".join(changes)
    files = {rel: change for per_env in changes.values() for rel, change in per_env.items()}
    changed = {
        rel: after
        for rel, (before, after) in files.items()
        if (None if after is None else after.encode("utf-8")) != before
    }
    rels = sorted(files)
    if not changed:
        finish(EditResult(envs, description, rels, changed=False, dry_run=dry_run), fmt)
    diff = "".join(
        unified_diff(rel, (files[rel][0] or b"").decode("utf-8"), after or "")
        for rel, after in sorted(changed.items())
    )
    new, existing = [], []
    for env, per_env in changes.items():
        checked = check_write(repo, env, {rel: changed[rel] for rel in per_env if rel in changed})
        new += checked.new
        existing += checked.existing
    if new:
        finish(EditResult(envs, description, rels, dry_run=dry_run, diff=diff, problems=new), fmt)
    if dry_run:
        finish(EditResult(envs, description, rels, dry_run=True, diff=diff), fmt)
    sha = apply_files(
        repo.root,
        changed,
        commit=(message or f"{envs}: {description}") if commit else None,
        basis={rel: files[rel][0] for rel in changed},
    )
    if existing:  # after the write: a failed write must not read as "done, but…"
        err.print(
            f"note: {envs} already had {len(existing)} error(s) that this edit "
            "does not touch; fix them separately:"
        )
        for problem in existing:
            err.print(render_problem(problem))
    finish(EditResult(envs, description, rels, commit=sha, diff=diff), fmt)


def unified_diff(rel: str, before: str, after: str) -> str:
    """``git diff``'s unified format. Only the lines between the common head and tail
    are compared (difflib would take seconds over a 3,000-flag file for a one-line edit)."""
    import difflib
    import re

    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    lo, keep = max(0, head - 3), max(0, tail - 3)  # three lines of context either side
    hunks = difflib.unified_diff(
        a[lo : len(a) - keep], b[lo : len(b) - keep], f"a/{rel}", f"b/{rel}"
    )

    def shifted(m: re.Match[str]) -> str:
        return f"@@ -{int(m[1]) + lo}{m[2] or ''} +{int(m[3]) + lo}{m[4] or ''} @@"

    header = re.compile(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@")
    return "".join(header.sub(shifted, line) if line.startswith("@@") else line for line in hunks)


def _flag(data: Any, key: str) -> Any:
    if key not in data:
        import difflib

        close = difflib.get_close_matches(key, list(data), n=1)
        raise FlagstoneError(
            f"no flag {key!r} here" + (f"; did you mean {close[0]!r}?" if close else "")
        )
    return data[key]


def parse_value(text: str) -> Any:
    """A command-line value as YAML/JSON would read it: 3 → 3, true → True, "x" → "x"."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_condition(text: str, option: str = "--when") -> dict[str, Any]:
    """A condition given on the command line: a JSON object of attribute matchers."""
    try:
        condition = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"{option} is not valid JSON ({e.msg} at column {e.colno}); "
            f"""e.g. {option} '{{"country": {{"in": ["DE", "FR"]}}}}'"""
        ) from None
    except RecursionError:
        raise UsageError(f"{option} is nested too deeply to read") from None
    if not isinstance(condition, dict) or not condition:
        raise UsageError(
            f"""{option} takes a JSON object of conditions, e.g. '{{"plan": "pro"}}'"""
        )
    return condition


def split_pairs(text: str) -> list[str]:
    """Split ``a=1,b={"x": 1, "y": [2, 3]},c="p,q"`` on the commas outside JSON values."""
    pieces, depth, start, quoted, escaped = [], 0, 0, False, False
    for i, ch in enumerate(text):
        if quoted:
            escaped, quoted = (False, quoted) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            quoted = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]


def parse_variants(text: str) -> dict[str, Any]:
    """``--variants`` as name=JSON pairs; a value that is not JSON is refused, not guessed."""
    values: dict[str, Any] = {}
    for piece in split_pairs(text):
        name, sep, raw = piece.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name:
            raise UsageError(
                f"--variants: {piece!r} is not name=value; e.g. --variants on=true,off=false"
            )
        if name in values:
            raise UsageError(f"--variants names {name!r} twice; each variant needs its own name")
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError:
            raise UsageError(
                f"--variants: the value of {name!r} is not JSON: {raw}; write true, false, "
                f"numbers, objects and arrays as JSON, and strings in double quotes "
                f"({name}='\"{raw}\"')"
            ) from None
        except RecursionError:
            raise UsageError(f"--variants: the value of {name!r} is nested too deeply") from None
    if not values:
        raise UsageError("--variants names no variant; e.g. --variants on=true,off=false")
    return values


@command(name="create", group=flag_app)
def flag_create(
    key: Annotated[str, typer.Argument(help="The new flag's key.")],
    env: Env = "dev",
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    variants: Annotated[
        str,
        typer.Option(
            "--variants",
            help="""name=JSON pairs, comma-separated: on=true,off=false or a='"x"',b={"k":1}.""",
        ),
    ] = "on=true,off=false",
    default: Annotated[
        str | None,
        typer.Option(
            "--default", help="The variant served by default (default: off, else the last)."
        ),
    ] = None,
    off_variant: Annotated[
        str | None,
        typer.Option(
            "--off-variant",
            help="The variant served when the kill switch is pulled (default: the default's).",
        ),
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="YYYY-MM-DD after which the flag should go.")
    ] = None,
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Create a flag in one environment; add rules with `flag rule add`, rollouts with
    `flag rollout` and targets with `flag target`."""
    values = parse_variants(variants)
    chosen = default or ("off" if "off" in values else list(values)[-1])
    kill = off_variant or chosen
    for option, variant in (("--default", chosen), ("--off-variant", kill)):
        if variant not in values:
            raise UsageError(
                f"{option} {variant!r} is not one of the variants: {', '.join(values)}"
            )

    def change(data: Any) -> str:
        from flagstone.edit import mapping

        if key in data:
            raise FlagstoneError(f"flag {key!r} already exists in {env}")
        flag = mapping()
        if description:
            flag["description"] = description
        if owner:
            flag["owner"] = owner
        if expires:
            flag["expires"] = expires
        flag["variants"] = mapping(values, flow=True)
        flag["enabled"] = True
        flag["off_variant"] = kill
        flag["default"] = chosen
        data[key] = flag
        return f"flag {key} created"

    apply_edit(root, env, "flags", key, change, commit, message, dry_run=dry_run, fmt=fmt)


def _toggle(
    key: str,
    env: str,
    enabled: bool,
    commit: bool,
    message: str | None,
    dry_run: bool,
    fmt: str,
    root: Path | None,
) -> None:
    def change(data: Any) -> str:
        _flag(data, key)["enabled"] = enabled
        return f"flag {key} {'enabled' if enabled else 'disabled (kill switch)'}"

    apply_edit(root, env, "flags", key, change, commit, message, dry_run=dry_run, fmt=fmt)


@command(name="enable", group=flag_app)
def flag_enable(
    key: str,
    env: Env = "dev",
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Release the kill switch."""
    _toggle(key, env, True, commit, message, dry_run, fmt, root)


@command(name="disable", group=flag_app)
def flag_disable(
    key: str,
    env: Env = "dev",
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Pull the kill switch: everyone gets off_variant."""
    _toggle(key, env, False, commit, message, dry_run, fmt, root)


@command(name="rollout", group=flag_app)
def flag_rollout(
    key: str,
    variant: Annotated[
        list[str],
        typer.Option(
            "--variant",
            "-v",
            help="name=percent (repeatable); the rest of the variants share nothing.",
        ),
    ],
    env: Env = "dev",
    rule: Annotated[
        int | None,
        typer.Option(
            "--rule", help="Change the rollout of this rule (1-based) instead of the default."
        ),
    ] = None,
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Set a percentage rollout on the default (or a rule): --variant on=50 --variant off=50."""
    weights: dict[str, float] = {}
    for item in variant:
        name, _, pct = item.partition("=")
        try:
            weights[name.strip()] = float(pct)
        except ValueError:
            raise FlagstoneError(f"--variant {item!r}: write name=percent, e.g. on=25") from None
    if len(weights) == 1:
        raise FlagstoneError(
            "give every variant of the rollout, e.g. --variant on=25 --variant off=75"
        )

    def change(data: Any) -> str:
        from flagstone.edit import mapping

        flag = _flag(data, key)
        rollout = mapping(
            ((k, int(v) if v.is_integer() else v) for k, v in weights.items()), flow=True
        )
        serve = mapping({"rollout": rollout}, flow=True)
        if rule is None:
            old = flag.get("default")
            if isinstance(old, dict) and "by" in old:
                serve["by"] = old["by"]
            flag["default"] = serve
            where = "default"
        else:
            rules = flag.get("rules") or []
            if not 1 <= rule <= len(rules):
                raise FlagstoneError(
                    f"flag {key!r} has {len(rules)} rule(s); --rule takes 1..{len(rules)}"
                )
            old = rules[rule - 1].get("serve")
            if isinstance(old, dict) and "by" in old:
                serve["by"] = old["by"]
            rules[rule - 1]["serve"] = serve
            where = f"rule {rule}"
        shares = ", ".join(f"{k} {v:g}%" for k, v in weights.items())
        return f"flag {key} {where} rollout {shares}"

    apply_edit(root, env, "flags", key, change, commit, message, dry_run=dry_run, fmt=fmt)


@command(name="target", group=flag_app)
def flag_target(
    key: str,
    variant: Annotated[str, typer.Option("--variant", "-v", help="The variant the units get.")],
    add: Annotated[
        list[str] | None, typer.Option("--add", help="Unit ids to target (repeatable).")
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="Unit ids to stop targeting (repeatable).")
    ] = None,
    env: Env = "dev",
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Add or remove individual targets of a variant."""

    def change(data: Any) -> str:
        from flagstone.edit import mapping, sequence

        flag = _flag(data, key)
        targets = flag.setdefault("targets", mapping())
        ids = targets.setdefault(variant, sequence(flow=True))
        added = [u for u in add or [] if u not in ids]
        ids.extend(added)
        removed = [u for u in remove or [] if u in ids]
        for unit in removed:
            ids.remove(unit)
        if not ids:
            del targets[variant]
        if not targets:
            del flag["targets"]
        return f"flag {key} targets {variant} +{len(added)} −{len(removed)}"

    apply_edit(root, env, "flags", key, change, commit, message, dry_run=dry_run, fmt=fmt)


@command(name="set", group=segment_app)
def segment_set(
    key: str,
    when: Annotated[
        str, typer.Option("--when", help='The condition as JSON, e.g. \'{"plan": "pro"}\'.')
    ],
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    env: Env = "dev",
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Create a segment or replace its condition."""
    condition = parse_condition(when)

    def change(data: Any) -> str:
        from flagstone.edit import mapping

        created = key not in data
        segment = data.setdefault(key, mapping())
        if description:
            segment["description"] = description
        segment["when"] = mapping(condition, flow=True)
        return f"segment {key} {'created' if created else 'changed'}"

    apply_edit(root, env, "segments", key, change, commit, message, dry_run=dry_run, fmt=fmt)


@command(name="set", group=config_app)
def config_set(
    key: Annotated[str, typer.Argument(help="Dotted key, e.g. api.timeout_ms.")],
    value: Annotated[
        str, typer.Argument(help="The value; typed by the app's schema (numbers, booleans, JSON).")
    ],
    env: Env = "dev",
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Set a config value, typed against the app's config schema."""
    from flagstone.edit import set_path
    from flagstone.load import find_root, load_repository

    repo, _ = load_repository(find_root(root or Path.cwd()), [env])
    if repo.secrets.covers(key):
        raise FlagstoneError(
            f"{key} is a secret: it must be stored encrypted, not set in plain text; "
            f"use `flagstone secret set {env} {key}` (reads the value from stdin)"
        )
    typed = _typed(repo, key, value)

    def change(data: Any) -> str:
        set_path(data, tuple(key.split(".")), typed, create=True)
        return f"config {key} = {json.dumps(typed)}"

    apply_edit(root, env, "config", None, change, commit, message, dry_run=dry_run, fmt=fmt)


def _typed(repo: Any, key: str, value: str) -> Any:
    """Read the value as the schema's type for that key says (string unless it says otherwise)."""
    node = repo.app_schema or {}
    for part in key.split("."):
        node = node.get("properties", {}).get(part, {}) if isinstance(node, dict) else {}
    kinds = node.get("type") if isinstance(node, dict) else None
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    if kinds == ["string"]:
        return value
    parsed = parse_value(value)
    if "integer" in kinds and isinstance(parsed, float) and parsed.is_integer():
        return int(parsed)
    return parsed


@command(name="get", group=config_app)
def config_get(
    key: Annotated[str, typer.Argument(help="Dotted key, e.g. api.timeout_ms.")],
    env: Env = "dev",
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Print a config value as JSON (secrets are not shown)."""
    from flagstone.load import find_root, load_repository
    from flagstone.report import ConfigValue

    repo, _ = load_repository(find_root(root or Path.cwd()), [env])
    config = repo.env(env).config
    missing = object()
    value = config.get(key, missing) if config is not None else missing
    if value is missing:
        raise FlagstoneError(f"no config key {key!r} in {env}")
    secret = repo.secrets.covers(key) or repo.secrets.is_secret(key, value)
    shown = None if secret else repo.secrets.redact_value(value)
    finish(ConfigValue(env, key, shown, secret=secret), fmt)
