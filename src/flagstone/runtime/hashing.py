"""Deterministic bucketing, as flagd's ``fractional`` in its v3 specification; which flagd
implementations and versions agree: the table in docs/flagd.md, "Buckets: which flagd
implementations agree".

    bucket(salt, unit) = (murmur3_x86_32(cbor_text(salt + "/" + str(unit)), seed=0) * 10_000) >> 32

- ``murmur3_x86_32`` is MurmurHash3 x86 32-bit, seed 0, read as an unsigned integer.
- ``cbor_text`` is the CBOR encoding (RFC 8949) of a UTF-8 text string: the header byte
  ``0x60 + n`` for n < 24 bytes, ``0x78 n`` below 256, ``0x79`` + 2-byte big-endian
  length below 65,536, ``0x7a`` + 4 bytes beyond; then the bytes. flagd hashes the CBOR
  encoding of its bucket-by value, so a flagd export that buckets by
  ``{"cat": [salt + "/", {"var": unit}]}`` puts every unit in the same bucket.
- ``str(unit)``: strings as they are; integers in decimal; other types are not units.
- Buckets run 0..9,999 (0.01 % steps). A rollout ``{on: 20, off: 80}`` serves ``on`` to
  buckets [0, 2000) and ``off`` to [2000, 10000): a unit's bucket never changes, so
  raising 20 % to 50 % keeps the first 20 % in.
- Salts keep assignments independent. A flag's rollouts use the flag's salt (its key by
  default). An experiment picks the arm with salt ``"experiment:" + salt`` and decides
  enrolment with ``"experiment:" + salt + ":traffic"``; a layer places units with
  ``"layer:" + layer``. Distinct prefixes mean an experiment named like its flag still
  gets buckets independent of the flag's own rollout.
"""

from __future__ import annotations

import struct

from mmh3 import hash as _murmur3

from flagstone.runtime.format import BUCKETS

__all__ = ["BUCKETS", "bucket", "bucket_of_key", "cbor_text", "murmur3"]


def cbor_text(text: str) -> bytes:
    data = text.encode("utf-8")
    n = len(data)
    if n < 24:
        return bytes((0x60 + n,)) + data
    if n < 0x100:
        return bytes((0x78, n)) + data
    if n < 0x10000:
        return b"\x79" + struct.pack(">H", n) + data
    return b"\x7a" + struct.pack(">I", n) + data


def murmur3(data: bytes) -> int:
    return _murmur3(data, 0, False)


def bucket(salt: str, unit: str) -> int:
    """The unit's bucket in 0..9,999 for this salt."""
    return (_murmur3(cbor_text(f"{salt}/{unit}"), 0, False) * BUCKETS) >> 32


def bucket_of_key(key: str) -> int:
    """Bucket of an already-joined hash key (``salt/unit``)."""
    return (_murmur3(cbor_text(key), 0, False) * BUCKETS) >> 32
