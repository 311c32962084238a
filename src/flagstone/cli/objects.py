"""`flag list|show|delete`, `segment list|show|delete`, `config list`: what exists, side by
side per environment, and deleting what nothing uses any more."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flagstone.cli.app import Format, TextJson, command, finish
from flagstone.cli.edit_commands import (
    Commit,
    DryRun,
    Fmt,
    Message,
    Root,
    write_change,
)
from flagstone.cli.groups import config_app, flag_app, segment_app
from flagstone.errors import FlagstoneError
from flagstone.model import check_environments

if TYPE_CHECKING:
    from flagstone.model import Kind, Repository

Envs = Annotated[
    list[str] | None,
    typer.Option("--env", "-e", help="Only these environments (repeatable; default: all)."),
]
ListFormat = Annotated[Format, typer.Option("--format", "-f")]


def load(root: Path | None, envs: Sequence[str] | None) -> tuple[Repository, list[str]]:
    from flagstone.load import find_root, load_repository

    repo, _ = load_repository(find_root(root or Path.cwd()), envs)
    return repo, list(envs) if envs else list(repo.settings.environments)


def listing(kind: Kind, root: Path | None, envs: Sequence[str] | None, fmt: str) -> None:
    from flagstone.report import ListedObject, Listing

    repo, names = load(root, envs)
    keys: dict[str, None] = {}
    for name in names:
        keys.update(dict.fromkeys(repo.env(name).objects(kind)))
    items = []
    for key in sorted(keys):
        objects = {}
        for name in names:
            obj = repo.env(name).objects(kind).get(key)
            objects[name] = None if obj is None else (obj.raw, obj.file)
        items.append(ListedObject(key, objects))
    finish(Listing(kind, names, items), fmt)


def showing(kind: Kind, key: str, root: Path | None, envs: Sequence[str] | None, fmt: str) -> None:
    from flagstone.references import references_to
    from flagstone.report import ObjectView

    repo, names = load(root, envs)
    objects: dict[str, Any] = {}
    used_by = {}
    for name in names:
        env = repo.env(name)
        obj = env.objects(kind).get(key)
        objects[name] = None if obj is None else (obj.raw, obj.file)
        if obj is not None and kind in ("flags", "segments"):
            used_by[name] = references_to(env, kind, key)
    if all(o is None for o in objects.values()):
        raise no_such(kind, key, repo, names)
    finish(ObjectView(kind, key, names, objects, used_by), fmt)


def no_such(kind: Kind, key: str, repo: Repository, names: Sequence[str]) -> FlagstoneError:
    import difflib

    known = {k for n in names for k in repo.env(n).objects(kind)}
    close = difflib.get_close_matches(key, sorted(known), n=1)
    where = ", ".join(names)
    return FlagstoneError(
        f"no {kind[:-1]} {key!r} in {where}" + (f"; did you mean {close[0]!r}?" if close else "")
    )


def deleting(
    kind: Kind,
    key: str,
    envs: Sequence[str] | None,
    *,
    commit: bool,
    message: str | None,
    dry_run: bool,
    fmt: str,
    root: Path | None,
) -> None:
    """Remove ``key`` from each environment's file (a folder-layout file left empty goes),
    refusing while anything in that environment still uses it."""
    from flagstone.blocks import open_object
    from flagstone.edit import repository_lock
    from flagstone.errors import Problem
    from flagstone.load import attach_positions, find_root, read_worktree_text
    from flagstone.references import references_to
    from flagstone.report import EditResult

    with repository_lock(find_root(root or Path.cwd())):
        repo, names = load(root, None)
        names = list(envs) if envs else ["dev"] if "dev" in names else names[:1]
        check_environments(names, repo.settings.environments)
        targets = [n for n in names if key in repo.env(n).objects(kind)]
        if not targets:
            raise no_such(kind, key, repo, names)
        problems = [
            Problem(
                ref.file,
                0,
                0,
                f"{kind[:-1]} {key!r} is used by {ref} in {name}",
                "still-referenced",
                path=ref.path,
            )
            for name in targets
            for ref in references_to(repo.env(name), kind, key)
        ]
        description = f"{kind[:-1]} {key} deleted"
        if problems:
            located = attach_positions(problems, read_worktree_text(repo.root))
            refusal = (
                f"{kind[:-1]} {key} is still in use: nothing was deleted; "
                "change or delete what uses it first"
            )
            result = EditResult(
                ", ".join(targets),
                description,
                [],
                dry_run=dry_run,
                problems=located,
                refusal=refusal,
            )
            finish(result, fmt)
        changes = {}
        for name in targets:
            objects = repo.env(name).objects(kind)
            obj = objects[key]
            in_file = [k for k, o in objects.items() if o.file == obj.file]
            edited = open_object(repo.root, obj.file, key, in_file)
            del edited.data[key]
            layout = repo.env(name).layout.get(kind)
            after = None if layout == "folder" and edited.is_empty() else edited.text()
            changes[name] = {obj.file: (edited.raw, after)}
        write_change(
            repo, changes, description, commit=commit, message=message, dry_run=dry_run, fmt=fmt
        )


KindEnvs = Annotated[
    list[str] | None,
    typer.Option("--env", "-e", help="Delete from these environments (repeatable; default: dev)."),
]


@command(name="list", group=flag_app)
def flag_list(envs: Envs = None, fmt: ListFormat = Format.text, root: Root = None) -> None:
    """Every flag, with what each environment serves."""
    listing("flags", root, envs, fmt)


@command(name="show", group=flag_app)
def flag_show(
    key: str, envs: Envs = None, fmt: ListFormat = Format.text, root: Root = None
) -> None:
    """One flag side by side in every environment, and what uses it."""
    showing("flags", key, root, envs, fmt)


@command(name="delete", group=flag_app)
def flag_delete(
    key: str,
    envs: KindEnvs = None,
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Delete a flag; refused while a prerequisite or an experiment still names it."""
    deleting(
        "flags", key, envs, commit=commit, message=message, dry_run=dry_run, fmt=fmt, root=root
    )


