"""The console script runs a plain `flagstone build` without typer: what it prints, exits
with and writes is byte for byte what the Typer app does, for every command line."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from flagstone.cli.building import BuildOptions
from flagstone.cli.entry import BUILD_OPTIONS, read_build_args
from tests.test_validate_corpus import CASES, build_case

CONSOLE_SCRIPT = Path(sys.executable).parent / "flagstone"
# The Typer app alone, as the console script ran it before it had a quick path.
TYPER_APP = (
    "import sys; sys.argv = ['flagstone', *sys.argv[1:]]\n"
    "from flagstone.cli.app import main\n"
    "main()\n"
)

# Command lines the quick path takes: it must give what typer gives.
TAKEN = [
    ["build"],
    ["build", "--all", "--out", "out"],
    ["build", "-e", "prod", "--out=out"],
    ["build", "--env", "dev", "--env=prod", "-o", "out", "--dry-run"],
    ["build", "--out", "elsewhere", "--out", "out"],  # the last one counts
    ["build", "--output-format", "json", "--out", "out"],
    ["build", "--format", "flagd", "--out", "out"],
    ["build", "--format=flagd", "--output-format", "json", "--out", "out"],
    ["build", "--sign", "../signing.pem", "--env", "prod", "--out", "out"],
    ["build", "--sign", "missing.pem", "--output-format", "json"],
    ["build", "--env", "nope"],
    ["build", "--env", "dev", "--all"],
    ["build", "--include-secrets", "--output-format", "json"],
    ["build", "--root", "../elsewhere"],
    ["build", "--out", "environments/prod/flags.yaml"],  # a file in the way
]
# Command lines it leaves to typer (help, usage errors and spellings it does not read).
DECLINED = [
    ["build", "--help"],
    ["build", "-h"],
    ["build", "--out", "out", "-h"],
    ["build", "--bogus"],
    ["build", "--out"],
    ["build", "--out", "-x"],
    ["build", "--env", ""],
    ["build", "--format", "nope"],
    ["build", "--format", "FLAGD"],
    ["build", "--output-format", "markdown"],
    ["build", "--dry-run=yes"],
    ["build", "extra"],
    ["build", "--"],
    ["build", "-edev"],
    ["build", "--no-all"],
    ["-C", ".", "build"],
    ["validate"],
    ["--help"],
    [],
]
# Declined ones run both ways too: the console script hands them on untouched.
DECLINED_RUN = [
    ["build", "--help"],
    ["build", "--bogus"],
    ["build", "--format", "nope"],
    ["-C", ".", "build", "--out", "out"],
    [],
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """valid/base committed, with a signing key beside it."""
    top = tmp_path_factory.mktemp("entry")
    root = shutil.copytree(CASES / "valid" / "base", top / "repo")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=T", "-c", "user.email=t@example.test", "commit", "-qm", "base"],
    ):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)
    key = Ed25519PrivateKey.generate()
    (top / "signing.pem").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    return root


def outcome(command: list[str], root: Path) -> tuple[int, str, str, dict[str, bytes]]:
    """Exit code, stdout, stderr and the bundles written (then removed) of one run."""
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    written = {}
    for folder in (root / "out", root / "dist"):
        if folder.is_dir():
            written.update({f"{folder.name}/{p.name}": p.read_bytes() for p in folder.iterdir()})
            shutil.rmtree(folder)
    return result.returncode, result.stdout, result.stderr, written


@pytest.mark.slow
@pytest.mark.parametrize("args", TAKEN + DECLINED_RUN, ids=" ".join)
def test_console_script__prints_exits_and_writes_as_the_typer_app(
    args: list[str], repo: Path
) -> None:
    typer_app = outcome([sys.executable, "-c", TYPER_APP, *args], repo)
    console_script = outcome([str(CONSOLE_SCRIPT), *args], repo)
    assert console_script == typer_app
    assert "Traceback" not in console_script[2]


@pytest.mark.slow
@pytest.mark.parametrize("output", ["text", "json"])
def test_console_script__refuses_an_invalid_repository_as_the_typer_app(
    output: str, tmp_path: Path
) -> None:
    root = build_case("rollout-sum", tmp_path / "repo")
    args = ["build", "--output-format", output]
    typer_app = outcome([sys.executable, "-c", TYPER_APP, *args], root)
    assert typer_app[0] == 1 and "rollout weights sum to 90" in typer_app[1]
    assert outcome([str(CONSOLE_SCRIPT), *args], root) == typer_app


def test_quick_reader__takes_the_plain_command_lines_and_declines_the_rest() -> None:
    assert all(read_build_args(args) is not None for args in TAKEN)
    assert all(read_build_args(args) is None for args in DECLINED)


def test_quick_reader__reads_values_as_typer_does() -> None:
    options = read_build_args(
        ["build", "-e", "dev", "--env=prod", "--out", "a", "-o", "b", "--dry-run", "--all"]
    )
    assert options == BuildOptions(
        envs=["dev", "prod"], all_envs=True, out_dir=Path("b"), dry_run=True
    )
    assert read_build_args(["build"]) == BuildOptions()


def test_quick_reader__knows_exactly_the_options_build_declares() -> None:
    import typer.main

    from flagstone.cli.app import _only_from_its_module

    trimmed = _only_from_its_module("build")
    assert trimmed is not None
    command = typer.main.get_command(trimmed).commands["build"]  # type: ignore[attr-defined]
    declared = {
        name
        for param in command.params
        for name in (*param.opts, *param.secondary_opts)
        if name not in ("--help", "-h")
    }
    assert declared == set(BUILD_OPTIONS)
    assert set(BUILD_OPTIONS.values()) == {f.name for f in dataclasses.fields(BuildOptions)}


def test_plain_build__imports_neither_typer_nor_rich(repo: Path, tmp_path: Path) -> None:
    invalid = build_case("rollout-sum", tmp_path / "invalid")  # rich shows its problems
    for folder, shown_by_rich in ((repo, False), (invalid, True)):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "flagstone", "build", "--out", "out"],
            cwd=folder,
            capture_output=True,
            text=True,
        )
        assert result.returncode == (1 if shown_by_rich else 0), result.stderr[-2000:]
        modules = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
        assert ("rich" in modules) is shown_by_rich
        assert ("typer" in modules) is shown_by_rich
        shutil.rmtree(folder / "out", ignore_errors=True)
