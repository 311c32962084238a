"""``flagstone validate``: schema checks plus the rules a schema cannot express.

Every check is a small generator of ``Problem``s over the loaded model. Problems know
their document path; ``attach_positions`` turns paths into ``file:line:col`` by re-reading
only the files that have findings.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from flagstone.conditions import iter_condition
from flagstone.errors import DocPath, Problem, format_path
from flagstone.load import (
    UNREADABLE,
    attach_positions,
    load_repository,
)
from flagstone.model import (
    ENVIRONMENTS_DIR,
    KEYED_KINDS,
    Environment,
    Experiment,
    Flag,
    Repository,
    Rollout,
    Segment,
    Serve,
    enabled_of,
    env_of,
    prerequisite_variants,
    served_variants,
)
from flagstone.paths import leaves
from flagstone.privacy import check_privacy
from flagstone.runtime.format import MAX_PREREQUISITE_DEPTH
from flagstone.runtime.regex import regex_problem
from flagstone.schema import (
    check_against,
    check_app_config,
    check_document,
    check_json_values,
    may_hold_unsafe_number,
    unsafe_number_problems,
    unsafe_numbers,
)
from flagstone.secrets import credential_kind, marked_paths

# When a key was last changed, for the "fully on for N days" hygiene check (from git).
LastChanged = Callable[[Sequence[str]], dt.datetime | None]

SECRET_NAME = re.compile(
    r"(?i)(^|[_.-])(password|passwd|secret|token|api[_-]?key|private[_-]?key|credentials?)($|[_.-])"
)
NOT_A_LITERAL = re.compile(r"^(ENC\[|\$\{|env:|vault:|secret://|arn:aws:secretsmanager)")


def validate_repository(
    root: Path,
    envs: Iterable[str] | None = None,
    *,
    strict: bool = False,
    today: dt.date | None = None,
    last_changed: LastChanged | None = None,
    rev: str | None = None,
    base: str | None = None,
) -> list[Problem]:
    """Load and check the working tree, or the git revision ``rev`` as it was committed
    (its own settings and config schema); problems sorted, with file:line:col. With
    ``base``, an experiment running at that revision must keep its frozen fields
    (weights, arms, metrics...), even if the change also stops it, as ``verify`` holds
    each commit to."""
    selected = list(envs) if envs is not None else None
    if rev is None:
        repo, load_problems = load_repository(root, _with_previous(root, selected))
    else:
        from flagstone.load import load_revision

        repo, load_problems = load_revision(root, rev)
        if selected is not None:
            from flagstone.model import check_environments

            check_environments(selected, repo.settings.environments)
    if base is not None:
        load_problems = [*load_problems, *_frozen_since(root, base, repo, selected)]
    return validate_loaded(
        repo,
        load_problems,
        envs=selected,
        strict=strict,
        today=today,
        last_changed=last_changed if rev is None else None,
    )


def _frozen_since(
    root: Path, base: str, repo: Repository, selected: list[str] | None
) -> list[Problem]:
    from flagstone.experiments import frozen_problems
    from flagstone.load import load_revision

    then, _ = load_revision(root, base)
    return [
        p
        for name, env in repo.environments.items()
        if selected is None or name in selected
        for p in frozen_problems(then.environments.get(name), env, f"the change since {base}")
    ]


def _with_previous(root: Path, selected: list[str] | None) -> list[str] | None:
    """Selected environments plus the ones before them (needed for promotion-order checks)."""
    if selected is None:
        return None
    from flagstone.load import load_settings
    from flagstone.model import SETTINGS_FILE, check_environments

    order = load_settings((root / SETTINGS_FILE).read_bytes()).environments
    check_environments(selected, order)
    wanted = set(selected)
    for name in selected:
        if name in order and order.index(name) > 0:
            wanted.add(order[order.index(name) - 1])
    return [e for e in order if e in wanted] + [e for e in selected if e not in order]


def validate_loaded(
    repo: Repository,
    load_problems: Iterable[Problem] = (),
    *,
    envs: Iterable[str] | None = None,
    strict: bool = False,
    today: dt.date | None = None,
    last_changed: LastChanged | None = None,
    read_text: Callable[[str], str | None] | None = None,
) -> list[Problem]:
    """Check an already-loaded repository (the working tree, a git revision, or a planned edit)."""
    today = today or dt.date.today()
    selected = set(envs) if envs is not None else set(repo.settings.environments)
    problems = [p for p in load_problems if env_of(p.file) in selected or env_of(p.file) is None]
    problems += check_settings(repo)
    # An environment with an unreadable file has holes: references into it and promotion
    # order would only repeat that one problem many times over.
    incomplete = {env_of(p.file) for p in problems if p.code in UNREADABLE}
    clean = Clean()  # shared by the environments: most of what they hold is written alike
    for name in repo.settings.environments:
        if name not in selected:
            continue
        env = repo.environments.get(name)
        if env is None or not env.present:
            problems.append(
                Problem(
                    repo.settings.file,
                    0,
                    0,
                    f"environment {name!r} is listed but {ENVIRONMENTS_DIR}/{name}/ does not exist",
                    "missing-environment",
                    path=("environments", repo.settings.environments.index(name)),
                    hint=f"create {ENVIRONMENTS_DIR}/{name}/ or remove it from environments",
                )
            )
            continue
        problems += check_environment(
            repo, env, today=today, complete=name not in incomplete, clean=clean
        )
        previous = repo.settings.previous(name)
        if (
            previous is not None
            and previous in repo.environments
            and repo.environments[previous].files
            and not {name, previous} & incomplete
        ):
            problems += check_promotion_order(repo.environments[previous], env, strict=strict)
    if selected >= set(repo.settings.environments):
        problems += check_stale(repo, last_changed, today)
    if strict:
        problems = [
            replace(p, severity="error") if p.code == "skipped-promotion" else p for p in problems
        ]
    return repo.secrets.redact_problems(attach_positions(problems, read_text or repo.text))


def validate_with_files(
    repo: Repository, env_name: str, files: Mapping[str, str | None]
) -> tuple[Environment, list[Problem]]:
    """Validate ``env_name`` as it would be with ``files`` written (None: deleted), from
    the files the repository was read from and the planned texts alone; positions refer
    to the new texts."""
    from flagstone.load import read_environment

    prefix = f"{ENVIRONMENTS_DIR}/{env_name}/"
    current = {rel: v for rel, v in repo.sources.items() if rel.startswith(prefix)}
    sources = dict(repo.sources)
    for rel, text in files.items():
        if text is None:
            current.pop(rel, None)
            sources.pop(rel, None)
        else:
            current[rel] = sources[rel] = text.encode()
    after, load_problems = read_environment(env_name, current)
    before = repo.environments.get(env_name)
    if before is not None and not before.present and not current:
        after = replace(after, present=False)
    candidate = replace(repo, environments={**repo.environments, env_name: after}, sources=sources)
    return after, validate_loaded(candidate, load_problems, envs=[env_name])


# --- settings ------------------------------------------------------------------------


def check_settings(repo: Repository) -> list[Problem]:
    settings = repo.settings
    problems = check_against("flagstone.schema.json", dict(settings.raw), settings.file)
    schema = repo.config_schema
    if schema is not None and schema.problem is not None:
        problems.append(
            Problem(
                settings.file,
                0,
                0,
                f"config_schema {schema.file!r} {schema.problem}",
                "missing-config-schema"
                if schema.data is None and schema.problem == "does not exist"
                else "bad-config-schema",
                path=("config_schema",),
            )
        )
    for env, protection in settings.protected.items():
        if env not in settings.environments:
            problems.append(
                Problem(
                    settings.file,
                    0,
                    0,
                    f"policy protects {env!r}, which is not an environment",
                    "unknown-environment",
                    path=("policy", "protected", env),
                )
            )
        if (
            protection.promote_from is not None
            and protection.promote_from not in settings.environments
        ):
            problems.append(
                Problem(
                    settings.file,
                    0,
                    0,
                    f"promote_from {protection.promote_from!r} is not an environment",
                    "unknown-environment",
                    path=("policy", "protected", env, "promote_from"),
                )
            )
    for pinned in settings.pinned:
        kind = pinned.split(".", 1)[0]
        if kind not in (*KEYED_KINDS, "config"):
            problems.append(
                Problem(
                    settings.file,
                    0,
                    0,
                    f"pinned path {pinned!r} must start with flags., segments., experiments. or config.",
                    "pinned-path",
                    path=("pinned",),
                )
            )
    return problems


# --- one environment -----------------------------------------------------------------


def check_environment(
    repo: Repository,
    env: Environment,
    *,
    today: dt.date,
    complete: bool = True,
    clean: Clean | None = None,
) -> list[Problem]:
    problems: list[Problem] = []
    invalid: set[tuple[str, str | int]] = set()  # (kind, key) that failed the schema
    for kind in KEYED_KINDS:
        for file, doc in _documents(env, kind).items():
            safe_numbers = not may_hold_unsafe_number(repo.sources.get(file))
            found = check_document(kind, doc, file, safe_numbers=safe_numbers)
            problems += found
            invalid.update((kind, p.path[0]) for p in found if p.path)
    flags = {k: f for k, f in env.flags.items() if ("flags", k) not in invalid}
    segments = {k: s for k, s in env.segments.items() if ("segments", k) not in invalid}
    experiments = {k: e for k, e in env.experiments.items() if ("experiments", k) not in invalid}
    clean = Clean() if clean is None else clean
    known = clean.segments_of(env)
    for flag in flags.values():
        problems += check_flag(flag, env, today, clean, known)
    problems += check_prerequisite_cycles(flags)
    problems += check_prerequisite_depth(flags)
    for segment in segments.values():
        shared = ("segment", id(segment.when), known)
        if shared in clean.parts:
            continue
        found = list(_condition_problems(segment.when, env, segment.file, (segment.key, "when")))
        if not found:
            clean.parts.add(shared)
        problems += found
    problems += check_segment_cycles(segments)
    if not complete:
        # Objects that failed to load would show up as dangling references.
        problems = [
            p
            for p in problems
            if p.code not in ("unknown-flag", "unknown-segment", "unknown-variant")
        ]
    for experiment in experiments.values():
        if complete:
            problems += check_experiment(experiment, env)
    problems += check_layers(experiments.values())
    problems += check_config(repo, env)
    problems += check_privacy(repo.settings.raw, env)
    return problems


def _documents(env: Environment, kind: str) -> dict[str, dict[str, Any]]:
    """Each file's mapping as read (objects grouped back by their file)."""
    docs: dict[str, dict[str, Any]] = {}
    for key, obj in env.objects(kind).items():  # type: ignore[arg-type]
        docs.setdefault(obj.file, {})[key] = obj.raw
    return docs


