"""SOPS-compatible encrypted YAML: files the ``sops`` CLI (and Flux, helm-secrets, Argo CD
plugins) read and write, built from SOPS's own definition (getsops/sops ``aes/cipher.go``,
``sops.go``, ``stores/stores.go``, ``cmd/sops/common``):

- every value is encrypted on its own with AES-256-GCM under the file's 32-byte data key,
  a fresh 32-byte IV, and the value's key path joined by ``:`` plus a trailing ``:`` as
  additional data (``db:password:``; list items use their list's path), so a ciphertext
  moved to another key fails to decrypt. Written as
  ``ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:str|int|float|bool]``; an empty
  string stays ``""`` and a null stays null, as SOPS leaves them;
- the MAC is SHA-512 over every value's bytes in document order (only the encrypted ones,
  after a fixed 32-byte prefix, with ``mac_only_encrypted``), hex in upper case, stored
  encrypted with the ``lastmodified`` timestamp (RFC 3339) as additional data, so removing,
  reordering or editing a value — or the timestamp — is detected;
- the ``sops:`` block wraps the data key for each age X25519 recipient as an armored age
  file (``pyrage``). PGP, KMS, GCP KMS, Azure Key Vault, Vault and HuaweiCloud KMS entries
  are kept as they are while the data key stays the same; flagstone never creates them and
  refuses to rotate a key it could not re-wrap for them;
- ``unencrypted_suffix`` (default ``_unencrypted``), ``encrypted_suffix``,
  ``unencrypted_regex`` and ``encrypted_regex`` decide which values are encrypted, exactly
  as SOPS's ``shouldBeEncrypted`` does.

Re-saving keeps an unchanged value's IV (hence its ciphertext), as SOPS does, so a change
to one secret is a one-line diff. Comments are not carried over (SOPS encrypts them; flagstone
writes none).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flagstone.errors import FlagstoneError

SOPS_VERSION = "3.11.0"  # the format version flagstone writes (read: any 3.x)
DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
# sops.go MACOnlyEncryptedInitialization: makes a mac_only_encrypted MAC differ from a full one.
MAC_ONLY_ENCRYPTED_INIT = bytes.fromhex(
    "8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69"
)
NONCE_SIZE = 32
PASSPHRASE_RECIPIENT = "scrypt"  # an age entry whose enc is an age file for a passphrase
_ENC = re.compile(r"^ENC\[AES256_GCM,data:(.*),iv:(.+),tag:(.+),type:(.+)\]$")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/+=@]*$")
_DATE_LIKE = re.compile(r"^\d{4}-\d\d?-\d\d?")
# Words a YAML 1.1 reader (and go-yaml's emitter) takes for booleans or null: quote them.
_AMBIGUOUS = {
    w
    for word in ("y", "n", "yes", "no", "on", "off", "true", "false", "null")
    for w in (word, word.upper(), word.capitalize())
} | {"~", ""}
_FOREIGN_KEYS = ("pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms")


class SopsError(FlagstoneError):
    """A secrets file that cannot be read, decrypted or written."""


class TamperedError(SopsError):
    """The file does not verify: a value or the MAC was changed, moved or removed (exit 1)."""


class MacMismatchError(TamperedError):
    """Every value decrypts but the MAC disagrees: one was removed, added, reordered or
    replaced by another ciphertext of the same file."""


class NoIdentityError(SopsError):
    pass


# --- values ---------------------------------------------------------------------------


def go_float(value: float) -> str:
    """``strconv.FormatFloat(v, 'f', -1, 64)``: shortest round-trip digits, no exponent."""
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def value_bytes(value: Any) -> tuple[bytes, str]:
    """A value's bytes (what is encrypted and MAC'd) and its SOPS type."""
    if isinstance(value, bool):
        return (b"True" if value else b"False"), "bool"
    if isinstance(value, int):
        return str(value).encode(), "int"
    if isinstance(value, float):
        return go_float(value).encode(), "float"
    if isinstance(value, str):
        return value.encode("utf-8"), "str"
    raise SopsError(f"cannot encrypt a {type(value).__name__} value")


def _from_bytes(data: bytes, kind: str) -> Any:
    text = data.decode("utf-8")
    if kind == "str" or kind == "time":
        return text
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        if text in ("1", "t", "T", "TRUE", "true", "True"):
            return True
        if text in ("0", "f", "F", "FALSE", "false", "False"):
            return False
        raise ValueError(f"not a boolean: {text!r}")
    raise ValueError(f"unknown type {kind!r}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@functools.lru_cache(maxsize=8)
def _cipher(key: bytes) -> Any:
    """One AES-GCM context per data key: a 1,000-value file builds it once, not 1,000 times."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def encrypt_value(value: Any, key: bytes, aad: str, iv: bytes | None = None) -> str:
    data, kind = value_bytes(value)
    if not data and kind == "str":
        return ""  # SOPS leaves empty strings as they are
    nonce = iv if iv is not None else os.urandom(NONCE_SIZE)
    sealed = _cipher(key).encrypt(nonce, data, aad.encode())
    return f"ENC[AES256_GCM,data:{_b64(sealed[:-16])},iv:{_b64(nonce)},tag:{_b64(sealed[-16:])},type:{kind}]"


