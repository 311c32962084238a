"""The repository model: settings, environments and the objects in them.

Objects keep the mapping read from YAML (``raw``), which is what schemas validate, bundles
compile and diffs compare; the typed properties read it for code that has already
checked it against the schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from flagstone.errors import Problem, UnknownEnvironment
from flagstone.paths import MISSING, dotted_leaves, get_path
from flagstone.secrets import NO_SECRETS, SECRETS_FILE, Secrets

Kind = Literal["flags", "segments", "experiments", "config"]
KEYED_KINDS: tuple[Kind, ...] = ("flags", "segments", "experiments")
KINDS: tuple[Kind, ...] = (*KEYED_KINDS, "config")
SETTINGS_FILE = "flagstone.yaml"
ENVIRONMENTS_DIR = "environments"
EXPERIMENT_STATUSES = ("draft", "running", "stopped", "concluded")

Json: TypeAlias = Any
Condition: TypeAlias = Mapping[str, Any]


# What a key left out of an object means. Every reader of a flag or an experiment (the
# typed properties, bundles, diffs, reports, validation) asks these, never its own default.
def enabled_of(raw: Mapping[str, Any]) -> bool:
    return bool(raw.get("enabled", True))


def salt_of(key: str, raw: Mapping[str, Any]) -> str:
    return str(raw.get("salt", key))


def traffic_of(raw: Mapping[str, Any]) -> float:
    traffic = raw.get("traffic", 100)
    return traffic if isinstance(traffic, int | float) else float(traffic)


def prerequisite_variants(prerequisite: Mapping[str, Any]) -> tuple[str, ...]:
    """``variant: on`` is the short form of ``variants: [on]``."""
    if "variants" in prerequisite:
        return tuple(prerequisite["variants"] or ())
    return (prerequisite["variant"],) if "variant" in prerequisite else ()


@dataclass(frozen=True, slots=True)
class Rollout:
    weights: Mapping[str, float]  # variant -> percent, sums to 100
    by: str | None = None  # context attribute hashed for the bucket


Serve: TypeAlias = str | Rollout


def parse_serve(raw: Any) -> Serve:
    if isinstance(raw, str):
        return raw
    return Rollout(weights=dict(raw["rollout"]), by=raw.get("by"))


def served_variants(serve: Serve) -> tuple[str, ...]:
    return (serve,) if isinstance(serve, str) else tuple(serve.weights)


@dataclass(frozen=True, slots=True)
class Rule:
    index: int
    serve: Serve
    segment: str | None = None
    when: Condition | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Prerequisite:
    flag: str
    variants: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Flag:
    key: str
    raw: Mapping[str, Any]
    file: str  # repository-relative file that defines it

    @property
    def variants(self) -> Mapping[str, Json]:
        return self.raw["variants"]  # type: ignore[no-any-return]

    @property
    def enabled(self) -> bool:
        return enabled_of(self.raw)

    @property
    def off_variant(self) -> str | None:
        return self.raw.get("off_variant")

    @property
    def unit(self) -> str | None:
        return self.raw.get("unit")

    @property
    def salt(self) -> str:
        return salt_of(self.key, self.raw)

    @property
    def expires(self) -> str | None:
        return self.raw.get("expires")

    @property
    def lifetime(self) -> str:
        return str(self.raw.get("lifetime", "temporary"))

    @property
    def prerequisites(self) -> tuple[Prerequisite, ...]:
        return tuple(
            Prerequisite(p["flag"], prerequisite_variants(p))
            for p in self.raw.get("prerequisites", ())
        )

    @property
    def targets(self) -> Mapping[str, tuple[str | int, ...]]:
        return {v: tuple(ids) for v, ids in self.raw.get("targets", {}).items()}

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(
            Rule(i, parse_serve(r["serve"]), r.get("segment"), r.get("when"), r.get("name"))
            for i, r in enumerate(self.raw.get("rules", ()))
        )

    @property
    def default(self) -> Serve:
        return parse_serve(self.raw["default"])


@dataclass(frozen=True, slots=True)
class Segment:
    key: str
    raw: Mapping[str, Any]
    file: str

    @property
    def when(self) -> Condition:
        return self.raw["when"]  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: Literal["proportion", "mean", "ratio"]
    role: Literal["primary", "secondary", "guardrail"]
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Experiment:
    key: str
    raw: Mapping[str, Any]
    file: str

    @property
    def flag(self) -> str:
        return str(self.raw["flag"])

    @property
    def status(self) -> str:
        return str(self.raw["status"])

    @property
    def unit(self) -> str | None:
        return self.raw.get("unit")

    @property
    def salt(self) -> str:
        return salt_of(self.key, self.raw)

    @property
    def traffic(self) -> float:
        return float(traffic_of(self.raw))

    @property
    def weights(self) -> Mapping[str, float] | None:
        return self.raw.get("weights")

    @property
    def layer(self) -> str | None:
        return self.raw.get("layer")

    @property
    def audience(self) -> Condition | None:
        return self.raw.get("audience")

    @property
    def consent_required(self) -> bool:
        return self.raw.get("consent") == "required"

    @property
    def decision(self) -> Mapping[str, Any] | None:
        return self.raw.get("decision")

    @property
    def metrics(self) -> tuple[Metric, ...]:
        m = self.raw["metrics"]
        out = [Metric(m["primary"]["name"], m["primary"]["kind"], "primary", m["primary"])]
        out += [Metric(x["name"], x["kind"], "secondary", x) for x in m.get("secondary", ())]
        out += [Metric(x["name"], x["kind"], "guardrail", x) for x in m.get("guardrails", ())]
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Config:
    values: Mapping[str, Any]
    file: str

    def leaves(self) -> Iterator[tuple[str, Any]]:
        """Every value that is not a mapping, by dotted key, in file order."""
        return dotted_leaves(self.values)

    def get(self, dotted: str, default: Any = None) -> Any:
        value = get_path(self.values, dotted)
        return default if value is MISSING else value


def unknown_environment(name: str, known: Iterable[str]) -> UnknownEnvironment:
    import difflib

    names = list(known)
    close = difflib.get_close_matches(name, names, n=1)
    return UnknownEnvironment(
        f"unknown environment {name!r}: {SETTINGS_FILE} lists {', '.join(names) or 'none'}"
        + (f"; did you mean {close[0]!r}?" if close else "")
    )


def check_environments(names: Iterable[str], known: Iterable[str]) -> None:
    """Raise the usage error for the first name that is not a configured environment."""
    known = tuple(known)
    for name in names:
        if name not in known:
            raise unknown_environment(name, known)


KindLayout = Literal["file", "folder", "absent"]
YAML_SUFFIXES = (".yaml", ".yml")


def env_of(rel: str) -> str | None:
    """The environment a repository-relative path lies in (``environments/<env>/...``)."""
    parts = rel.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == ENVIRONMENTS_DIR else None


def classify(rel: str, env: str) -> tuple[Kind, KindLayout] | None:
    """The layout rule: what a file of ``environments/<env>/`` holds, and how.

    ``flags.yaml`` holds flags as one file, ``flags/<key>.yaml`` as a folder; None for a
    file flagstone does not read as objects (README.md, deeper folders, the secrets file).
    """
    base = f"{ENVIRONMENTS_DIR}/{env}/"
    if not rel.startswith(base) or not rel.endswith(YAML_SUFFIXES):
        return None
    parts = rel[len(base) :].split("/")
    if len(parts) > 2:
        return None
    name = parts[0].rsplit(".", 1)[0] if len(parts) == 1 else parts[0]
    for kind in KINDS:
        if kind == name:
            return kind, "file" if len(parts) == 1 else "folder"
    return None


@dataclass(frozen=True, slots=True)
class Environment:
    name: str
    flags: Mapping[str, Flag]
    segments: Mapping[str, Segment]
    experiments: Mapping[str, Experiment]
    config: Config | None
    layout: Mapping[Kind, KindLayout]  # where each kind lives: flags.yaml or flags/
    files: tuple[str, ...] = ()  # every file read, repository-relative
    # secrets.sops.yaml without its sops: block (values still encrypted); merged into config
    secret_values: Mapping[str, Any] | None = None
    present: bool = True  # whether environments/<name>/ exists (in the tree or the revision)

    @property
    def directory(self) -> str:
        return f"{ENVIRONMENTS_DIR}/{self.name}"

    @property
    def secrets_file(self) -> str:
        return f"{self.directory}/{SECRETS_FILE}"

    def objects(self, kind: Kind) -> Mapping[str, Flag | Segment | Experiment]:
        if kind == "flags":
            return self.flags
        if kind == "segments":
            return self.segments
        if kind == "experiments":
            return self.experiments
        raise ValueError(f"{kind} is not a keyed kind")

    def file_for(self, kind: Kind, key: str | None = None) -> str:
        """The file that holds ``key`` (or would hold a new one) of ``kind``."""
        if kind != "config" and key is not None:
            existing = self.objects(kind).get(key)
            if existing is not None:
                return existing.file
        if kind == "config":
            return f"{self.directory}/config.yaml"
        if self.layout.get(kind) == "folder":
            return f"{self.directory}/{kind}/{key}.yaml"
        return f"{self.directory}/{kind}.yaml"


@dataclass(frozen=True, slots=True)
class Protection:
    require_signature: bool = False
    allowed_signers: str | None = None
    allowed_authors: tuple[str, ...] | None = None
    promote_from: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    environments: tuple[str, ...]
    raw: Mapping[str, Any] = field(default_factory=dict)
    file: str = SETTINGS_FILE

    @property
    def project(self) -> str | None:
        return self.raw.get("project")

    @property
    def default_unit(self) -> str:
        return str(self.raw.get("default_unit", "user_id"))

    @property
    def config_schema(self) -> str | None:
        return self.raw.get("config_schema")

    @property
    def pinned(self) -> tuple[str, ...]:
        return tuple(self.raw.get("pinned", ()))

    @property
    def stale_after_days(self) -> int:
        return int(self.raw.get("hygiene", {}).get("stale_after_days", 30))

    @property
    def protected(self) -> Mapping[str, Protection]:
        out = {}
        for env, p in self.raw.get("policy", {}).get("protected", {}).items():
            authors = p.get("allowed_authors")
            out[env] = Protection(
                require_signature=bool(p.get("require_signature", False)),
                allowed_signers=p.get("allowed_signers"),
                allowed_authors=tuple(authors) if authors is not None else None,
                promote_from=p.get("promote_from"),
            )
        return out

    def previous(self, env: str) -> str | None:
        """The environment that promotes into ``env``, or None for the first."""
        i = self.environments.index(env)
        return self.environments[i - 1] if i > 0 else None


@dataclass(frozen=True, slots=True)
class ConfigSchema:
    """The app's config schema (``config_schema`` in flagstone.yaml) as the repository
    holds it: from the working tree, or from the revision being read."""

    file: str
    data: Mapping[str, Any] | None  # None when it cannot be used; ``problem`` says why
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Repository:
    root: Path
    settings: Settings
    environments: Mapping[str, Environment]  # in promotion order
    secrets: Secrets = NO_SECRETS  # what is secret, decided once at load (flagstone.secrets)
    config_schema: ConfigSchema | None = None  # None when flagstone.yaml names none
    # Every file read, repository-relative, as read (or the Problem met instead): checks
    # and positions come from here, never from the disk, so a revision or a planned
    # edit is checked as itself.
    sources: Mapping[str, bytes | Problem] = field(default_factory=dict)

    @property
    def app_schema(self) -> Mapping[str, Any] | None:
        return self.config_schema.data if self.config_schema is not None else None

    def text(self, rel: str) -> str | None:
        data = self.sources.get(rel)
        if not isinstance(data, bytes):
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def env(self, name: str) -> Environment:
        try:
            return self.environments[name]
        except KeyError:
            raise unknown_environment(name, self.settings.environments) from None

    def __iter__(self) -> Iterator[Environment]:
        return iter(self.environments.values())
