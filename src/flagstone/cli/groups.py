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
flag_app = typer.Typer(
    help="List, show, create, change and delete flags (comments and formatting are kept).",
    no_args_is_help=True,
)
rule_app = typer.Typer(
    help="Add, remove and reorder a flag's targeting rules (numbered from 1).",
    no_args_is_help=True,
)
segment_app = typer.Typer(
    help="List, show, create, change and delete segments.", no_args_is_help=True
)
config_app = typer.Typer(help="List, read and change configuration values.", no_args_is_help=True)

app.add_typer(flag_app, name="flag")
flag_app.add_typer(rule_app, name="rule")
app.add_typer(segment_app, name="segment")
app.add_typer(config_app, name="config")

app.add_typer(experiment_app, name="experiment")
app.add_typer(secret_app, name="secret")
app.add_typer(privacy_app, name="privacy")
