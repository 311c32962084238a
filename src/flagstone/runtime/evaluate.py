"""Compile a bundle once into closures; evaluate flags and experiments without parsing.

``compile_bundle`` turns the bundle's JSON into ``CompiledFlag``/``CompiledExperiment``
objects whose conditions are closures (frozensets for ``in``, compiled regexes, C hash).
``evaluate`` returns a small tuple on the hot path; ``Resolution`` objects are built only
when a caller asks for details. ``explain`` interprets the same bundle step by step for
``flagstone eval --explain``; tests hold the two to the same answers on every vector.
"""

from __future__ import annotations

import json
import operator
import sys
from bisect import bisect_right
from collections.abc import Callable, Iterator, KeysView, Mapping
from dataclasses import dataclass, field
from itertools import compress
from types import MappingProxyType
from typing import Any

from mmh3 import hash as _murmur3

from flagstone.runtime.check import check_format, check_references, check_shape
from flagstone.runtime.errors import BundleError
from flagstone.runtime.format import (
    BUCKETS,
    DEFAULT,
    DEFAULT_CONSENT_ATTRIBUTE,
    DISABLED,
    ERROR,
    EXPERIMENT_SALT_PREFIX,
    FLAG_NOT_FOUND,
    LAYER_SALT_PREFIX,
    MAX_PREREQUISITE_DEPTH,
    MAX_REGEX_INPUT,
    PREREQUISITE_FAILED,
    RULE_MATCH,
    SPLIT,
    TARGET_MATCH,
    TRAFFIC_SALT_SUFFIX,
)
from flagstone.runtime.hashing import bucket, cbor_text
from flagstone.runtime.operators import OPERATORS, TRUE_WHEN_MISSING, apply, compile_regex, lookup

__all__ = [
    "DEFAULT",
    "DISABLED",
    "ERROR",
    "FLAG_NOT_FOUND",
    "PREREQUISITE_FAILED",
    "RULE_MATCH",
    "SPLIT",
    "TARGET_MATCH",
    "BundleError",
    "CompiledBundle",
    "CompiledExperiment",
    "CompiledFlag",
    "FlagTable",
    "Resolution",
    "compile_bundle",
    "evaluate",
    "explain",
    "resolve",
    "unit_string",
]

Context = Mapping[str, Any]
Matcher = Callable[[Context], bool]
# The hot path's result: (variant, reason, rule index, bucket, experiment, message).
Outcome = tuple[str | None, str, int | None, int | None, str | None, str | None]

_HEADERS = [bytes((0x60 + n,)) for n in range(24)] + [bytes((0x78, n)) for n in range(24, 256)]


@dataclass(frozen=True, slots=True)
class Resolution:
    value: Any
    variant: str | None
    reason: str
    rule_index: int | None = None
    bucket: int | None = None
    experiment: str | None = None
    message: str | None = None


def unit_string(value: Any) -> str | None:
    """A unit id as hashed: strings as-is, integers in decimal, nothing else."""
    t = type(value)
    if t is str:
        return value  # type: ignore[no-any-return]
    if t is int:
        return str(value)
    return None


def hash_bucket(prefix: str, unit: str) -> int:
    data = (prefix + unit).encode()
    n = len(data)
    data = (_HEADERS[n] + data) if n < 256 else cbor_text(prefix + unit)
    return (_murmur3(data, 0, False) * BUCKETS) >> 32


# --- conditions --------------------------------------------------------------------------


def compile_condition(node: Mapping[str, Any], segments: Mapping[str, Matcher]) -> Matcher:
    if "attr" in node:
        return _compile_operator(node["attr"], node["op"], node["value"])
    if "all" in node:
        return _all([compile_condition(n, segments) for n in node["all"]])
    if "any" in node:
        return _any([compile_condition(n, segments) for n in node["any"]])
    if "not" in node:
        inner = compile_condition(node["not"], segments)
        return lambda ctx: not inner(ctx)
    if "segment" in node:
        key = node["segment"]
        if key not in segments:
            raise BundleError(f"unknown segment {key!r}")
        return segments[key]
    raise BundleError(f"unknown condition node {sorted(node)}")


