"""``flagstone secret …``: SOPS-compatible encrypted values in environments/<env>/secrets.sops.yaml."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flagstone.cli.app import ExitCode, Outcome, TextJson, command, finish
from flagstone.cli.groups import secret_app
from flagstone.errors import FlagstoneError, UsageError

if TYPE_CHECKING:
    from flagstone.model import Repository
    from flagstone.sops import Opened

recipients_app = typer.Typer(help="Who can decrypt an environment's secrets.", no_args_is_help=True)
secret_app.add_typer(recipients_app, name="recipients")

Root = Annotated[Path | None, typer.Option("--root", help="Repository root.")]
EnvArg = Annotated[str, typer.Argument(help="The environment (dev, staging, prod, ...).")]
KeyArg = Annotated[str, typer.Argument(help="Dotted key, e.g. db.password.")]
Fmt = Annotated[TextJson, typer.Option("--format", "-f")]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Check and encrypt as usual; write nothing.")
]


@contextmanager
def _verified() -> Iterator[None]:
    """A file that fails to verify is a finding (exit 1), not a usage error."""
    from flagstone.sops import TamperedError

    try:
        yield
    except TamperedError as e:
        from flagstone.cli.app import report_error

        report_error(e)
        raise typer.Exit(ExitCode.FINDINGS) from None


def _repo(root: Path | None, env: str) -> Repository:
    """The repository's root and settings; its environments are not read (a secret
    command touches one file, and reading 2,000 flags would triple its time)."""
    from flagstone.load import find_root, load_settings
    from flagstone.model import SETTINGS_FILE, Repository, check_environments

    repo_root = find_root(root or Path.cwd())
    settings = load_settings((repo_root / SETTINGS_FILE).read_bytes())
    check_environments([env], settings.environments)
    return Repository(root=repo_root, settings=settings, environments={})


def _open(repo: Repository, env: str, *, create: bool = False) -> Opened:
    from flagstone.sops import configured_recipients, find_identities, new_file, open_env
    from flagstone.sops import secrets_relpath as rel

    identities = find_identities(repo.root)
    opened = open_env(repo.root, env, identities)
    if opened is not None:
        return opened
    if not create:
        raise FlagstoneError(
            f"{rel(env)} does not exist; add a value with `flagstone secret set {env} KEY`"
        )
    recipients = configured_recipients(repo.settings.raw, env)
    if not recipients:
        raise FlagstoneError(
            f"no recipients for {env}: list age public keys under secrets.recipients.{env} in "
            "flagstone.yaml (create a key with `flagstone secret keygen`)"
        )
    return new_file(rel(env), recipients, passphrase=identities.passphrase)


def _write(
    repo: Repository,
    env: str,
    opened: Opened,
    extra: dict[str, str] | None = None,
    *,
    dry_run: bool = False,
) -> None:
    """The secrets file (and config.yaml when a secret moves out of it), all or nothing,
    and only if nobody changed them since they were read. A dry run renders the same
    files, so it fails where the write would, and writes none of them."""
    from flagstone.edit import apply_files
    from flagstone.sops import secrets_relpath

    files = {secrets_relpath(env): opened.render(), **(extra or {})}
    if dry_run:
        return
    basis = {rel: opened.source.raw for rel in files if rel == secrets_relpath(env)}
    apply_files(repo.root, files, basis=basis if opened.source.raw is not None else None)


def _dry(outcome: Outcome, dry_run: bool) -> Outcome:
    outcome.data["dry_run"] = dry_run
    if dry_run:
        outcome.note = f"dry run: would have {outcome.note}; nothing written"
    return outcome


def _read_value(key: str) -> str:
    """The value from stdin (piped) or a hidden prompt: never from argv, where it would
    stay in shell history and the process list."""
    if not sys.stdin.isatty():
        value = sys.stdin.read()
        return value[:-1] if value.endswith("\n") else value
    value = typer.prompt(f"value for {key}", hide_input=True, confirmation_prompt=True)
    return str(value)


def _typed(repo: Repository, key: str, text: str) -> Any:
    """Read the value as the schema's type says, and check it against the schema without
    ever quoting it."""
    from flagstone.load import app_schema

    node: Any = app_schema(repo.root, repo.settings) or {}
    for part in key.split("."):
        node = node.get("properties", {}).get(part, {}) if isinstance(node, dict) else {}
    kinds = node.get("type") if isinstance(node, dict) else None
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    value: Any = text
    if kinds and "string" not in kinds:
        try:
            value = json.loads(text)
        except ValueError:
            raise FlagstoneError(
                f"{key} must be {' or '.join(kinds)}; the value given is not"
            ) from None
        if "integer" in kinds and isinstance(value, float) and value.is_integer():
            value = int(value)
    if isinstance(node, dict) and node:
        from jsonschema import Draft202012Validator

        from flagstone.schema import _describe_secret

        errors = list(Draft202012Validator(node).iter_errors(value))
        if errors:
            raise FlagstoneError(
                _describe_secret(tuple(key.split(".")), errors[0]) + "; nothing was written"
            )
    return value


def _without_plaintext(repo: Repository, env: str, key: str) -> dict[str, str]:
    """config.yaml without ``key`` when it holds the value in plain text: ``secret set``
    moves a secret out of it, in the same all-or-nothing write."""
    from flagstone.edit import Document, delete_path
    from flagstone.paths import get_path

    path = repo.root / "environments" / env / "config.yaml"
    if not path.is_file():
        return {}
    doc = Document.parse(path.read_text(encoding="utf-8"))
    parts = tuple(key.split("."))
    from flagstone.paths import MISSING

    if get_path(doc.data, parts) is MISSING:
        return {}
    delete_path(doc.data, parts)
    return {f"environments/{env}/config.yaml": doc.dump()}


@command(name="set", group=secret_app)
def secret_set(
    env: EnvArg,
    key: KeyArg,
    value_on_argv: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Encrypt a value into ENV's secrets file (the value comes from stdin or a hidden prompt)."""
    if value_on_argv:
        from flagstone.secrets import remember

        remember(value_on_argv)  # never echoed, whatever reports the error
        raise UsageError(
            "secret set never takes the value on the command line (shell history, process "
            f'lists and CI logs keep it): printf %s "$VALUE" | flagstone secret set {env} {key}'
        )
    repo = _repo(root, env)
    value = _typed(repo, key, _read_value(key))
    with _verified():
        opened = _open(repo, env, create=True)
        opened.set(key, value)
        _write(repo, env, opened, _without_plaintext(repo, env, key), dry_run=dry_run)
    recipients = [str(e.get("recipient")) for e in opened.metadata.get("age", [])]
    note = f"set {key} in {opened.source.file} (encrypted for {len(recipients)} recipient(s))"
    data = {"env": env, "key": key, "file": opened.source.file, "recipients": recipients}
    finish(_dry(Outcome(data, note), dry_run), fmt)