class Clean:
    """What one validation found nothing wrong with, by the identity of the values: the
    load shares the value of an entry written alike (6,000 flags of the anchor workload
    hold 1,092 rule lists and 12 defaults), and rules, a default and variants checked
    without a finding need no second look in an environment with the same segments.
    Lives for one validation, while the repository holds every value it names."""

    __slots__ = ("_segments", "parts")

    def __init__(self) -> None:
        self.parts: set[tuple[str | int, ...]] = set()
        self._segments: dict[frozenset[str], int] = {}

    def segments_of(self, env: Environment) -> int:
        """One number for each set of segment keys: what a condition's check depends on."""
        keys = frozenset(env.segments)
        return self._segments.setdefault(keys, len(self._segments))


def check_flag(
    flag: Flag,
    env: Environment,
    today: dt.date,
    clean: Clean | None = None,
    segments: int = 0,
) -> Iterator[Problem]:
    """``clean``: what this validation checked before without a finding, in environments
    whose segment keys ``segments`` numbers (``Clean.segments_of``)."""
    # Reads the raw mapping directly: this runs for every flag of every environment.
    key, file, raw = flag.key, flag.file, flag.raw
    variants = raw["variants"]

    def unknown(variant: str, path: DocPath) -> Problem:
        return Problem(
            file,
            0,
            0,
            f"flag {key!r} has no variant {variant!r} (variants: {', '.join(variants)})",
            "unknown-variant",
            path=path,
            hint="serve one of the flag's variants",
        )

    off_variant = raw.get("off_variant")
    if off_variant is not None and off_variant not in variants:
        yield unknown(off_variant, (key, "off_variant"))
    if not enabled_of(raw) and off_variant is None:
        yield Problem(
            file,
            0,
            0,
            f"flag {key!r} is disabled and has no off_variant: apps get their coded default",
            "no-off-variant",
            "warning",
            path=(key, "enabled"),
        )
    targets = raw.get("targets")
    if targets:
        seen_ids: dict[str, str] = {}
        for variant, ids in targets.items():
            if variant not in variants:
                yield unknown(variant, (key, "targets", variant))
            for unit_id in ids:
                other = seen_ids.setdefault(str(unit_id), variant)
                if other != variant:
                    yield Problem(
                        file,
                        0,
                        0,
                        f"unit {unit_id!r} is targeted by both {other!r} and {variant!r}",
                        "duplicate-target",
                        path=(key, "targets", variant),
                    )
    rules = raw.get("rules", ())
    for part, shared, check in (
        (rules, ("rules", id(rules), id(variants), segments), _rule_problems),
        (raw["default"], ("default", id(raw["default"]), id(variants)), _default_problems),
    ):
        if clean is None:
            yield from check(flag, env, part, unknown)
        elif shared not in clean.parts:
            found = list(check(flag, env, part, unknown))
            if not found:
                clean.parts.add(shared)
            yield from found
    for i, prereq in enumerate(raw.get("prerequisites", ())):
        path = (key, "prerequisites", i)
        target = env.flags.get(prereq["flag"])
        if target is None:
            yield Problem(
                file,
                0,
                0,
                f"prerequisite flag {prereq['flag']!r} does not exist in {env.name}",
                "unknown-flag",
                path=(*path, "flag"),
            )
            continue
        target_variants = target.raw.get("variants")
        for variant in prerequisite_variants(prereq):
            if isinstance(target_variants, Mapping) and variant not in target_variants:
                yield Problem(
                    file,
                    0,
                    0,
                    f"prerequisite flag {prereq['flag']!r} has no variant {variant!r}",
                    "unknown-variant",
                    path=path,
                )
    one_type = ("variants", id(variants))
    if len(variants) > 1 and (clean is None or one_type not in clean.parts):
        kinds = {_json_type(v) for v in variants.values()}
        if len(kinds) == 1 and clean is not None:
            clean.parts.add(one_type)
        if len(kinds) > 1:
            yield Problem(
                file,
                0,
                0,
                f"flag {key!r} mixes variant value types ({', '.join(sorted(kinds))}); apps expect one type",
                "variant-types",
                "warning",
                path=(key, "variants"),
            )
    expires_text = raw.get("expires")
    if expires_text is not None:
        try:
            expires = dt.date.fromisoformat(expires_text)
        except ValueError:
            yield Problem(
                file,
                0,
                0,
                f"expires {expires_text!r} is not a date (YYYY-MM-DD)",
                "schema-format",
                path=(key, "expires"),
            )
        else:
            if expires < today and raw.get("lifetime") != "permanent":
                days = (today - expires).days
                yield Problem(
                    file,
                    0,
                    0,
                    f"flag {key!r} expired on {expires_text} ({days} days ago): remove it from the code, then from {env.name}",
                    "flag-expired",
                    "warning",
                    path=(key, "expires"),
                )


