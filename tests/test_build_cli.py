from __future__ import annotations

import json
import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from flagstone.runtime import Client
from tests.test_validate_corpus import CASES, build_case


def test_build__writes_one_bundle_per_environment_with_the_commit(
    cli, repo_from_case, git_repo
) -> None:
    root = repo_from_case("valid/base")
    result = cli(["build"], cwd=root)
    assert result.exit_code == 0, result.stderr
    for env in ("dev", "prod"):
        bundle = json.loads((root / "dist" / f"{env}.json").read_text())
        assert bundle["environment"] == env
        assert bundle["source"] == {"commit": git_repo.head.commit.hexsha, "dirty": False}
    assert (
        Client.from_file(root / "dist" / "prod.json").variant(
            "new-checkout", {"user_id": "user-17"}
        )
        == "on"
    )


def test_build__twice__byte_for_byte_identical(cli, repo_from_case) -> None:
    root = repo_from_case("valid/base")
    cli(["build", "--env", "prod", "--out", "a"], cwd=root)
    cli(["build", "--env", "prod", "--out", "b"], cwd=root)
    assert (root / "a" / "prod.json").read_bytes() == (root / "b" / "prod.json").read_bytes()


def test_build__uncommitted_change__is_marked_dirty(cli, repo_from_case) -> None:
    root = repo_from_case("valid/base")
    flags = root / "environments" / "prod" / "flags.yaml"
    flags.write_text(flags.read_text().replace("on: 20, off: 80", "on: 30, off: 70"))
    cli(["build", "--env", "prod"], cwd=root)
    assert json.loads((root / "dist" / "prod.json").read_text())["source"]["dirty"] is True


def test_build__invalid_environment__refuses_and_writes_nothing(cli, tmp_path: Path) -> None:
    root = build_case("rollout-sum", tmp_path / "repo")
    result = cli(["build"], cwd=root)
    assert result.exit_code == 1
    assert "rollout weights sum to 90" in result.stdout
    assert not (root / "dist").exists()


def test_build__signed_bundle__verifies_with_the_public_key(cli, tmp_path: Path) -> None:
    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    key = Ed25519PrivateKey.generate()
    (tmp_path / "signing.pem").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    result = cli(["build", "--env", "prod", "--sign", str(tmp_path / "signing.pem")], cwd=root)
    assert result.exit_code == 0 and "signed" in result.stdout
    client = Client.from_file(root / "dist" / "prod.json", public_key=public)
    assert client.bundle.environment == "prod"


def test_eval__explain__prints_the_trace(cli, tmp_path: Path) -> None:
    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    result = cli(
        [
            "eval",
            "new-checkout",
            "--env",
            "prod",
            "--context",
            '{"user_id": "u2", "country": "DE"}',
            "--explain",
        ],
        cwd=root,
    )
    assert result.exit_code == 0
    assert (
        result.stdout.splitlines()[0]
        == "new-checkout = false  variant off  RULE_MATCH rule 2 bucket 9258"
    )
    # the second rule matched: "rule 2" in the summary and in the trace alike (1-based)
    assert "  rule 1: no match" in result.stdout
    assert '  rule 2: match -> "off" (bucket 9258 of 10000)' in result.stdout


def test_eval__all_as_json(cli, tmp_path: Path) -> None:
    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    result = cli(
        ["eval", "--all", "--env", "prod", "-c", '{"user_id": "user-17"}', "--format", "json"],
        cwd=root,
    )
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["env"] == "prod"
    assert [(d["flag"], d["variant"], d["reason"]) for d in doc["flags"]] == [
        ("banner-text", "short", "DEFAULT"),
        ("new-checkout", "on", "TARGET_MATCH"),
    ]


def test_eval__unknown_flag__suggests_the_closest(cli, tmp_path: Path) -> None:
    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    result = cli(["eval", "new-chekout"], cwd=root)
    assert result.exit_code == 2
    assert "did you mean 'new-checkout'?" in result.stderr


def test_build__secrets__left_out_unless_asked_for(cli, tmp_path: Path) -> None:
    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    config = root / "environments" / "prod" / "config.yaml"
    secret = "ENC[AES256_GCM,data:QUJD,iv:REVG,tag:R0hJ,type:str]"
    config.write_text(config.read_text() + f"  token: {secret}\n")
    assert cli(["build", "--env", "prod"], cwd=root).exit_code == 0
    assert "token" not in json.loads((root / "dist" / "prod.json").read_text())["config"]["api"]
    # sealed for a service only (tests/test_secret_cli.py), never as they are stored
    refused = cli(["build", "--env", "prod", "--include-secrets", "--out", "server"], cwd=root)
    assert refused.exit_code == 2 and "pass --recipient age1" in refused.stderr
    assert not (root / "server").exists()


def test_build__format_flagd__writes_the_export_and_prints_what_it_left_out(
    cli, repo_from_case
) -> None:
    root = repo_from_case("valid/base")
    flags = root / "environments" / "prod" / "flags.yaml"
    flags.write_text(
        flags.read_text() + "regex-only:\n  variants: {on: true, off: false}\n"
        "  rules: [{when: {email: {matches: '@isometry[.]app$'}}, serve: on}]\n  default: off\n"
        "plain:\n  variants: {on: true, off: false}\n"
        "  rules: [{when: {country: DE}, serve: on}]\n  default: off\n"
    )
    result = cli(["build", "--env", "prod", "--format", "flagd"], cwd=root)
    assert result.exit_code == 0, result.stdout + result.stderr
    document = json.loads((root / "dist" / "prod.flagd.json").read_text())
    assert document["$schema"] == "https://flagd.dev/schema/v0/flags.json"
    assert set(document["flags"]) == {"new-checkout", "plain"}  # banner-text has a prerequisite
    assert (
        "flag 'regex-only' is not in the flagd export: flagd cannot express regular expressions"
        in result.stdout
    )
    assert result.stdout.count("[flagd-unsupported]") == 2