def _all(matchers: list[Matcher]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]
    if len(matchers) == 2:
        a, b = matchers
        return lambda ctx: a(ctx) and b(ctx)
    items = tuple(matchers)

    def match_all(ctx: Context) -> bool:
        for m in items:  # noqa: SIM110 -- a plain loop is faster than all() over a generator
            if not m(ctx):
                return False
        return True

    return match_all


def _any(matchers: list[Matcher]) -> Matcher:
    items = tuple(matchers)

    def match_any(ctx: Context) -> bool:
        for m in items:  # noqa: SIM110 -- a plain loop is faster than any() over a generator
            if m(ctx):
                return True
        return False

    return match_any


def _compile_operator(attr: str, op: str, operand: Any) -> Matcher:
    if op not in OPERATORS and op != "exists":
        raise BundleError(f"unknown operator {op!r}")
    attr = _intern(attr)
    if "." in attr:  # nested lookups take the general path
        return lambda ctx: apply(op, lookup(ctx, attr), operand)
    # Specialised closures for the common cases; each agrees with `apply` (see tests).
    if op == "eq" and type(operand) is str:
        return lambda ctx: ctx.get(attr) == operand
    if op == "in" and all(type(x) is str for x in operand):
        strings = frozenset(operand)
        return lambda ctx: (v := ctx.get(attr)) is not None and type(v) is str and v in strings
    if op == "not_in" and all(type(x) is str for x in operand):
        strings = frozenset(operand)
        return lambda ctx: (v := ctx.get(attr)) is None or type(v) is not str or v not in strings
    if op == "ends_with":
        return lambda ctx: type(v := ctx.get(attr)) is str and v.endswith(operand)
    if op == "starts_with":
        return lambda ctx: type(v := ctx.get(attr)) is str and v.startswith(operand)
    if op == "matches":
        search = compile_regex(operand)
        limit = MAX_REGEX_INPUT
        return lambda ctx: (
            type(v := ctx.get(attr)) is str and len(v) <= limit and search(v) is not None
        )
    if op == "exists":
        want = bool(operand)
        return lambda ctx: (ctx.get(attr) is not None) is want
    check = OPERATORS[op]
    when_missing = op in TRUE_WHEN_MISSING

    def general(ctx: Context) -> bool:
        v = ctx.get(attr)
        return when_missing if v is None else check(v, operand)

    return general


def compile_segments(raw: Mapping[str, Any]) -> dict[str, Matcher]:
    """Segments may refer to segments; compile each once, in dependency order."""
    compiled: dict[str, Matcher] = {}
    visiting: set[str] = set()

    def build(key: str) -> Matcher:
        if key in compiled:
            return compiled[key]
        if key in visiting:
            raise BundleError(f"segment cycle through {key!r}")
        visiting.add(key)
        node = raw[key]["when"]
        refs = _segment_refs(node)
        for ref in refs:
            if ref not in raw:
                raise BundleError(f"segment {key!r} refers to unknown segment {ref!r}")
            build(ref)
        compiled[key] = compile_condition(node, compiled)
        visiting.discard(key)
        return compiled[key]

    for key in raw:
        build(key)
    return compiled


def _segment_refs(node: Mapping[str, Any]) -> list[str]:
    if "segment" in node:
        return [node["segment"]]
    if "not" in node:
        return _segment_refs(node["not"])
    for combinator in ("all", "any"):
        if combinator in node:
            return [r for n in node[combinator] for r in _segment_refs(n)]
    return []


# --- serving -----------------------------------------------------------------------------

# A serve is the variant's name (a fixed serve) or a Rollout, read by ``roll``: plain
# data rather than closures, so a compiled flag costs a few hundred bytes.
Rollout = tuple[str, str, tuple[int, ...], tuple[str, ...]]  # (by, salt + "/", ends, names)
Serve = str | Rollout


def compile_serve(serve: Mapping[str, Any], salt: str, unit: str, shared: Shared) -> Serve:
    if "variant" in serve:
        return _intern(serve["variant"])
    arms = serve["rollout"]
    ends, names = shared.value(
        (tuple(a["end"] for a in arms), tuple(_intern(a["variant"]) for a in arms))
    )
    return (_intern(serve.get("by", unit)), salt + "/", ends, names)