@command(name="list", group=segment_app)
def segment_list(envs: Envs = None, fmt: ListFormat = Format.text, root: Root = None) -> None:
    """Every segment, with its condition in each environment."""
    listing("segments", root, envs, fmt)


@command(name="show", group=segment_app)
def segment_show(
    key: str, envs: Envs = None, fmt: ListFormat = Format.text, root: Root = None
) -> None:
    """One segment side by side in every environment, and what uses it."""
    showing("segments", key, root, envs, fmt)


@command(name="delete", group=segment_app)
def segment_delete(
    key: str,
    envs: KindEnvs = None,
    commit: Commit = False,
    message: Message = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Delete a segment; refused while a rule, segment or experiment audience still uses it."""
    deleting(
        "segments", key, envs, commit=commit, message=message, dry_run=dry_run, fmt=fmt, root=root
    )


@command(name="list", group=config_app)
def config_list(
    prefix: Annotated[
        str | None, typer.Argument(help="Only keys under this dotted prefix (api, api.timeout_ms).")
    ] = None,
    envs: Envs = None,
    fmt: ListFormat = Format.text,
    root: Root = None,
) -> None:
    """Every config value by dotted key, side by side per environment (secrets hidden)."""
    from flagstone.report import ConfigEntry, ConfigListing

    repo, names = load(root, envs)
    values: dict[str, dict[str, Any]] = {}
    for name in names:
        config = repo.env(name).config
        for key, value in config.leaves() if config is not None else ():
            values.setdefault(key, {})[name] = value
    from flagstone.validate import marked_config_paths

    pinned = {p.removeprefix("config.") for p in repo.settings.pinned if p.startswith("config.")}
    pinned |= set(marked_config_paths(repo, "x-flagstone-pinned"))
    entries = [
        ConfigEntry(
            key,
            by_env,
            secret=repo.secrets.covers(key)
            or any(repo.secrets.is_secret(key, v) for v in by_env.values()),
            pinned=any(key == p or key.startswith(p + ".") for p in pinned),
        )
        for key, by_env in sorted(values.items())
        if prefix is None or key == prefix or key.startswith(prefix + ".")
    ]
    finish(ConfigListing(names, entries), fmt)
