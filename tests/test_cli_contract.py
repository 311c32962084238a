"""The output contract: every command writes one JSON object that its schema describes,
errors included, and offers only the formats it renders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer

from tests.cli_schemas import SCHEMAS, check_output, schema_name, validator
from tests.conftest import CASES

IDENTITY = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.test",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.test",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+00:00",
}


def git(root: Path, *args: str) -> str:
    env = {**os.environ, **IDENTITY}
    return subprocess.run(
        ["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True
    ).stdout


def leaf_commands() -> Iterator[tuple[str, Any]]:
    from flagstone.cli.app import _load_commands, app

    _load_commands()

    def walk(prefix: str, cmd: Any) -> Iterator[tuple[str, Any]]:
        if hasattr(cmd, "commands"):
            for name, sub in sorted(cmd.commands.items()):
                yield from walk(f"{prefix} {name}".strip(), sub)
        else:
            yield prefix, cmd

    yield from walk("", typer.main.get_command(app))


def formats_of(cmd: Any) -> list[str]:
    for param in cmd.params:
        if param.name == "fmt" and hasattr(param.type, "choices"):
            return [str(c) for c in param.type.choices]
    return []


COMMANDS = dict(leaf_commands())


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base case with two commits, shared by every read-only or --dry-run scenario."""
    root = tmp_path_factory.mktemp("contract") / "repo"
    shutil.copytree(CASES / "valid" / "base", root)
    (root / "specs").mkdir()
    (root / "specs" / "checkout.yaml").write_text(
        "env: prod\ncases:\n  - flag: new-checkout\n    context: {user_id: user-17}\n"
        "    expect: {variant: on}\n"
    )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base", "--no-gpg-sign")
    flags = root / "environments" / "prod" / "flags.yaml"
    flags.write_text(flags.read_text().replace("{on: 20, off: 80}", "{on: 30, off: 70}"))
    git(root, "commit", "-qam", "ramp checkout", "--no-gpg-sign")
    return root


CONTEXT = '{"user_id": "u2", "country": "DE"}'
# (command line, exit code) — each runs in the shared repository, once per format offered.
SCENARIOS: list[tuple[list[str], int]] = [
    (["validate"], 0),
    (["validate", "--env", "prod"], 0),
    (["test"], 0),
    (["test", "--env", "prod"], 0),
    (["eval", "new-checkout", "--env", "prod", "-c", CONTEXT], 0),
    (["eval", "new-checkout", "--env", "prod", "-c", CONTEXT, "--explain"], 0),
    (["eval", "--all", "--env", "prod", "-c", CONTEXT], 0),
    (["diff", "dev", "prod"], 0),
    (["diff", "dev", "prod", "--exit-code"], 1),
    (["diff", "--rev", "HEAD~1..HEAD"], 0),
    (["promote", "dev", "prod", "--dry-run"], 0),
    (["drift", "dev", "prod"], 1),
    (["history", "new-checkout"], 0),
    (["rollback", "prod", "--to", "HEAD~1", "--dry-run"], 0),
    (["revert", "HEAD", "--dry-run"], 0),
    (["verify", "--range", "HEAD~1..HEAD"], 0),
    (["config", "get", "api.timeout_ms"], 0),
    (["config", "set", "api.timeout_ms", "900", "--dry-run"], 0),
    (["flag", "create", "dark-mode", "--dry-run"], 0),
    (["flag", "enable", "new-checkout", "--dry-run"], 0),
    (["flag", "disable", "new-checkout", "--dry-run"], 0),
    (["flag", "rollout", "new-checkout", "-v", "on=50", "-v", "off=50", "--dry-run"], 0),
    (["flag", "target", "new-checkout", "-v", "on", "--add", "u9", "--dry-run"], 0),
    (["segment", "set", "pros", "--when", '{"plan": "pro"}', "--dry-run"], 0),
    (["codegen", "--lang", "ts"], 0),
    (["codegen", "--lang", "python", "--env", "prod"], 0),
    (["build", "--dry-run"], 0),
    (["flag", "list"], 0),
    (["flag", "show", "new-checkout"], 0),
    (["flag", "delete", "banner-text", "--dry-run"], 0),
    (["flag", "delete", "new-checkout", "--dry-run"], 1),
    (["segment", "list"], 0),
    (["segment", "show", "internal"], 0),
    (["segment", "delete", "internal", "--dry-run"], 1),
    (["experiment", "list"], 0),
    (["experiment", "show", "checkout-test"], 0),
    (["config", "list"], 0),
    (
        [
            "flag",
            "rule",
            "add",
            "new-checkout",
            "--segment",
            "internal",
            "--serve",
            "off",
            "--dry-run",
        ],
        0,
    ),
    (["flag", "rule", "remove", "new-checkout", "--rule", "1", "--dry-run"], 0),
    (["flag", "rule", "move", "new-checkout", "--rule", "2", "--to", "1", "--dry-run"], 0),
]


