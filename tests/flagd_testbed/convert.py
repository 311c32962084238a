"""Convert open-feature/flagd-testbed's targeting and fractional gherkin cases into data.

    python tests/flagd_testbed/convert.py PATH-TO-FLAGD-TESTBED-CHECKOUT [COMMIT]

writes tests/flagd_testbed/cases.json: one entry per example row of every scenario in the
features below (the flag, its type, the context, the expected value and reason or error
code, the tags of feature, scenario and examples), the flagd definitions of the flags the
cases use (with the ``$evaluators`` they refer to), and where it all came from. The gherkin
steps are the testbed's; their meaning here follows its step definitions: a "nested
property" is ``{outer: {inner: value}}``, a typed key is parsed by its type (``Object`` as
JSON), a value is compared with the flag's type. tests/test_flagd_testbed.py runs the
cases; docs/flagd.md records the results.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

FEATURES = {
    # feature file -> the flag files its flags live in
    "gherkin/targeting.feature": [
        "flags/custom-ops.json",
        "flags/edge-case-flags.json",
        "flags/evaluator-refs.json",
        "flags/testing-flags.json",
    ],
    "evaluator/gherkin/fractional.feature": ["evaluator/flags/testkit-flags.json"],
    "evaluator/gherkin/targeting.feature": ["evaluator/flags/testkit-flags.json"],
}
STEP_FLAG = re.compile(
    r'an? (\w+)-flag with key "([^"]*)" and a (?:default|fallback) value "([^"]*)"'
)
STEP_NESTED = re.compile(
    r'a context containing a nested property with outer key "([^"]*)" and inner key "([^"]*)", with value "([^"]*)"'
)
STEP_TARGETING_KEY = re.compile(r'a context containing a targeting key with value "([^"]*)"')
STEP_KEY = re.compile(
    r'a context containing a key "([^"]*)", with type "([^"]*)" and with value "(.*)"'
)
STEP_VALUE = re.compile(r'the resolved details value should be "([^"]*)"')
STEP_REASON = re.compile(r'the reason should be "([^"]*)"')
STEP_ERROR = re.compile(r'the error-code should be "([^"]*)"')
IGNORED = re.compile(
    r"^(an evaluator|an option .*|a stable flagd provider|the flag was evaluated with details)$"
)


def typed(kind: str, text: str) -> Any:
    """A gherkin cell as the step definitions read it."""
    if kind in ("String",):
        return text
    if kind == "Integer":
        return int(text)
    if kind == "Float":
        return float(text)
    if kind == "Boolean":
        return text == "true"
    if kind == "Object":
        return json.loads(text)
    raise ValueError(f"unknown type {kind!r}")


def scenarios(path: Path) -> list[dict[str, Any]]:
    """Every scenario of a feature, each outline expanded into one case per example row."""
    lines = path.read_text().splitlines()
    feature_tags: list[str] = []
    pending_tags: list[str] = []
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    examples: dict[str, Any] | None = None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            pending_tags += [t.lstrip("@") for t in line.split()]
            continue
        if line.startswith("Feature:"):
            feature_tags, pending_tags = pending_tags, []
        elif line.startswith("Background:"):
            pending_tags = []
            current = {"name": "Background", "steps": [], "examples": [], "background": True}
        elif line.startswith(("Scenario:", "Scenario Outline:")):
            current = {
                "name": line.split(":", 1)[1].strip(),
                "line": number,
                "tags": feature_tags + pending_tags,
                "steps": [],
                "examples": [],
            }
            pending_tags = []
            out.append(current)
            examples = None
        elif line.startswith("Examples:"):
            assert current is not None
            examples = {"tags": pending_tags, "name": line.split(":", 1)[1].strip(), "rows": []}
            pending_tags = []
            current["examples"].append(examples)
        elif line.startswith("|"):
            assert examples is not None
            cells = [c.strip() for c in line.strip("|").split("|")]
            examples["rows"].append((number, cells))
        elif current is not None and not current.get("background"):
            step = re.sub(r"^(Given|And|When|Then|But)\s+", "", line)
            current["steps"].append(step)
    cases = []
    for scenario in out:
        rows: list[tuple[int, dict[str, str], list[str], str]] = []
        for block in scenario["examples"]:
            header, *body = block["rows"]
            rows += [
                (n, dict(zip(header[1], cells, strict=True)), block["tags"], block["name"])
                for n, cells in body
            ]
        if not scenario["examples"]:
            rows = [(scenario["line"], {}, [], "")]
        for line_number, row, tags, block_name in rows:
            case = case_from_steps(scenario["steps"], row)
            label = ", ".join(f"{k}={v}" for k, v in row.items())
            case |= {
                "id": f"{path.name}:{line_number} {scenario['name']}"
                + (f" [{block_name}]" if block_name else "")
                + (f" ({label})" if label else ""),
                "scenario": scenario["name"],
                "tags": sorted(set(scenario["tags"] + tags)),
            }
            cases.append(case)
    return cases


def case_from_steps(steps: list[str], row: dict[str, str]) -> dict[str, Any]:
    case: dict[str, Any] = {"targeting_key": None, "context": {}, "expect": {}}
    for template in steps:
        step = re.sub(r"<([^>]+)>", lambda m: row[m.group(1)], template)
        if m := STEP_FLAG.fullmatch(step):
            case["type"], case["flag"] = m.group(1), m.group(2)
            case["default"] = typed(m.group(1), m.group(3)) if m.group(1) != "Object" else {}
        elif m := STEP_NESTED.fullmatch(step):
            case["context"].setdefault(m.group(1), {})[m.group(2)] = m.group(3)
        elif m := STEP_TARGETING_KEY.fullmatch(step):
            case["targeting_key"] = m.group(1)
        elif m := STEP_KEY.fullmatch(step):
            case["context"][m.group(1)] = typed(m.group(2), m.group(3))
        elif m := STEP_VALUE.fullmatch(step):
            case["expect"]["value"] = typed(case["type"], m.group(1))
        elif m := STEP_REASON.fullmatch(step):
            case["expect"]["reason"] = m.group(1)
        elif m := STEP_ERROR.fullmatch(step):
            case["expect"]["error_code"] = m.group(1) or None
        elif not IGNORED.match(step):
            raise ValueError(f"unknown step: {step!r}")
    return case


def main(checkout: Path, commit: str | None = None) -> None:
    commit = (
        commit
        or subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )
    version = (checkout / "version.txt").read_text().strip()
    flag_sets: dict[str, Any] = {}
    cases = []
    for feature, flag_files in FEATURES.items():
        set_name = "evaluator" if feature.startswith("evaluator/") else "provider"
        if set_name not in flag_sets:
            merged: dict[str, Any] = {"flags": {}, "$evaluators": {}}
            for name in flag_files:
                data = json.loads((checkout / name).read_text())
                merged["flags"] |= data["flags"]
                merged["$evaluators"] |= data.get("$evaluators", {})
            flag_sets[set_name] = merged
        for case in scenarios(checkout / feature):
            cases.append({"feature": feature, "flag_set": set_name, **case})
    for set_name, merged in flag_sets.items():  # keep only the flags the cases use
        used = {c["flag"] for c in cases if c["flag_set"] == set_name}
        merged["flags"] = {k: v for k, v in merged["flags"].items() if k in used}
    document = {
        "origin": {
            "repository": "https://github.com/open-feature/flagd-testbed",
            "commit": commit or "unknown",
            "version": version,
            "license": "Apache-2.0",
            "features": FEATURES,
            "converted_by": "tests/flagd_testbed/convert.py",
        },
        "flag_sets": flag_sets,
        "cases": cases,
    }
    out = Path(__file__).with_name("cases.json")
    out.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}: {len(cases)} cases from {version} ({commit[:12]})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
