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
        env={
            "GIT_AUTHOR_EMAIL": "mallory@example.test",
            "GIT_AUTHOR_NAME": "Mallory **bold** [x](http://e.test) @octocat",
        },
    )
    result = cli(["verify", "--range", "base..HEAD"], cwd=root)
    assert result.exit_code == 1
    assert "[author] mallory@example.test may not change prod" in result.stdout
    # the markdown report (a PR comment) shows the author as written, never as markup
    markdown = cli(["verify", "--range", "base..HEAD", "--format", "markdown"], cwd=root).stdout
    assert "Mallory" in markdown
    for raw in ("**bold**", "[x](", "@octocat", "@example.test"):
        assert raw not in markdown, (raw, markdown)


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


# --- the gate cannot be bypassed: one test per way around it ------------------------------


def violations(cli, root: Path, rev_range: str = "base..HEAD") -> list[tuple[str, str]]:
    import json

    result = cli(["verify", "--range", rev_range, "--format", "json"], cwd=root)
    doc = json.loads(result.stdout)
    assert result.exit_code == (1 if doc["violations"] else 0), result.stderr
    return [(v["rule"], v["reason"]) for v in doc["violations"]]


def promotion_message(source: str, keys: str = "flags.new-checkout") -> str:
    return (
        "Promote dev -> prod\n\nFlagstone-Promote: dev -> prod\n"
        f"Flagstone-Source: {source}\nFlagstone-Keys: {keys}\n"
    )


def test_verify__amended_promotion_changing_an_unlisted_flag__is_caught(cli, signed_repo) -> None:
    root, trusted, _ = signed_repo
    promote_with_commit(cli, root, trusted)
    assert violations(cli, root) == []
    prod = root / "environments" / "prod" / "flags.yaml"
    prod.write_text(prod.read_text().replace("  default: short", "  default: long"))
    git(root, "add", "-A")
    git(
        root,
        "-c",
        f"user.signingkey={trusted}",
        "commit",
        "-q",
        "--amend",
        "--no-edit",
        f"-S{trusted}",
    )
    assert violations(cli, root) == [
        (
            "promotion",
            "changes flags.banner-text, which its Flagstone-Keys does not list: a promotion "
            "commit may change only what it promotes",
        )
    ]


def test_verify__forged_keys_trailer_listing_a_key_dev_never_had__is_caught(
    cli, signed_repo
) -> None:
    root, trusted, _ = signed_repo
    head = git(root, "rev-parse", "HEAD").strip()
    prod = root / "environments" / "prod" / "flags.yaml"
    prod.write_text(prod.read_text().replace("  default: short", "  default: long"))
    signed_commit(root, trusted, promotion_message(head, "flags.new-checkout, flags.banner-text"))
    found = violations(cli, root)
    assert [rule for rule, _ in found] == ["promotion"]
    assert "but prod's flags.banner-text differs from it" in found[0][1]


def test_verify__source_off_the_line__is_caught(cli, signed_repo) -> None:
    """A side branch where dev is edited to match a forged prod change is no source."""
    root, trusted, _ = signed_repo
    git(root, "checkout", "-q", "-b", "side")
    dev = root / "environments" / "dev" / "flags.yaml"
    dev.write_text(dev.read_text().replace("on: 20, off: 80", "on: 100, off: 0"))
    side = signed_commit(root, trusted, "dev matches, on a side branch")
    git(root, "checkout", "-q", "main")
    prod = root / "environments" / "prod" / "flags.yaml"
    prod.write_text(prod.read_text().replace("on: 20, off: 80", "on: 100, off: 0"))
    signed_commit(root, trusted, promotion_message(side))
    found = violations(cli, root)
    assert [rule for rule, _ in found] == ["promotion"]
    assert f"names Flagstone-Source {side[:12]}, which is not an ancestor" in found[0][1]


THREE = """\
version: 1
environments: [dev, staging, prod]
config_schema: schemas/config.schema.json
policy:
  protected:
    staging:
      promote_from: dev
    prod:
      require_signature: true
      allowed_signers: .flagstone/allowed_signers
      promote_from: staging
"""