def roll(rollout: Rollout, ctx: Context) -> tuple[str, int] | None:
    """(variant, bucket) of a rollout, or None when the context cannot be bucketed."""
    by, prefix, ends, names = rollout
    raw = ctx.get(by)
    u = raw if type(raw) is str else unit_string(raw)
    if u is None:
        return None
    b = hash_bucket(prefix, u)
    return names[bisect_right(ends, b)], b


def _intern(text: str) -> str:
    return sys.intern(text) if type(text) is str else text


class Shared:
    """What compiled flags of one bundle hold in common, held once: equal conditions
    (one closure for every ``plan eq pro``), rollout arms and variant maps."""

    __slots__ = ("_conditions", "_values")

    def __init__(self) -> None:
        self._conditions: dict[str, Matcher] = {}
        self._values: dict[Any, Any] = {}

    def condition(self, node: Mapping[str, Any], segments: Mapping[str, Matcher]) -> Matcher:
        if "segment" in node:
            return compile_condition(node, segments)
        key = json.dumps(node, sort_keys=True, ensure_ascii=False)
        matcher = self._conditions.get(key)
        if matcher is None:
            matcher = self._conditions.setdefault(key, compile_condition(node, segments))
        return matcher

    def value(self, value: Any) -> Any:
        """An equal hashable value compiled before, or ``value``."""
        return self._values.setdefault(value, value)

    def variants(self, variants: Mapping[str, Any]) -> Mapping[str, Any]:
        # The JSON text keys them: 1, 1.0 and true are different variant values.
        key = ("variants", json.dumps(variants, ensure_ascii=False))
        shared: Mapping[str, Any] = self._values.setdefault(
            key, {_intern(k): v for k, v in variants.items()}
        )
        return shared


# --- experiments -------------------------------------------------------------------------


@dataclass(slots=True)
class CompiledExperiment:
    key: str
    flag: str
    status: str
    unit: str
    traffic: int  # buckets out of 10,000
    arm_prefix: str
    traffic_prefix: str
    arm_ends: tuple[int, ...]
    arm_names: tuple[str, ...]
    control: str
    consent_required: bool
    consent_path: tuple[str, ...]  # privacy.consent_attribute, split at its dots
    audience: Matcher | None
    layer: str | None
    layer_prefix: str
    layer_range: tuple[int, int]
    dimensions: tuple[str, ...]  # context attributes written into exposures (never PII)
    raw: Mapping[str, Any] = field(repr=False)

    def assign(self, ctx: Context) -> tuple[str | None, str]:
        """(arm, why): the arm, or None with the reason the unit is not enrolled."""
        if self.status != "running":
            return None, f"experiment is {self.status}, not running"
        unit = unit_string(ctx.get(self.unit))
        if unit is None:
            return None, f"context has no usable {self.unit!r}"
        if self.consent_required and not has_consent(ctx, self.consent_path):
            return None, CONSENT_NOT_GIVEN
        if self.audience is not None and not self.audience(ctx):
            return None, "not in the audience"
        if self.layer is not None:
            b = hash_bucket(self.layer_prefix, unit)
            start, end = self.layer_range
            if not start <= b < end:
                return None, f"layer {self.layer!r} bucket {b} is outside [{start}, {end})"
        elif self.traffic < BUCKETS:
            b = hash_bucket(self.traffic_prefix, unit)
            if b >= self.traffic:
                return None, f"traffic bucket {b} is outside the {self.traffic / 100:g}% enrolled"
        arm = self.arm_names[bisect_right(self.arm_ends, hash_bucket(self.arm_prefix, unit))]
        return arm, "enrolled"

    def lacks_consent(self, ctx: Context) -> bool:
        """The unit would be considered for enrolment but gives no consent (``assign``'s
        consent step): what the runtime counts, without logging the unit."""
        return (
            self.consent_required
            and self.status == "running"
            and unit_string(ctx.get(self.unit)) is not None
            and not has_consent(ctx, self.consent_path)
        )


CONSENT_NOT_GIVEN = "consent required and not given"
_DEFAULT_CONSENT_PATH = tuple(DEFAULT_CONSENT_ATTRIBUTE.split("."))


