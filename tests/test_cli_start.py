"""A run imports what its command needs: `flagstone build` loads build's module, not all twenty."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_each_top_level_command__is_registered_once_by_the_module_it_is_found_in() -> None:
    from flagstone.cli.app import _command_modules, _load_commands, app, command_name

    _load_commands()
    names = [command_name(c) for c in app.registered_commands]
    assert len(names) == len(set(names))
    modules = set(_command_modules())
    for info in app.registered_commands:
        module = command_name(info).replace("-", "_")
        if module in modules:  # the module a run of this command imports alone
            assert info.callback.__module__ == f"flagstone.cli.{module}"
    # the rest (rollback, drift, the groups) are found by loading every module
    assert {"build", "validate", "test", "eval"} <= {n for n in names if n in modules}


def run_main(args: list[str]) -> str:
    code = (
        "import sys; from flagstone.cli.app import main; sys.argv = ['flagstone', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('flagstone.cli.')), file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return result.stderr.splitlines()[-1]


def test_build__imports_its_own_command_module_only() -> None:
    loaded = run_main(["build", "--help"])
    assert "'flagstone.cli.build'" in loaded
    assert "'flagstone.cli.validate'" not in loaded
    assert "'flagstone.cli.edit_commands'" not in loaded


@pytest.mark.slow
def test_a_command_defined_in_another_module__still_runs() -> None:
    # rollback lives in flagstone.cli.history, flag in edit_commands: both need the full load
    for args, usage in (
        (["rollback", "--help"], "flagstone rollback [OPTIONS]"),
        (["flag", "--help"], "flagstone flag [OPTIONS] COMMAND"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "flagstone", *args], capture_output=True, text=True
        )
        assert result.returncode == 0
        assert usage in result.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "flagstone", "nope"], capture_output=True, text=True
    )
    assert unknown.returncode == 2
    assert "No such command 'nope'" in unknown.stderr
