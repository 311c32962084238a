"""`flagstone verify` with real SSH-signed commits and an allowed-signers file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_validate_corpus import CASES

POLICY = """\
version: 1
environments: [dev, prod]
config_schema: schemas/config.schema.json
policy:
  protected:
    prod:
      require_signature: true
      allowed_signers: .flagstone/allowed_signers
      allowed_authors: [release@example.test, author@example.test]
      promote_from: dev
"""


def git(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    import os

    return subprocess.run(
        ["git", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout


def keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def signed_repo(git_repo, commit, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A repository whose base commit allows one SSH key; returns (root, trusted key, stranger key)."""
    root = Path(git_repo.working_dir)
    trusted, stranger = tmp_path / "trusted", tmp_path / "stranger"
    trusted_pub, _ = keygen(trusted), keygen(stranger)
    shutil.copytree(CASES / "valid" / "base", root, dirs_exist_ok=True)
    (root / "flagstone.yaml").write_text(POLICY)
    (root / ".flagstone").mkdir()
    (root / ".flagstone" / "allowed_signers").write_text(f"author@example.test {trusted_pub}\n")
    git(root, "config", "gpg.format", "ssh")
    commit(message="base with policy")
    git(root, "branch", "base")
    return root, trusted, stranger


def signed_commit(root: Path, key: Path | None, message: str) -> str:
    git(root, "add", "-A")
    args = ["commit", "-q", "-m", message]
    args += [f"-S{key}"] if key is not None else ["--no-gpg-sign"]
    git(root, "-c", f"user.signingkey={key}", *args) if key else git(root, *args)
    return git(root, "rev-parse", "HEAD").strip()


def promote_with_commit(cli, root: Path, key: Path | None) -> str:
    flags = root / "environments" / "dev" / "flags.yaml"
    flags.write_text(flags.read_text().replace("on: 20, off: 80", "on: 30, off: 70"))
    signed_commit(root, key, "dev: ramp")
    result = cli(["promote", "dev", "prod", "--yes", "--only", "new-checkout"], cwd=root)
    assert result.exit_code == 0, result.stderr
    head = git(root, "rev-parse", "HEAD").strip()
    message = f"Promote dev -> prod\n\nFlagstone-Promote: dev -> prod\nFlagstone-Source: {head}\nFlagstone-Keys: flags.new-checkout\n"
    return signed_commit(root, key, message)


def test_verify__signed_promotion_by_an_allowed_signer__passes(cli, signed_repo) -> None:
    root, trusted, _ = signed_repo
    promote_with_commit(cli, root, trusted)
    result = cli(["verify", "--range", "base..HEAD"], cwd=root)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "every commit in base..HEAD follows the policy" in result.stderr


def test_verify__unsigned_prod_commit__is_a_violation(cli, signed_repo) -> None:
    root, _, _ = signed_repo
    sha = promote_with_commit(cli, root, None)
    result = cli(["verify", "--range", "base..HEAD", "--format", "json"], cwd=root)
    assert result.exit_code == 1
    import json

    violations = json.loads(result.stdout)["violations"]
    assert [(v["commit"], v["rule"], v["reason"]) for v in violations] == [
        (sha, "signature", "changes prod but is not signed")
    ]


def test_verify__commit_signed_by_an_unknown_key__is_a_violation(cli, signed_repo) -> None:
    root, _, stranger = signed_repo
    promote_with_commit(cli, root, stranger)
    result = cli(["verify", "--range", "base..HEAD"], cwd=root)
    assert result.exit_code == 1
    assert (
        "[signature] changes prod but is signed by a key that is not an allowed signer"
        in result.stdout
    )


def test_verify__a_pull_request_cannot_authorize_its_own_key(cli, signed_repo) -> None:
    root, _, stranger = signed_repo
    (root / ".flagstone" / "allowed_signers").write_text(
        f"author@example.test {stranger.with_suffix('.pub').read_text()}"
    )
    signed_commit(root, stranger, "trust me")
    promote_with_commit(cli, root, stranger)
    result = cli(["verify", "--range", "base..HEAD"], cwd=root)
    assert result.exit_code == 1  # the signers file is read from the base of the range
    assert "not an allowed signer" in result.stdout