@dataclass(frozen=True, slots=True)
class Sealed:
    data: bytes
    iv: bytes
    tag: bytes
    kind: str


def parse_encrypted(text: str) -> Sealed | None:
    m = _ENC.match(text)
    if m is None:
        return None
    try:
        return Sealed(
            base64.b64decode(m.group(1), validate=True),
            base64.b64decode(m.group(2), validate=True),
            base64.b64decode(m.group(3), validate=True),
            m.group(4),
        )
    except ValueError:
        return None


def decrypt_value(text: str, key: bytes, aad: str) -> tuple[Any, bytes]:
    """The plaintext and its IV; raises ``ValueError`` when it does not authenticate."""
    from cryptography.exceptions import InvalidTag

    sealed = parse_encrypted(text)
    if sealed is None:
        raise ValueError("not a SOPS ENC[AES256_GCM,...] value")
    try:
        data = _cipher(key).decrypt(sealed.iv, sealed.data + sealed.tag, aad.encode())
    except InvalidTag:
        raise ValueError("authentication failed") from None
    return _from_bytes(data, sealed.kind), sealed.iv


# --- which values are encrypted -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rules:
    unencrypted_suffix: str = ""
    encrypted_suffix: str = ""
    unencrypted_regex: str = ""
    encrypted_regex: str = ""
    mac_only_encrypted: bool = False

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], file: str) -> Rules:
        names = ("unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex")
        given = {n: str(metadata[n]) for n in names if metadata.get(n)}
        comment_rules = [
            n for n in ("unencrypted_comment_regex", "encrypted_comment_regex") if metadata.get(n)
        ]
        if len(given) + len(comment_rules) > 1:
            raise SopsError(
                f"{file}: more than one of {', '.join([*given, *comment_rules])}; SOPS allows one"
            )
        if comment_rules:
            raise SopsError(f"{file}: {comment_rules[0]} is not supported by flagstone; use sops")
        if not given:
            given = {"unencrypted_suffix": DEFAULT_UNENCRYPTED_SUFFIX}
        return cls(**given, mac_only_encrypted=bool(metadata.get("mac_only_encrypted")))

    def should_encrypt(self, path: Sequence[str]) -> bool:
        """SOPS's ``shouldBeEncrypted`` for a value at ``path`` (comment rules aside)."""
        encrypted = True
        if self.unencrypted_suffix and any(p.endswith(self.unencrypted_suffix) for p in path):
            encrypted = False
        if self.encrypted_suffix:
            encrypted = any(p.endswith(self.encrypted_suffix) for p in path)
        if self.unencrypted_regex and any(re.search(self.unencrypted_regex, p) for p in path):
            encrypted = False
        if self.encrypted_regex:
            encrypted = any(re.search(self.encrypted_regex, p) for p in path)
        return encrypted

    def as_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in (
            "unencrypted_suffix",
            "encrypted_suffix",
            "unencrypted_regex",
            "encrypted_regex",
        ):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.mac_only_encrypted:
            out["mac_only_encrypted"] = True
        return out


def walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Leaves in SOPS's walk order; list items carry their list's path (no index)."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from walk(v, (*path, str(k)))
    elif isinstance(node, list):
        for v in node:
            yield from walk(v, path)
    elif node is not None:  # SOPS neither encrypts nor MACs a null
        yield path, node


