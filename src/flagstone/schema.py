"""flagstone's JSON Schemas and schema findings with document paths.

Validity is decided by jsonschema-rs (a couple of milliseconds for 2,000 flags); only an
invalid document is handed to the Python ``jsonschema`` for its explanation, because its
``best_match`` picks the error a person needs from an ``anyOf`` (as check-jsonschema does).
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema_rs

from flagstone.errors import DocPath, FlagstoneError, Problem, format_path
from flagstone.paths import leaves
from flagstone.runtime.format import MAX_SAFE_INTEGER
from flagstone.secrets import NO_SECRETS, SECRET, Secrets, is_encrypted

BASE_URI = "https://flagstone.dev/schemas/"
KIND_SCHEMAS = {
    "settings": "flagstone.schema.json",
    "flags": "flags.schema.json",
    "segments": "segments.schema.json",
    "experiments": "experiments.schema.json",
}


def schemas_dir() -> Path:
    """The packaged schemas (wheel), or the checkout's top-level schemas/ (editable install)."""
    packaged = Path(__file__).parent / "schemas"
    if (packaged / "flags.schema.json").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "schemas"
    if (checkout / "flags.schema.json").is_file():
        return checkout
    raise FlagstoneError(
        "flagstone's JSON Schemas are missing from the installation; reinstall flagstone"
    )


