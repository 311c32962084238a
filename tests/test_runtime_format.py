"""runtime/format.py is the one home of the format's constants; the schema and code agree."""

from __future__ import annotations

import ast
import json
import sys
import typing
from pathlib import Path

from flagstone.runtime import flag_shape, format
from flagstone.runtime.operators import OPERATORS

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "bundle.schema.json").read_text())


def test_schema_operator_enum__equals_the_runtime_operators() -> None:
    leaf = next(b for b in SCHEMA["$defs"]["condition"]["oneOf"] if "op" in b["properties"])
    assert tuple(leaf["properties"]["op"]["enum"]) == format.OPERATORS
    assert set(OPERATORS) | {"exists"} == set(format.OPERATORS)
    # The typed decoder spells them as a Literal (msgspec checks it in C): the same list.
    assert typing.get_args(flag_shape.Operator) == format.OPERATORS


def test_schema_statuses_format_and_version__equal_the_constants() -> None:
    experiment = SCHEMA["$defs"]["experiment"]["properties"]
    assert tuple(experiment["status"]["enum"]) == format.EXPERIMENT_STATUSES
    assert SCHEMA["properties"]["format"]["const"] == format.FORMAT
    assert SCHEMA["properties"]["version"]["const"] == format.FORMAT_VERSION
    ends = SCHEMA["$defs"]["arms"]["items"]["properties"]["end"]
    assert ends["maximum"] == format.BUCKETS


def test_schema_fields__equal_the_typed_dicts() -> None:
    """Every member the schema allows is in the TypedDict, required ones as required."""
    pairs = [
        (SCHEMA, format.Bundle),
        (SCHEMA["$defs"]["flag"], format.Flag),
        (SCHEMA["$defs"]["experiment"], format.Experiment),
    ]
    for schema, typed in pairs:
        annotations = typed.__annotations__  # strings: format.py defers annotations
        required = {
            k
            for k, v in annotations.items()
            if not getattr(v, "__forward_arg__", str(v)).startswith("NotRequired[")
        }
        assert set(schema["properties"]) == set(annotations), typed.__name__
        assert set(schema["required"]) == required, typed.__name__


def test_format_module__imports_only_the_standard_library() -> None:
    for name in ("format.py", "canonical.py"):
        tree = ast.parse((ROOT / "src" / "flagstone" / "runtime" / name).read_text())
        roots = {
            alias.name.split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.Import)
            for alias in n.names
        } | {
            n.module.split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0
        }
        assert roots - set(sys.stdlib_module_names) <= {"flagstone"}, name


def test_bundle_module__reexports_the_format_constants() -> None:
    from flagstone import bundle

    assert bundle.FORMAT == format.FORMAT
    assert bundle.BUCKETS == format.BUCKETS
    assert bundle.SIGNATURE_CONTEXT == format.SIGNATURE_CONTEXT
    assert set(bundle.OPERATORS) == set(format.OPERATORS)