def test_verify__disallowed_author__is_a_violation(cli, signed_repo) -> None:
    root, trusted, _ = signed_repo
    flags = root / "environments" / "dev" / "flags.yaml"
    flags.write_text(flags.read_text().replace("on: 20, off: 80", "on: 30, off: 70"))
    signed_commit(root, trusted, "dev: ramp")
    cli(["promote", "dev", "prod", "--yes", "--only", "new-checkout"], cwd=root)
    head = git(root, "rev-parse", "HEAD").strip()
    git(root, "add", "-A")
    git(
        root,
        "-c",
        f"user.signingkey={trusted}",
        "commit",
        "-q",
        f"-S{trusted}",
        "-m",
        f"Promote\n\nFlagstone-Promote: dev -> prod\nFlagstone-Source: {head}\nFlagstone-Keys: flags.new-checkout\n",
        env={"GIT_AUTHOR_EMAIL": "mallory@example.test", "GIT_AUTHOR_NAME": "Mallory"},
    )
    result = cli(["verify", "--range", "base..HEAD"], cwd=root)
    assert result.exit_code == 1
    assert "[author] mallory@example.test may not change prod" in result.stdout


def test_verify__forged_promotion_trailer__is_caught(cli, signed_repo) -> None:
    root, trusted, _ = signed_repo
    head = git(root, "rev-parse", "HEAD").strip()
    prod = root / "environments" / "prod" / "flags.yaml"
    prod.write_text(
        prod.read_text().replace("on: 20, off: 80", "on: 90, off: 10")
    )  # dev never had 90 %
    signed_commit(
        root,
        trusted,
        f"Promote\n\nFlagstone-Promote: dev -> prod\nFlagstone-Source: {head}\nFlagstone-Keys: flags.new-checkout\n",
    )
    result = cli(["verify", "--range", "base..HEAD"], cwd=root)
    assert result.exit_code == 1
    assert "[promotion] claims to promote flags.new-checkout from dev" in result.stdout


def test_verify__direct_prod_edit__is_not_a_promotion(cli, signed_repo) -> None:
    root, trusted, _ = signed_repo
    prod = root / "environments" / "prod" / "config.yaml"
    prod.write_text(prod.read_text().replace("timeout_ms: 500", "timeout_ms: 900"))
    signed_commit(root, trusted, "quick fix in prod")
    result = cli(["verify", "--range", "base..HEAD"], cwd=root)
    assert result.exit_code == 1
    assert "changes prod directly; changes must arrive by promotion (dev -> prod)" in result.stdout


def test_verify__dev_only_commits__are_not_checked(cli, signed_repo) -> None:
    root, _, _ = signed_repo
    flags = root / "environments" / "dev" / "flags.yaml"
    flags.write_text(flags.read_text().replace("on: 20, off: 80", "on: 30, off: 70"))
    signed_commit(root, None, "dev only, unsigned")
    assert cli(["verify", "--range", "base..HEAD"], cwd=root).exit_code == 0


def test_verify__a_branch_that_merges_main__is_not_blamed_for_mains_prod_changes(
    cli, signed_repo
) -> None:
    root, trusted, _ = signed_repo
    git(root, "checkout", "-q", "-b", "feature")
    flags = root / "environments" / "dev" / "flags.yaml"
    flags.write_text(flags.read_text().replace("on: 20, off: 80", "on: 30, off: 70"))
    signed_commit(root, None, "feature: dev only")
    git(root, "checkout", "-q", "main")
    promote_with_commit(cli, root, trusted)  # a proper, signed promotion on main
    git(root, "branch", "-f", "base", "main")
    git(root, "checkout", "-q", "feature")
    git(root, "merge", "-q", "--no-edit", "--no-gpg-sign", "main")
    result = cli(["verify", "--range", "base..HEAD"], cwd=root)
    assert result.exit_code == 0, result.stdout + result.stderr
