"""The bundle hash is RFC 8785 (JCS): held to the vectors and to the independent `rfc8785`."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstone.bundle import fast_canonical_json
from flagstone.runtime.canonical import (
    CanonicalJSONError,
    bundle_hash,
    canonical_json,
    ecmascript_number,
    exact_canonical_json,
    signed_message,
)

# The runtime's encoder (Python's C json first) and the build's (msgspec first): each must
# write RFC 8785 exactly, or refuse.
ENCODERS = pytest.mark.parametrize(
    "encode", [canonical_json, fast_canonical_json], ids=["runtime", "build"]
)

ROOT = Path(__file__).resolve().parent.parent
HASH_VECTORS = json.loads((ROOT / "tests" / "conformance" / "hash-vectors.json").read_text())


def independent_hash(bundle: dict) -> str:
    body = {k: v for k, v in bundle.items() if k not in ("hash", "signature")}
    return "sha256:" + hashlib.sha256(rfc8785.dumps(body)).hexdigest()


@pytest.mark.parametrize("vector", HASH_VECTORS["canonical"], ids=lambda v: v["name"])
@ENCODERS
def test_canonical_vector__reproduced_by_flagstone_and_by_rfc8785(vector, encode) -> None:
    value = json.loads(vector["json"])
    ours = encode(value)
    assert ours.decode() == vector["canonical"]
    assert rfc8785.dumps(value) == ours
    assert hashlib.sha256(ours).hexdigest() == vector["sha256"]


def test_canonical_vectors__cover_floats_exponents_unicode_and_astral_keys() -> None:
    names = {v["name"] for v in HASH_VECTORS["canonical"]}
    assert {
        "integral-floats",
        "exponents",
        "astral-plane-keys",
        "rfc8785-3.2.3-sorting",
    } <= names
    assert sum(n.startswith("rfc8785-appendix-b-") for n in names) >= 20
    # The sorting vector really orders by UTF-16: the emoji (U+1F600) sorts before U+FB33.
    sorting = next(v for v in HASH_VECTORS["canonical"] if v["name"] == "rfc8785-3.2.3-sorting")
    assert sorting["canonical"].index("\U0001f600") < sorting["canonical"].index("\ufb33")


@pytest.mark.parametrize("vector", HASH_VECTORS["bundles"], ids=lambda v: v["name"])
def test_bundle_vector__hash_and_signature_verify_independently(vector) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    bundle = json.loads(vector["file"])
    assert bundle["hash"] == vector["hash"] == independent_hash(bundle) == bundle_hash(bundle)
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(vector["public_key"]))
    key.verify(
        base64.b64decode(vector["signature"]), b"flagstone-bundle:" + bundle["hash"].encode()
    )
    # The file is itself the canonical JSON of the whole bundle, plus a newline.
    assert vector["file"].encode() == rfc8785.dumps(bundle) + b"\n"


def test_bundle_vector__loads_in_the_client_with_its_public_key(tmp_path: Path) -> None:
    from flagstone.runtime import Client

    vector = HASH_VECTORS["bundles"][0]
    path = tmp_path / "prod.json"
    path.write_text(vector["file"])
    client = Client.from_file(path, public_key=bytes.fromhex(vector["public_key"]))
    assert client.value("price-test", {"user_id": "user-\U0001f600"}) == 1e21
    assert client.config("z") == 1


def test_hash_vectors__are_what_the_generator_writes_today(tmp_path: Path) -> None:
    """A change to canonical_json or the format that moves any vector fails here first."""
    script = ROOT / "tests" / "conformance" / "generate_hashes.py"
    copy = tmp_path / "conformance"
    copy.mkdir()
    (copy / "generate_hashes.py").write_text(
        script.read_text().replace(
            'sys.path.insert(0, str(HERE.parent.parent / "src"))',
            f"sys.path.insert(0, {str(ROOT / 'src')!r})",
        )
    )
    subprocess.run(
        [sys.executable, str(copy / "generate_hashes.py")], check=True, capture_output=True
    )
    assert json.loads((copy / "hash-vectors.json").read_text()) == HASH_VECTORS


def test_built_bundle_file__hash_recomputed_with_rfc8785(cli_build_bundle) -> None:
    data = cli_build_bundle.read_bytes()
    bundle = json.loads(data)
    assert bundle["hash"] == independent_hash(bundle)
    assert data == rfc8785.dumps(bundle) + b"\n"


@pytest.fixture
def cli_build_bundle(tmp_path: Path) -> Path:
    """`flagstone build` run as a user runs it, on the conformance repository with a float."""
    import shutil

    repo = shutil.copytree(ROOT / "tests" / "conformance" / "repository", tmp_path / "repo")
    (repo / "environments" / "prod" / "config.yaml").write_text(
        "ratio: 1.0\ntiny: 0.0000001\nbig: 1.0e+21\nключ: значение\n\U0001f600: grinning\n"
    )
    out = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "flagstone", "build", "--env", "prod", "--out", str(out)],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return out / "prod.json"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=30,
)


def assert_agrees_with_rfc8785(value: object) -> None:
    """The same bytes as the independent implementation, or refused where it refuses."""
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        for encode in (canonical_json, fast_canonical_json):
            with pytest.raises(CanonicalJSONError):
                encode(value)
        return
    assert canonical_json(value) == expected
    assert fast_canonical_json(value) == expected


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_canonical_json__equals_rfc8785_for_any_json_value(value) -> None:
    assert_agrees_with_rfc8785(value)


numbers = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.integers(min_value=-(2**60), max_value=2**60).map(float)
    | st.integers(min_value=-400, max_value=400).map(lambda e: 10.0**e if e < 309 else 1e308)
)
number_documents = st.recursive(
    numbers | st.text(alphabet="0123456789.e+-,]}", max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(alphabet="0123456789.e+-", max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None)
@given(number_documents)
def test_canonical_json__equals_rfc8785_for_numbers_and_number_like_text(value) -> None:
    """Integral floats, exponents and long integers, beside strings that look like them."""
    assert_agrees_with_rfc8785(value)


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        [2.0],
        {"a": -0.0},
        {"a": 100.0, "b": 1},
        1e16,
        [5e-324],
        {"x": 1e21},
        2**53 - 1,
        [123456789012345, "1.0", "e+5", "1e+16"],
        {"\U0001f600": 1, "\ufb33": 2},
    ],
)
@ENCODERS
def test_canonical_json__rewrites_what_python_writes_differently(value, encode) -> None:
    assert encode(value) == rfc8785.dumps(value)


@ENCODERS
def test_canonical_json__refuses_a_value_that_contains_itself(encode) -> None:
    looped: list[object] = []
    looped.append(looped)
    with pytest.raises(CanonicalJSONError, match="contains itself"):
        encode({"a": looped})


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_ecmascript_number__equals_rfc8785_for_every_double(x: float) -> None:
    assert ecmascript_number(x).encode() == rfc8785.dumps(x)


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        2**53,
        -(2**53),
        {"k": [2**64]},
        "\ud800 lone surrogate",
        {1, 2},
    ],
    ids=["nan", "inf", "-inf", "2**53", "-2**53", "2**64", "lone-surrogate", "set"],
)
@ENCODERS
def test_canonical_json__refuses_what_json_cannot_carry_exactly(value, encode) -> None:
    with pytest.raises(CanonicalJSONError):
        encode(value)


def test_signed_message__is_the_context_then_the_ascii_hash() -> None:
    assert signed_message("sha256:ab") == b"flagstone-bundle:sha256:ab"


def _large_bundle(seed: int) -> dict[str, object]:
    """A bundle shaped like the anchor workload's (2,000 flags, JSON variants, rollouts,
    conditions with numbers, hex salts), with the odd values a real one holds."""
    import random

    rng = random.Random(seed)
    words = ["spring", "Grüße", "ключ", "naïve", "tab\there", 'quote"d', "back\\slash", "\u2028"]
    flags = {}
    for i in range(2000):
        variants: dict[str, object] = {
            "on": {"text": rng.choice(words), "ratio": rng.random(), "n": rng.randrange(10**9)},
            "off": rng.choice([False, None, 0, 1.5, -3.25, "off"]),
        }
        flags[f"feat-{i:05d}"] = {
            "variants": variants,
            "salt": f"{rng.getrandbits(128):032x}",
            "rules": [
                {
                    "when": {
                        "attribute": f"attr-{rng.randrange(50)}",
                        "op": "gt",
                        "value": rng.uniform(-1e6, 1e6),
                    },
                    "serve": {"rollout": [{"variant": "on", "end": rng.randrange(10001)}]},
                }
            ],
            "enabled": rng.random() < 0.9,
        }
    return {"format": "flagstone-bundle", "version": 1, "flags": flags, "config": {"ratio": 0.5}}


@ENCODERS
@pytest.mark.parametrize("seed", [1, 2])
def test_canonical_json__large_bundle__same_bytes_as_the_exact_encoder_and_rfc8785(
    seed, encode
) -> None:
    bundle = _large_bundle(seed)
    assert encode(bundle) == exact_canonical_json(bundle) == rfc8785.dumps(bundle)


@ENCODERS
def test_canonical_json__the_fast_encoder_takes_plain_values_and_sends_the_rest_the_exact_way(
    encode, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flagstone.runtime import canonical

    exact_calls: list[object] = []  # the values the exact encoder was called for
    real_exact = canonical._encode

    def counting(value: object, out: list[str]) -> list[str]:
        if not out:
            exact_calls.append(value)
        return real_exact(value, out)

    monkeypatch.setattr(canonical, "_encode", counting)
    plain = {"a": [1, 2.5, "x", None, True], "b": {"c": "Grüße"}, "salt": "0e4a9e91"}
    assert encode(plain) == rfc8785.dumps(plain)
    assert exact_calls == []  # hex salts hold "9e9" but no number in exponent form
    for value in (1.0, {"x": 1e16}, [1e21], {"\U0001f600": 1, "\ufb33": 2}, [9007199254740991]):
        assert encode(value) == rfc8785.dumps(value)
    assert len(exact_calls) == 5


@pytest.mark.parametrize(
    "value, message",
    [
        ({"a": [{"b": {1, 2}}]}, "not a JSON value"),
        ({"a": frozenset()}, "not a JSON value"),
        ({"a": b"bytes"}, "not a JSON value"),
        ({(1, 2): "tuple key"}, "not a JSON value"),
        ({"when": __import__("datetime").date(2026, 1, 1)}, "not a JSON value"),
        ({"a": object()}, "not a JSON value"),
        ({"a": [1, math.nan]}, "NaN or Infinity"),
        ({"a": {"b": -math.inf}}, "NaN or Infinity"),
        ({"a": "\udc00"}, "lone UTF-16 surrogate"),
    ],
    ids=["set", "frozenset", "bytes", "tuple-key", "date", "object", "nan", "-inf", "surrogate"],
)
@ENCODERS
def test_canonical_json__not_a_json_value__refused_not_written(value, message, encode) -> None:
    with pytest.raises(CanonicalJSONError, match=message):
        encode(value)


@pytest.mark.parametrize("module", ["flagstone.runtime.canonical", "flagstone.bundle"])
def test_canonical_json__nested_200000_deep__refused_without_a_crash(module) -> None:
    encoder = "canonical_json" if module.endswith("canonical") else "fast_canonical_json"
    code = (
        f"from {module} import {encoder} as encode\n"
        "from flagstone.runtime.canonical import CanonicalJSONError\n"
        "x = []\n"
        "for _ in range(200_000): x = [x]\n"
        "try:\n    encode({'a': x})\n"
        "except CanonicalJSONError as e:\n    print('refused:', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused: the value is nested too deeply")
