"""flagstone.secrets: the one place that decides what is secret and how it is shown."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from flagstone.errors import Problem
from flagstone.secrets import SECRET, Secrets, is_encrypted, redact_text, secrets_of

SRC = Path(__file__).resolve().parent.parent / "src" / "flagstone"
ENC = "ENC[AES256_GCM,data:QUJD,iv:REVG,tag:R0hJ,type:str]"
SCHEMA = {
    "properties": {
        "db": {"properties": {"password": {"type": "string", "x-flagstone-secret": True}}},
        "api": {"properties": {"url": {"type": "string"}}},
    }
}


def test_secrets_of__marked_paths_secret_files_and_encrypted_values__all_count() -> None:
    secrets = secrets_of(
        SCHEMA,
        [{"db": {"password": "plain-pass", "host": "h"}, "api": {"token": ENC, "url": "u"}}],
        [{"smtp": {"password": ENC}}],
    )
    assert secrets.paths == {"db.password", "api.token", "smtp.password"}
    assert secrets.is_secret("db.password") and secrets.is_secret(("smtp", "password"))
    assert secrets.is_secret("db.password.inner")  # under a secret path
    assert not secrets.is_secret("db.host") and not secrets.is_secret("api.url")
    assert secrets.is_secret("anything", ENC)
    assert secrets.covers("db") and not secrets.covers("api.url")
    assert secrets.plaintexts == ("plain-pass",)


def test_secrets__redact__scrubs_plaintexts_and_ciphertexts_from_text() -> None:
    secrets = Secrets.build(["db.password"], ["hunter2-super-secret", "hunter2", "ab"])
    text = f"'hunter2-super-secret' is too short; hunter2 again; ab stays; {ENC}"
    assert secrets.redact(text) == f"'{SECRET}' is too short; {SECRET} again; ab stays; {SECRET}"
    problem = Problem("f.yaml", 1, 2, "found 'hunter2'", "x", hint="not hunter2")
    assert secrets.redact_problem(problem).message == f"found '{SECRET}'"
    assert secrets.redact_problem(problem).hint == f"not {SECRET}"
    assert redact_text("a hunter2-super-secret b") == f"a {SECRET} b"  # remembered process-wide


def test_secrets__show__never_returns_a_secret_value() -> None:
    secrets = Secrets.build(["db.password"], ["s3cr3t-value"])
    assert secrets.show("db.password", "anything") == SECRET
    assert secrets.show("api.url", ENC) == SECRET
    assert secrets.show("api.note", {"x": "see s3cr3t-value"}) == {"x": f"see {SECRET}"}
    assert secrets.show("api.url", "https://x") == "https://x"


def test_is_encrypted__only_sops_values() -> None:
    assert is_encrypted(ENC)
    assert not is_encrypted("ENCRYPTED") and not is_encrypted(1) and not is_encrypted(None)


def _commands(group: typer.Typer) -> set[tuple[str, ...]]:
    root = typer.main.get_command(group)
    found: set[tuple[str, ...]] = set()

    def walk(cmd: object, path: tuple[str, ...]) -> None:
        found.add(path)
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, (*path, name))

    walk(root, ())
    return found


def _message_strings(path: Path) -> list[str]:
    """String literals (f-strings too) that are not docstrings: what users may read."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    out = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            out.append(node.value)
        elif isinstance(node, ast.JoinedStr):  # f-strings: placeholders read as "{}"
            out.append(
                "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)  # type: ignore[misc]
            )
    return out


def test_hints__name_only_commands_that_exist() -> None:
    """Every `flagstone …` a message or hint tells the user to run is a real command."""
    from flagstone.cli.app import _load_commands, app

    _load_commands()
    known = _commands(app)
    mentioned: dict[tuple[str, ...], str] = {}
    for path in SRC.rglob("*.py"):
        for text in _message_strings(path):
            for match in re.finditer(r"`flagstone ([^`]*)`", text):
                words = []
                for word in match.group(1).split():
                    if not re.fullmatch(r"[a-z][a-z-]*", word):
                        break
                    words.append(word)
                mentioned[tuple(words)] = f"{path.relative_to(SRC)}: `flagstone {match.group(1)}`"
    assert ("secret", "set") in mentioned and ("rollback",) in mentioned
    missing = []
    for words, where in mentioned.items():
        path: tuple[str, ...] = ()
        for word in words:
            if (*path, word) not in known:
                break
            path = (*path, word)
        is_group = any(len(k) == len(path) + 1 and k[: len(path)] == path for k in known)
        if words and (not path or is_group):
            missing.append(where)
    assert not missing, "hints name commands that do not exist:\n" + "\n".join(missing)


def test_credential_kind__known_tokens_keys_and_entropy__by_detect_secrets_rules() -> None:
    from flagstone.secrets import credential_kind

    assert credential_kind("AKIAIOSFODNN7EXAMPLE") == "AWS Access Key"
    assert credential_kind("ghp_1234567890abcdefghijklmnopqrstuvwxyzAB") == "GitHub Token"
    assert (
        credential_kind("xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx") == "Slack Token"
    )
    assert (
        credential_kind("-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----")
        == "Private Key"
    )
    assert credential_kind("Zx8Qw2Lp9Rt4Vb7Nm3Kj6Hg1Fd5Sa0Ty") == "high-entropy string"
    for ordinary in (
        "https://api.example.com/v1",
        "hello world",
        "checkout-v2-enabled",
        "500",
        "eu-west-1",
    ):
        assert credential_kind(ordinary) is None, ordinary


def test_validate__plaintext_credential__warns_naming_the_rule(cli, tmp_path) -> None:
    import json
    import shutil

    from tests.conftest import CASES

    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    config = root / "environments/dev/config.yaml"
    config.write_text(config.read_text().replace("https://dev.shop.test", "AKIAIOSFODNN7EXAMPLE"))
    result = cli(["validate", "--format", "json"], cwd=root)
    found = [
        p for p in json.loads(result.stdout)["problems"] if p["code"] == "plaintext-credential"
    ]
    assert [(p["severity"], p["message"]) for p in found] == [
        ("warning", "api.base_url looks like a credential in plain text (AWS Access Key)")
    ]
    assert found[0]["line"] == 2
