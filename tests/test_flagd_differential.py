"""Differential test of the flagd export: a generated repository using every operator,
10,000+ generated contexts holding values of every JSON type (and Python's 7.0), each
evaluated by ``flagstone.Client`` and by the real flagd in-process provider.

Every disagreement must be explained: ``EXPLAINED`` lists each known difference with the
transformation that turns the context into the one flagd effectively sees. A disagreement
is explained only if flagstone, evaluating the transformed context, gives flagd's answer,
and only if the export warned about that flag and case (docs/flagd.md lists the same table).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flagstone.flagd import export_environment
from flagstone.load import load_repository
from flagstone.runtime import Client
from flagstone.runtime.operators import semver_key
from tests.flagd_helpers import DEFAULTS, flagd_provider, provider_answer, reason_name, value_kind
from tests.runtime_helpers import bundle_from_yaml
from tests.test_flagd_node import NodeEvaluate, node_flagd_core  # noqa: F401 -- the fixture

CONTEXTS = 12_000
FLAGS_PER_CONTEXT = 8  # each context meets the next 8 flags in turn: every flag sees ~3,000
SEED = 17

# --- the generated repository ------------------------------------------------------------

VERSIONS = ["1.9.0", "2.0.0", "2.0.0-beta.1", "v2.1.0", "2.3.1", "0.0.0"]
# (attribute, operator, operand): every operator, every operand type flagstone allows.
ATOMS: list[tuple[str, str, Any]] = [
    ("plan", "eq", "pro"),
    ("n", "eq", 1),
    ("n", "eq", 0),
    ("n", "eq", 18),
    ("n", "eq", 2.5),
    ("n", "eq", 1.0),
    ("beta", "eq", True),
    ("beta", "eq", False),
    ("plan", "neq", "free"),
    ("n", "neq", 1),
    ("beta", "neq", True),
    ("beta", "neq", False),
    ("plan", "in", ["pro", "team"]),
    ("n", "in", [1, 18, "30"]),
    ("n", "in", [0, "x", False]),
    ("beta", "in", [True]),
    ("beta", "in", [True, "true", 1]),
    ("plan", "not_in", ["free", "trial"]),
    ("n", "not_in", [1, True]),
    ("beta", "not_in", [False, 0.0]),
    ("email", "contains", "+"),
    ("tags", "contains", "vip"),
    ("tags", "contains", 1),
    ("tags", "contains", 0),
    ("tags", "contains", True),
    ("email", "contains", 1),
    ("tags", "contains", 2.5),
    ("email", "starts_with", "qa"),
    ("email", "ends_with", "@example.com"),
    ("n", "gt", 0),
    ("n", "gte", 18),
    ("n", "lt", 1),
    ("n", "lte", 64.5),
    ("n", "gt", -1),
    *[("version", op, v) for v in VERSIONS for op in ("semver_eq", "semver_gt", "semver_lte")],
    ("version", "semver_gte", "2.0.0-beta.1"),
    ("version", "semver_lt", "2.0.0"),
    ("plan", "exists", True),
    ("plan", "exists", False),
    ("device.os", "eq", "ios"),
    ("user_id", "in", ["u-1", "u-2", "u-3"]),
    ("user_id", "starts_with", "u-1"),
    ("org_id", "eq", 7),
    ("org_id", "in", ["org-1", 7]),
    ("country", "in", ["DE", "FR"]),
]
LEFT_OUT = {
    "regex": {"email": {"matches": "^qa"}},
    "dates": {"any": [{"signup": {"before": "2026-03-01"}}, {"signup": {"after": "2026-06-01"}}]},
}
CHAIN = 5  # atoms per flag: rule i serves "r<i>" when the context's "pick" is "r<i>"


def _when(attr: str, op: str, operand: Any) -> dict[str, Any]:
    return {attr: {op: operand}}


def generated_repository(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """flags, segments and experiments, as mappings (written as YAML flow = JSON)."""
    flags: dict[str, Any] = {}
    atoms = list(ATOMS)
    for start in range(0, len(atoms), CHAIN):
        chunk = atoms[start : start + CHAIN]
        variants = {f"r{i}": f"r{i}" for i in range(len(chunk))} | {"none": "none"}
        flags[f"ops-{start // CHAIN:02d}"] = {
            "variants": variants,
            "rules": [
                {"when": {"all": [{"pick": f"r{i}"}, _when(*a)]}, "serve": f"r{i}"}
                for i, a in enumerate(chunk)
            ],
            "default": "none",
        }
    for i in range(6):  # all / any / not over random atoms, through segments too
        picks = [_when(*rng.choice(atoms)) for _ in range(rng.randint(2, 4))]
        combined = {"all": picks} if i % 3 == 0 else {"any": picks} if i % 3 == 1 else None
        when = combined or {"not": {"any": picks}}
        flags[f"combo-{i}"] = {
            "variants": {"yes": True, "no": False},
            "rules": [
                {"when": when, "serve": "yes"},
                {"when": {"segment": "staff"}, "serve": "yes"},
            ],
            "default": "no",
        }
    segments = {
        "europe": {"when": {"country": {"in": ["DE", "FR", "IT"]}}},
        "staff": {
            "when": {"any": [{"segment": "europe"}, {"email": {"ends_with": "@example.com"}}]}
        },
    }
    flags["targets-rollouts"] = {
        "variants": {"a": "a", "b": "b", "c": "c"},
        "targets": {"a": ["u-1", "u-5"], "c": ["u-9"]},
        "rules": [
            {"when": {"segment": "staff"}, "serve": {"rollout": {"a": 30, "b": 70}}},
            {"when": {"plan": "team"}, "serve": {"rollout": {"b": 50, "c": 50}, "by": "org_id"}},
        ],
        "default": {"rollout": {"a": 10, "b": 20, "c": 70}},
    }
    flags["org-unit"] = {
        "unit": "org_id",
        "variants": {"on": 1, "off": 0},
        "targets": {"on": ["org-7", "7", "1"]},
        "rules": [{"when": {"n": {"gte": 18}}, "serve": {"rollout": {"on": 40, "off": 60}}}],
        "default": {"rollout": {"on": 25, "off": 75}},
    }
    flags["killed"] = {
        "variants": {"on": 0.5, "off": 0.25},
        "enabled": False,
        "off_variant": "off",
        "default": "on",
    }
    flags["killed-no-off"] = {
        "variants": {"on": True, "off": False},
        "enabled": False,
        "default": "on",
    }
    flags["payload"] = {
        "variants": {"small": {"size": 1}, "large": {"size": 9, "tags": ["x"]}},
        "rules": [{"when": {"tags": {"contains": "vip"}}, "serve": "large"}],
        "default": "small",
    }
    for name in (
        "exp-plain",
        "exp-audience",
        "exp-layer-a",
        "exp-layer-b",
        "exp-consent",
        "exp-org",
    ):
        flags[name] = {
            "variants": {"control": "control", "treat": "treat", "alt": "alt"},
            "default": "control",
        }
    for name, when in LEFT_OUT.items():
        flags[f"left-out-{name}"] = {
            "variants": {"on": True, "off": False},
            "rules": [{"when": when, "serve": "on"}],
            "default": "off",
        }
    flags["left-out-prereq"] = {
        "variants": {"on": True, "off": False},
        "off_variant": "off",
        "prerequisites": [{"flag": "killed", "variant": "on"}],
        "default": "on",
    }
    metrics = {"primary": {"name": "conversion", "kind": "proportion"}}
    weights = {"control": 40, "treat": 40, "alt": 20}
    experiments = {
        "plain": {
            "flag": "exp-plain",
            "status": "running",
            "traffic": 60,
            "weights": weights,
            "metrics": metrics,
        },
        "audience": {
            "flag": "exp-audience",
            "status": "running",
            "traffic": 100,
            "weights": weights,
            "metrics": metrics,
            "audience": {"any": [{"n": {"gte": 18}}, {"version": {"semver_gte": "2.0.0"}}]},
        },
        "layer-a": {
            "flag": "exp-layer-a",
            "status": "running",
            "traffic": 30,
            "layer": "checkout",
            "metrics": metrics,
        },
        "layer-b": {
            "flag": "exp-layer-b",
            "status": "running",
            "traffic": 50,
            "layer": "checkout",
            "metrics": metrics,
        },
        "consent": {
            "flag": "exp-consent",
            "status": "running",
            "traffic": 80,
            "consent": "required",
            "metrics": metrics,
        },
        "org": {
            "flag": "exp-org",
            "status": "running",
            "traffic": 70,
            "unit": "org_id",
            "metrics": metrics,
        },
    }
    return flags, segments, experiments


# --- generated contexts ------------------------------------------------------------------

EVERY_TYPE: list[Any] = [
    "", "x", "pro", "1", "true", "True", "18", 0, 1, 2, -1, 7, 18, 10**12, 0.0, 1.0, 2.5, 7.0,
    18.0, -0.0, True, False, None, [], [1], [True], [0], ["vip"], ["a", 1, True], [[1]], {},
    {"os": "ios"}, {"experiments": True}, "1.2.3", " 1.2.3", "V2.1.0", "2.0", "a1b",
]  # fmt: skip
POOLS: dict[str, list[Any]] = {
    "plan": ["free", "pro", "team", "trial", "PRO"],
    "n": [0, 1, 0.0, 1.0, True, False, 17, 18, 18.0, 30, "30", 64.5, 65, -1, -0.5, 2.5, "1", [1]],
    "beta": [True, False, 1, 0, 1.0, 0.0, "true", "false", [True]],
    "tags": [["vip"], ["a", 1], [True], [1], [0], [False], [2.5], [], "vip", "xvipx", 1, True, ["vip", 0]],
    "email": ["qa@example.com", "a+b@isometry.app", "bob@example.com", "qa+1@x.io", "a1b", "1", 1],
    "version": [
        "1", "1.9", "1.9.0", "2.0.0", "2.0.0-beta.1", "2.0.0-beta.2", "2.0.0-rc.1", "2.1.0",
        "2.3.1", "2.3.2", "v2.1.0", "V2.1.0", " 2.0.0", "2.0.0 ", "1.2.3-01", "1.2.3-a..b",
        "2.0.0+build", "2.0", "2.0-beta", "10.20.30", "2.0.0.0", "abc", 2.5, 2, True, "01.2.3",
        "1.9.0-rc.1+b", "v1.9.0", "0.0.0", "2.3.1+b.1", "2.0.0-0",
    ],
    "org_id": ["org-1", "org-7", "7", 7, 7.0, 1, 1.0, 0, -3, 10**12, 2.5, True, False, ["org-7"], {"id": 7}],
    "country": ["DE", "FR", "US", "IT", "de"],
    "consent": [True, False, {"experiments": True}, {"experiments": 1}, 1, "true", {"experiments": "true"}],
    "signup": ["2026-01-01", "2026-05-01"],
}  # fmt: skip


def generated_context(rng: random.Random) -> dict[str, Any]:
    ctx: dict[str, Any] = {"pick": f"r{rng.randrange(CHAIN)}"}
    roll = rng.random()
    if roll < 0.94:
        # OpenFeature targeting keys are strings; a few ids are targeted or listed
        ctx["user_id"] = f"u-{rng.randrange(2000 if rng.random() < 0.8 else 10)}"
    elif roll < 0.97:
        ctx["user_id"] = ""
    for attr, pool in POOLS.items():
        roll = rng.random()
        if roll < 0.6:
            ctx[attr] = rng.choice(pool)
        elif roll < 0.9:
            ctx[attr] = rng.choice(EVERY_TYPE)
    roll = rng.random()
    if roll < 0.4:
        ctx["device"] = {"os": rng.choice(["ios", "android", 1, None])}
    elif roll < 0.5:
        ctx["device"] = rng.choice(EVERY_TYPE)
    if rng.random() < 0.05:
        ctx["device.os"] = "ios"  # a literal dotted key: see EXPLAINED
    return ctx


# --- the differences that remain, and what flagd sees instead -----------------------------

_SEMVER_ORG = re.compile(
    r"^[vV]?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)  # semver.org's grammar, as python-semver (flagd-core's) parses it


@dataclass(frozen=True)
class Difference:
    description: str
    warning: str  # the export's warning code for a flag that can show it ("" if none)
    applies: Callable[[dict[str, Any], Mapping[str, Any]], bool]  # (context, facts) -> bool
    as_flagd_sees_it: Callable[[dict[str, Any], Mapping[str, Any]], dict[str, Any]]


def _semver_text(ctx: dict[str, Any], facts: Mapping[str, Any]) -> list[str]:
    return [
        a
        for a in facts["semver_attrs"]
        if type(ctx.get(a)) is str
        and semver_key(ctx[a]) is not None
        and not _SEMVER_ORG.match(ctx[a])
    ]


def _float_units(ctx: dict[str, Any], facts: Mapping[str, Any]) -> list[str]:
    return [
        a
        for a in facts["other_units"]
        if type(ctx.get(a)) is float
        and ctx[a].is_integer()
        and "e" not in f"{ctx[a]:.15g}"
        and str(ctx[a]) != "-0.0"
    ]


def _replace(ctx: dict[str, Any], attrs: list[str], value: Callable[[Any], Any]) -> dict[str, Any]:
    return {k: value(v) if k in attrs else v for k, v in ctx.items()}


EXPLAINED: dict[str, Difference] = {
    "semver-text": Difference(
        "a version flagstone reads after trimming whitespace, or with a pre-release or build "
        "that semver.org's grammar forbids (' 2.0.0', '1.2.3-01'): flagd cannot parse it",
        "flagd-difference",
        lambda ctx, facts: bool(_semver_text(ctx, facts)),
        lambda ctx, facts: _replace(ctx, _semver_text(ctx, facts), lambda v: "not a version"),
    ),
    "float-unit": Difference(
        "a unit other than the targeting key sent as a whole-number float (7.0): flagd uses it "
        "as the integer 7, flagstone buckets and targets only strings and integers",
        "flagd-difference",
        lambda ctx, facts: bool(_float_units(ctx, facts)),
        lambda ctx, facts: _replace(ctx, _float_units(ctx, facts), int),
    ),
    "dotted-key": Difference(
        "a literal dotted key ('device.os'): flagd reads only the nested path",
        "flagd-dotted-attribute",
        lambda ctx, facts: any("." in k and k in facts["dotted_attrs"] for k in ctx),
        lambda ctx, facts: {k: v for k, v in ctx.items() if "." not in k},
    ),
}


def _facts(bundle: Mapping[str, Any], key: str) -> dict[str, Any]:
    """What the differences need to know about one flag: which attributes it compares as
    versions, reads with dots, or buckets by other than the default unit."""
    flag = bundle["flags"][key]
    conditions = [r["when"] for r in flag["rules"]]
    experiment = bundle["experiments"].get(flag.get("experiment") or "")
    if experiment and "audience" in experiment:
        conditions.append(experiment["audience"])
    atoms: list[tuple[str, str]] = []

    def walk(node: Mapping[str, Any]) -> None:
        if "attr" in node:
            atoms.append((node["attr"], node["op"]))
        elif "segment" in node:
            walk(bundle["segments"][node["segment"]]["when"])
        elif "not" in node:
            walk(node["not"])
        else:
            for child in node.get("all", node.get("any", [])):
                walk(child)

    for condition in conditions:
        walk(condition)
    units = {
        s.get("by", flag["unit"])
        for s in [flag["default"], *(r["serve"] for r in flag["rules"])]
        if "rollout" in s
    }
    units |= {flag["unit"]} if flag["targets"] else set()
    units |= {experiment["unit"]} if experiment else set()
    return {
        "semver_attrs": sorted({a for a, op in atoms if op.startswith("semver_")}),
        "dotted_attrs": sorted({a for a, _ in atoms if "." in a}),
        "other_units": sorted(units - {bundle["default_unit"]}),
    }


def answer(details: Any) -> tuple[Any, Any]:
    """(variant, value) when a variant is served; otherwise (None, reason): the caller's
    default, for the same reason (ERROR or DISABLED) on both sides."""
    if details.variant is None:
        return None, reason_name(details.reason)
    return details.variant, details.value


@dataclass
class Differential:
    """The generated repository, its export and contexts, and the running tally of one
    evaluator's answers against flagstone's."""

    bundle: dict[str, Any]
    document: dict[str, Any]
    path: Path
    exported: list[str]
    warned: set[tuple[str, str]]
    contexts: list[dict[str, Any]]
    ours: Client
    facts: dict[str, dict[str, Any]]
    explained: Counter[str]
    unexplained: list[Any]

    def pairs(self, keys: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """Each context with the next FLAGS_PER_CONTEXT of these flags, in turn."""
        return [
            (keys[(i * FLAGS_PER_CONTEXT + j) % len(keys)], ctx)
            for i, ctx in enumerate(self.contexts)
            for j in range(FLAGS_PER_CONTEXT)
        ]

    def compare(self, key: str, ctx: dict[str, Any], theirs: tuple[Any, Any]) -> None:
        if answer(self.ours.details(key, ctx)) == theirs:
            return
        kinds = [n for n, d in EXPLAINED.items() if d.applies(ctx, self.facts[key])]
        seen = ctx
        for name in kinds:
            seen = EXPLAINED[name].as_flagd_sees_it(seen, self.facts[key])
        if kinds and answer(self.ours.details(key, seen)) == theirs:
            self.explained.update(kinds)
            for name in kinds:
                code = EXPLAINED[name].warning
                assert not code or (key, code) in self.warned, (key, name, "not warned")
        else:
            self.unexplained.append((key, ctx, answer(self.ours.details(key, ctx)), theirs))


@pytest.fixture
def differential(tmp_path: Path) -> Differential:
    rng = random.Random(SEED)
    flags, segments, experiments = generated_repository(rng)
    bundle = bundle_from_yaml(
        tmp_path,
        json.dumps(flags),
        segments=json.dumps(segments),
        experiments=json.dumps(experiments),
    )
    repo, _ = load_repository(next(tmp_path.glob("repo-*")))
    document, warnings = export_environment(repo, "prod")
    left_out = {w.path[0] for w in warnings if w.code == "flagd-unsupported"}
    assert left_out == {"left-out-regex", "left-out-dates", "left-out-prereq"}
    exported = [k for k in bundle["flags"] if k not in left_out]
    assert set(exported) == set(document["flags"])
    assert {op for _, op, _ in ATOMS} | {"matches", "before", "after"} == schema_operators()
    path = tmp_path / "prod.flagd.json"
    path.write_text(json.dumps(document))
    return Differential(
        bundle=bundle,
        document=document,
        path=path,
        exported=exported,
        warned={(w.path[0], w.code) for w in warnings},
        contexts=[generated_context(rng) for _ in range(CONTEXTS)],
        ours=Client.from_dict(bundle),
        facts={key: _facts(bundle, key) for key in exported},
        explained=Counter(),
        unexplained=[],
    )


@pytest.mark.slow
def test_flagd_export__python_flagd_provider__every_disagreement_is_explained_and_warned(
    differential: Differential,
) -> None:
    d = differential
    served: dict[str, Counter[Any]] = {key: Counter() for key in d.exported}
    pairs = d.pairs(d.exported)
    # flagd-core logs every unparsable version with a traceback; the answers are what count.
    logging.getLogger("openfeature").setLevel(logging.CRITICAL)
    with flagd_provider(d.path) as client:
        for key, ctx in pairs:
            variants = d.bundle["flags"][key]["variants"]
            d.compare(key, ctx, provider_answer(client.provider, key, variants, ctx))
            mine = d.ours.details(key, ctx)
            served[key][
                (ctx["pick"], mine.variant) if key.startswith("ops-") else mine.variant
            ] += 1
    assert d.unexplained[:10] == []
    assert len(pairs) == CONTEXTS * FLAGS_PER_CONTEXT
    # Each listed difference really occurs: the table is not padding.
    assert set(d.explained) == set(EXPLAINED), d.explained
    # Every operator atom was true for some contexts and false for others; every other
    # flag served more than one answer.
    for key in d.exported:
        if key.startswith("ops-"):
            for i in range(len(d.bundle["flags"][key]["rules"])):
                rule = f"r{i}"
                assert served[key][(rule, rule)] and served[key][(rule, "none")], (key, rule)
        elif not key.startswith("killed"):
            assert len(served[key]) > 1, (key, served[key])


@pytest.mark.slow
def test_flagd_export__npm_flagd_core__same_answers_where_it_does_not_bucket(
    differential: Differential,
    node_flagd_core: NodeEvaluate,  # noqa: F811 -- the fixture imported above
) -> None:
    """The same contexts through JavaScript's flagd-core (4.0.1 buckets differently: the
    compatibility table), for every flag whose answer involves no `fractional`: its
    JsonLogic raises where Python's returns null, and the guards hold there too."""
    d = differential
    keys = [k for k in d.exported if "fractional" not in json.dumps(d.document["flags"][k])]
    assert len(keys) >= 20
    contexts = [
        {
            "targetingKey": ctx.get("user_id") if type(ctx.get("user_id")) is str else None,
            "attributes": {k: v for k, v in ctx.items() if k != "user_id"},
        }
        for ctx in d.contexts
    ]
    index = {id(ctx): i for i, ctx in enumerate(d.contexts)}
    kinds = {"boolean": "boolean", "string": "string", "integer": "number", "float": "number"}
    pairs = d.pairs(keys)
    cases = []
    for key, ctx in pairs:
        kind = value_kind(d.bundle["flags"][key]["variants"])
        cases.append(
            {
                "flag": key,
                "type": kinds.get(kind, "object"),
                "default": DEFAULTS[kind],
                "context": index[id(ctx)],
            }
        )
    results = node_flagd_core(d.document, cases, contexts=contexts)
    for (key, ctx), r in zip(pairs, results, strict=True):
        theirs = (r["variant"], r["value"]) if r["variant"] is not None else (None, r["reason"])
        d.compare(key, ctx, theirs)
    assert d.unexplained[:10] == []
    assert set(d.explained) == {"semver-text", "dotted-key"}, d.explained


def schema_operators() -> set[str]:
    schema = json.loads(
        (Path(__file__).parent.parent / "schemas" / "bundle.schema.json").read_text()
    )
    return set(schema["$defs"]["condition"]["oneOf"][4]["properties"]["op"]["enum"])
