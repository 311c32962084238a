"""``flagstone test``: assertion specs kept in the configuration repository.

A spec file (``specs/*.yaml``) lists cases: a flag for a context must serve a variant,
value or reason; an experiment must assign an arm (or none); a config key must hold a
value; or, over generated unit ids, a flag or experiment must serve each variant to a
share within a tolerance. Cases run against the bundles built in memory from the working
tree, with the same runtime the apps use. See docs/testing.md.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flagstone.bundle import build_bundle
from flagstone.errors import FlagstoneError, LoadError, Problem
from flagstone.load import attach_positions, load_repository, parse_yaml, read_worktree_text
from flagstone.paths import MISSING, get_path
from flagstone.runtime.evaluate import CompiledBundle, compile_bundle, explain, resolve
from flagstone.schema import check_against

SPECS_DIR = "specs"


@dataclass(frozen=True, slots=True)
class CaseResult:
    file: str
    index: int
    env: str
    name: str
    passed: bool
    line: int = 0
    col: int = 0
    failures: tuple[str, ...] = ()
    trace: tuple[str, ...] = ()


@dataclass(slots=True)
class SpecReport:
    results: list[CaseResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # specs that could not be read

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.passed for r in self.results)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]


def spec_files(root: Path, paths: Sequence[Path] = ()) -> list[Path]:
    if paths:
        return [p if p.is_absolute() else Path.cwd() / p for p in paths]
    folder = root / SPECS_DIR
    return (
        sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml"))
        if folder.is_dir()
        else []
    )


def run_specs(
    root: Path, paths: Sequence[Path] = (), envs: Sequence[str] | None = None
) -> SpecReport:
    repo, load_problems = load_repository(root)
    report = SpecReport()
    bundles: dict[str, CompiledBundle] = {}

    def bundle_for(env: str) -> CompiledBundle:
        if env not in bundles:
            repo.env(env)
            broken = [
                p for p in load_problems if p.file.startswith(f"environments/{env}/") and p.is_error
            ]
            if broken:
                raise FlagstoneError(f"{broken[0]}; run `flagstone validate --env {env}`")
            bundles[env] = compile_bundle(build_bundle(repo, env))
        return bundles[env]

    files = spec_files(root, paths)
    if not files:
        raise FlagstoneError(
            f"no spec files: add YAML files under {SPECS_DIR}/ (see docs/testing.md)"
        )
    for path in files:
        rel = _relative(root, path)
        try:
            doc = parse_yaml(path.read_bytes(), rel)
        except LoadError as e:
            report.problems.append(e.problem)
            continue
        except OSError as e:
            raise FlagstoneError(f"cannot read {rel}: {e.strerror}") from None
        problems = check_against("spec.schema.json", doc, rel)
        if problems:
            report.problems += problems
            continue
        default_envs = _envs(doc.get("env"), repo.settings.environments)
        shared_context = doc.get("context", {})
        for index, case in enumerate(doc["cases"]):
            misplaced = _misplaced_expectations(rel, index, case)
            if misplaced:
                report.problems += misplaced
                continue
            for env in _envs(case.get("env"), default_envs):
                if envs is not None and env not in envs:
                    continue
                if env not in repo.settings.environments:
                    report.problems.append(
                        Problem(
                            rel,
                            0,
                            0,
                            f"unknown environment {env!r}",
                            "spec-env",
                            path=("cases", index, "env"),
                        )
                    )
                    continue
                report.results.append(
                    run_case(rel, index, case, env, bundle_for(env), shared_context)
                )
    report.problems = attach_positions(report.problems, read_worktree_text(root))
    report.results = _positioned(root, report.results)
    return report


EXPECTATIONS = {
    "flag": ("variant", "value", "reason"),
    "experiment": ("arm",),
    "config": ("value",),
}


def _misplaced_expectations(file: str, index: int, case: Mapping[str, Any]) -> list[Problem]:
    """An expectation the case's subject cannot have would never be checked: refuse it."""
    subject = next(s for s in EXPECTATIONS if s in case)
    allowed = EXPECTATIONS[subject]
    return [
        Problem(
            file,
            0,
            0,
            f"{'an' if subject == 'experiment' else 'a'} {subject} case expects only {', '.join(allowed)}, not {key!r}",
            "spec-expect",
            path=("cases", index, "expect", key),
        )
        for key in case.get("expect", {})
        if key not in allowed
    ]


