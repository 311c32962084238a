"""The anchor workload (../shared/anchors/featurevisor_workload.py) in flagstone's format.

    python bench/workload.py OUT [--features 2000] [--segments 200] [--experiments 50] [--layout file|folder]

The anchor generator's own functions draw the features and segments with the same seed,
so both tools get the same counts, rule shapes and rollout percentages:
  * segments: 1-3 conditions (equals / in / greaterThan / lessThan), ~20 % an `or`;
  * per environment, a targeted rule (one segment, or two) at 100 % and an everyone
    rollout (dev 100, staging 50, prod one of 0/10/25/50/75/100 %);
  * variations become variants served by the rollout, variables become JSON variants
    overridden by the targeted rule, prod `force` entries become individual targets,
    `required` becomes a prerequisite;
  * plus experiments on flags with variations (the anchor has none; flagstone's issue asks
    for 50).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The shared anchors sit beside the checkout (or beside the folder of its worktrees).
ANCHORS = next(
    (
        p / "shared" / "anchors" / "featurevisor_workload.py"
        for p in ROOT.parents
        if (p / "shared" / "anchors" / "featurevisor_workload.py").exists()
    ),
    ROOT.parent / "shared" / "anchors" / "featurevisor_workload.py",
)
ENVS = ("dev", "staging", "prod")
OPERATORS = {"equals": "eq", "in": "in", "greaterThan": "gt", "lessThan": "lt"}


def anchor_module() -> Any:
    if not ANCHORS.exists():
        raise SystemExit(
            f"{ANCHORS} is missing: the benchmark needs the shared anchors beside the checkout"
        )
    spec = importlib.util.spec_from_file_location("featurevisor_workload", ANCHORS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def condition(c: dict[str, Any]) -> dict[str, Any]:
    op = OPERATORS[c["operator"]]
    return {c["attribute"]: c["value"] if op == "eq" else {op: c["value"]}}


def segment_doc(seg: dict[str, Any]) -> dict[str, Any]:
    conds = seg["conditions"]
    if isinstance(conds, dict):
        when: dict[str, Any] = {"any": [condition(c) for c in conds["or"]]}
    else:
        when = {"all": [condition(c) for c in conds]} if len(conds) > 1 else condition(conds[0])
    return {"description": seg["description"], "when": when}


def flag_doc(
    key: str, index: int, f: dict[str, Any], env: str, envs: list[str], features: dict[str, Any]
) -> dict[str, Any]:
    fv_env = {"dev": envs[0], "staging": envs[1], "prod": envs[-1]}[env]
    pct = f["pcts"][fv_env]
    targeted = f["targeted"]
    rule: dict[str, Any] = (
        {"segment": targeted}
        if isinstance(targeted, str)
        else {"when": {"all": [{"segment": s} for s in targeted["and"]]}}
    )
    doc: dict[str, Any] = {
        "description": f"Synthetic feature {key}",
        "owner": "bench",
        "tags": ["all"],
    }
    if f["variables"]:
        defaults = {k: v["defaultValue"] for k, v in f["variables"].items()}
        doc["variants"] = {
            "on": defaults,
            "targeted": {"color": "purple", "limit": 99, "showBadge": True},
            "off": {},
        }
        rule["serve"] = "targeted"
        on_variants = ["on"]
    elif f["variations"]:
        doc["variants"] = {"control": "control", "treatment": "treatment", "off": "off"}
        rule["serve"] = "control"
        on_variants = ["control", "treatment"]
    else:
        doc["variants"] = {"on": True, "off": False}
        rule["serve"] = "on"
        on_variants = ["on"]
    doc["off_variant"] = "off"
    if f["required"]:
        required = features[f["required"]]
        variants = (
            ["control", "treatment"]
            if required["variations"] and not required["variables"]
            else ["on"]
        )
        doc["prerequisites"] = [{"flag": f["required"].replace("_", "-"), "variants": variants}]
    if f["force"] and env == "prod":
        doc["targets"] = {on_variants[0]: [f"qa-{index}"]}
    doc["rules"] = [rule]
    share = {v: round(pct / len(on_variants), 2) for v in on_variants}
    share[on_variants[0]] = round(pct - sum(share.values()) + share[on_variants[0]], 2)
    doc["default"] = {"rollout": {**share, "off": round(100 - pct, 2)}}
    return doc


def experiment_doc(flag_key: str, i: int) -> dict[str, Any]:
    return {
        "hypothesis": f"Treatment of {flag_key} raises conversion",
        "flag": flag_key,
        "status": "running" if i % 2 == 0 else "draft",
        "traffic": 40,
        "weights": {"control": 50, "treatment": 50},
        "layer": f"layer-{i % 5}" if i % 2 == 1 else None,
        "metrics": {
            "primary": {"name": "conversion", "kind": "proportion"},
            "guardrails": [{"name": "errors", "kind": "proportion", "worse": "increase"}],
        },
        "analysis": {"method": "frequentist", "alpha": 0.05},
    }


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block YAML with JSON scalars (valid YAML 1.2), like the anchor's emitter."""
    pad = "  " * indent
    lines = []
    for k, v in value.items():
        if v is None and indent == 1 and k == "layer":
            continue
        if isinstance(v, dict) and v:
            lines.append(f"{pad}{k}:")
            lines.append(to_yaml(v, indent + 1))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            lines.append(f"{pad}{k}:")
            for item in v:
                body = to_yaml(item, indent + 2).split("\n")
                lines.append(f"{pad}  - {body[0].lstrip()}")
                lines.extend(body[1:])
        else:
            lines.append(f"{pad}{k}: {json.dumps(v)}")
    return "\n".join(lines)