def has_consent(ctx: Context, path: tuple[str, ...] = _DEFAULT_CONSENT_PATH) -> bool:
    """Consent is given when the value at the consent path, or at a prefix of it, is
    exactly ``True``: with ``consent.experiments``, ``consent: true`` grants every purpose
    and ``consent: {experiments: true}`` this one. The path is read through nested
    objects only (a literal dotted key does not count), as in the TypeScript runtime."""
    node: Any = ctx
    for part in path:
        if not isinstance(node, Mapping):
            return False
        node = node.get(part)
        if node is True:
            return True
    return False


def compile_experiment(
    key: str,
    raw: Mapping[str, Any],
    segments: Mapping[str, Matcher],
    pii: frozenset[str] = frozenset(),
) -> CompiledExperiment:
    layer_range = raw.get("layer_range", [0, 0])
    return CompiledExperiment(
        key=key,
        flag=raw["flag"],
        status=raw["status"],
        unit=raw["unit"],
        traffic=int(raw["traffic"]),
        arm_prefix=f"{EXPERIMENT_SALT_PREFIX}{raw['salt']}/",
        traffic_prefix=f"{EXPERIMENT_SALT_PREFIX}{raw['salt']}{TRAFFIC_SALT_SUFFIX}/",
        arm_ends=tuple(a["end"] for a in raw["arms"]),
        arm_names=tuple(a["variant"] for a in raw["arms"]),
        control=raw["control"],
        consent_required=raw["consent_required"] is True,
        consent_path=tuple(raw.get("consent_attribute", DEFAULT_CONSENT_ATTRIBUTE).split(".")),
        audience=compile_condition(raw["audience"], segments) if "audience" in raw else None,
        layer=raw.get("layer"),
        layer_prefix=f"{LAYER_SALT_PREFIX}{raw.get('layer')}/",
        layer_range=(int(layer_range[0]), int(layer_range[1])),
        dimensions=tuple(d for d in raw.get("dimensions", ()) if d not in pii and d != raw["unit"]),
        raw=raw,
    )


# --- flags -------------------------------------------------------------------------------

# A flag's source: its JSON text (bundles read from bytes keep only this, not the parsed
# objects: UTF-8 bytes, or a str when the file needed the standard library's reader) or
# the parsed mapping (bundles built in-process).
Source = bytes | str | Mapping[str, Any]


@dataclass(slots=True)
class CompiledFlag:
    key: str
    variants: Mapping[str, Any]
    enabled: bool
    off_variant: str | None
    unit: str
    prerequisites: tuple[tuple[str, frozenset[str]], ...]
    targets: Mapping[str, str]
    rules: tuple[tuple[Matcher, Serve, int], ...]
    default: Serve
    experiment: CompiledExperiment | None
    source: Source = field(repr=False)

    @property
    def raw(self) -> Mapping[str, Any]:
        """The flag's bundle JSON (parsed again from its text when that is all it keeps)."""
        return parse_source(self.source)


def parse_source(source: Source) -> Mapping[str, Any]:
    if isinstance(source, str | bytes):  # json.loads: what the load-time checks saw
        parsed: Mapping[str, Any] = json.loads(source)
        return parsed
    return source


class FlagTable(dict[str, CompiledFlag]):
    """The bundle's flags by key, each compiled on first use.

    Every key of the bundle is present (``in``, ``len``, iteration, ``get``); a flag is
    compiled the first time it is looked up, from its source, by whichever thread asks
    first (two threads racing compile it twice and keep one, harmlessly). The load-time
    checks have already refused anything that would not compile, so a reload makes only
    the cheap checks before going live, and a flag nobody evaluates costs only its text.
    The hot path reads the compiled entries with ``dict.get`` and comes here on a miss.
    """

    __slots__ = ("_experiments", "_segments", "_shared", "sources")

    def __init__(
        self,
        sources: dict[str, Source],
        segments: Mapping[str, Matcher],
        experiments: Mapping[str, CompiledExperiment],
    ) -> None:
        super().__init__()
        self.sources = sources
        self._segments = segments
        self._experiments = experiments
        self._shared = Shared()

    def __missing__(self, key: str) -> CompiledFlag:
        source = self.sources[key]  # KeyError when the bundle has no such flag
        try:
            compiled = compile_flag(
                key, parse_source(source), self._segments, self._experiments, source, self._shared
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            # The load-time checks make this unreachable; never let it look like a missing key.
            raise BundleError(
                f"cannot compile: {type(e).__name__}: {e}", kind="flag", key=key
            ) from None
        dict.__setitem__(self, key, compiled)
        return compiled

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except (KeyError, TypeError):
            return default

    def __contains__(self, key: object) -> bool:
        try:
            return key in self.sources
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)

    def keys(self) -> KeysView[str]:  # type: ignore[override]
        return self.sources.keys()

    def values(self) -> list[CompiledFlag]:  # type: ignore[override]
        return [self[k] for k in self.sources]

    def items(self) -> list[tuple[str, CompiledFlag]]:  # type: ignore[override]
        return [(k, self[k]) for k in self.sources]

    def compiled_count(self) -> int:
        return dict.__len__(self)

    def __repr__(self) -> str:
        return f"<FlagTable {len(self.sources)} flags, {dict.__len__(self)} compiled>"