def command_of(args: list[str]) -> str:
    words = []
    for arg in args:
        if arg.startswith("-"):
            break
        candidate = " ".join([*words, arg])
        if candidate in COMMANDS or any(c.startswith(candidate + " ") for c in COMMANDS):
            words.append(arg)
        else:
            break
    return " ".join(words)


def format_option(command: str) -> str:
    return "--output-format" if command == "build" else "--format"


def test_contract__every_command_offers_json_and_has_a_schema() -> None:
    missing = []
    for name, cmd in COMMANDS.items():
        if "json" not in formats_of(cmd):
            missing.append(f"`flagstone {name}` has no `fmt` option offering json")
        elif not (SCHEMAS / f"{schema_name(name)}.schema.json").is_file():
            missing.append(f"`flagstone {name}` has no schemas/cli/{schema_name(name)}.schema.json")
    assert not missing, "\n".join(missing)


def test_contract__every_writer_offers_dry_run() -> None:
    writers = [
        name
        for name, cmd in COMMANDS.items()
        if {p.name for p in cmd.params} & {"commit", "no_commit", "yes"} or name == "build"
    ]
    assert "flag rule add" in writers and "promote" in writers
    lacking = [n for n in writers if "dry_run" not in {p.name for p in COMMANDS[n].params}]
    assert not lacking, f"writers without --dry-run: {lacking}"


def test_contract__schemas_are_valid_and_their_references_resolve() -> None:
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"].endswith(f"/cli/{path.name}")
    for name in COMMANDS:
        # resolving every $ref: validating the error envelope walks the oneOf
        validator(name).is_valid({"ok": False, "error": {"code": "usage", "message": "x"}})


def test_contract__every_error_branch_is_the_shared_envelope() -> None:
    """One definition of {"ok": false, "error": ...}: a schema that spells its own can drift."""

    def inline_errors(node: object, where: str) -> list[str]:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict) and props.get("ok") == {"const": False}:
                return [where]
            return [e for k, v in node.items() for e in inline_errors(v, f"{where}/{k}")]
        if isinstance(node, list):
            return [e for i, v in enumerate(node) for e in inline_errors(v, f"{where}/{i}")]
        return []

    found = [
        e
        for path in sorted(SCHEMAS.glob("*.schema.json"))
        if path.name != "envelope.schema.json"
        for e in inline_errors(json.loads(path.read_text()), path.name)
    ]
    assert not found, f"inline error branches (use envelope.schema.json#/$defs/error): {found}"


@pytest.mark.parametrize(
    ("args", "code"), SCENARIOS, ids=lambda a: " ".join(a) if isinstance(a, list) else None
)
def test_contract__each_format_renders_and_json_matches_the_schema(
    cli, repo: Path, args, code
) -> None:
    command = command_of(args)
    offered = formats_of(COMMANDS[command])
    for fmt in offered:
        result = cli([*args, format_option(command), fmt], cwd=repo)
        assert result.exit_code == code, (fmt, result.stdout, result.stderr)
        if fmt == "json":
            doc = check_output(command, result.stdout)
            assert doc["ok"] is (code == 0)
    assert git(repo, "status", "--porcelain") == "", "a read-only or --dry-run command wrote"
