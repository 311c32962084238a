"""``flagstone privacy …``: pseudonyms for the metrics join, erasure and retention of logs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flagstone.cli.app import Outcome, TextJson, command, err, finish
from flagstone.cli.groups import privacy_app
from flagstone.errors import FlagstoneError

if TYPE_CHECKING:
    from flagstone.privacy import LogReport

Root = Annotated[Path | None, typer.Option("--root", help="Repository root.")]
Fmt = Annotated[TextJson, typer.Option("--format", "-f")]
Data = Annotated[
    Path, typer.Option("--data", help="Directory of exposure and usage logs (*.jsonl).")
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Report what would be removed; change nothing.")
]


def _outcome(report: LogReport, verb: str, dry_run: bool, extra: dict[str, Any]) -> Outcome:
    files = [
        {"file": f.file, "removed": f.removed, "kept": f.kept, "unreadable": f.unreadable}
        for f in report.files
    ]
    shown = [f"{f.file}: {f.removed} row(s) {verb}" for f in report.files if f.removed]
    would = "would be " if dry_run else ""
    note = f"{report.removed} row(s) {would}{verb} from {len(report.files)} file(s)"
    return Outcome(
        {**extra, "files": files, "removed": report.removed, "dry_run": dry_run}, note, shown
    )


@command(name="pseudonymize", group=privacy_app)
def pseudonymize(
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", help="Read the key from this environment's secrets."),
    ] = None,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Map raw ids (stdin, one per line or CSV first column) to the runtime's pseudonyms:
    `raw,pseudonym` lines, to join metrics with exposure logs."""
    from flagstone.load import find_root
    from flagstone.privacy import pseudonym_key, pseudonymizer, read_ids

    key = pseudonym_key(find_root(root or Path.cwd()), env)
    if key is None:
        raise FlagstoneError(
            "no pseudonym key: set FLAGSTONE_PSEUDONYM_KEY, or store it with "
            f"`flagstone secret set {env or 'ENV'} analytics.pseudonym_key` and pass --env"
        )
    hash_id = pseudonymizer(key)
    pairs = [(raw, hash_id(raw)) for raw in read_ids(sys.stdin)]
    if fmt is TextJson.json:
        finish(Outcome({"ids": [{"id": r, "pseudonym": p} for r, p in pairs]}), fmt)
    sys.stdout.write("".join(f"{r},{p}\n" for r, p in pairs))


@command(name="forget", group=privacy_app)
def forget(
    unit: Annotated[str, typer.Option("--unit", help="The person's unit id (raw).")],
    data: Data,
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", help="Read the pseudonym key from this environment's secrets."),
    ] = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Right to erasure: remove one unit's rows from local exposure and usage logs, whether
    they hold its raw id or its pseudonym; files are rewritten atomically."""
    from flagstone.load import find_root
    from flagstone.privacy import forget as forget_unit
    from flagstone.privacy import pseudonym_key

    try:
        key = pseudonym_key(find_root(root or Path.cwd()), env)
    except FlagstoneError:
        if env is not None:
            raise
        key = None
    if key is None:
        err.print(
            "note: no pseudonym key (FLAGSTONE_PSEUDONYM_KEY or --env): matching raw ids only"
        )
    report = forget_unit(data, unit, key, dry_run=dry_run)
    finish(_outcome(report, "removed", dry_run, {"pseudonymized": key is not None}), fmt)


@command(name="retention", group=privacy_app)
def retention(
    data: Data,
    days: Annotated[
        int | None, typer.Option("--days", help="Override privacy.retention_days.")
    ] = None,
    dry_run: DryRun = False,
    fmt: Fmt = TextJson.text,
    root: Root = None,
) -> None:
    """Delete log rows older than privacy.retention_days (flagstone.yaml)."""
    from flagstone.load import find_root, load_settings
    from flagstone.model import SETTINGS_FILE
    from flagstone.privacy import PrivacySettings, retain

    repo_root = find_root(root or Path.cwd())
    settings = load_settings((repo_root / SETTINGS_FILE).read_bytes())
    keep = days if days is not None else PrivacySettings.of(settings.raw).retention_days
    if keep is None or keep < 0:
        raise FlagstoneError("set privacy.retention_days in flagstone.yaml (or pass --days N)")
    report = retain(data, keep, dry_run=dry_run)
    finish(_outcome(report, "deleted", dry_run, {"retention_days": keep}), fmt)