def test_verify__source_whose_staging_failed_the_policy__is_caught(
    cli, signed_repo, commit
) -> None:
    """Staging edited directly (a violation) and then promoted on: prod is tainted too."""
    root, trusted, _ = signed_repo
    shutil.copytree(root / "environments" / "prod", root / "environments" / "staging")
    (root / "flagstone.yaml").write_text(THREE)
    commit(message="staging")
    git(root, "branch", "-f", "base")
    staging = root / "environments" / "staging" / "flags.yaml"
    staging.write_text(staging.read_text().replace("on: 20, off: 80", "on: 100, off: 0"))
    direct = signed_commit(root, trusted, "staging edited by hand")
    prod = root / "environments" / "prod" / "flags.yaml"
    prod.write_text(prod.read_text().replace("on: 20, off: 80", "on: 100, off: 0"))
    signed_commit(
        root,
        trusted,
        "Promote\n\nFlagstone-Promote: staging -> prod\n"
        f"Flagstone-Source: {direct}\nFlagstone-Keys: flags.new-checkout\n",
    )
    found = violations(cli, root)
    assert [rule for rule, _ in found] == ["promotion", "promotion"]
    assert found[0][1].startswith("changes staging directly")
    assert f"whose staging includes {direct[:12]}, which fails this policy" in found[1][1]


def test_verify__policy_removed_inside_the_range__still_guards_and_is_itself_flagged(
    cli, signed_repo
) -> None:
    root, _, _ = signed_repo
    (root / "flagstone.yaml").write_text(
        "version: 1\nenvironments: [dev, prod]\nconfig_schema: schemas/config.schema.json\n"
    )
    signed_commit(root, None, "relax the policy")
    prod = root / "environments" / "prod" / "config.yaml"
    prod.write_text(prod.read_text().replace("timeout_ms: 500", "timeout_ms: 900"))
    signed_commit(root, None, "now edit prod freely")
    rules = [rule for rule, _ in violations(cli, root)]
    assert rules == ["policy", "signature", "promotion"]


def test_verify__signers_file_changed_inside_the_range__is_flagged(cli, signed_repo) -> None:
    root, _, stranger = signed_repo
    signers = root / ".flagstone" / "allowed_signers"
    signers.write_text(
        signers.read_text() + f"author@example.test {stranger.with_suffix('.pub').read_text()}"
    )
    signed_commit(root, stranger, "add my key")
    found = violations(cli, root)
    assert found == [
        (
            "policy",
            "changes the policy protecting prod but is signed by a key that is not an allowed signer",
        )
    ]


def test_verify__merge_smuggling_a_prod_change__is_caught(cli, signed_repo) -> None:
    root, trusted, _ = signed_repo
    git(root, "checkout", "-q", "-b", "side")
    promote_with_commit(cli, root, trusted)  # an honest promotion on a branch
    git(root, "checkout", "-q", "main")
    git(root, "merge", "-q", "--no-ff", "--no-commit", "--no-gpg-sign", "side")
    prod = root / "environments" / "prod" / "flags.yaml"
    prod.write_text(prod.read_text().replace("  default: short", "  default: long"))
    git(root, "add", "-A")
    git(root, "commit", "-q", "--no-gpg-sign", "-m", "Merge side")
    found = violations(cli, root)
    assert found == [
        (
            "merge",
            "sets prod's flags.banner-text to a value none of its parents has: a merge may only "
            "bring in what its branches changed, each change checked on its own",
        )
    ]
    git(root, "reset", "-q", "--hard", "HEAD~1")
    git(root, "merge", "-q", "--no-ff", "--no-gpg-sign", "--no-edit", "side")
    assert violations(cli, root) == []  # the same merge, honest


def test_history__ssh_signatures__checked_against_the_policys_allowed_signers(
    cli, signed_repo
) -> None:
    """Without the policy's signers file git calls every SSH-signed commit unsigned."""
    import json

    root, trusted, stranger = signed_repo
    flags = root / "environments" / "dev" / "flags.yaml"
    rollout = "on: 20, off: 80"
    signers = (("good", trusted), ("stranger", stranger), ("none", None), ("tampered", trusted))
    for on, (name, key) in zip((30, 40, 50, 60), signers, strict=True):
        flags.write_text(flags.read_text().replace(rollout, f"on: {on}, off: {100 - on}"))
        rollout = f"on: {on}, off: {100 - on}"
        signed_commit(root, key, f"dev: {name}")
    # A bad signature: the last commit's message altered under its signature.
    raw = git(root, "cat-file", "commit", "HEAD").replace("dev: tampered", "dev: forged")
    forged = subprocess.run(
        ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
        cwd=root,
        input=raw,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    git(root, "reset", "-q", "--hard", forged)
    result = cli(["history", "--env", "dev", "--format", "json"], cwd=root)
    status = {e["subject"]: e["signature_status"] for e in json.loads(result.stdout)["entries"]}
    assert status == {
        "dev: forged": "bad signature",
        "dev: none": "unsigned",
        "dev: stranger": "unknown key",
        "dev: good": "good signature",
        "base with policy": "unsigned",
    }