@command(name="get", group=secret_app)
def secret_get(env: EnvArg, key: KeyArg, fmt: Fmt = TextJson.text, root: Root = None) -> None:
    """Print one decrypted value (strings as they are, other values as JSON)."""
    repo = _repo(root, env)
    with _verified():
        opened = _open(repo, env)
    try:
        value = opened.get(key)
    except KeyError:
        raise FlagstoneError(f"no secret {key!r} in {opened.source.file}") from None
    # Written directly, not through the reporters that scrub secrets: it was asked for.
    if fmt is TextJson.json:
        doc = {"ok": True, "env": env, "key": key, "value": value}
        sys.stdout.write(json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n")
        return
    sys.stdout.write((value if isinstance(value, str) else json.dumps(value)) + "\n")


@command(name="edit", group=secret_app)
def secret_edit(env: EnvArg, fmt: Fmt = TextJson.text, root: Root = None) -> None:
    """Decrypt ENV's secrets into a private temporary file, open $EDITOR, re-encrypt.

    The plaintext lives in a 0700 directory as a 0600 file and is removed however the
    editor ends, Ctrl-C included; an invalid result writes nothing."""
    import shlex
    import shutil
    import subprocess
    import tempfile

    from flagstone.load import parse_yaml
    from flagstone.sops import emit

    repo = _repo(root, env)
    with _verified():
        opened = _open(repo, env, create=True)
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    folder = tempfile.mkdtemp(prefix="flagstone-secret-")  # 0700
    try:
        path = Path(folder) / f"{env}.secrets.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(emit(opened.plain) if opened.plain else "# key: value\n")
        before = path.read_bytes()
        result = subprocess.run([*shlex.split(editor), str(path)], check=False)
        if result.returncode != 0:
            raise FlagstoneError(f"the editor exited with {result.returncode}; nothing was written")
        after = path.read_bytes()
        if after == before:
            finish(
                Outcome({"env": env, "file": opened.source.file, "changed": False}, "no change"),
                fmt,
            )
        data = parse_yaml(after, f"{env}.secrets.yaml (edited)")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise FlagstoneError(
                "the edited secrets must be a mapping of keys; nothing was written"
            )
        for key, value in _flat(data).items():
            _check_type(repo, key, value)
        opened.plain = data
        _write(repo, env, opened)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    finish(
        Outcome(
            {"env": env, "file": opened.source.file, "changed": True}, f"wrote {opened.source.file}"
        ),
        fmt,
    )


def _flat(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_type(repo: Repository, key: str, value: Any) -> None:
    from flagstone.load import app_schema

    node: Any = app_schema(repo.root, repo.settings) or {}
    for part in key.split("."):
        node = node.get("properties", {}).get(part, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict) and node:
        from jsonschema import Draft202012Validator

        from flagstone.schema import _describe_secret

        errors = list(Draft202012Validator(node).iter_errors(value))
        if errors:
            raise FlagstoneError(
                _describe_secret(tuple(key.split(".")), errors[0]) + "; nothing was written"
            )


@command(name="list", group=recipients_app)
def recipients_list(env: EnvArg, fmt: Fmt = TextJson.text, root: Root = None) -> None:
    """Print ENV's recipients, one a line."""
    from flagstone.sops import read_env_file

    repo = _repo(root, env)
    source = read_env_file(repo.root, env)
    if source is None:
        raise FlagstoneError(f"{env} has no secrets file yet")
    others = {kind: len(source.metadata[kind]) for kind in source.foreign_keys}
    shown = [*source.recipients] + [
        f"{k}: {n} key(s) (kept, not managed by flagstone)" for k, n in others.items()
    ]
    finish(
        Outcome(
            {
                "env": env,
                "file": source.file,
                "recipients": source.recipients,
                "other_keys": others,
            },
            shown=shown,
        ),
        fmt,
    )


@command(name="add", group=recipients_app)
def recipients_add(
    env: EnvArg,
    recipient: Annotated[
        str | None, typer.Argument(help="An age public key (age1…).", show_default=False)
    ] = None,
    passphrase: Annotated[
        bool,
        typer.Option("--passphrase", help="Add a passphrase recipient (FLAGSTONE_AGE_PASSPHRASE)."),
    ] = False,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Let another key decrypt ENV's secrets: the data key is wrapped for it too."""
    from flagstone.sops import PASSPHRASE_RECIPIENT, wrap_for

    if (recipient is None) == (not passphrase):
        raise FlagstoneError("name one AGE_PUBLIC_KEY, or pass --passphrase")
    repo = _repo(root, env)
    with _verified():
        opened = _open(repo, env)
    if passphrase:
        secret = os.environ.get("FLAGSTONE_AGE_PASSPHRASE") or (
            typer.prompt("passphrase", hide_input=True, confirmation_prompt=True)
            if sys.stdin.isatty()
            else None
        )
        if not secret:
            raise FlagstoneError("set FLAGSTONE_AGE_PASSPHRASE (or run in a terminal to be asked)")
        entries = [
            e for e in opened.metadata.get("age", []) if e.get("recipient") != PASSPHRASE_RECIPIENT
        ]
        entries.append(
            {
                "recipient": PASSPHRASE_RECIPIENT,
                "enc": wrap_for(PASSPHRASE_RECIPIENT, opened.key, secret),
            }
        )
        opened.metadata["age"] = entries
    else:
        opened.add_recipient(str(recipient))
    _write(repo, env, opened, dry_run=dry_run)
    note = f"let {recipient or 'a passphrase'} decrypt {opened.source.file}"
    finish(_dry(_recipients_outcome(env, opened, note), dry_run), fmt)


def _recipients_outcome(env: str, opened: Opened, note: str, rotated: bool = False) -> Outcome:
    recipients = [str(e.get("recipient")) for e in opened.metadata.get("age", [])]
    data = {"env": env, "file": opened.source.file, "recipients": recipients, "rotated": rotated}
    return Outcome(data, note)


@command(name="remove", group=recipients_app)
def recipients_remove(
    env: EnvArg,
    recipient: Annotated[str, typer.Argument(help="The age public key to remove.")],
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Remove a recipient; the data key is rotated and every value re-encrypted, since the
    removed key could read the old one."""
    repo = _repo(root, env)
    with _verified():
        opened = _open(repo, env)
    opened.remove_recipient(recipient)
    _write(repo, env, opened, dry_run=dry_run)
    note = f"removed {recipient} and rotated the data key of {opened.source.file}"
    finish(_dry(_recipients_outcome(env, opened, note, rotated=True), dry_run), fmt)


@command(name="rotate", group=secret_app)
def secret_rotate(
    env: EnvArg, dry_run: DryRun = False, fmt: Fmt = TextJson.text, root: Root = None
) -> None:
    """A new data key for ENV's secrets; every value re-encrypted with fresh IVs."""
    from flagstone.sops import find_identities

    repo = _repo(root, env)
    with _verified():
        opened = _open(repo, env)
    opened.rotate(passphrase=find_identities(repo.root).passphrase)
    _write(repo, env, opened, dry_run=dry_run)
    note = f"rotated the data key of {opened.source.file}"
    finish(_dry(_recipients_outcome(env, opened, note, rotated=True), dry_run), fmt)


@command(name="keygen", group=secret_app)
def secret_keygen(
    output: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Key file to write (default: ~/.config/flagstone/age/keys.txt)."
        ),
    ] = None,
    fmt: Fmt = TextJson.text,
) -> None:
    """Create an age identity (0600 file outside any repository) and print its public key."""
    from pyrage import x25519

    from flagstone.sops import identity_locations

    target = output or Path(next(p for w, p in identity_locations() if w == "user config") or "")
    target = target.expanduser()
    if target.exists():
        raise FlagstoneError(f"{target} already exists; pass --out for another file")
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists() and target.resolve().is_relative_to(candidate):
            raise FlagstoneError(
                f"{target} is inside the git repository {candidate}; keep identities out of git"
            )
    identity = x25519.Identity.generate()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    public = str(identity.to_public())
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"# public key: {public}\n{identity}\n")
    finish(Outcome({"file": str(target), "public_key": public}, f"wrote {target}", [public]), fmt)


@command(name="textconv", group=secret_app)
def secret_textconv(
    file: Annotated[Path, typer.Argument(help="A secrets.sops.yaml file.")],
    fmt: Fmt = TextJson.text,
) -> None:
    """git diff driver: key names and a fingerprint per value, never values."""
    from flagstone.sops import textconv

    text = textconv(file.read_bytes(), file.name)
    if fmt is TextJson.json:
        finish(Outcome({"file": str(file), "lines": text.splitlines()}), fmt)
    sys.stdout.write(text)


@command(name="merge", group=secret_app)
def secret_merge(
    base: Annotated[Path, typer.Argument(help="%O: the common ancestor.")],
    ours: Annotated[Path, typer.Argument(help="%A: our version; the result is written here.")],
    theirs: Annotated[Path, typer.Argument(help="%B: their version.")],
    name: Annotated[
        str, typer.Argument(help="%P: the path in the repository.")
    ] = "secrets.sops.yaml",
    fmt: Fmt = TextJson.text,
) -> None:
    """git merge driver: merge by key on the decrypted values and re-encrypt, instead of
    conflicting on the MAC. Keys changed differently on both sides stay a conflict (exit 1)."""
    from flagstone.sops import SopsFile, find_identities, merge, unflatten

    identities = find_identities()

    def opened(path: Path) -> Opened | None:
        data = path.read_bytes()
        return SopsFile.parse(data, name).open(identities) if data.strip() else None

    with _verified():
        o, a, b = opened(base), opened(ours), opened(theirs)
    if a is None or b is None:
        raise FlagstoneError(f"{name}: one side deleted the file; resolve by hand")
    values, conflicts = merge(o, a, b)
    if conflicts:
        note = f"{name}: changed on both sides: {', '.join(conflicts)}; resolve with `flagstone secret edit`"
        finish(
            Outcome({"file": name, "conflicts": conflicts, "merged": False}, note, ok=False),
            fmt,
        )
    theirs_recipients = set(b.source.recipients) - set(o.source.recipients if o else [])
    for recipient in sorted(theirs_recipients - set(a.source.recipients)):
        a.add_recipient(recipient)
    a.plain = unflatten(values)
    from flagstone.edit import atomic_write

    atomic_write(ours, a.render())
    finish(Outcome({"file": name, "conflicts": [], "merged": True}), fmt)


@command(name="drivers", group=secret_app)
def secret_drivers(fmt: Fmt = TextJson.text, root: Root = None) -> None:
    """Configure this clone's git to use flagstone's diff and merge drivers for secrets
    files (.gitattributes, written by `flagstone init`, names them)."""
    from flagstone import gitio
    from flagstone.load import find_root

    repo_root = find_root(root or Path.cwd())
    from flagstone.scaffold import SECRET_DRIVERS as GIT_DRIVERS

    gitio.set_config(repo_root, GIT_DRIVERS)
    shown = [f"git config {key} {json.dumps(value)}" for key, value in GIT_DRIVERS.items()]
    finish(Outcome({"config": dict(GIT_DRIVERS)}, shown=shown), fmt)