def _relative(root: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _envs(value: Any, default: Sequence[str]) -> list[str]:
    if value is None:
        return list(default)
    return [value] if isinstance(value, str) else list(value)


def run_case(
    file: str,
    index: int,
    case: Mapping[str, Any],
    env: str,
    bundle: CompiledBundle,
    shared_context: Mapping[str, Any],
) -> CaseResult:
    context = {**shared_context, **case.get("context", {})}
    subject = case.get("flag") or case.get("experiment") or case.get("config")
    name = (
        case.get("name")
        or f"{'flag' if 'flag' in case else 'experiment' if 'experiment' in case else 'config'} {subject}"
    )
    failures: list[str] = []
    trace: list[str] = []
    if "distribution" in case:
        failures += _check_distribution(case, bundle, context)
    if "expect" in case:
        expect = case["expect"]
        if "flag" in case and case["flag"] not in bundle.flags:
            failures.append(f"no flag {case['flag']!r} in {env}")
        elif "flag" in case:
            resolution = resolve(bundle, case["flag"], context)
            actual = {
                "variant": resolution.variant,
                "value": resolution.value,
                "reason": resolution.reason,
            }
            for key in ("variant", "value", "reason"):
                if key in expect and expect[key] != actual[key]:
                    detail = (
                        f" ({resolution.reason}"
                        + (
                            f", rule {resolution.rule_index + 1}"
                            if resolution.rule_index is not None
                            else ""
                        )
                        + ")"
                    )
                    failures.append(
                        f"expected {key} {_show(expect[key])}, got {_show(actual[key])}{detail if key != 'reason' else ''}"
                    )
            if failures:
                trace = explain(bundle, case["flag"], context)[1]
        elif "experiment" in case:
            experiment = bundle.experiments.get(case["experiment"])
            if experiment is None:
                failures.append(f"no experiment {case['experiment']!r} in {env}")
            else:
                arm, why = experiment.assign(context)
                if "arm" in expect and expect["arm"] != arm:
                    failures.append(
                        f"expected arm {_show(expect['arm'])}, got {_show(arm)} ({why})"
                    )
        else:
            value = get_path(bundle.config, case["config"])
            if value is MISSING:
                failures.append(f"no config key {case['config']!r} in {env}")
            elif "value" in expect and expect["value"] != value:
                failures.append(f"expected value {_show(expect['value'])}, got {_show(value)}")
    return CaseResult(
        file, index, env, name, not failures, failures=tuple(failures), trace=tuple(trace)
    )


def _check_distribution(
    case: Mapping[str, Any], bundle: CompiledBundle, context: Mapping[str, Any]
) -> list[str]:
    spec = case["distribution"]
    samples = int(spec.get("samples", 10_000))
    tolerance = float(spec.get("tolerance", 1))
    prefix = spec.get("unit_prefix", "spec-unit-")
    counts: Counter[str] = Counter()
    if "flag" in case:
        flag = bundle.flags.get(case["flag"])
        if flag is None:
            return [f"no flag {case['flag']!r}"]
        for i in range(samples):
            counts[
                str(resolve(bundle, case["flag"], {**context, flag.unit: f"{prefix}{i}"}).variant)
            ] += 1
    elif "experiment" in case:
        experiment = bundle.experiments.get(case["experiment"])
        if experiment is None:
            return [f"no experiment {case['experiment']!r}"]
        for i in range(samples):
            arm = experiment.assign({**context, experiment.unit: f"{prefix}{i}"})[0]
            counts[arm if arm is not None else "none"] += 1
    else:
        return ["a distribution needs a flag or an experiment"]
    failures = []
    for variant, share in spec["expect"].items():
        actual = 100 * counts.get(variant, 0) / samples
        if abs(actual - share) > tolerance:
            failures.append(
                f"expected {variant!r} for {share:g}% ± {tolerance:g} of {samples:,} units, got {actual:.2f}%"
            )
    unexpected = sorted(set(counts) - set(spec["expect"]))
    if unexpected:
        shares = ", ".join(f"{v!r} {100 * counts[v] / samples:.2f}%" for v in unexpected)
        failures.append(f"also served {shares}, which the spec does not expect")
    return failures


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _positioned(root: Path, results: list[CaseResult]) -> list[CaseResult]:
    """Give every failed case the line:col of its entry in the spec file."""
    failed = [r for r in results if not r.passed]
    if not failed:
        return results
    probes = [Problem(r.file, 0, 0, "", "spec", path=("cases", r.index)) for r in failed]
    positions = {
        (p.file, p.path): (p.line, p.col)
        for p in attach_positions(probes, read_worktree_text(root))
    }
    out = []
    for r in results:
        if not r.passed:
            line, col = positions.get((r.file, ("cases", r.index)), (1, 1))
            r = CaseResult(r.file, r.index, r.env, r.name, r.passed, line, col, r.failures, r.trace)
        out.append(r)
    return out