@dataclass(slots=True)
class CompiledBundle:
    flags: FlagTable
    experiments: dict[str, CompiledExperiment]
    segments: dict[str, Matcher]
    config: Mapping[str, Any]
    meta: Mapping[str, Any] = field(repr=False)  # the bundle's JSON without its flags
    pii: frozenset[str] = frozenset()
    # What the load parsed and no longer needs, kept until the bundle is live: freeing
    # tens of thousands of objects is work the swap need not wait for (Client.swap).
    leftovers: list[Any] = field(default_factory=list, repr=False, compare=False)

    @property
    def hash(self) -> str | None:
        return self.meta.get("hash")

    @property
    def environment(self) -> str | None:
        return self.meta.get("environment")

    @property
    def revision(self) -> str | None:
        source = self.meta.get("source")
        return source.get("commit") if isinstance(source, Mapping) else None

    @property
    def raw(self) -> dict[str, Any]:
        """The whole bundle as JSON (flags parsed again from their texts): for tools, not the hot path."""
        return {**self.meta, "flags": {k: parse_source(s) for k, s in self.flags.sources.items()}}


def compile_bundle(
    raw: Mapping[str, Any], previous: CompiledBundle | None = None
) -> CompiledBundle:
    """Check a parsed bundle and compile it; raise ``BundleError`` naming what is wrong."""
    if not isinstance(raw, Mapping):
        raise BundleError("a bundle is a JSON object")
    flags = raw.get("flags")
    meta = {k: v for k, v in raw.items() if k != "flags"}
    if not isinstance(flags, Mapping):
        check_shape(raw)  # names the problem
        raise BundleError("flags must be an object", field="flags")
    return build_bundle(meta, dict(flags), dict(flags), previous)


def build_bundle(
    meta: Mapping[str, Any],
    parsed: Mapping[str, Mapping[str, Any]],
    sources: dict[str, Source],
    previous: CompiledBundle | None,
) -> CompiledBundle:
    """Check and assemble a bundle from its parts (``parsed`` flags and their ``sources``).

    With ``previous`` (the bundle being replaced), a flag whose source is unchanged keeps
    its compiled form when segments and experiments are unchanged too, and skips the
    checks when additionally no flag was removed: a reload that ramps one rollout checks
    and compiles one flag. (``loader.LoadTask`` runs the same steps in batches.)
    """
    check_format(meta)
    try:
        changed_keys, same_context = share_unchanged(meta, sources, previous)
        changed = {k: parsed[k] for k in changed_keys}
        check_shape({**meta, "flags": changed})
        check_references(meta, changed, sources)
        return assemble_bundle(meta, sources, previous, same_context)
    except BundleError:
        raise
    except MALFORMED as e:
        raise malformed(e) from None


# What a bundle that passed its checks cannot raise while it is assembled or compiled.
MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError)


def malformed(error: BaseException) -> BundleError:
    return BundleError(f"malformed bundle: {type(error).__name__}: {error}")


