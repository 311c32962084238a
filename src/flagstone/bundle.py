"""Per-environment bundles: the JSON the runtimes evaluate.

A bundle is compiled at build time into the cheapest form to evaluate: conditions are
normalized to one tree shape, segments are referenced by key, rollout percentages become
cumulative bucket ends out of 10,000, experiments get their layer ranges, and every
object carries its salt. The bytes are RFC 8785 (JCS) canonical JSON plus a newline, so
the same source builds the same bytes in every language, with no timestamps. The content
hash (sha256 of the canonical JSON without ``hash`` and ``signature``) doubles as the
HTTP ETag; a signature is Ed25519 over ``"flagstone-bundle:" + hash``. The constants
live in ``runtime/format.py``; see docs/runtime.md.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import jsonschema_rs
import msgspec

from flagstone.conditions import compile_condition
from flagstone.errors import FlagstoneError
from flagstone.model import (
    Environment,
    Experiment,
    Flag,
    Repository,
    Rollout,
    Segment,
    Serve,
    enabled_of,
    prerequisite_variants,
    salt_of,
)
from flagstone.privacy import PrivacySettings
from flagstone.runtime.canonical import (
    CanonicalJSONError,
    bundle_hash,
    exact_canonical_json,
    may_differ_from_jcs,
    signed_message,
)
from flagstone.runtime.canonical import canonical_json as _canonical_json
from flagstone.runtime.format import (
    BUCKETS,
    DEFAULT_CONSENT_ATTRIBUTE,
    FORMAT,
    FORMAT_VERSION,
    HASH_EXCLUDED_FIELDS,
    HASH_PREFIX,
    OPERATORS,
    SIGNATURE_CONTEXT,
)

__all__ = [
    "BUCKETS",
    "FORMAT",
    "FORMAT_VERSION",
    "OPERATORS",
    "SIGNATURE_CONTEXT",
    "build_bundle",
    "build_bundle_bytes",
    "canonical_json",
    "compile_condition",
    "content_hash",
    "dump_bundle",
    "encode_bundle",
    "sign_bundle",
]


def compile_weights(weights: Mapping[str, float]) -> list[dict[str, Any]]:
    """Percentages -> cumulative bucket ends, in the order written (0.01 % steps)."""
    out, end = [], 0
    for variant, percent in weights.items():
        end += round(float(percent) * 100)
        out.append({"variant": variant, "end": end})
    if end != BUCKETS:
        raise FlagstoneError(f"weights {dict(weights)} do not sum to 100; run `flagstone validate`")
    return out


def compile_serve(serve: Serve | Mapping[str, Any]) -> dict[str, Any]:
    """A serve (a variant name, a Rollout, or the raw ``{rollout: ..., by: ...}``) for the bundle."""
    if isinstance(serve, str):
        return {"variant": serve}
    weights, by = (
        (serve.weights, serve.by)
        if isinstance(serve, Rollout)
        else (serve["rollout"], serve.get("by"))
    )
    compiled: dict[str, Any] = {"rollout": compile_weights(weights)}
    if by is not None:
        compiled["by"] = by
    return compiled


def compile_flag(
    flag: Flag, default_unit: str, experiment: str | None, memo: CompileMemo | None = None
) -> dict[str, Any]:
    # Reads the raw mapping directly: this runs for every flag of every environment.
    raw = flag.raw
    targets = {
        str(unit_id): variant for variant, ids in raw.get("targets", {}).items() for unit_id in ids
    }
    rules_source = raw.get("rules", ())
    part = memo.part if memo is not None else _compile_now
    out: dict[str, Any] = {
        "variants": part(raw["variants"], dict),
        "enabled": enabled_of(raw),
        "unit": raw.get("unit") or default_unit,
        "salt": salt_of(flag.key, raw),
        "prerequisites": [
            {"flag": p["flag"], "variants": list(prerequisite_variants(p))}
            for p in raw.get("prerequisites", ())
        ],
        "targets": targets,
        "rules": part(rules_source, _compile_rules) if rules_source else [],
        "default": part(raw["default"], compile_serve),
    }
    if "off_variant" in raw:
        out["off_variant"] = raw["off_variant"]
    if experiment is not None:
        out["experiment"] = experiment
    return out


def _compile_now(source: Any, compile_one: Callable[[Any], Any]) -> Any:
    return compile_one(source)


def _compile_rules(source: Any) -> list[dict[str, Any]]:
    rules = []
    for rule in source:
        segment, when = rule.get("segment"), rule.get("when")
        conditions = ([{"segment": segment}] if segment is not None else []) + (
            [compile_condition(when)] if when is not None else []
        )
        compiled: dict[str, Any] = {
            "when": conditions[0] if len(conditions) == 1 else {"all": conditions},
            "serve": compile_serve(rule["serve"]),
        }
        if "name" in rule:
            compiled["name"] = rule["name"]
        rules.append(compiled)
    return rules


def compile_experiments(
    env: Environment,
    default_unit: str,
    pii: frozenset[str] = frozenset(),
    consent_attribute: str = DEFAULT_CONSENT_ATTRIBUTE,
) -> dict[str, dict[str, Any]]:
    """Experiments with arms as bucket ranges and disjoint ranges within each layer.

    Within a layer, running experiments take consecutive ranges of the layer's buckets in
    order of ``started_at`` then key, each as wide as its traffic.
    """
    layer_next: dict[str, int] = {}
    layer_ranges: dict[str, tuple[int, int]] = {}
    running_layered = sorted(
        (e for e in env.experiments.values() if e.layer is not None and e.status == "running"),
        key=lambda e: (str(e.raw.get("started_at", "")), e.key),
    )
    for e in running_layered:
        assert e.layer is not None
        start = layer_next.get(e.layer, 0)
        end = min(BUCKETS, start + round(e.traffic * 100))
        layer_ranges[e.key] = (start, end)
        layer_next[e.layer] = end
    out = {}
    for key, e in sorted(env.experiments.items()):
        flag = env.flags.get(e.flag)
        if flag is None:
            raise FlagstoneError(
                f"experiment {key!r} uses flag {e.flag!r}, missing in {env.name}; run `flagstone validate`"
            )
        out[key] = compile_experiment(
            e, flag, default_unit, layer_ranges.get(key), pii, consent_attribute
        )
    return out


def compile_experiment(
    e: Experiment,
    flag: Flag,
    default_unit: str,
    layer_range: tuple[int, int] | None,
    pii: frozenset[str] = frozenset(),
    consent_attribute: str = DEFAULT_CONSENT_ATTRIBUTE,
) -> dict[str, Any]:
    weights = e.weights or _equal_split(list(flag.variants))
    arms = compile_weights(weights)
    compiled: dict[str, Any] = {
        "flag": e.flag,
        "status": e.status,
        "unit": e.unit or flag.unit or default_unit,
        "salt": e.salt,
        "traffic": round(e.traffic * 100),
        "arms": arms,
        "control": e.raw.get("control", arms[0]["variant"]),
        "consent_required": e.consent_required,
    }
    if e.consent_required:
        compiled["consent_attribute"] = consent_attribute
    if e.audience is not None:
        compiled["audience"] = compile_condition(e.audience)
    if e.layer is not None:
        compiled["layer"] = e.layer
        compiled["layer_range"] = list(layer_range) if layer_range is not None else [0, 0]
    # Never personal data, and never the unit itself: exposures carry it pseudonymized.
    dimensions = [d for d in e.raw.get("dimensions", ()) if d not in pii and d != compiled["unit"]]
    if dimensions:
        compiled["dimensions"] = dimensions
    return compiled


def pii_attributes(repo: Repository) -> frozenset[str]:
    """Context attributes that are personal data (``flagstone.yaml`` ``privacy.pii``)."""
    privacy = repo.settings.raw.get("privacy")
    pii = privacy.get("pii", ()) if isinstance(privacy, Mapping) else ()
    return frozenset(str(a) for a in pii) if isinstance(pii, list | tuple) else frozenset()


class CompileMemo:
    """What the bundles of one build compiled, shared by its environments: an object
    equal to one compiled for another environment, and a flag's variants, rules or
    default that is the very object another flag holds (the load shares the value of an
    entry written alike: 6,000 flags of the anchor workload hold 1,092 rule lists)."""

    __slots__ = ("objects", "parts")

    def __init__(self) -> None:
        # (kind, key) -> (the source mapping, its experiment, the compiled object)
        self.objects: dict[
            tuple[str, str], tuple[Mapping[str, Any], str | None, dict[str, Any]]
        ] = {}
        # id of a source -> (the source, kept so that its id stays its own; compiled)
        self.parts: dict[int, tuple[Any, Any]] = {}

    def part(self, source: Any, compile_one: Callable[[Any], Any]) -> Any:
        seen = self.parts.get(id(source))
        if seen is not None and seen[0] is source:
            return seen[1]
        compiled = compile_one(source)
        self.parts[id(source)] = (source, compiled)
        return compiled


def _compiled(
    memo: CompileMemo | None,
    ident: tuple[str, str],
    raw: Mapping[str, Any],
    experiment: str | None,
    compile_one: Any,
    *args: Any,
) -> dict[str, Any]:
    """``compile_one(*args)``, or the object compiled for another environment from an
    equal source (comparing two mappings costs far less than compiling one)."""
    if memo is not None:
        seen = memo.objects.get(ident)
        if seen is not None and seen[1] == experiment and seen[0] == raw:
            return seen[2]
    if ident[0] == "flags":
        compiled: dict[str, Any] = compile_one(*args, experiment, memo)
    else:
        compiled = compile_one(*args)
    if memo is not None:
        memo.objects[ident] = (raw, experiment, compiled)
    return compiled


def _compile_segment(segment: Segment) -> dict[str, Any]:
    return {"when": compile_condition(segment.when)}


def _equal_split(variants: list[str]) -> dict[str, float]:
    """Equal weights in 0.01 % steps; the first arms absorb the remainder."""
    base, remainder = divmod(BUCKETS, len(variants))
    return {v: (base + (1 if i < remainder else 0)) / 100 for i, v in enumerate(variants)}


def build_bundle(
    repo: Repository,
    env_name: str,
    *,
    commit: str | None = None,
    dirty: bool = False,
    sealed_secrets: Mapping[str, Any] | None = None,
    hashed: bool = True,
    memo: CompileMemo | None = None,
) -> dict[str, Any]:
    """The bundle of one environment as a JSON-ready dict (with its content hash).

    Secrets never enter ``config``; ``sealed_secrets`` (``sops.seal_for_bundle``: the
    values encrypted to the service's age recipients) is carried as ``secrets``, which a
    runtime holding the identity decrypts at load. ``memo``, shared by the bundles of
    one build, compiles an object identical in several environments once."""
    env = repo.env(env_name)
    default_unit = repo.settings.default_unit
    pii = pii_attributes(repo)
    running = {e.flag: k for k, e in sorted(env.experiments.items()) if e.status == "running"}
    config = _without_secrets(dict(env.config.values) if env.config is not None else {})
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "project": repo.settings.project,
        "environment": env_name,
        "source": {"commit": commit, "dirty": dirty},
        "default_unit": default_unit,
        "flags": {
            k: _compiled(memo, ("flags", k), f.raw, running.get(k), compile_flag, f, default_unit)
            for k, f in sorted(env.flags.items())
        },
        "segments": {
            k: _compiled(memo, ("segments", k), s.raw, None, _compile_segment, s)
            for k, s in sorted(env.segments.items())
        },
        "experiments": compile_experiments(
            env, default_unit, pii, PrivacySettings.of(repo.settings.raw).consent_attribute
        ),
        "config": config,
    }
    if pii:
        bundle["pii"] = sorted(pii)
    if sealed_secrets is not None:
        bundle["secrets"] = dict(sealed_secrets)
    if hashed:
        bundle["hash"] = content_hash(bundle)
    return bundle


def build_bundle_bytes(
    repo: Repository,
    env_name: str,
    *,
    commit: str | None = None,
    dirty: bool = False,
    sealed_secrets: Mapping[str, Any] | None = None,
    memo: CompileMemo | None = None,
) -> tuple[dict[str, Any], bytes]:
    """The bundle and its canonical bytes, encoding each part once for both the hash and
    the file (a 2,000-flag bundle takes ~20 ms to encode)."""
    bundle = build_bundle(
        repo,
        env_name,
        commit=commit,
        dirty=dirty,
        sealed_secrets=sealed_secrets,
        hashed=False,
        memo=memo,
    )
    return bundle, encode_bundle(bundle)


def encode_bundle(bundle: dict[str, Any]) -> bytes:
    """Set an unhashed bundle's ``hash`` and return its canonical bytes, encoding each
    part once for both."""
    parts = _parts(bundle)
    bundle["hash"] = _hash(parts)
    parts["hash"] = canonical_json(bundle["hash"])
    return _join(parts, parts) + b"\n"


def _without_secrets(node: Any) -> Any:
    """Drop encrypted values (``ENC[...]``): a bundle carries secrets only sealed, in ``secrets``."""
    if isinstance(node, Mapping):
        return {
            k: _without_secrets(v)
            for k, v in node.items()
            if not (isinstance(v, str) and v.startswith("ENC["))
        }
    if isinstance(node, list):
        return [_without_secrets(v) for v in node]
    return node


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical bytes; a value JSON cannot carry exactly is a FlagstoneError."""
    try:
        return fast_canonical_json(value)
    except CanonicalJSONError as e:
        raise FlagstoneError(f"cannot write the bundle: {e}") from None


# Descends into every value and checks its type, in Rust: ValueError on a set, bytes, a
# non-string key or any other type, False on NaN or an infinity (enum members and
# Decimals pass as the values they carry).
_JSON_VALUE_SCHEMA = {
    "$defs": {
        "v": {
            "type": ["object", "array", "string", "number", "boolean", "null"],
            "additionalProperties": {"$ref": "#/$defs/v"},
            "items": {"$ref": "#/$defs/v"},
        }
    },
    "$ref": "#/$defs/v",
}
_sorted_encoder = msgspec.json.Encoder(order="sorted")


@functools.cache
def _json_value_validator() -> Any:
    return jsonschema_rs.validator_for(_JSON_VALUE_SCHEMA)


def fast_canonical_json(value: Any) -> bytes:
    """``runtime.canonical.canonical_json``'s bytes, ~2.5x faster on a bundle: msgspec
    writes compact JSON with sorted keys (~4 ms for 2,000 flags against ~25 ms for
    Python's encoder), once jsonschema-rs has found only JSON types in it (~6 ms) —
    msgspec would write a set as an array and NaN as null. The text goes the exact way
    where it may differ from RFC 8785 (an integral float, an exponent, a long integer, a
    key beyond the BMP); a value that is not JSON goes to Python's encoder for its error."""
    try:
        data = _sorted_encoder.encode(value)
    except Exception:  # a non-string key, a lone surrogate, nested too deeply...
        return _canonical_json(value)
    # Checked after encoding: msgspec refused what is nested deeper than Python's
    # recursion limit, which jsonschema-rs's stack holds (far deeper, it overflows).
    if not _is_json_value(value):
        return _canonical_json(value)
    if may_differ_from_jcs(data):
        return exact_canonical_json(value)
    return data


def _is_json_value(value: Any) -> bool:
    try:
        return bool(_json_value_validator().is_valid(value))
    except ValueError:
        return False


def _parts(bundle: Mapping[str, Any]) -> dict[str, bytes]:
    """Each top-level value's canonical JSON."""
    return {key: canonical_json(value) for key, value in bundle.items()}


def _join(parts: Mapping[str, bytes], keys: Any) -> bytes:
    # Identical to canonical_json of the whole mapping: the top-level keys are ASCII, so
    # code-point order is RFC 8785's UTF-16 order.
    return b"{" + b",".join(json.dumps(k).encode() + b":" + parts[k] for k in sorted(keys)) + b"}"


def _hash(parts: Mapping[str, bytes]) -> str:
    body = [k for k in parts if k not in HASH_EXCLUDED_FIELDS]
    return HASH_PREFIX + hashlib.sha256(_join(parts, body)).hexdigest()


def content_hash(bundle: Mapping[str, Any]) -> str:
    """``sha256:`` over the RFC 8785 canonical JSON of the bundle without hash and signature."""
    try:
        return bundle_hash(bundle)
    except CanonicalJSONError as e:
        raise FlagstoneError(f"cannot hash the bundle: {e}") from None


def dump_bundle(bundle: Mapping[str, Any]) -> bytes:
    """Canonical bytes of a bundle (RFC 8785 plus a newline): what `flagstone build` writes."""
    return _join(_parts(bundle), bundle) + b"\n"


def sign_bundle(bundle: dict[str, Any], private_key_pem: bytes) -> dict[str, Any]:
    """Return the bundle with an Ed25519 ``signature`` over its content hash."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise FlagstoneError(
            f"cannot read the signing key: {e}; pass an unencrypted Ed25519 PEM private key"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise FlagstoneError(
            "the signing key is not an Ed25519 key; create one with `openssl genpkey -algorithm ed25519`"
        )
    signed = dict(bundle)
    signed["signature"] = base64.b64encode(key.sign(signed_message(bundle["hash"]))).decode()
    return signed
