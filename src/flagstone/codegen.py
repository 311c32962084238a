"""Typed accessors for an app: every flag key, its variants and values, every experiment's
arms and every config key, as TypeScript or Python the app's compiler checks.

``codegen_model`` reads the repository (all environments, or the ones named): a flag is
typed if any environment has it, with the union of its variants; config keys and their
types come from the app's config schema (``config_schema`` in flagstone.yaml), or from the
config values when there is no schema. ``render_ts`` augments ``@flagstone/client``'s
``Register`` so ``client.variant``, ``useVariant`` and friends accept only known keys and
return their variants; ``render_python`` writes constants and a ``TypedClient`` whose
overloads mypy and pyright check. A removed flag or a mistyped key is a type error.
The TypeScript file also imports the parts of ``@flagstone/client`` that the environments'
bundles use (``bundle_parts``), so an app built on it loads those bundles synchronously.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flagstone.errors import FlagstoneError, Problem
from flagstone.model import Repository


@dataclass(frozen=True, slots=True)
class FlagSpec:
    key: str
    variants: Mapping[str, Any]  # variant name -> value (first environment that has it)
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ExperimentSpec:
    key: str
    flag: str
    arms: tuple[str, ...]
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ConfigSpec:
    key: str  # dotted
    schema: Mapping[str, Any]  # the JSON Schema of the value (or one inferred from values)
    description: str | None = None


@dataclass(frozen=True, slots=True)
class CodegenModel:
    project: str | None
    flags: tuple[FlagSpec, ...]
    experiments: tuple[ExperimentSpec, ...]
    config: tuple[ConfigSpec, ...]
    # The parts of @flagstone/client the bundles use ("consent", "dates", "semver").
    parts: tuple[str, ...] = ()


# The entry points of @flagstone/client's parts (clients/js/src/parts/) and what needs them.
DATE_OPERATORS = frozenset({"before", "after"})
SEMVER_OPERATORS = frozenset({"semver_eq", "semver_gt", "semver_gte", "semver_lt", "semver_lte"})


def bundle_parts(bundle: Mapping[str, Any]) -> set[str]:
    """The parts of the TypeScript client a bundle needs: ``dates`` for ``before``/``after``,
    ``semver`` for ``semver_*``, ``regex`` for ``matches``, ``prerequisites`` for a flag with
    prerequisites, ``experiments`` for any experiment, and ``consent`` for an experiment that
    requires consent (its units left out are counted for ``onConsentNotGiven``)."""
    parts: set[str] = set()
    flags = bundle.get("flags", {}).values()
    experiments = bundle.get("experiments", {}).values()
    conditions: list[Any] = [
        *(rule.get("when") for f in flags for rule in f.get("rules", ())),
        *(s.get("when") for s in bundle.get("segments", {}).values()),
        *(e.get("audience") for e in experiments),
    ]
    while conditions:
        node = conditions.pop()
        if isinstance(node, list):
            conditions.extend(node)
        elif isinstance(node, dict):
            op = node.get("op")
            if op in DATE_OPERATORS:
                parts.add("dates")
            elif op in SEMVER_OPERATORS:
                parts.add("semver")
            elif op == "matches":
                parts.add("regex")
            conditions.extend(v for k, v in node.items() if k in ("all", "any", "not"))
    if any(f.get("prerequisites") for f in flags):
        parts.add("prerequisites")
    if experiments:
        parts.add("experiments")
    if any(e.get("consent_required") for e in experiments):
        parts.add("consent")
    return parts


@dataclass(frozen=True, slots=True)
class CodegenResult:
    """What ``flagstone codegen --format json`` reports."""

    lang: str
    out: str | None = None  # the file written, or None when the code is in ``code``
    code: str | None = None
    model: CodegenModel | None = None
    problems: Sequence[Problem] = ()  # the errors that refused generation

    @property
    def ok(self) -> bool:
        return not any(p.is_error for p in self.problems)

    def payload(self) -> dict[str, Any]:
        from flagstone.report import problem_dict

        model = self.model
        return {
            "lang": self.lang,
            "out": self.out,
            "code": self.code,
            "flags": [f.key for f in model.flags] if model else [],
            "experiments": [e.key for e in model.experiments] if model else [],
            "config": [c.key for c in model.config] if model else [],
            "problems": [problem_dict(p) for p in self.problems],
        }


def codegen_model(repo: Repository, envs: Sequence[str] | None = None) -> CodegenModel:
    names = list(envs) if envs else list(repo.settings.environments)
    environments = [repo.env(n) for n in names]
    flags: dict[str, dict[str, Any]] = {}
    described: dict[str, str | None] = {}
    for env in environments:
        for key, flag in env.flags.items():
            variants = flags.setdefault(key, {})
            for name, value in flag.variants.items():
                variants.setdefault(str(name), value)
            described.setdefault(key, flag.raw.get("description"))
    experiments: dict[str, tuple[str, dict[str, None], str | None]] = {}
    for env in environments:
        for key, exp in env.experiments.items():
            arms = exp.weights or flags.get(exp.flag, {})
            seen = experiments.setdefault(key, (exp.flag, {}, exp.raw.get("hypothesis")))[1]
            seen.update(dict.fromkeys(str(a) for a in arms))
    from flagstone.bundle import build_bundle

    parts = set().union(*(bundle_parts(build_bundle(repo, n, hashed=False)) for n in names))
    return CodegenModel(
        project=repo.settings.project,
        flags=tuple(FlagSpec(k, flags[k], described[k]) for k in sorted(flags)),
        experiments=tuple(
            ExperimentSpec(k, f, tuple(arms), d) for k, (f, arms, d) in sorted(experiments.items())
        ),
        config=tuple(_config_specs(repo, environments)),
        parts=tuple(sorted(parts)),
    )


def _config_specs(repo: Repository, environments: Iterable[Any]) -> list[ConfigSpec]:
    schema = repo.config_schema
    if schema is not None:
        if schema.data is None:
            raise FlagstoneError(f"the config schema {schema.file} {schema.problem}")
        return sorted(_walk_schema(schema.data, ""), key=lambda s: s.key)
    merged: dict[str, Any] = {}
    for env in environments:
        if env.config is not None:
            _merge(merged, env.config.values)
    return sorted(_walk_schema(_infer_schema(merged), ""), key=lambda s: s.key)


def _merge(into: dict[str, Any], values: Mapping[str, Any]) -> None:
    for k, v in values.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        elif k not in into:
            into[k] = dict(v) if isinstance(v, Mapping) else v


def _infer_schema(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {"type": "object", "properties": {k: _infer_schema(v) for k, v in value.items()}}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list):
        return {"type": "array"}
    return {}


def _walk_schema(schema: Mapping[str, Any], prefix: str) -> Iterable[ConfigSpec]:
    for key, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, Mapping):
            continue
        dotted = f"{prefix}{key}"
        yield ConfigSpec(dotted, sub, sub.get("description"))
        if sub.get("properties"):
            yield from _walk_schema(sub, dotted + ".")


# --- names -----------------------------------------------------------------------------------


def _words(key: str) -> list[str]:
    return [w for w in re.split(r"[^0-9A-Za-z]+", key) if w]


def _unique(names: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(key, identifier) pairs with identifiers made unique by a numeric suffix."""
    seen: dict[str, int] = {}
    out = []
    for key, name in names:
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append((key, name if n == 0 else f"{name}_{n + 1}"))
    return out