def share_unchanged(
    meta: Mapping[str, Any], sources: dict[str, Source], previous: CompiledBundle | None
) -> tuple[list[str], bool]:
    """(the keys of the flags to check, whether segments, experiments and pii are the
    previous bundle's). Each unchanged text in ``sources`` is replaced by the previous
    bundle's copy, which is how ``assemble_bundle`` recognises what it may reuse; when a
    flag was removed, every flag is checked (a prerequisite may name it)."""
    same_context = (
        previous is not None
        and previous.meta.get("segments") == meta.get("segments")
        and previous.meta.get("experiments") == meta.get("experiments")
        and previous.meta.get("pii") == meta.get("pii")
    )
    old_sources = previous.flags.sources if previous is not None and same_context else {}
    if not old_sources:
        return list(sources), same_context
    # Compared in C (a reload of 1,000 changed flags ran a Python loop over all of them).
    same = list(map(operator.eq, map(old_sources.get, sources), sources.values()))
    for key in list(compress(sources, same)):
        sources[key] = old_sources[key]  # share one copy of the text across reloads
    if not old_sources.keys() <= sources.keys():
        return list(sources), same_context
    return list(compress(sources, map(operator.not_, same))), same_context


def assemble_bundle(
    meta: Mapping[str, Any],
    sources: dict[str, Source],
    previous: CompiledBundle | None,
    same_context: bool,
) -> CompiledBundle:
    """The bundle of checked parts: segments and experiments compiled (or the previous
    bundle's), flags compiled on first use except those reused from ``previous``."""
    if same_context:
        assert previous is not None
        segments, experiments = previous.segments, previous.experiments
    else:
        segments = compile_segments(meta["segments"])
        pii = frozenset(meta.get("pii", ()))
        experiments = {
            k: compile_experiment(k, e, segments, pii) for k, e in meta["experiments"].items()
        }
    table = FlagTable(sources, segments, experiments)
    if same_context:
        assert previous is not None
        for key, compiled in dict.items(previous.flags):
            if sources.get(key) is compiled.source:
                dict.__setitem__(table, key, compiled)
    return CompiledBundle(
        table, experiments, segments, meta["config"], meta, frozenset(meta.get("pii", ()))
    )


_NO_TARGETS: Mapping[str, str] = MappingProxyType({})


def compile_flag(
    key: str,
    raw: Mapping[str, Any],
    segments: Mapping[str, Matcher],
    experiments: Mapping[str, CompiledExperiment],
    source: Source | None = None,
    shared: Shared | None = None,
) -> CompiledFlag:
    shared = shared if shared is not None else Shared()
    salt, unit = raw["salt"], _intern(raw["unit"])
    serves: dict[Any, Serve] = {}  # a flag's rules often repeat its default rollout

    def serve_of(serve: Mapping[str, Any]) -> Serve:
        compiled = compile_serve(serve, salt, unit, shared)
        return serves.setdefault(compiled, compiled)

    rules = tuple(
        shared.value((shared.condition(rule["when"], segments), serve_of(rule["serve"]), index))
        if "variant" in rule["serve"]
        else (shared.condition(rule["when"], segments), serve_of(rule["serve"]), index)
        for index, rule in enumerate(raw["rules"])
    )
    targets = raw["targets"]
    experiment_key = raw.get("experiment")
    off_variant = raw.get("off_variant")
    return CompiledFlag(
        key=key,
        variants=shared.variants(raw["variants"]),
        enabled=raw["enabled"] is True,
        off_variant=_intern(off_variant) if off_variant is not None else None,
        unit=unit,
        prerequisites=tuple(
            (p["flag"], frozenset(map(_intern, p["variants"]))) for p in raw["prerequisites"]
        ),
        targets={k: _intern(v) for k, v in targets.items()} if targets else _NO_TARGETS,
        rules=rules,
        default=serve_of(raw["default"]),
        experiment=experiments[experiment_key] if experiment_key is not None else None,
        source=source if source is not None else raw,
    )