def _rule_problems(
    flag: Flag, env: Environment, rules: Any, unknown: Callable[[str, DocPath], Problem]
) -> Iterator[Problem]:
    key, file = flag.key, flag.file
    for index, rule in enumerate(rules):
        segment = rule.get("segment")
        if segment is not None and segment not in env.segments:
            yield _unknown_segment(segment, env, file, (key, "rules", index, "segment"))
        when = rule.get("when")
        if when is not None:
            yield from _condition_problems(when, env, file, (key, "rules", index, "when"))
        yield from _serve_problems(rule["serve"], flag, (key, "rules", index, "serve"), unknown)


def _default_problems(
    flag: Flag, env: Environment, default: Any, unknown: Callable[[str, DocPath], Problem]
) -> Iterator[Problem]:
    return _serve_problems(default, flag, (flag.key, "default"), unknown)


def _serve_problems(
    serve: Any, flag: Flag, path: DocPath, unknown: Callable[[str, DocPath], Problem]
) -> Iterator[Problem]:
    """Checks a raw ``serve`` value: a variant name or ``{rollout: {...}}``."""
    variants = flag.raw["variants"]
    if isinstance(serve, str):
        if serve not in variants:
            yield unknown(serve, path)
        return
    weights = serve["rollout"]
    for variant in weights:
        if variant not in variants:
            yield unknown(variant, (*path, "rollout", variant))
    total = round(sum(weights.values()), 2)
    if total != 100:
        yield Problem(
            flag.file,
            0,
            0,
            f"rollout weights sum to {_num(total)}, expected 100",
            "rollout-sum",
            path=(*path, "rollout"),
            hint="make the percentages add up to 100",
        )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null" if value is None else "JSON"