def camel(key: str) -> str:
    words = _words(key) or ["key"]
    name = words[0].lower() + "".join(w[:1].upper() + w[1:] for w in words[1:])
    return name if name[0].isalpha() else f"_{name}"


def constant(key: str) -> str:
    name = "_".join(w.upper() for w in _words(key)) or "KEY"
    return name if name[0].isalpha() else f"_{name}"


def pascal(key: str) -> str:
    name = "".join(w[:1].upper() + w[1:] for w in _words(key)) or "Key"
    return name if name[0].isalpha() else f"_{name}"


# --- TypeScript ------------------------------------------------------------------------------

HEADER = "Generated by `flagstone codegen --lang {lang}`{source}: do not edit, regenerate."


def _header(model: CodegenModel, lang: str) -> str:
    source = f" from project {model.project}" if model.project else ""
    return HEADER.format(lang=lang, source=source)


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _ts_value(value: Any) -> str:
    """The literal TypeScript type of a JSON value."""
    if isinstance(value, Mapping):
        fields = "; ".join(f"readonly {_q(str(k))}: {_ts_value(v)}" for k, v in value.items())
        return "{ " + fields + " }" if fields else "Record<string, never>"
    if isinstance(value, list):
        return "readonly [" + ", ".join(_ts_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _union(parts: Iterable[str]) -> str:
    unique = list(dict.fromkeys(parts))
    return " | ".join(unique) if unique else "never"


def _ts_schema(schema: Mapping[str, Any]) -> str:
    if "const" in schema:
        return json.dumps(schema["const"], ensure_ascii=False)
    if "enum" in schema:
        return _union(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            return _union(_ts_schema(s) for s in schema[combinator] if isinstance(s, Mapping))
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union(_ts_schema({**schema, "type": k}) for k in kind)
    if kind == "object":
        props = schema.get("properties")
        if not props:
            return "Record<string, Json>"
        required = set(schema.get("required", ()))
        fields = "; ".join(
            f"readonly {_q(k)}{'' if k in required else '?'}: {_ts_schema(v)}"
            for k, v in props.items()
            if isinstance(v, Mapping)
        )
        return "{ " + fields + " }"
    if kind == "array":
        items = schema.get("items")
        return (
            f"readonly ({_ts_schema(items)})[]" if isinstance(items, Mapping) else "readonly Json[]"
        )
    return {
        "string": "string",
        "integer": "number",
        "number": "number",
        "boolean": "boolean",
        "null": "null",
    }.get(str(kind), "Json")


def _doc(text: str | None, indent: str) -> str:
    if not text:
        return ""
    return f"{indent}/** {' '.join(str(text).split()).replace('*/', '* /')} */\n"


def render_ts(model: CodegenModel) -> str:
    lines = [f"// {_header(model, 'ts')}", 'import type { Json } from "@flagstone/client";']
    if model.parts:
        lines.append("// The parts of the client these bundles use (imported once, by this file).")
        lines.extend(f'import "@flagstone/client/{part}";' for part in model.parts)
    lines.append("")

    def constants(name: str, keys: Sequence[str], doc: str) -> None:
        lines.append(f"/** {doc} */")
        lines.append(f"export const {name} = {{")
        lines.extend(
            f"  {ident}: {_q(key)}," for key, ident in _unique((k, camel(k)) for k in keys)
        )
        lines.append("} as const;")
        lines.append("")

    constants("FLAGS", [f.key for f in model.flags], "Every flag key.")
    constants("EXPERIMENTS", [e.key for e in model.experiments], "Every experiment key.")
    constants("CONFIG", [c.key for c in model.config], "Every config key (dotted).")
    lines.append("export interface Flags {")
    for f in model.flags:
        lines.append(_doc(f.description, "  ").rstrip("\n")) if f.description else None
        variants = _union(_q(v) for v in f.variants)
        values = _union(_ts_value(v) for v in f.variants.values())
        lines.append(f"  {_q(f.key)}: {{ variant: {variants}; value: {values} }};")
    lines.append("}")
    lines.append("")
    lines.append("export interface Experiments {")
    for e in model.experiments:
        lines.append(f"  {_q(e.key)}: {_union(_q(a) for a in e.arms)};")
    lines.append("}")
    lines.append("")
    lines.append("export interface Config {")
    for c in model.config:
        lines.append(_doc(c.description, "  ").rstrip("\n")) if c.description else None
        lines.append(f"  {_q(c.key)}: {_ts_schema(c.schema)};")
    lines.append("}")
    lines.append("")
    lines.append('declare module "@flagstone/client" {')
    lines.append("  interface Register {")
    lines.append("    flags: Flags;")
    lines.append("    experiments: Experiments;")
    lines.append("    config: Config;")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- Python ----------------------------------------------------------------------------------


def _py_value(value: Any) -> str:
    if isinstance(value, bool | int | str) and not isinstance(value, float):
        return f"Literal[{value!r}]"
    if isinstance(value, float):
        return "float"
    if isinstance(value, Mapping):
        return "dict[str, Any]"
    if isinstance(value, list):
        return "list[Any]"
    return "None"


def _py_union(parts: Iterable[str]) -> str:
    unique = list(dict.fromkeys(parts))
    literals = [p[len("Literal[") : -1] for p in unique if p.startswith("Literal[")]
    others = [p for p in unique if not p.startswith("Literal[")]
    merged = ([f"Literal[{', '.join(literals)}]"] if literals else []) + others
    return " | ".join(merged) if merged else "NoReturn"


def _py_schema(schema: Mapping[str, Any]) -> str:
    if "const" in schema:
        return _py_union([_py_value(schema["const"])])
    if "enum" in schema:
        return _py_union(_py_value(v) for v in schema["enum"])
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            return _py_union(_py_schema(s) for s in schema[combinator] if isinstance(s, Mapping))
    kind = schema.get("type")
    if isinstance(kind, list):
        return _py_union(_py_schema({**schema, "type": k}) for k in kind)
    return {
        "string": "str",
        "integer": "int",
        "number": "float",
        "boolean": "bool",
        "null": "None",
        "object": "dict[str, Any]",
        "array": "list[Any]",
    }.get(str(kind), "Any")


def _overloads(
    lines: list[str], method: str, params: str, call: str, cases: Sequence[tuple[str, str, str]]
) -> None:
    """``cases``: (key, extra parameter annotation or "", return type)."""
    if not cases:
        return
    many = len(cases) > 1
    for key, extra, returns in cases if many else ():
        lines.append("    @overload")
        lines.append(
            f"    def {method}(self, key: Literal[{key!r}]{params.format(extra=extra)}) -> {returns}: ..."
        )
    keys = "Literal[" + ", ".join(repr(k) for k, _, _ in cases) + "]"
    returns = "Any" if many else cases[0][2]
    extra = "Any" if many else cases[0][1]
    lines.append(f"    def {method}(self, key: {keys}{params.format(extra=extra)}) -> {returns}:")
    lines.append(f"        return {call}")
    lines.append("")


def render_python(model: CodegenModel) -> str:
    lines = [
        f'"""{_header(model, "python")}"""',
        "",
        "from __future__ import annotations",
        "",
        "from collections.abc import Mapping",
        "from typing import Any, Final, Literal, NoReturn, overload",
        "",
        "from flagstone import Client",
        "",
        "__all__ = ['Config', 'Experiments', 'Flags', 'TypedClient']",
        "",
    ]

    def constants(name: str, keys: Sequence[str], doc: str) -> None:
        lines.append(f"class {name}:")
        lines.append(f'    """{doc}"""')
        lines.append("")
        for key, ident in _unique((k, constant(k)) for k in keys):
            lines.append(f"    {ident}: Final = {key!r}")
        lines.append("")
        lines.append("")

    constants("Flags", [f.key for f in model.flags], "Every flag key.")
    constants("Experiments", [e.key for e in model.experiments], "Every experiment key.")
    constants("Config", [c.key for c in model.config], "Every config key (dotted).")
    lines.append("class TypedClient:")
    lines.append('    """A ``Client`` whose methods accept only this repository\'s keys."""')
    lines.append("")
    lines.append("    def __init__(self, client: Client) -> None:")
    lines.append("        self.client = client")
    lines.append("")
    ctx = ", context: Mapping[str, Any]"
    variants = [
        (f.key, "", _py_union([f"Literal[{', '.join(repr(v) for v in f.variants)}]"]) + " | None")
        for f in model.flags
    ]
    _overloads(lines, "variant", ctx, "self.client.variant(key, context)", variants)
    values = [
        (f.key, _py_union(_py_value(v) for v in f.variants.values()), "") for f in model.flags
    ]
    values = [(k, t, t) for k, t, _ in values]
    _overloads(
        lines,
        "value",
        ctx + ", default: {extra}",
        "self.client.value(key, context, default)",
        values,
    )
    if model.flags:
        keys = "Literal[" + ", ".join(repr(f.key) for f in model.flags) + "]"
        lines.append(f"    def enabled(self, key: {keys}{ctx}, default: bool = False) -> bool:")
        lines.append("        return self.client.enabled(key, context, default)")
        lines.append("")
    arms = [
        (e.key, "", _py_union([f"Literal[{', '.join(repr(a) for a in e.arms)}]"]) + " | None")
        for e in model.experiments
        if e.arms
    ]
    _overloads(lines, "assign", ctx, "self.client.assign(key, context)", arms)
    config = [(c.key, "", _py_schema(c.schema) + " | None") for c in model.config]
    _overloads(lines, "config", "", "self.client.config(key)", config)
    return "\n".join(lines).rstrip("\n") + "\n"
