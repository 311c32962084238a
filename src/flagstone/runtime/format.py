"""The bundle format's constants and shapes, in one stdlib-only module.

Everything a runtime in another language must agree on byte for byte lives here:
``bundle.py`` (which writes bundles), ``flagd.py`` (which exports them), the compiled
evaluator and the ``--explain`` interpreter import these names, and the TypeScript
runtime mirrors them (``schemas/bundle.schema.json`` publishes the same shapes; a test
holds the schema's enums equal to the tuples below).

The content hash is ``"sha256:" + hex(sha256(JCS(bundle without hash and signature)))``,
JCS being RFC 8785 canonical JSON (``runtime/canonical.py``); the signature is Ed25519
over ``SIGNATURE_CONTEXT + hash`` (ASCII), base64 in ``"signature"``. See docs/runtime.md.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

FORMAT = "flagstone-bundle"
FORMAT_VERSION = 1

# Bucketing (runtime/hashing.py): buckets 0..BUCKETS-1, 0.01 % steps.
BUCKETS = 10_000
# An experiment picks the arm with EXPERIMENT_SALT_PREFIX + salt and decides enrolment
# with EXPERIMENT_SALT_PREFIX + salt + TRAFFIC_SALT_SUFFIX; a layer places units with
# LAYER_SALT_PREFIX + layer. The bucketing key is always salt + "/" + unit.
EXPERIMENT_SALT_PREFIX = "experiment:"
TRAFFIC_SALT_SUFFIX = ":traffic"
LAYER_SALT_PREFIX = "layer:"
SALT_SEPARATOR = "/"

# Where a context grants consent to experimentation (flagstone.yaml privacy.consent_attribute):
# a dotted path; the value at it, or at a prefix of it, must be exactly true.
DEFAULT_CONSENT_ATTRIBUTE = "consent.experiments"

# The content hash and the signature.
HASH_ALGORITHM = "sha256"
HASH_PREFIX = "sha256:"
HASH_EXCLUDED_FIELDS = ("hash", "signature")
SIGNATURE_CONTEXT = b"flagstone-bundle:"
SIGNATURE_ALGORITHM = "ed25519"

# Conditions: {"attr", "op", "value"} leaves under all / any / not / segment nodes.
OPERATORS = (
    "eq",
    "neq",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
    "gt",
    "gte",
    "lt",
    "lte",
    "semver_eq",
    "semver_gt",
    "semver_gte",
    "semver_lt",
    "semver_lte",
    "before",
    "after",
    "exists",
)
# A `matches` leaf may carry its pattern as ECMAScript `[source, flags]` (null: none exists),
# derived at build time for runtimes without Python's `re`; the Python runtime ignores it.
ECMASCRIPT_REGEX = "ecmascript"
# Operators that hold when the attribute is missing (None); every other one is false.
TRUE_WHEN_MISSING = ("neq", "not_in")
CONDITION_NODES = ("all", "any", "not", "segment", "attr")
EXPERIMENT_STATUSES = ("draft", "running", "stopped", "concluded")

# Evaluation limits every runtime applies.
MAX_PREREQUISITE_DEPTH = 32
MAX_REGEX_PATTERN = 256  # characters; `validate` refuses longer patterns
MAX_REGEX_INPUT = 4096  # characters; a longer attribute value never matches `matches`
MAX_SAFE_INTEGER = 2**53 - 1  # JSON numbers are IEEE doubles (RFC 8785 / I-JSON)

# Reasons an evaluation reports.
DISABLED = "DISABLED"
PREREQUISITE_FAILED = "PREREQUISITE_FAILED"
TARGET_MATCH = "TARGET_MATCH"
RULE_MATCH = "RULE_MATCH"
SPLIT = "SPLIT"
DEFAULT = "DEFAULT"
FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
ERROR = "ERROR"
REASONS = (
    DISABLED,
    PREREQUISITE_FAILED,
    TARGET_MATCH,
    RULE_MATCH,
    SPLIT,
    DEFAULT,
    FLAG_NOT_FOUND,
    ERROR,
)
Reason = Literal[
    "DISABLED",
    "PREREQUISITE_FAILED",
    "TARGET_MATCH",
    "RULE_MATCH",
    "SPLIT",
    "DEFAULT",
    "FLAG_NOT_FOUND",
    "ERROR",
]


# --- the bundle's shapes (JSON boundary) ------------------------------------------------


class AllNode(TypedDict):
    all: list[Condition]


class AnyNode(TypedDict):
    any: list[Condition]


NotNode = TypedDict("NotNode", {"not": "Condition"})  # `not` is a keyword: functional form


class SegmentNode(TypedDict):
    segment: str


class AttributeNode(TypedDict):
    attr: str
    op: str
    value: Any


Condition = AllNode | AnyNode | NotNode | SegmentNode | AttributeNode


class Arm(TypedDict):
    variant: str
    end: int  # cumulative bucket end; the last arm ends at BUCKETS


class FixedServe(TypedDict):
    variant: str


class RolloutServe(TypedDict):
    rollout: list[Arm]
    by: NotRequired[str]


Serve = FixedServe | RolloutServe


class Prerequisite(TypedDict):
    flag: str
    variants: list[str]


class Rule(TypedDict):
    when: Condition
    serve: Serve
    name: NotRequired[str]


class Flag(TypedDict):
    variants: dict[str, Any]
    enabled: bool
    off_variant: NotRequired[str]
    unit: str
    salt: str
    prerequisites: list[Prerequisite]
    targets: dict[str, str]  # unit id (as a string) -> variant
    rules: list[Rule]
    default: Serve
    experiment: NotRequired[str]  # the running experiment whose arms this flag serves


class Segment(TypedDict):
    when: Condition


class Experiment(TypedDict):
    flag: str
    status: Literal["draft", "running", "stopped", "concluded"]
    unit: str
    salt: str
    traffic: int  # enrolled buckets out of BUCKETS
    arms: list[Arm]
    control: str
    consent_required: bool
    consent_attribute: NotRequired[str]  # with consent_required; absent: DEFAULT_CONSENT_ATTRIBUTE
    audience: NotRequired[Condition]
    layer: NotRequired[str]
    layer_range: NotRequired[list[int]]  # [start, end) of the layer's buckets
    dimensions: NotRequired[list[str]]  # context attributes written into exposures


class Source(TypedDict):
    commit: str | None
    dirty: bool


SECRETS_FORMAT = "age-json"


class SealedSecrets(TypedDict):
    """Secret config values sealed for a service: an armored age file of their JSON."""

    format: Literal["age-json"]
    recipients: list[str]
    age: str


class Bundle(TypedDict):
    format: Literal["flagstone-bundle"]
    version: Literal[1]
    project: NotRequired[str | None]
    environment: str
    source: Source
    default_unit: str
    flags: dict[str, Flag]
    segments: dict[str, Segment]
    experiments: dict[str, Experiment]
    config: dict[str, Any]
    pii: NotRequired[list[str]]  # attributes never written to analytics (privacy.pii)
    secrets: NotRequired[SealedSecrets]  # build --include-secrets --recipient
    hash: NotRequired[str]  # always written by `flagstone build`
    signature: NotRequired[str]