def _unknown_segment(name: str, env: Environment, file: str, path: DocPath) -> Problem:
    import difflib

    close = difflib.get_close_matches(name, list(env.segments), n=1)
    hint = (
        f"did you mean {close[0]!r}?" if close else f"define it in {env.file_for('segments', name)}"
    )
    return Problem(
        file,
        0,
        0,
        f"segment {name!r} does not exist in {env.name}",
        "unknown-segment",
        path=path,
        hint=hint,
    )


def _condition_problems(
    condition: Any, env: Environment, file: str, path: DocPath
) -> Iterator[Problem]:
    for op, operand, here in iter_condition(condition, path):
        if op == "segment" and operand not in env.segments:
            yield _unknown_segment(str(operand), env, file, here)
        elif op == "matches":
            yield from _regex_problems(str(operand), file, here)
        elif op in ("before", "after"):
            try:
                dt.datetime.fromisoformat(str(operand).replace("Z", "+00:00"))
            except ValueError:
                yield Problem(
                    file,
                    0,
                    0,
                    f"{op}: {operand!r} is not an ISO 8601 date or time",
                    "bad-instant",
                    path=here,
                )


def _regex_problems(pattern: str, file: str, path: DocPath) -> Iterator[Problem]:
    try:
        re.compile(pattern)
    except re.error as e:
        yield Problem(
            file,
            0,
            0,
            f"regular expression {pattern!r} does not compile: {e}",
            "bad-regex",
            path=path,
        )
        return
    from flagstone import redos  # its tables cost ~50 ms to import: only for a regex

    finding = redos.analyze(pattern)
    if finding is not None:
        yield Problem(
            file,
            0,
            0,
            f"regular expression {pattern!r} can backtrack catastrophically: {finding.describe()}",
            "unsafe-regex",
            path=path,
            hint=REGEX_HINTS[finding.kind],
        )
        return
    # Past the backtracking analysis, what passes is exactly what the runtime compiles
    # (Python's engine or RE2).
    problem = regex_problem(pattern)
    if problem is not None:
        yield Problem(
            file,
            0,
            0,
            f"regular expression {pattern!r} cannot run in the runtime: {problem}",
            "bad-regex",
            path=path,
        )


