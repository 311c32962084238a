from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flagstone.cli.app import TextJson, command, finish


class BundleFormat(StrEnum):
    flagstone = "flagstone"
    flagd = "flagd"


# cli/entry.py reads a plain `flagstone build ...` without typer: it knows these options
# by the same names (a test holds the two readers to the same options and results).
@command
def build(
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="Environments to build (repeatable; default: all)."),
    ] = None,
    all_envs: Annotated[
        bool, typer.Option("--all", help="Build every environment (the default).")
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output directory (default: dist/ at the repository root)."
        ),
    ] = None,
    bundle_format: Annotated[
        BundleFormat,
        typer.Option("--format", "-f", help="flagstone bundle, or a flagd flag-definition file."),
    ] = BundleFormat.flagstone,
    sign: Annotated[
        Path | None,
        typer.Option("--sign", help="Ed25519 private key (PEM) to sign the bundle with."),
    ] = None,
    include_secrets: Annotated[
        bool,
        typer.Option(
            "--include-secrets",
            help="Seal the secrets into the bundle for --recipient (server bundles only).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and compute the bundles; write nothing.")
    ] = False,
    recipients: Annotated[
        list[str] | None,
        typer.Option(
            "--recipient",
            help="With --include-secrets: the service's age public key (repeatable).",
        ),
    ] = None,
    fmt: Annotated[
        TextJson,
        typer.Option("--output-format", help="How to report what was written: text or json."),
    ] = TextJson.text,
    root: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Write one deterministic JSON bundle per environment (dist/<env>.json)."""
    from flagstone.cli.building import BuildOptions
    from flagstone.cli.building import build as run_build

    options = BuildOptions(
        envs=env,
        all_envs=all_envs,
        out_dir=out_dir,
        bundle_format=bundle_format.value,
        sign=sign,
        include_secrets=include_secrets,
        dry_run=dry_run,
        recipients=recipients,
        output_format=fmt.value,
        root=root,
    )
    finish(run_build(options), fmt)
