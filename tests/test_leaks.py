"""The leak sweep: secret values that violate the schema in every way, through every
command and format; the value never appears in stdout, stderr, files written or the git
objects a command creates.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import git
import pytest

from tests.conftest import CASES

# Each violates the schema below in its own way, so every kind of explanation is tried.
DEV = {
    "password": "hunter2-super-secret",  # minLength: "... is too short" quotes the instance
    "pin": "s3cr3t-pin-value",  # type integer: "found string ..."
    "mode": "m0de-secret-value",  # enum: "... is not one of"
    "region": "r3gion-secret-value",  # pattern
    "nested": {"deep": "n3sted-secret-value"},  # type string: found object {...}
}
PROD = {
    "password": "pr0d-password-value-that-is-long-enough-for-the-schema",
    "pin": 73194628,
    "mode": "pr0d-m0de-secret",
    "region": "pr0d-r3gion-secret",
    "nested": "pr0d-nested-secret",
}
OLD_DEV = {
    "password": "0ld-dev-password",
    "pin": "0ld-pin-secret",
    "mode": "0ld-m0de-secret",
    "region": "0ld-r3gion-secret",
    "nested": "0ld-nested-secret",
}


def plaintexts(values: dict[str, object]) -> list[str]:
    out = []
    for value in values.values():
        out += plaintexts(value) if isinstance(value, dict) else [str(value)]  # type: ignore[arg-type]
    return out


SECRETS = plaintexts(DEV) + plaintexts(PROD) + plaintexts(OLD_DEV)

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "api": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "base_url": {"type": "string", "x-flagstone-pinned": True},
                "timeout_ms": {"type": "integer", "minimum": 1},
                "token": {"type": "string", "x-flagstone-secret": True},
            },
        },
        "db": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "password": {"type": "string", "minLength": 40, "x-flagstone-secret": True},
                "pin": {"type": "integer", "x-flagstone-secret": True},
                "mode": {"enum": ["a", "b"], "x-flagstone-secret": True},
                "region": {"type": "string", "pattern": "^[a-z]{2}$", "x-flagstone-secret": True},
                "nested": {"type": "string", "x-flagstone-secret": True},
            },
        },
    },
}


def config_yaml(base_url: str, db: dict[str, object]) -> str:
    return (
        f"api:\n  base_url: {base_url}\n  timeout_ms: 500\n"
        + "db:\n"
        + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in db.items())
    )


@pytest.fixture
def leaky_repo(git_repo: git.Repo) -> Path:
    root = Path(git_repo.working_dir)
    shutil.copytree(CASES / "valid" / "base", root, dirs_exist_ok=True)
    (root / "schemas" / "config.schema.json").write_text(json.dumps(SCHEMA, indent=2))
    (root / "environments/dev/config.yaml").write_text(
        config_yaml("https://dev.shop.test", OLD_DEV)
    )
    (root / "environments/prod/config.yaml").write_text(config_yaml("https://shop.test", PROD))
    git_repo.git.add("-A")
    git_repo.git.commit("-m", "plaintext secrets, committed by mistake", "--no-gpg-sign")
    (root / "environments/dev/config.yaml").write_text(config_yaml("https://dev.shop.test", DEV))
    flags = root / "environments/dev/flags.yaml"
    flags.write_text(
        flags.read_text().replace("description: Redesigned checkout", "description: New")
    )
    git_repo.git.add("-A")
    git_repo.git.commit("-m", "change them", "--no-gpg-sign")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def git_objects(root: Path) -> set[str]:
    out = subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch-check=%(objectname)"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {where}"


def assert_nothing_new_leaked(root: Path, before: dict[str, bytes], objects: set[str]) -> None:
    for rel, data in snapshot(root).items():
        had = before.get(rel, b"")
        for secret in SECRETS:
            if secret.encode() in data and secret.encode() not in had:
                pytest.fail(f"{secret!r} written into {rel}")
    for sha in git_objects(root) - objects:
        content = subprocess.run(
            ["git", "cat-file", "-p", sha], cwd=root, capture_output=True, check=True
        ).stdout
        assert_no_secret(f"git object {sha}", content.decode("utf-8", "replace"))


FORMATS = ["text", "json", "markdown"]
COMMANDS = [
    *[["validate", "--format", f] for f in [*FORMATS, "github"]],
    ["validate", "--env", "dev", "--format", "json"],
    *[["diff", "dev", "prod", "--format", f] for f in FORMATS],
    *[["diff", "--rev", "HEAD~1..HEAD", "--format", f] for f in FORMATS],
    ["diff", "--rev", "HEAD~1.."],
    *[["history", f"db.{k}", "--format", f] for k in DEV for f in FORMATS],
    *[["history", "--format", f] for f in FORMATS],  # the audit log: every key
    *[["history", "--env", "dev", "--author", "e", "--format", f] for f in FORMATS],
    *[["drift", "dev", "prod", "--format", f] for f in FORMATS],
    ["eval", "new-checkout", "--env", "dev", "--explain", "--context", '{"user_id": "u1"}'],
    ["eval", "--all", "--env", "prod", "--format", "json"],
    ["build", "--out", "dist"],
    ["build", "--env", "prod", "--out", "dist-prod"],
    *[["config", "get", f"db.{k}", "--env", e] for k in DEV for e in ("dev", "prod")],
    ["config", "get", "db", "--env", "dev"],
    ["config", "set", "db.password", "x", "--env", "dev"],
    ["promote", "dev", "prod", "--dry-run"],
    ["promote", "dev", "prod", "--yes"],
    ["rollback", "prod", "--to", "HEAD~1", "--only", "new-checkout"],
    ["test"],
]


def test_leak_sweep__every_command_and_format__never_shows_a_secret(cli, leaky_repo: Path) -> None:
    before, objects = snapshot(leaky_repo), git_objects(leaky_repo)
    ran = 0
    for args in COMMANDS:
        result = cli(args, cwd=leaky_repo)
        assert_no_secret(f"stdout of {args}", result.stdout)
        assert_no_secret(f"stderr of {args}", result.stderr)
        ran += 1
    assert ran == len(COMMANDS)
    # validate really did explain the violations, without the values
    report = json.loads(cli(["validate", "--format", "json"], cwd=leaky_repo).stdout)
    messages = {p["message"] for p in report["problems"]}
    assert any("db.password: <secret> is shorter than 40 characters" in m for m in messages)
    assert any("db.pin: <secret> is a string, expected integer" in m for m in messages)
    assert any("db.mode: <secret> is not one of the allowed values" in m for m in messages)
    assert any("db.region: <secret> does not match the pattern" in m for m in messages)
    assert any("db.nested: <secret> is a object, expected string" in m for m in messages)
    history = json.loads(
        cli(["history", "db.password", "--format", "json"], cwd=leaky_repo).stdout
    )["entries"]
    assert history and all(
        e["changes"] in (["<secret: changed>"], ["config key added"]) for e in history
    )
    audit_log = json.loads(cli(["history", "--format", "json"], cwd=leaky_repo).stdout)["entries"]
    secret_rows = [e for e in audit_log if e["key"].startswith("db.") and e["env"] == "dev"]
    assert {e["key"] for e in secret_rows} >= {f"db.{k}" for k in DEV if k != "nested"}
    assert "<secret: changed>" in {c for e in secret_rows for c in e["changes"]}, secret_rows
    assert_nothing_new_leaked(leaky_repo, before, objects)


def test_leak_sweep__an_unexpected_error__traceback_scrubbed(leaky_repo: Path) -> None:
    """A bug whose exception message carries a secret: neither the one-line error nor the
    FLAGSTONE_DEBUG traceback shows it."""
    program = (
        "import sys, flagstone.validate as v\n"
        "def boom(*a, **k):\n"
        f"    raise ValueError('cannot parse ' + {DEV['password']!r})\n"
        "v.validate_loaded = boom\n"
        "from flagstone.cli.app import main\n"
        "sys.argv = ['flagstone', 'validate']\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    for debug in ("", "1"):
        result = subprocess.run(
            [sys.executable, "-c", program],
            cwd=leaky_repo,
            capture_output=True,
            text=True,
            env={**env, "FLAGSTONE_DEBUG": debug},
        )
        assert result.returncode == 2, result.stderr
        assert "internal error (ValueError: cannot parse <secret>)" in result.stderr
        assert ("Traceback" in result.stderr) == bool(debug)
        assert_no_secret("stderr", result.stderr + result.stdout)


def test_leak_sweep__encrypted_secrets__never_printed_except_by_secret_get(
    cli, leaky_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyrage import x25519

    identity = x25519.Identity.generate()
    key_file = tmp_path / "home" / "key.txt"
    key_file.parent.mkdir()
    key_file.write_text(f"{identity}\n")
    monkeypatch.setenv("FLAGSTONE_AGE_KEY_FILE", str(key_file))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    settings = leaky_repo / "flagstone.yaml"
    settings.write_text(
        settings.read_text() + f"secrets:\n  recipients: [{identity.to_public()}]\n"
    )
    long_enough = "s3aled-password-value-that-is-long-enough-for-the-schema"
    refused = cli(["secret", "set", "prod", "db.password"], cwd=leaky_repo, input="sh0rt-pw-value")
    assert refused.exit_code == 2 and "sh0rt-pw-value" not in refused.stdout + refused.stderr
    assert (
        cli(["secret", "set", "prod", "db.password"], cwd=leaky_repo, input=long_enough).exit_code
        == 0
    )
    assert (
        cli(
            ["secret", "set", "dev", "db.password"], cwd=leaky_repo, input=long_enough + "-dev"
        ).exit_code
        == 0
    )
    secrets_file = leaky_repo / "environments/prod/secrets.sops.yaml"
    for args in [
        *[["validate", "--format", f] for f in [*FORMATS, "github"]],
        *[["diff", "dev", "prod", "--format", f] for f in FORMATS],
        ["diff", "--rev", "HEAD.."],
        ["drift", "dev", "prod"],
        ["history", "db.password"],
        ["config", "get", "db.password", "--env", "prod"],
        ["build", "--out", "dist-sealed", "--env", "prod"],
        ["promote", "dev", "prod", "--dry-run"],
        ["secret", "textconv", str(secrets_file)],
        ["secret", "recipients", "list", "prod", "--format", "json"],
        ["secret", "set", "prod", "db.pin"],  # refused: not an integer; must not echo it
    ]:
        result = cli(args, cwd=leaky_repo, input="n0t-an-integer-pin" if "pin" in args else None)
        for secret in (long_enough, "n0t-an-integer-pin", *SECRETS):
            assert secret not in result.stdout + result.stderr, (args, secret)
    for path in leaky_repo.rglob("*.json"):
        assert long_enough not in path.read_text()
    assert (
        cli(["secret", "get", "prod", "db.password"], cwd=leaky_repo).stdout == long_enough + "\n"
    )
    # the commands that act on it, and every file and git object they write
    objects = git_objects(leaky_repo)
    git.Repo(leaky_repo).git.add("-A")
    git.Repo(leaky_repo).git.commit("-m", "encrypted secrets", "--no-gpg-sign")
    service = x25519.Identity.generate()
    ran = []
    for args in [
        ["eval", "new-checkout", "--env", "prod", "--explain", "--context", '{"user_id": "u1"}'],
        ["eval", "--all", "--env", "prod", "--format", "json"],
        ["history", "--format", "json"],
        ["diff", "--rev", "HEAD~1..HEAD", "--format", "json"],
        ["promote", "dev", "prod", "--secrets", "reencrypt", "--yes", "--commit"],
        ["rollback", "prod", "--to", "HEAD~1", "--only", "new-checkout", "--yes"],
        ["secret", "rotate", "prod"],
        ["secret", "recipients", "add", "prod", str(service.to_public())],
    ]:
        result = cli(args, cwd=leaky_repo)
        ran.append((args[0], result.exit_code))
        for secret in (long_enough, long_enough + "-dev"):
            assert secret not in result.stdout + result.stderr, (args, secret)
    assert all(code == 0 for _, code in ran), str(ran)
    for rel, data in snapshot(leaky_repo).items():
        for secret in (long_enough, long_enough + "-dev"):
            assert secret.encode() not in data, f"{secret!r} written into {rel}"
    for sha in git_objects(leaky_repo) - objects:
        content = subprocess.run(
            ["git", "cat-file", "-p", sha], cwd=leaky_repo, capture_output=True, check=True
        ).stdout
        assert long_enough.encode() not in content, f"plaintext in git object {sha}"
    assert len(git_objects(leaky_repo) - objects) > 3  # the commits really happened