REGEX_HINTS = {
    "exponential": "let the alternatives and nested repetitions match different text, e.g. (a|aa)+ -> a+, (\\w|\\d)+ -> \\w+, (.*a){3} -> ([^a]*a){3}",
    "polynomial": "let repetitions side by side take different characters, e.g. ^.*\\..*$ -> ^[^.]*\\..*$, \\d*\\d* -> \\d*",
    "backreference": "match without the backreference (list the alternatives instead)",
    "too-complex": "split it into simpler conditions combined with all: or any:",
}


def _find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Elementary cycles met by a depth-first walk, each reported once, starting at its
    smallest key. Iterative: a chain of prerequisites can be thousands of flags long."""
    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    for root in sorted(graph):
        if root in state:
            continue
        path: list[str] = []
        walk: list[tuple[str, Iterator[str]]] = []
        state[root] = 1
        path.append(root)
        walk.append((root, iter(graph.get(root, ()))))
        while walk:
            node, children = walk[-1]
            nxt = next((c for c in children if c in graph), None)
            if nxt is None:
                walk.pop()
                path.pop()
                state[node] = 2
            elif state.get(nxt) == 1:
                cycle = path[path.index(nxt) :]
                start = cycle.index(min(cycle))
                canonical = tuple(cycle[start:] + cycle[:start])
                if canonical not in seen:
                    seen.add(canonical)
                    cycles.append(list(canonical))
            elif state.get(nxt) is None:
                state[nxt] = 1
                path.append(nxt)
                walk.append((nxt, iter(graph.get(nxt, ()))))
    return cycles


def _prerequisite_graph(flags: Mapping[str, Flag]) -> dict[str, list[str]]:
    """The prerequisite flags of each flag that has any (a flag without is on no cycle
    and starts no chain: the walks skip the other ~95 %), read from the raw mapping:
    this runs for every environment, twice, where ``Flag.prerequisites`` builds objects."""
    return {
        k: [p["flag"] for p in prerequisites]
        for k, f in flags.items()
        if (prerequisites := f.raw.get("prerequisites"))
    }


def check_prerequisite_cycles(flags: Mapping[str, Flag]) -> Iterator[Problem]:
    graph = _prerequisite_graph(flags)
    for cycle in _find_cycles(graph):
        first = flags[cycle[0]]
        index = next(
            i
            for i, p in enumerate(first.prerequisites)
            if p.flag == (cycle[1] if len(cycle) > 1 else cycle[0])
        )
        yield Problem(
            first.file,
            0,
            0,
            f"prerequisite cycle: {' -> '.join([*cycle, cycle[0]])}",
            "prerequisite-cycle",
            path=(cycle[0], "prerequisites", index),
        )


def check_prerequisite_depth(flags: Mapping[str, Flag]) -> Iterator[Problem]:
    """Chains longer than the runtime follows (it serves an error past
    MAX_PREREQUISITE_DEPTH levels): reported once, at the flag the chain starts from."""
    graph = {k: [p for p in ps if p in flags] for k, ps in _prerequisite_graph(flags).items()}
    below = _longest_chains(graph)
    required_by: dict[str, list[str]] = {}
    for key, children in graph.items():
        for child in children:
            required_by.setdefault(child, []).append(key)
    for key in sorted(graph):
        depth = below[key][0]
        if depth <= MAX_PREREQUISITE_DEPTH:
            continue
        if any(below[parent][0] > MAX_PREREQUISITE_DEPTH for parent in required_by.get(key, ())):
            continue  # reported where the chain starts
        chain = [key]
        while (after := below[chain[-1]][1]) is not None:
            chain.append(after)
        flag = flags[key]
        index = next(i for i, p in enumerate(flag.prerequisites) if p.flag == chain[1])
        shown = " -> ".join([*chain[:3], "…", chain[-1]]) if len(chain) > 5 else " -> ".join(chain)
        yield Problem(
            flag.file,
            0,
            0,
            f"prerequisites of {key!r} nest {depth} deep ({shown}); the runtime follows at most "
            f"{MAX_PREREQUISITE_DEPTH} levels and serves an error beyond",
            "prerequisite-depth",
            path=(key, "prerequisites", index),
            hint="require the flag at the end of the chain directly instead of through the flags between",
        )


def _longest_chains(graph: Mapping[str, Sequence[str]]) -> dict[str, tuple[int, str | None]]:
    """For each flag, the most prerequisite levels below it and the next flag on that
    chain (cycles, which check_prerequisite_cycles reports, are cut where they close)."""
    out: dict[str, tuple[int, str | None]] = {}
    for root in graph:
        if root in out:
            continue
        on_path: set[str] = set()
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:  # iterative: a chain can be thousands of flags long
            node, i = stack.pop()
            if i == 0:
                on_path.add(node)
            children = graph.get(node, ())  # a flag without prerequisites ends a chain
            if i < len(children):
                stack.append((node, i + 1))
                child = children[i]
                if child not in out and child not in on_path:
                    stack.append((child, 0))
                continue
            best: tuple[int, str | None] = (0, None)
            for child in children:
                if child in out and out[child][0] + 1 > best[0]:
                    best = (out[child][0] + 1, child)
            out[node] = best
            on_path.discard(node)
    return out


def check_segment_cycles(segments: Mapping[str, Segment]) -> Iterator[Problem]:
    graph = {
        k: [str(o) for op, o, _ in iter_condition(s.when, ()) if op == "segment"]
        for k, s in segments.items()
    }
    for cycle in _find_cycles(graph):
        first = segments[cycle[0]]
        target = cycle[1] if len(cycle) > 1 else cycle[0]
        path = next(
            p
            for op, o, p in iter_condition(first.when, (cycle[0], "when"))
            if op == "segment" and o == target
        )
        yield Problem(
            first.file,
            0,
            0,
            f"segment cycle: {' -> '.join([*cycle, cycle[0]])}",
            "segment-cycle",
            path=path,
        )


def check_experiment(experiment: Experiment, env: Environment) -> Iterator[Problem]:
    key, file = experiment.key, experiment.file
    flag = env.flags.get(experiment.flag)
    if flag is None:
        yield Problem(
            file,
            0,
            0,
            f"experiment {key!r} uses flag {experiment.flag!r}, which does not exist in {env.name}",
            "unknown-flag",
            path=(key, "flag"),
        )
        return
    arms: list[str] = list(experiment.weights or flag.variants)
    if experiment.weights is not None:
        for arm in experiment.weights:
            if arm not in flag.variants:
                yield Problem(
                    file,
                    0,
                    0,
                    f"arm {arm!r} is not a variant of flag {flag.key!r} (variants: {', '.join(flag.variants)})",
                    "unknown-variant",
                    path=(key, "weights", arm),
                )
        total = round(sum(experiment.weights.values()), 2)
        if total != 100:
            yield Problem(
                file,
                0,
                0,
                f"experiment weights sum to {_num(total)}, expected 100",
                "weights-sum",
                path=(key, "weights"),
            )
    elif len(arms) < 2:
        yield Problem(
            file,
            0,
            0,
            f"flag {flag.key!r} has one variant; an experiment needs at least two arms",
            "too-few-arms",
            path=(key, "flag"),
        )
    control = experiment.raw.get("control")
    if control is not None and control not in arms:
        yield Problem(
            file,
            0,
            0,
            f"control {control!r} is not an arm ({', '.join(arms)})",
            "unknown-variant",
            path=(key, "control"),
        )
    if experiment.audience is not None:
        yield from _condition_problems(experiment.audience, env, file, (key, "audience"))
    decision = experiment.decision
    if experiment.status == "concluded" and decision is None:
        yield Problem(
            file,
            0,
            0,
            f"experiment {key!r} is concluded but records no decision",
            "missing-decision",
            path=(key, "status"),
            hint="add decision: {winner: ARM, reason: ...} (flagstone experiment conclude writes it)",
        )
    if decision is not None:
        if experiment.status != "concluded":
            yield Problem(
                file,
                0,
                0,
                f"experiment {key!r} has a decision but its status is {experiment.status}",
                "decision-before-conclusion",
                "warning",
                path=(key, "decision"),
            )
        winner = decision.get("winner")
        if winner not in (*arms, "none"):
            yield Problem(
                file,
                0,
                0,
                f"winner {winner!r} is not an arm ({', '.join(arms)}) or 'none'",
                "unknown-variant",
                path=(key, "decision", "winner"),
            )
    if experiment.status == "running" and not flag.enabled:
        yield Problem(
            file,
            0,
            0,
            f"experiment {key!r} is running on flag {flag.key!r}, which is disabled: nobody is enrolled",
            "experiment-flag-disabled",
            "warning",
            path=(key, "status"),
        )
    names = Counter(m.name for m in experiment.metrics)
    for metric in experiment.metrics:
        if metric.kind == "ratio" and not (
            "numerator" in metric.raw and "denominator" in metric.raw
        ):
            yield Problem(
                file,
                0,
                0,
                f"ratio metric {metric.name!r} needs numerator and denominator",
                "metric-ratio",
                path=(key, "metrics"),
            )
        if names[metric.name] > 1:
            names[metric.name] = 0  # report once
            yield Problem(
                file,
                0,
                0,
                f"metric {metric.name!r} is listed more than once",
                "duplicate-metric",
                "warning",
                path=(key, "metrics"),
            )


def check_layers(experiments: Iterable[Experiment]) -> Iterator[Problem]:
    layers: dict[str, list[Experiment]] = {}
    for e in experiments:
        if e.layer is not None and e.status == "running":
            layers.setdefault(e.layer, []).append(e)
    for layer, members in sorted(layers.items()):
        total = round(sum(e.traffic for e in members), 2)
        if total > 100:
            last = sorted(members, key=lambda e: e.key)[-1]
            shares = ", ".join(
                f"{e.key} {_num(e.traffic)}%" for e in sorted(members, key=lambda e: e.key)
            )
            yield Problem(
                last.file,
                0,
                0,
                f"running experiments in layer {layer!r} take {_num(total)}% of traffic ({shares}); a layer holds 100%",
                "layer-overbooked",
                path=(last.key, "traffic"),
            )


# --- configuration -------------------------------------------------------------------


def check_config(repo: Repository, env: Environment) -> list[Problem]:
    if env.config is None:
        return []
    problems: list[Problem] = []
    file = env.config.file
    secrets = repo.secrets
    schema = repo.app_schema
    if schema is not None:
        problems += check_app_config(
            schema, dict(env.config.values), file, repo.settings.config_schema or "", secrets
        )
    else:
        values = dict(env.config.values)
        problems += unsafe_number_problems(unsafe_numbers(values), file, secrets)
        problems += check_json_values(values, file)
    for path, value in leaves(env.config.values):
        dotted = ".".join(str(p) for p in path)
        is_literal = isinstance(value, str) and value and not NOT_A_LITERAL.match(value)
        if is_literal and secrets.is_secret(path):
            problems.append(
                Problem(
                    file,
                    0,
                    0,
                    f"{dotted} is a secret and must be stored encrypted",
                    "secret-not-encrypted",
                    path=path,
                    hint=f"store it with `flagstone secret set {env.name} {dotted}` (reads the value from stdin) and remove it from {file}",
                )
            )
        elif is_literal and SECRET_NAME.search(str(path[-1])):
            problems.append(
                Problem(
                    file,
                    0,
                    0,
                    f"{dotted} looks like a plaintext secret",
                    "plaintext-secret",
                    "warning",
                    path=path,
                    hint="encrypt it, or reference it (${ENV_VAR}) instead of writing it here",
                )
            )
        elif is_literal and (kind := credential_kind(str(value))) is not None:
            problems.append(
                Problem(
                    file,
                    0,
                    0,
                    f"{dotted} looks like a credential in plain text ({kind})",
                    "plaintext-credential",
                    "warning",
                    path=path,
                    hint=f"encrypt it: `flagstone secret set {env.name} {dotted}` reads it from stdin",
                )
            )
    if env.secret_values:
        # Findings about values that live in the secrets file point there.
        in_secrets = {p for p, _ in leaves(env.secret_values)}

        def in_secrets_file(path: DocPath) -> bool:
            return bool(path) and any(
                path[: len(q)] == q or q[: len(path)] == path for q in in_secrets
            )

        problems = [
            replace(p, file=env.secrets_file) if p.file == file and in_secrets_file(p.path) else p
            for p in problems
        ]
    return problems


def marked_config_paths(repo: Repository, marker: str) -> list[str]:
    """Config paths whose property in the app's schema carries ``marker: true``
    (``x-flagstone-pinned``, ``x-flagstone-secret``)."""
    schema = repo.app_schema
    return list(marked_paths(schema, marker)) if schema is not None else []


# --- across environments ---------------------------------------------------------------


def check_promotion_order(
    previous: Environment, env: Environment, *, strict: bool
) -> Iterator[Problem]:
    for kind in KEYED_KINDS:
        before = previous.objects(kind)
        for key, obj in env.objects(kind).items():
            if key not in before:
                yield Problem(
                    obj.file,
                    0,
                    0,
                    f"{kind[:-1]} {key!r} is in {env.name} but not in {previous.name}: it skipped review",
                    "skipped-promotion",
                    "error" if strict else "warning",
                    path=(key,),
                    hint=f"create it in {previous.name} and promote it, or remove it from {env.name}",
                )


def _fully_on_variant(flag: Flag) -> str | None:
    """The one variant a flag serves to everyone, or None."""
    if not flag.enabled or flag.raw.get("targets") or flag.raw.get("prerequisites"):
        return None
    served = {v for rule in flag.rules for v in _positive(rule.serve)}
    served.update(_positive(flag.default))
    return served.pop() if len(served) == 1 else None


def _positive(serve: Serve) -> tuple[str, ...]:
    if isinstance(serve, Rollout):
        return tuple(v for v, w in serve.weights.items() if w > 0)
    return served_variants(serve)


def check_stale(
    repo: Repository, last_changed: LastChanged | None, today: dt.date
) -> Iterator[Problem]:
    envs = list(repo)
    if len(envs) < 2 or last_changed is None:
        return
    days = repo.settings.stale_after_days
    first = envs[0]
    for key, flag in first.flags.items():
        if flag.lifetime == "permanent":
            continue
        copies = [e.flags.get(key) for e in envs]
        if any(c is None or c.raw != flag.raw for c in copies):
            continue
        variant = _fully_on_variant(flag)
        if variant is None:
            continue
        changed = last_changed([c.file for c in copies if c is not None])
        if changed is None or (today - changed.date()).days < days:
            continue
        last = copies[-1]
        assert last is not None
        age = (today - changed.date()).days
        yield Problem(
            last.file,
            0,
            0,
            f"flag {key!r} serves {variant!r} to everyone in every environment, unchanged for {age} days: a candidate for removal",
            "stale-flag",
            "warning",
            path=(key,),
        )


__all__ = [
    "check_environment",
    "format_path",
    "marked_config_paths",
    "validate_loaded",
    "validate_repository",
]
