"""Command groups that several command modules add to (``flagstone experiment …``)."""

from __future__ import annotations

import typer

from flagstone.cli.app import app

experiment_app = typer.Typer(
    help="Experiments: browse, plan, run and conclude them.", no_args_is_help=True
)
secret_app = typer.Typer(
    help="Encrypted configuration values (SOPS-compatible).", no_args_is_help=True
)
privacy_app = typer.Typer(help="Consent, pseudonyms, erasure and retention.", no_args_is_help=True)

app.add_typer(experiment_app, name="experiment")
app.add_typer(secret_app, name="secret")
app.add_typer(privacy_app, name="privacy")