def generate(
    out: Path,
    features: int = 2000,
    segments: int = 200,
    attributes: int = 50,
    experiments: int = 50,
    layout: str = "file",
    seed: int = 42,
) -> dict[str, int]:
    anchor = anchor_module()
    rnd = random.Random(seed)
    envs = ["dev", "staging", "production"]
    attrs = anchor.make_attributes(attributes, rnd)  # same draw order as the anchor generator
    segs = anchor.make_segments(segments, attrs, rnd)
    feats = anchor.make_features(features, list(segs), envs, rnd)
    if out.exists():
        shutil.rmtree(out)
    (out / "environments").mkdir(parents=True)
    (out / "flagstone.yaml").write_text(
        "version: 1\nproject: anchor-workload\nenvironments: [dev, staging, prod]\n"
    )
    with_variations = [k for k, f in feats.items() if f["variations"] and not f["variables"]][
        :experiments
    ]
    for env in ENVS:
        folder = out / "environments" / env
        folder.mkdir()
        (folder / "segments.yaml").write_text(
            "\n".join(to_yaml({k: segment_doc(s)}) for k, s in segs.items()) + "\n"
        )
        flags = {
            k.replace("_", "-"): flag_doc(k, i, f, env, envs, feats)
            for i, (k, f) in enumerate(feats.items())
        }
        if layout == "folder":
            (folder / "flags").mkdir()
            for key, doc in flags.items():
                (folder / "flags" / f"{key}.yaml").write_text(to_yaml({key: doc}) + "\n")
        else:
            (folder / "flags.yaml").write_text(
                "\n".join(to_yaml({k: d}) for k, d in flags.items()) + "\n"
            )
        exps = {
            f"exp-{i:03d}": experiment_doc(k.replace("_", "-"), i)
            for i, k in enumerate(with_variations)
        }
        (folder / "experiments.yaml").write_text(
            ("\n".join(to_yaml({k: d}) for k, d in exps.items()) or "{}") + "\n"
        )
    return {
        "features": len(feats),
        "segments": len(segs),
        "experiments": len(with_variations),
        "environments": len(ENVS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--features", type=int, default=2000)
    parser.add_argument("--segments", type=int, default=200)
    parser.add_argument("--attributes", type=int, default=50)
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--layout", choices=["file", "folder"], default="file")
    args = parser.parse_args()
    print(
        json.dumps(
            generate(
                args.out,
                args.features,
                args.segments,
                args.attributes,
                args.experiments,
                args.layout,
            )
        )
    )


if __name__ == "__main__":
    main()