def _map_leaves(node: Any, fn: Any, path: tuple[str, ...] = ()) -> Any:
    if isinstance(node, Mapping):
        return {k: _map_leaves(v, fn, (*path, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [_map_leaves(v, fn, path) for v in node]
    if node is None:
        return None
    return fn(path, node)


def aad_for(path: Sequence[str]) -> str:
    return ":".join(path) + ":"


# --- time ------------------------------------------------------------------------------


def rfc3339(moment: dt.datetime) -> str:
    """Go's ``time.RFC3339``: whole seconds, ``Z`` for a zero offset."""
    moment = moment.replace(microsecond=0)
    offset = moment.utcoffset()
    if offset is None or offset == dt.timedelta(0):
        return moment.replace(tzinfo=None).isoformat() + "Z"
    return moment.isoformat()


def _parse_time(text: str, file: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise TamperedError(f"{file}: sops.lastmodified {text!r} is not an RFC 3339 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


# --- the file ---------------------------------------------------------------------------


@dataclass
class Identities:
    """What can unwrap a data key: age X25519 identities and, optionally, a passphrase."""

    age: list[Any] = field(default_factory=list)  # pyrage.x25519.Identity
    passphrase: str | None = None
    sources: list[str] = field(default_factory=list)  # where they came from, for messages


@dataclass
class SopsFile:
    """A SOPS YAML file as stored: values (mostly ``ENC[...]``) and the ``sops:`` block."""

    file: str  # repository-relative, for messages
    values: dict[str, Any]
    metadata: dict[str, Any]
    raw: bytes | None = None  # the bytes read, to detect a concurrent writer

    @classmethod
    def parse(cls, content: bytes | str, file: str) -> SopsFile:
        from flagstone.load import parse_yaml

        data = parse_yaml(content, file)
        if not isinstance(data, dict):
            raise SopsError(f"{file} is not a mapping of secrets")
        metadata = data.get("sops")
        if not isinstance(metadata, dict):
            raise SopsError(f"{file} has no sops: metadata; it is not a SOPS file")
        if metadata.get("key_groups"):
            raise SopsError(
                f"{file} uses SOPS key groups (Shamir); flagstone reads single-group files only"
            )
        raw = content.encode() if isinstance(content, str) else content
        return cls(file, {k: v for k, v in data.items() if k != "sops"}, dict(metadata), raw)

    @property
    def rules(self) -> Rules:
        return Rules.from_metadata(self.metadata, self.file)

    @property
    def age_entries(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self.metadata.get("age") or [] if isinstance(e, Mapping)]

    @property
    def recipients(self) -> list[str]:
        return [str(e.get("recipient")) for e in self.age_entries]

    @property
    def foreign_keys(self) -> list[str]:
        """Key types flagstone keeps but cannot create (PGP, KMS, Vault, …)."""
        return [k for k in _FOREIGN_KEYS if self.metadata.get(k)]

    def data_key(self, identities: Identities) -> bytes:
        import pyrage
        from pyrage import passphrase as age_passphrase

        for entry in self.age_entries:
            enc = str(entry.get("enc", "")).encode()
            try:
                if entry.get("recipient") == PASSPHRASE_RECIPIENT:
                    if identities.passphrase is None:
                        continue
                    key = age_passphrase.decrypt(enc, identities.passphrase)
                elif identities.age:
                    key = pyrage.decrypt(enc, identities.age)
                else:
                    continue
            except Exception:  # pyrage raises DecryptError and others: try the next entry
                continue
            if len(key) == 32:
                return key
        listed = ", ".join(self.recipients) or "none"
        raise NoIdentityError(f"no identity can decrypt {self.file}; recipients: {listed}")

    def open(self, identities: Identities) -> Opened:
        return Opened.decrypt(self, self.data_key(identities))


@dataclass
class Opened:
    """A decrypted secrets file: plaintext values, the data key, and the IVs to keep."""

    source: SopsFile
    key: bytes
    plain: dict[str, Any]
    ivs: dict[tuple[str, bytes], bytes]  # (aad, plaintext bytes) -> IV, as SOPS's stash
    metadata: dict[str, Any]

    @classmethod
    def decrypt(cls, source: SopsFile, key: bytes) -> Opened:
        rules = source.rules
        ivs: dict[tuple[str, bytes], bytes] = {}
        digest = hashlib.sha512()
        if rules.mac_only_encrypted:
            digest.update(MAC_ONLY_ENCRYPTED_INIT)

        def open_leaf(path: tuple[str, ...], value: Any) -> Any:
            encrypted = rules.should_encrypt(path)
            if encrypted:
                if not isinstance(value, str):
                    raise TamperedError(
                        f"{source.file}: {'.'.join(path)} should be encrypted but is a plain {type(value).__name__}"
                    )
                if value != "":
                    try:
                        value, iv = decrypt_value(value, key, aad_for(path))
                    except (ValueError, UnicodeDecodeError):
                        raise TamperedError(
                            f"{source.file}: {'.'.join(path)} does not decrypt: its ciphertext was "
                            "changed, or moved from another key; nothing was written"
                        ) from None
                    ivs[(aad_for(path), value_bytes(value)[0])] = iv
                    if isinstance(value, str | int | float) and not isinstance(value, bool):
                        decrypted.append(str(value))
            if not rules.mac_only_encrypted or encrypted:
                digest.update(value_bytes(value)[0])
            return value

        from flagstone.secrets import remember

        decrypted: list[str] = []
        plain = _map_leaves(source.values, open_leaf)
        # Scrubbed from every message and traceback from now on (the last net).
        remember(decrypted)
        mac_text = str(source.metadata.get("mac") or "")
        lastmodified = rfc3339(_parse_time(source.metadata.get("lastmodified", ""), source.file))
        try:
            stored, _ = decrypt_value(mac_text, key, lastmodified)
        except ValueError:
            raise TamperedError(
                f"{source.file}: the MAC does not decrypt: sops.mac or sops.lastmodified was edited; nothing was written"
            ) from None
        if str(stored) != digest.hexdigest().upper():
            raise MacMismatchError(
                f"{source.file}: the MAC does not match the values: a value was removed, added or "
                "reordered outside SOPS or flagstone; nothing was written"
            )
        return cls(source, key, plain, ivs, dict(source.metadata))

    # --- editing ---------------------------------------------------------------------

    def get(self, dotted: str) -> Any:
        from flagstone.paths import MISSING, get_path

        value = get_path(self.plain, dotted)
        if value is MISSING:
            raise KeyError(dotted)
        return value

    def set(self, dotted: str, value: Any) -> None:
        from flagstone.secrets import remember

        if isinstance(value, str | int | float) and not isinstance(value, bool):
            remember([str(value)])
        parts = dotted.split(".")
        node = self.plain
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value

    def delete(self, dotted: str) -> bool:
        parts = dotted.split(".")
        node: Any = self.plain
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            return False
        del node[parts[-1]]
        return True

    def add_recipient(self, recipient: str) -> None:
        entries = [e for e in self.source.age_entries if e.get("recipient") != recipient]
        entries.append({"recipient": recipient, "enc": wrap_for(recipient, self.key)})
        self.metadata["age"] = entries

    def remove_recipient(self, recipient: str) -> None:
        """Drop a recipient and rotate the data key: the removed person saw the old one."""
        remaining = [r for r in self.source.recipients if r != recipient]
        if len(remaining) == len(self.source.recipients):
            raise SopsError(f"{recipient} is not a recipient of {self.source.file}")
        if not remaining:
            raise SopsError(
                f"{recipient} is the last recipient of {self.source.file}; add another first"
            )
        self.rotate(remaining)

    def rotate(
        self, recipients: Sequence[str] | None = None, passphrase: str | None = None
    ) -> None:
        """A new data key, wrapped for ``recipients`` (default: the current ones); every
        value is re-encrypted with fresh IVs."""
        foreign = self.source.foreign_keys
        if foreign:
            raise SopsError(
                f"{self.source.file} also has {', '.join(foreign)} keys, which flagstone cannot "
                "re-wrap; rotate it with `sops rotate` instead"
            )
        targets = list(recipients if recipients is not None else self.source.recipients)
        if PASSPHRASE_RECIPIENT in targets and passphrase is None:
            raise SopsError(
                f"{self.source.file} has a passphrase recipient: set FLAGSTONE_AGE_PASSPHRASE to rotate it"
            )
        self.key = os.urandom(32)
        self.ivs = {}
        self.metadata["age"] = [
            {"recipient": r, "enc": wrap_for(r, self.key, passphrase)} for r in targets
        ]

    def render(self, *, now: dt.datetime | None = None) -> str:
        """Encrypt every value again (unchanged ones keep their IV), recompute the MAC with a
        new ``lastmodified``, and emit the file as YAML."""
        rules = Rules.from_metadata(self.metadata, self.source.file)
        digest = hashlib.sha512()
        if rules.mac_only_encrypted:
            digest.update(MAC_ONLY_ENCRYPTED_INIT)

        def seal(path: tuple[str, ...], value: Any) -> Any:
            data, _ = value_bytes(value)
            encrypted = rules.should_encrypt(path)
            if not rules.mac_only_encrypted or encrypted:
                digest.update(data)
            if not encrypted:
                return value
            aad = aad_for(path)
            return encrypt_value(value, self.key, aad, self.ivs.get((aad, data)))

        values = _map_leaves(self.plain, seal)
        moment = rfc3339(now or dt.datetime.now(dt.UTC))
        metadata = dict(self.metadata)
        metadata["lastmodified"] = moment
        metadata["mac"] = encrypt_value(digest.hexdigest().upper(), self.key, moment)
        metadata.setdefault("version", SOPS_VERSION)
        return emit({**values, "sops": _ordered_metadata(metadata)})


def new_file(
    file: str,
    recipients: Sequence[str],
    *,
    passphrase: str | None = None,
    rules: Rules | None = None,
) -> Opened:
    """An empty secrets file for ``recipients`` (age public keys, or ``scrypt`` for the
    passphrase)."""
    key = os.urandom(32)
    metadata: dict[str, Any] = {
        "age": [{"recipient": r, "enc": wrap_for(r, key, passphrase)} for r in recipients],
        **(rules or Rules(unencrypted_suffix=DEFAULT_UNENCRYPTED_SUFFIX)).as_metadata(),
        "version": SOPS_VERSION,
    }
    source = SopsFile(file, {}, metadata)
    return Opened(source, key, {}, {}, metadata)


def wrap_for(recipient: str, key: bytes, passphrase: str | None = None) -> str:
    """The data key as an armored age file for one recipient."""
    import pyrage
    from pyrage import passphrase as age_passphrase
    from pyrage import x25519

    if recipient == PASSPHRASE_RECIPIENT:
        if not passphrase:
            raise SopsError("a passphrase recipient needs a passphrase (FLAGSTONE_AGE_PASSPHRASE)")
        data = age_passphrase.encrypt(key, passphrase, armored=True)
    else:
        try:
            parsed = x25519.Recipient.from_str(recipient)
        except Exception:
            raise SopsError(
                f"{recipient!r} is not an age X25519 public key (age1…); create one with `flagstone secret keygen`"
            ) from None
        data = pyrage.encrypt(key, [parsed], armored=True)
    return data.decode().replace("\r\n", "\n").rstrip("\n") + "\n"


def _ordered_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The sops: block in the order SOPS writes it (alphabetical by key)."""
    return {k: metadata[k] for k in sorted(metadata)}


# --- YAML out ---------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            go_float(value)
            if value == value and abs(value) != float("inf")
            else json.dumps(str(value))
        )
    text = str(value)
    if _ENC.match(text) or (
        _PLAIN_VALUE.match(text)
        and text not in _AMBIGUOUS
        and not _looks_numeric(text)
        and not _DATE_LIKE.match(text)
    ):
        return text
    return json.dumps(text, ensure_ascii=False)


def _looks_numeric(text: str) -> bool:
    try:
        float(text.replace("_", ""))
    except ValueError:
        return text.startswith(("0x", "0o", "0b", "."))
    return True


def _key(key: Any) -> str:
    text = str(key)
    return (
        text
        if _PLAIN_KEY.match(text) and text not in _AMBIGUOUS and not _looks_numeric(text)
        else json.dumps(text, ensure_ascii=False)
    )


def emit(data: Mapping[str, Any]) -> str:
    """YAML in the layout SOPS writes (go-yaml, indent 4), so files from either tool diff small."""
    lines: list[str] = []
    _emit_mapping(data, 0, lines)
    return "\n".join(lines) + "\n"


def _emit_mapping(
    node: Mapping[str, Any], indent: int, lines: list[str], first_prefix: str | None = None
) -> None:
    pad = " " * indent
    for i, (k, v) in enumerate(node.items()):
        lead = first_prefix if (i == 0 and first_prefix is not None) else pad
        head = f"{lead}{_key(k)}:"
        _emit_value(head, v, indent, lines)


def _emit_value(head: str, value: Any, indent: int, lines: list[str]) -> None:
    if isinstance(value, Mapping):
        if not value:
            lines.append(head + " {}")
            return
        lines.append(head)
        _emit_mapping(value, indent + 4, lines)
    elif isinstance(value, list):
        if not value:
            lines.append(head + " []")
            return
        lines.append(head)
        _emit_sequence(value, indent + 4, lines)
    elif (
        isinstance(value, str)
        and "\n" in value.rstrip("\n")
        and value.endswith("\n")
        and not value.endswith("\n\n")
        and not value.startswith((" ", "\t"))
    ):
        lines.append(head + " |")  # armored age text, as SOPS writes it
        for line in value.rstrip("\n").split("\n"):
            lines.append((" " * (indent + 2) + line) if line else "")
    else:
        lines.append(f"{head} {_scalar(value)}")


def _emit_sequence(items: list[Any], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for item in items:
        if isinstance(item, Mapping) and item:
            _emit_mapping(item, indent + 2, lines, first_prefix=pad + "- ")
        elif isinstance(item, list) and item:
            lines.append(pad + "-")
            _emit_sequence(item, indent + 4, lines)
        else:
            lines.append(
                f"{pad}- {_scalar(item) if not isinstance(item, Mapping | list) else ('{}' if isinstance(item, Mapping) else '[]')}"
            )


# --- identities ---------------------------------------------------------------------------

IDENTITY_HELP = (
    "set FLAGSTONE_AGE_KEY_FILE (or SOPS_AGE_KEY_FILE) to your age key file, or put it in "
    "~/.config/flagstone/age/keys.txt; create one with `flagstone secret keygen`"
)


def identity_locations() -> list[tuple[str, str | None]]:
    """Where identities are looked for, in order: (description, path or None for text)."""
    from pathlib import Path

    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path("~/.config").expanduser())
    out: list[tuple[str, str | None]] = []
    if os.environ.get("FLAGSTONE_AGE_KEY"):
        out.append(("FLAGSTONE_AGE_KEY", None))
    for name in ("FLAGSTONE_AGE_KEY_FILE", "SOPS_AGE_KEY_FILE"):
        if os.environ.get(name):
            out.append((name, os.environ[name]))
    out.append(("user config", str(config_home / "flagstone" / "age" / "keys.txt")))
    out.append(("user config", str(config_home / "sops" / "age" / "keys.txt")))
    return out


def parse_identities(text: str, where: str) -> list[Any]:
    from pyrage import x25519

    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            found.append(x25519.Identity.from_str(line))
        except Exception:
            raise SopsError(f"{where}: a line is not an age identity (AGE-SECRET-KEY-1…)") from None
    return found


def find_identities(repository_root: os.PathLike[str] | str | None = None) -> Identities:
    """The user's identities, never the repository's: a key file inside the repository is
    refused, since a key committed with the secrets it opens protects nothing."""
    from pathlib import Path

    identities = Identities(passphrase=os.environ.get("FLAGSTONE_AGE_PASSPHRASE") or None)
    root = Path(repository_root).resolve() if repository_root is not None else None
    for where, path in identity_locations():
        if path is None:
            identities.age += parse_identities(os.environ["FLAGSTONE_AGE_KEY"], where)
            identities.sources.append(where)
            continue
        file = Path(path).expanduser()
        if root is not None and file.resolve().is_relative_to(root):
            raise SopsError(
                f"{where} points inside the repository ({file}); keep identities out of git"
            )
        if not file.is_file():
            if where != "user config":
                raise SopsError(f"{where} is {file}, which does not exist; {IDENTITY_HELP}")
            continue
        identities.age += parse_identities(file.read_text(encoding="utf-8"), str(file))
        identities.sources.append(str(file))
    return identities


# --- secrets files in a repository ---------------------------------------------------------


def secrets_relpath(env: str) -> str:
    from flagstone.model import ENVIRONMENTS_DIR
    from flagstone.secrets import SECRETS_FILE

    return f"{ENVIRONMENTS_DIR}/{env}/{SECRETS_FILE}"


def configured_recipients(settings_raw: Mapping[str, Any], env: str) -> list[str]:
    """Recipients flagstone.yaml names for ``env``: ``secrets: {recipients: {prod: [...]}}``,
    or one list for every environment."""
    listed = (settings_raw.get("secrets") or {}).get("recipients") or []
    if isinstance(listed, Mapping):
        listed = listed.get(env) or []
    return [str(r) for r in listed]


def read_env_file(root: Any, env: str) -> SopsFile | None:
    from pathlib import Path

    rel = secrets_relpath(env)
    path = Path(root) / rel
    if not path.is_file():
        return None
    return SopsFile.parse(path.read_bytes(), rel)


def open_env(root: Any, env: str, identities: Identities) -> Opened | None:
    source = read_env_file(root, env)
    if source is None:
        return None
    try:
        return source.open(identities)
    except MacMismatchError as e:
        raise MacMismatchError(f"{e}{_against_committed(root, source)}") from None


def encrypted_values(source: SopsFile) -> list[tuple[str, str]]:
    """(dotted key, ciphertext) of every encrypted value, in document order."""
    return [
        (".".join(path), value)
        for path, value in walk(source.values)
        if isinstance(value, str) and _ENC.match(value)
    ]


def describe_changes(previous: SopsFile, current: SopsFile) -> str:
    """What differs between a file that verifies and one whose MAC does not, by key name
    and without any key: removed, added, reordered or replaced values."""
    from collections import Counter

    before, after = encrypted_values(previous), encrypted_values(current)
    before_keys, after_keys = Counter(k for k, _ in before), Counter(k for k, _ in after)
    parts = []
    removed = sorted((before_keys - after_keys).elements())
    added = sorted((after_keys - before_keys).elements())
    if removed:
        parts.append(f"{', '.join(dict.fromkeys(removed))} removed")
    if added:
        parts.append(f"{', '.join(dict.fromkeys(added))} added")
    common = before_keys & after_keys
    in_before = [k for k, _ in before if common[k]]
    in_after = [k for k, _ in after if common[k]]
    moved = [a for a, b in zip(in_after, in_before, strict=False) if a != b]
    if moved:
        parts.append(f"{', '.join(dict.fromkeys(moved))} reordered")
    old = {k: v for k, v in before}
    replaced = [k for k, v in after if common[k] and k not in moved and old.get(k) != v]
    if replaced and not moved:
        parts.append(f"{', '.join(dict.fromkeys(replaced))} changed")
    return "; ".join(parts)


def _against_committed(root: Any, source: SopsFile) -> str:
    """`` (against the committed file: …)``, or "" when there is none to compare with."""
    from pathlib import Path

    try:
        from flagstone import gitio

        data = gitio.show(Path(root), "HEAD", source.file)
        if data is None:
            return ""
        changes = describe_changes(SopsFile.parse(data, source.file), source)
    except Exception:  # no repository, no commit, an unreadable old file: nothing to add
        return ""
    return f" (against the committed file: {changes})" if changes else ""


def fingerprint(ciphertext: str) -> str:
    """Names a stored value without revealing it: a hash of its ciphertext, which changes
    exactly when the value does (unchanged values keep their IV)."""
    return "sha256:" + hashlib.sha256(ciphertext.encode()).hexdigest()[:12]


def textconv(content: bytes | str, file: str) -> str:
    """What ``git diff`` shows for a secrets file: key names, one fingerprint per value,
    the recipients; never a value, and no key needed."""
    source = SopsFile.parse(content, file)
    lines = [f"# {file} (flagstone secrets: values are fingerprints of their ciphertext)"]
    for path, value in walk(source.values):
        name = ".".join(path)
        if isinstance(value, str) and _ENC.match(value):
            lines.append(f"{name}: <secret {fingerprint(value)}>")
        elif source.rules.should_encrypt(path):
            lines.append(f"{name}: <empty>" if value == "" else f"{name}: <not encrypted!>")
        else:
            lines.append(f"{name}: {_scalar(value)}")
    for recipient in source.recipients:
        lines.append(f"recipient: {recipient}")
    for kind in source.foreign_keys:
        lines.append(f"{kind}: {len(source.metadata[kind])} key(s)")
    return "\n".join(lines) + "\n"


def merge(base: Opened | None, ours: Opened, theirs: Opened) -> tuple[dict[str, Any], list[str]]:
    """Three-way merge of decrypted values by key path; returns (values, conflicting keys)."""

    def flat(node: Any, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in node.items():
            if isinstance(v, Mapping) and v:
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v  # lists merge as one value
        return out

    o, a, b = flat(base.plain if base else {}), flat(ours.plain), flat(theirs.plain)
    merged: dict[str, Any] = {}
    conflicts = []
    absent = object()
    for key in dict.fromkeys([*a, *b, *o]):
        va, vb, vo = a.get(key, absent), b.get(key, absent), o.get(key, absent)
        if va == vb:
            result = va
        elif va == vo:
            result = vb
        elif vb == vo:
            result = va
        else:
            conflicts.append(key)
            result = va
        if result is not absent:
            merged[key] = result
    return merged, conflicts


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


BUNDLE_SECRETS_FORMAT = "age-json"  # runtime/client.py reads it


def seal_for_bundle(
    values: Mapping[str, Any], recipients: Sequence[str], data_key: bytes | None = None
) -> dict[str, Any]:
    """Decrypted secret config values, sealed for a service: one armored age file of their
    JSON for ``recipients``, so a bundle at rest on disk or a CDN carries no plaintext.

    With ``data_key`` (the environment's SOPS data key) the sealing is deterministic:
    unchanged values and recipients seal to the same bytes, so rebuilding gives the same
    bundle hash (and signature). See ``seal_deterministic``."""
    from pyrage import x25519

    if not recipients:
        raise SopsError(
            "--include-secrets needs the service's age public key: pass --recipient age1…"
        )
    for recipient in recipients:
        try:
            x25519.Recipient.from_str(recipient)
        except Exception:
            raise SopsError(f"{recipient!r} is not an age X25519 public key (age1…)") from None
    plaintext = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if data_key is None:
        import pyrage

        parsed = [x25519.Recipient.from_str(r) for r in recipients]
        sealed = pyrage.encrypt(plaintext.encode(), parsed, armored=True).decode()
    else:
        sealed = seal_deterministic(plaintext.encode(), recipients, data_key)
    return {"format": BUNDLE_SECRETS_FORMAT, "recipients": list(recipients), "age": sealed}


# --- deterministic age (age-encryption.org/v1) -----------------------------------------
# An age file whose randomness — the file key, each recipient's ephemeral X25519 key and
# the payload nonce — is derived from HMAC-SHA256(seal key, plaintext, recipients), the
# seal key being HKDF of the environment's data key. The same input gives the same file;
# any change of value, recipient or data key gives unrelated ones, so a nonce or file key
# is never used for two plaintexts (the synthetic-IV construction of RFC 5297). What a
# reader learns is only whether two bundles seal equal secrets. Without the data key
# nothing is predictable. Any age implementation (pyrage, `age -d`) decrypts it.

_AGE_CHUNK = 64 * 1024
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)


def _b64_unpadded(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _age_public_key(recipient: str) -> bytes:
    """The 32 bytes of an ``age1…`` recipient (already checked by pyrage)."""
    data = recipient.lower().rsplit("1", 1)[1][:-6]  # drop the hrp and the checksum
    acc = bits = 0
    out = bytearray()
    for char in data:
        acc = (acc << 5) | _BECH32.index(char)
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    return bytes(out)


def seal_deterministic(plaintext: bytes, recipients: Sequence[str], data_key: bytes) -> str:
    import hmac

    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    seal_key = _hkdf(data_key, b"", b"flagstone bundle secrets seal key")
    message = b"\x00".join([plaintext, *(r.encode() for r in recipients)])
    seed = hmac.new(seal_key, message, hashlib.sha256).digest()
    file_key = _hkdf(seed, b"", b"age file key", 16)
    header = bytearray(b"age-encryption.org/v1\n")
    for index, recipient in enumerate(recipients):
        public = _age_public_key(recipient)
        ephemeral = X25519PrivateKey.from_private_bytes(
            _hkdf(seed, b"", b"age ephemeral key %d" % index)
        )
        share = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public))
        wrap_key = _hkdf(shared, share + public, b"age-encryption.org/v1/X25519")
        body = ChaCha20Poly1305(wrap_key).encrypt(b"\x00" * 12, file_key, None)
        # a stanza body: 64-column lines, the last one shorter (43 columns here)
        header += f"-> X25519 {_b64_unpadded(share)}\n{_b64_unpadded(body)}\n".encode()
    header += b"---"
    mac = hmac.new(_hkdf(file_key, b"", b"header"), bytes(header), hashlib.sha256).digest()
    header += f" {_b64_unpadded(mac)}\n".encode()
    nonce = _hkdf(seed, b"", b"age payload nonce", 16)
    stream = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    chunks = [plaintext[i : i + _AGE_CHUNK] for i in range(0, len(plaintext), _AGE_CHUNK)]
    payload = bytearray(nonce)
    for counter, chunk in enumerate(chunks or [b""]):
        last = b"\x01" if counter == max(len(chunks), 1) - 1 else b"\x00"
        payload += stream.encrypt(counter.to_bytes(11, "big") + last, chunk, None)
    text = base64.b64encode(bytes(header) + bytes(payload)).decode()
    lines = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    return f"-----BEGIN AGE ENCRYPTED FILE-----\n{lines}\n-----END AGE ENCRYPTED FILE-----\n"


def reencrypt_for(
    root: Any, settings_raw: Mapping[str, Any], src: str, dst: str, prefixes: Sequence[str]
) -> tuple[str, str, bytes | None, list[str]] | None:
    """``promote --secrets reencrypt``: the source's secrets under ``prefixes`` ("" = all),
    decrypted and encrypted into the target's file for the target's recipients. Returns
    (path, new text, the bytes read, keys moved), or None when there is nothing to move."""
    from flagstone.secrets import remember

    source = read_env_file(root, src)
    if source is None or not prefixes:
        return None
    identities = find_identities(root)
    opened = source.open(identities)
    flat = _flatten(opened.plain)
    keys = [k for k in flat if any(not p or k == p or k.startswith(p + ".") for p in prefixes)]
    if not keys:
        return None
    remember(
        str(flat[k])
        for k in keys
        if isinstance(flat[k], str | int | float) and not isinstance(flat[k], bool)
    )
    target = read_env_file(root, dst)
    if target is not None:
        into = target.open(identities)
    else:
        recipients = configured_recipients(settings_raw, dst)
        if not recipients:
            raise SopsError(
                f"{dst} has no secrets file and flagstone.yaml lists no recipients for it "
                f"(secrets.recipients.{dst}): nobody could decrypt the re-encrypted secrets"
            )
        into = new_file(secrets_relpath(dst), recipients, passphrase=identities.passphrase)
    for key in keys:
        into.set(key, flat[key])
    return into.source.file, into.render(), target.raw if target else None, keys


def _flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in node.items():
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
