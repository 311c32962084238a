"""`experiment list|show`: the experiments of every environment, side by side.

The lifecycle verbs (create, start, stop, conclude, ramp, status) live in
``cli/experiment.py``; `experiment plan` in ``cli/experiment_plan.py``.
"""

from __future__ import annotations

from flagstone.cli.app import Format, command
from flagstone.cli.edit_commands import Root
from flagstone.cli.groups import experiment_app
from flagstone.cli.objects import Envs, ListFormat, listing, showing


@command(name="list", group=experiment_app)
def experiment_list(envs: Envs = None, fmt: ListFormat = Format.text, root: Root = None) -> None:
    """Every experiment, with its status, flag and traffic in each environment."""
    listing("experiments", root, envs, fmt)


@command(name="show", group=experiment_app)
def experiment_show(
    key: str, envs: Envs = None, fmt: ListFormat = Format.text, root: Root = None
) -> None:
    """One experiment side by side in every environment."""
    showing("experiments", key, root, envs, fmt)