def evaluate(bundle: CompiledBundle, flag: CompiledFlag, ctx: Context, depth: int = 0) -> Outcome:
    """The hot path. Order: kill switch, prerequisites, targets, experiment, rules, default."""
    if not flag.enabled:
        return flag.off_variant, DISABLED, None, None, None, None
    if flag.prerequisites:
        if depth >= MAX_PREREQUISITE_DEPTH:
            return None, ERROR, None, None, None, "prerequisites nest too deeply"
        for prereq_key, allowed in flag.prerequisites:
            prereq_variant = evaluate(bundle, bundle.flags[prereq_key], ctx, depth + 1)[0]
            if prereq_variant not in allowed:
                return flag.off_variant, PREREQUISITE_FAILED, None, None, None, prereq_key
    if flag.targets:
        unit = ctx.get(flag.unit)
        if unit is not None:
            target = flag.targets.get(unit if type(unit) is str else unit_string(unit) or "")
            if target is not None:
                return target, TARGET_MATCH, None, None, None, None
    experiment = flag.experiment
    if experiment is not None:
        arm = experiment.assign(ctx)[0]
        if arm is not None:
            return arm, SPLIT, None, None, experiment.key, None
    for matcher, serve, index in flag.rules:
        if matcher(ctx):
            if type(serve) is str:
                return serve, RULE_MATCH, index, None, None, None
            served_rule = roll(serve, ctx)  # type: ignore[arg-type]
            if served_rule is not None:
                return served_rule[0], RULE_MATCH, index, served_rule[1], None, None
    default = flag.default
    if type(default) is str:
        return default, DEFAULT, None, None, None, None
    served = roll(default, ctx)  # type: ignore[arg-type]
    if served is None:
        return (
            None,
            ERROR,
            None,
            None,
            None,
            f"context has no usable {flag.unit!r} for the default rollout",
        )
    return served[0], SPLIT, None, served[1], None, None


def resolve(bundle: CompiledBundle, key: str, ctx: Context, default: Any = None) -> Resolution:
    """Evaluate to a full Resolution; never raises."""
    try:
        flag = bundle.flags.get(key)
        if flag is None:
            return Resolution(
                default, None, FLAG_NOT_FOUND, message=f"no flag {key!r} in the bundle"
            )
        variant, reason, rule, bucket_, experiment, message = evaluate(bundle, flag, ctx)
        value = flag.variants[variant] if variant is not None else default
    except Exception as e:  # a bad context must never reach the app as an exception
        return Resolution(default, None, ERROR, message=f"{type(e).__name__}: {e}")
    return Resolution(value, variant, reason, rule, bucket_, experiment, message)


# --- explain -----------------------------------------------------------------------------


def shown(value: Any) -> str:
    """A value as people read it in a trace: JSON (null, true, ["DE", "FR"]), not Python."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):  # a self-referencing or absurdly deep value
        return "<unprintable>"


def explain(bundle: CompiledBundle, key: str, ctx: Context) -> tuple[Resolution, list[str]]:
    """Interpret the flag step by step from the bundle's JSON, recording why."""
    trace: list[str] = []
    flag = bundle.flags.get(key)
    if flag is None:
        trace.append(f"flag {shown(key)} is not in the bundle")
        return Resolution(None, None, FLAG_NOT_FOUND), trace
    raw, segments = flag.raw, bundle.meta.get("segments", {})
    outcome = _explain_flag(bundle, raw, key, ctx, segments, trace, 0)
    variant, reason, rule, bucket_, experiment, message = outcome
    value = raw["variants"][variant] if variant is not None else None
    return Resolution(value, variant, reason, rule, bucket_, experiment, message), trace


