from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


# --- the second process: validation beside compiling -------------------------------------

# `flagstone build` as the entry point runs it, with validate_loaded replaced in the
# forked child only (the parent's pid is fixed before main): argv[1] is what the child does.
CHILD_PATCHED_BUILD = """
import os, sys, time
from pathlib import Path
import flagstone.validate as validate
parent, real, mode = os.getpid(), validate.validate_loaded, sys.argv[1]
def in_child(*args, **kwargs):
    if os.getpid() != parent:
        if mode == "dies":
            os._exit(9)
        Path("child-started").touch()
        time.sleep(60)
    return real(*args, **kwargs)
validate.validate_loaded = in_child
from flagstone.cli.entry import main
sys.argv = ["flagstone", "build", *sys.argv[2:]]
main()
"""


def run_build(root: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "flagstone"
    return subprocess.run(
        [str(exe), "build", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )


def test_build__in_two_processes_and_in_one__same_bytes_and_output(repo_from_case) -> None:
    root = repo_from_case("valid/base")
    two = run_build(root, ["--out", "two"])
    one = run_build(root, ["--out", "one"], FLAGSTONE_JOBS="1")
    assert two.returncode == one.returncode == 0, two.stderr
    assert two.stdout.replace("/two/", "/one/") == one.stdout
    assert sorted(p.name for p in (root / "two").iterdir()) == ["dev.json", "prod.json"]
    for bundle in (root / "two").iterdir():
        assert bundle.read_bytes() == (root / "one" / bundle.name).read_bytes()


@pytest.mark.parametrize(
    "case",
    [
        "rollout-sum",
        "unknown-segment-rule",
        "yaml-tab-indent",
        "missing-default",
        "secret-not-encrypted",
    ],
)
def test_build__invalid__two_processes_report_what_one_does(case: str, tmp_path: Path) -> None:
    root = build_case(case, tmp_path / "repo")
    for output in ("text", "json"):
        two = run_build(root, ["--output-format", output])
        one = run_build(root, ["--output-format", output], FLAGSTONE_JOBS="1")
        assert (two.returncode, two.stdout, two.stderr) == (one.returncode, one.stdout, one.stderr)
        assert two.returncode == 1 and two.stdout
        assert "Traceback" not in two.stderr
    assert not (root / "dist").exists()


def test_build__worker_dies__validates_itself_and_builds(repo_from_case) -> None:
    root = repo_from_case("valid/base")
    expected = run_build(root, ["--out", "expected"], FLAGSTONE_JOBS="1")
    result = subprocess.run(
        [sys.executable, "-c", CHILD_PATCHED_BUILD, "dies", "--out", "expected"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stdout) == (0, expected.stdout), result.stderr


def test_build__worker_dies__invalid_input_still_refused(tmp_path: Path) -> None:
    root = build_case("rollout-sum", tmp_path / "repo")
    result = subprocess.run(
        [sys.executable, "-c", CHILD_PATCHED_BUILD, "dies"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "rollout weights sum to 90" in result.stdout
    assert not (root / "dist").exists()


def test_build__ctrl_c_while_the_worker_validates__one_line_nothing_written_no_worker_left(
    repo_from_case,
) -> None:
    root = repo_from_case("valid/base")
    build = subprocess.Popen(
        [sys.executable, "-c", CHILD_PATCHED_BUILD, "sleeps"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    deadline = time.monotonic() + 20
    while not (root / "child-started").exists():
        assert build.poll() is None and time.monotonic() < deadline, build.communicate()
        time.sleep(0.02)
    time.sleep(0.3)  # the parent is done compiling and waits for the worker
    os.killpg(build.pid, signal.SIGINT)  # what Ctrl-C sends: every process of the job
    _, stderr = build.communicate(timeout=20)
    assert build.returncode == 130 and "Traceback" not in stderr  # 128 + SIGINT, as a shell says
    assert not (root / "dist").exists()
    with pytest.raises(ProcessLookupError):  # the worker went with it
        os.killpg(build.pid, 0)


def test_build__in_process__leaves_the_collector_enabled(cli, repo_from_case) -> None:
    # Only a run that ends with os._exit may leave the garbage collector off.
    import gc

    root = repo_from_case("valid/base")
    result = cli(["build", "--out", "d1"], cwd=root)
    assert result.exit_code == 0, result.stderr
    assert gc.isenabled()
    cli(["build", "--out", "d2"], cwd=root)
    assert gc.isenabled()