@functools.cache
def builtin_schemas() -> dict[str, dict[str, Any]]:
    """Every shipped schema by file name."""
    out = {}
    for path in sorted(schemas_dir().glob("*.schema.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        if str(schema.get("$id", "")).startswith(BASE_URI):  # not the example app's own schema
            out[path.name] = schema
    return out


@functools.cache
def _registry() -> jsonschema_rs.Registry:
    return jsonschema_rs.Registry([(s["$id"], s) for s in builtin_schemas().values() if "$id" in s])


@functools.cache
def _fast_validator(name: str) -> Any:
    return jsonschema_rs.validator_for({"$ref": BASE_URI + name}, registry=_registry())


@functools.cache
def _python_registry() -> Any:
    from referencing import Registry, Resource

    return Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in builtin_schemas().values() if "$id" in s
    )


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a key or an environment name, or None: the rule of
    ``condition.schema.json#/$defs/key``, which flagstone.yaml's environments use too."""
    rule = builtin_schemas()["condition.schema.json"]["$defs"]["key"]
    if len(name) > rule["maxLength"]:
        return f"{name[:20]!r}… is longer than {rule['maxLength']} characters"
    if not re.fullmatch(rule["pattern"], name):
        return f"{name!r} is not a valid name: use lowercase letters, digits, '-' and '_', starting with a letter or digit"
    return None


def check_document(kind: str, data: Any, file: str, *, safe_numbers: bool = False) -> list[Problem]:
    """Schema findings for one document of a flagstone kind (line:col attached later);
    ``safe_numbers``: its source cannot spell a number JSON cannot hold
    (``may_hold_unsafe_number``)."""
    return check_against(KIND_SCHEMAS[kind], data, file, safe_numbers=safe_numbers)


def check_against(
    schema_name: str, data: Any, file: str, *, safe_numbers: bool = False
) -> list[Problem]:
    found = [] if safe_numbers else unsafe_numbers(data)
    if found:
        return _with_unsafe_numbers(
            found, file, check_against(schema_name, _safe_numbers(data), file)
        )
    try:
        if _json_values().is_valid(data) and _fast_validator(schema_name).is_valid(data):
            return []
    except ValueError:
        return list(_non_json_values(data, file))
    from jsonschema import Draft202012Validator

    schema = builtin_schemas()[schema_name]
    validator = Draft202012Validator(schema, registry=_python_registry())
    return explain_errors(validator, data, file)


def check_app_config(
    schema: Mapping[str, Any],
    data: Any,
    file: str,
    schema_file: str,
    secrets: Secrets = NO_SECRETS,
) -> list[Problem]:
    """Validate config values against the app's own JSON Schema.

    Encrypted values are never decrypted to validate: they are left out of the instance
    (a required key they provide still counts as given), and a finding about a secret
    path never quotes the value.
    """
    found = unsafe_numbers(data)
    if found:
        checked = check_app_config(schema, _safe_numbers(data), file, schema_file, secrets)
        return _with_unsafe_numbers(found, file, checked, secrets)
    non_json = check_json_values(data, file)
    if non_json:
        return non_json
    encrypted = {p for p, v in leaves(data) if p and is_encrypted(v)}
    if encrypted:
        data = _without_paths(data, encrypted)
    try:
        if jsonschema_rs.meta.is_valid(dict(schema)) and _app_validator(
            json.dumps(schema, sort_keys=True)
        ).is_valid(data):
            return []
    except Exception:  # jsonschema-rs refuses something the Python validator accepts
        pass
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        return [
            Problem(
                schema_file,
                0,
                0,
                f"not a valid JSON Schema: {e.message}",
                "config-schema-invalid",
                path=tuple(e.path),
            )
        ]
    return explain_errors(
        Draft202012Validator(schema),
        data,
        file,
        code="config-schema",
        secrets=secrets,
        encrypted=frozenset(encrypted),
    )


def _without_paths(node: Any, paths: set[DocPath], here: DocPath = ()) -> Any:
    if isinstance(node, Mapping):
        return {
            k: _without_paths(v, paths, (*here, k))
            for k, v in node.items()
            if (*here, k) not in paths
        }
    if isinstance(node, list):
        return [_without_paths(v, paths, (*here, i)) for i, v in enumerate(node)]
    return node


@functools.lru_cache(maxsize=8)
def _app_validator(schema_json: str) -> Any:
    return jsonschema_rs.validator_for(json.loads(schema_json))


def explain_errors(
    validator: Any,
    data: Any,
    file: str,
    code: str = "schema",
    *,
    secrets: Secrets = NO_SECRETS,
    encrypted: frozenset[DocPath] = frozenset(),
) -> list[Problem]:
    problems: dict[DocPath, Problem] = {}
    for error in validator.iter_errors(data):
        error = _most_relevant(error)
        if error.validator == "required" and _given_encrypted(error, encrypted):
            continue
        path: DocPath = tuple(error.absolute_path)
        if secrets.is_secret(path):
            message = _describe_secret(path, error)
        else:
            path, message = _describe(error)
        problems.setdefault(path, Problem(file, 0, 0, message.lstrip(), code, path=path))
    return list(problems.values())


def _given_encrypted(error: Any, encrypted: frozenset[DocPath]) -> bool:
    """A "missing required key" whose keys are all there, encrypted (left out to validate)."""
    here = tuple(error.absolute_path)
    required = error.validator_value if isinstance(error.validator_value, list) else []
    instance = error.instance if isinstance(error.instance, Mapping) else {}
    missing = [name for name in required if name not in instance]
    return bool(missing) and all(
        (*here, name) in encrypted or any(p[: len(here) + 1] == (*here, name) for p in encrypted)
        for name in missing
    )


def _describe_secret(path: DocPath, error: Any) -> str:
    """What is wrong with a secret value, in words that never contain the value."""
    where = format_path(path) + ":"
    kind, expected = error.validator, error.validator_value
    if kind == "type":
        wanted = " or ".join(expected) if isinstance(expected, list) else expected
        return f"{where} {SECRET} is a {_json_type(error.instance)}, expected {wanted}"
    words = {
        "minLength": f"is shorter than {expected} characters",
        "maxLength": f"is longer than {expected} characters",
        "pattern": f"does not match the pattern {expected}",
        "format": f"is not a valid {expected}",
        "enum": "is not one of the allowed values",
        "const": "is not the required value",
        "minimum": f"is less than {expected}",
        "maximum": f"is greater than {expected}",
        "exclusiveMinimum": f"is not greater than {expected}",
        "exclusiveMaximum": f"is not less than {expected}",
    }
    return f"{where} {SECRET} {words.get(kind, f'fails the schema ({kind})')}"


def _most_relevant(error: Any) -> Any:
    """Within anyOf/oneOf, the branch meant for this value: drop the branches whose type
    does not even match (a rollout object is not "expected string"), then best_match."""
    from jsonschema.exceptions import best_match

    while error.context and not _only_required(error):
        branches = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
        error = best_match(branches or error.context)
    return error


def _only_required(error: Any) -> bool:
    """An anyOf/oneOf whose branches only require keys: say which keys, not one branch."""
    if error.validator not in ("anyOf", "oneOf") or not error.validator_value:
        return False
    return all(isinstance(b, Mapping) and set(b) == {"required"} for b in error.validator_value)


def _describe(error: Any) -> tuple[DocPath, str]:
    path: DocPath = tuple(error.absolute_path)
    where = format_path(path) + ":" if path else ""
    kind = error.validator
    if "propertyNames" in error.relative_schema_path:
        key_path = (*path, error.instance)
        return (
            key_path,
            f"key {error.instance!r} is not a valid name: use lowercase letters, digits, '-' and '_'",
        )
    if kind == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        if extra:
            key = extra[0]
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"
            return (*path, key), f"{format_path((*path, key))}: unknown key {key!r}{hint}"
    if kind == "required":
        return path, f"{where} missing required key {error.message.split(' ')[0]}"
    if kind == "enum":
        options = ", ".join(json.dumps(v) for v in error.validator_value)
        return path, f"{where} {json.dumps(error.instance)} is not one of {options}"
    if kind == "pattern" and isinstance(error.instance, str):
        return (
            path,
            f"{where} {error.instance!r} is not a valid name (expected pattern {error.validator_value})",
        )
    if _only_required(error):
        names = ", ".join(repr(b["required"][0]) for b in error.validator_value)
        if kind == "anyOf":
            return path, f"{where} give at least one of {names}"
        missing = not any(b["required"][0] in error.instance for b in error.validator_value)
        return path, f"{where} give {'one' if missing else 'exactly one'} of {names}"
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return (
            path,
            f"{where} expected {expected}, found {_json_type(error.instance)} {_short(error.instance)}",
        )
    if kind == "multipleOf":
        return (
            path,
            f"{where} {error.instance} has more than two decimals (percentages have 0.01 resolution)",
        )
    return path, f"{where} {error.message}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


# Descends into every value, where the kinds' schemas leave some free (a variant's value,
# config without a schema): jsonschema-rs raises ValueError on a value or key JSON has
# no form for (a set, a number as a key), in ~1 ms for 650 kB of flags.
_JSON_VALUES_SCHEMA = {
    "$defs": {"v": {"additionalProperties": {"$ref": "#/$defs/v"}, "items": {"$ref": "#/$defs/v"}}},
    "$ref": "#/$defs/v",
}


@functools.cache
def _json_values() -> Any:
    return jsonschema_rs.validator_for(_JSON_VALUES_SCHEMA)


def check_json_values(data: Any, file: str) -> list[Problem]:
    """Findings for the keys and values of a document that JSON cannot hold (numbers
    aside: ``unsafe_numbers``)."""
    try:
        _json_values().is_valid(data)
        return []
    except ValueError:
        return list(_non_json_values(data, file))


def _non_json_values(data: Any, file: str, path: DocPath = ()) -> Iterator[Problem]:
    """YAML allows keys JSON cannot hold (numbers, lists) and values it cannot (a
    ``!!set``); say where they are."""
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                yield Problem(
                    file,
                    0,
                    0,
                    f"key {key!r} is not a string; quote it",
                    "non-string-key",
                    path=(*path, key),
                )
            else:
                yield from _non_json_values(value, file, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _non_json_values(value, file, (*path, i))
    elif isinstance(data, float) and not math.isfinite(data):
        yield Problem(
            file,
            0,
            0,
            f"{format_path(path)}: {data} is not a JSON number",
            "non-json-value",
            path=path,
        )
    elif isinstance(data, set | frozenset):
        yield Problem(
            file,
            0,
            0,
            f"{format_path(path)}: a YAML !!set is not a JSON value",
            "non-json-value",
            path=path,
            hint="write a list instead: [a, b]",
        )
    elif not (data is None or isinstance(data, str | int | float)):
        yield Problem(
            file,
            0,
            0,
            f"{format_path(path)}: a {type(data).__name__} is not a JSON value",
            "non-json-value",
            path=path,
            hint="write a string, number, boolean, null, list or mapping",
        )


# --- NaN, Infinity and long integers -------------------------------------------------
# YAML has .nan and .inf; JSON has neither, and no strict parser (Node's included)
# accepts the NaN Python would write. Nor can a JSON number (an IEEE double, RFC 8785)
# hold an integer beyond 2**53 exactly. They are refused where they are written, and the
# schema checks run on a copy that holds 0 in their place (jsonschema's multipleOf
# raises on NaN), keeping only the findings elsewhere in the document.


# What a YAML text must hold for its parse to hold NaN or an infinity: `.nan` or `.inf`
# in any case, a float tag (`!!float infinity`), an exponent of three digits (`1e400`,
# `1e4_00`) or a run of 200 digits (with an exponent of two digits at most, a double
# overflows only past 210 digits before the point); underscores are digit separators.
# An integer beyond 2**53 needs a run of 16 digits, or hexadecimal (`0x`, folded `9x`).
# Folding the case and every digit to 9 leaves substring searches: ~3 ms for 650 kB of
# flags, against ~9 ms to encode the parsed document.
_FOLD_CASE_AND_DIGITS = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345678", b"abcdefghijklmnopqrstuvwxyz999999999"
)
_UNSAFE_NUMBER_SPELLINGS = (
    b".nan",
    b".inf",
    b"float",
    b"e999",
    b"e+999",
    b"e-999",
    b"9" * 16,
    b"9x",
)
_DIGITS_AS_NINES = bytes.maketrans(b"012345678", b"999999999")


def may_hold_unsafe_number(source: object) -> bool:
    """Whether YAML source bytes may parse to NaN, an infinity or an integer beyond
    2**53 (anything else: it may)."""
    if not isinstance(source, bytes):
        return True
    folded = source.translate(_FOLD_CASE_AND_DIGITS, b"_")
    return any(spelling in folded for spelling in _UNSAFE_NUMBER_SPELLINGS)


def unsafe_numbers(data: Any, path: DocPath = ()) -> list[tuple[DocPath, float | int]]:
    """Every NaN, infinite number or integer beyond 2**53 in a document, with its path."""
    if not path:
        # The C encoder answers "none" for a whole document in a fraction of the walk's
        # time (a long integer needs 16 digits in a row).
        try:
            text = json.dumps(data, allow_nan=False, default=str).encode()
            if b"9" * 16 not in text.translate(_DIGITS_AS_NINES):
                return []
        except (ValueError, TypeError):
            pass
    if isinstance(data, float):
        return [] if math.isfinite(data) else [(path, data)]
    if isinstance(data, int) and not isinstance(data, bool):
        return [(path, data)] if abs(data) > MAX_SAFE_INTEGER else []
    if isinstance(data, Mapping):
        return [f for k, v in data.items() for f in unsafe_numbers(v, (*path, k))]
    if isinstance(data, list):
        return [f for i, v in enumerate(data) for f in unsafe_numbers(v, (*path, i))]
    return []


def unsafe_number_problems(
    found: list[tuple[DocPath, float | int]], file: str, secrets: Secrets = NO_SECRETS
) -> list[Problem]:
    return [_unsafe_number_problem(path, value, file, secrets) for path, value in found]


def _unsafe_number_problem(
    path: DocPath, value: float | int, file: str, secrets: Secrets
) -> Problem:
    hidden = secrets.is_secret(path)
    if isinstance(value, float):
        return Problem(
            file,
            0,
            0,
            f"{format_path(path)}: "
            + (SECRET if hidden else _spelled(value))
            + " is not a number JSON can hold",
            "non-finite-number",
            path=path,
            hint="write a finite number: YAML's .nan and .inf have no JSON equivalent",
        )
    digits = str(value)
    return Problem(
        file,
        0,
        0,
        f"{format_path(path)}: "
        + (SECRET if hidden else digits if len(digits) <= 24 else digits[:21] + "...")
        + " is an integer beyond 2**53, which a JSON number cannot hold exactly",
        "unsafe-integer",
        path=path,
        hint="quote it to keep it as a string, or write a smaller number",
    )


def _spelled(value: float) -> str:
    if math.isnan(value):
        return ".nan (NaN)"
    return ".inf (Infinity)" if value > 0 else "-.inf (-Infinity)"


def _safe_numbers(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return 0.0
    if isinstance(data, int) and not isinstance(data, bool) and abs(data) > MAX_SAFE_INTEGER:
        return 0
    if isinstance(data, Mapping):
        return {k: _safe_numbers(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_safe_numbers(v) for v in data]
    return data


def _with_unsafe_numbers(
    found: list[tuple[DocPath, float | int]],
    file: str,
    checked: list[Problem],
    secrets: Secrets = NO_SECRETS,
) -> list[Problem]:
    bad = [path for path, _ in found]
    elsewhere = [p for p in checked if not any(p.path[: len(b)] == b for b in bad)]
    return unsafe_number_problems(found, file, secrets) + elsewhere