def _explain_flag(
    bundle: CompiledBundle,
    raw: Mapping[str, Any],
    key: str,
    ctx: Context,
    segments: Mapping[str, Any],
    trace: list[str],
    depth: int,
) -> Outcome:
    pad = "  " * depth
    off = raw.get("off_variant")
    if not raw["enabled"]:
        trace.append(f"{pad}kill switch: {key} is disabled -> {shown(off)}")
        return off, DISABLED, None, None, None, None
    trace.append(f"{pad}kill switch: {key} is enabled")
    for p in raw["prerequisites"]:
        if depth >= MAX_PREREQUISITE_DEPTH:
            return None, ERROR, None, None, None, "prerequisites nest too deeply"
        trace.append(f"{pad}prerequisite: {p['flag']} must serve {' or '.join(p['variants'])}")
        prereq_variant = _explain_flag(
            bundle, bundle.flags[p["flag"]].raw, p["flag"], ctx, segments, trace, depth + 1
        )[0]
        if prereq_variant not in p["variants"]:
            trace.append(
                f"{pad}prerequisite failed: {p['flag']} served {shown(prereq_variant)} -> {shown(off)}"
            )
            return off, PREREQUISITE_FAILED, None, None, None, p["flag"]
        trace.append(f"{pad}prerequisite met: {p['flag']} served {shown(prereq_variant)}")
    unit_attr = raw["unit"]
    unit = unit_string(ctx.get(unit_attr))
    if raw["targets"]:
        target = raw["targets"].get(unit) if unit is not None else None
        if target is not None:
            trace.append(f"{pad}targets: {unit_attr}={shown(unit)} is targeted -> {shown(target)}")
            return target, TARGET_MATCH, None, None, None, None
        trace.append(f"{pad}targets: {unit_attr}={shown(unit)} is not targeted")
    experiment_key = raw.get("experiment")
    if experiment_key is not None:
        arm, why = bundle.experiments[experiment_key].assign(ctx)
        if arm is not None:
            trace.append(f"{pad}experiment {experiment_key}: enrolled -> arm {shown(arm)}")
            return arm, SPLIT, None, None, experiment_key, None
        trace.append(f"{pad}experiment {experiment_key}: not enrolled ({why})")
    for index, rule in enumerate(raw["rules"]):
        # 1-based for people, as every message says (Resolution.rule_index stays 0-based)
        label = f"rule {index + 1}" + (f" ({rule['name']})" if "name" in rule else "")
        matched = explain_condition(rule["when"], ctx, segments, trace, f"{pad}  ")
        if not matched:
            trace.append(f"{pad}{label}: no match")
            continue
        served = _explain_serve(rule["serve"], raw["salt"], unit_attr, ctx)
        if served is None:
            trace.append(
                f"{pad}{label}: matched, but the rollout cannot bucket without {shown(rule['serve'].get('by', unit_attr))}"
            )
            continue
        trace.append(f"{pad}{label}: match -> {_served_text(served)}")
        return served[0], RULE_MATCH, index, served[1], None, None
    served = _explain_serve(raw["default"], raw["salt"], unit_attr, ctx)
    if served is None:
        trace.append(f"{pad}default: a rollout, but the context has no usable {shown(unit_attr)}")
        return (
            None,
            ERROR,
            None,
            None,
            None,
            f"context has no usable {unit_attr!r} for the default rollout",
        )
    trace.append(f"{pad}default -> {_served_text(served)}")
    return served[0], SPLIT if "rollout" in raw["default"] else DEFAULT, None, served[1], None, None


def _served_text(served: tuple[str, int | None]) -> str:
    variant, b = served
    return shown(variant) + (f" (bucket {b} of {BUCKETS})" if b is not None else "")


def _explain_serve(
    serve: Mapping[str, Any], salt: str, unit_attr: str, ctx: Context
) -> tuple[str, int | None] | None:
    if "variant" in serve:
        return serve["variant"], None
    unit = unit_string(ctx.get(serve.get("by", unit_attr)))
    if unit is None:
        return None
    b = bucket(salt, unit)
    for arm in serve["rollout"]:
        if b < arm["end"]:
            return arm["variant"], b
    return serve["rollout"][-1]["variant"], b


def explain_condition(
    node: Mapping[str, Any],
    ctx: Context,
    segments: Mapping[str, Any],
    trace: list[str] | None = None,
    pad: str = "",
) -> bool:
    """The reference interpreter of bundle conditions (used by --explain and the tests)."""
    if "attr" in node:
        value = lookup(ctx, node["attr"])
        result = apply(node["op"], value, node["value"])
        if trace is not None:
            seen = "missing" if value is None else shown(value)
            trace.append(
                f"{pad}{node['attr']} {node['op']} {shown(node['value'])}: {seen} -> {shown(result)}"
            )
        return result
    if "all" in node:
        return all(explain_condition(n, ctx, segments, trace, pad) for n in node["all"])
    if "any" in node:
        return any(explain_condition(n, ctx, segments, trace, pad) for n in node["any"])
    if "not" in node:
        return not explain_condition(node["not"], ctx, segments, trace, pad)
    result = explain_condition(segments[node["segment"]]["when"], ctx, segments, None)
    if trace is not None:
        trace.append(f"{pad}segment {node['segment']}: {'member' if result else 'not a member'}")
    return result
