"""The JSON Schemas of command output (schemas/cli/) and a check real output must pass."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas" / "cli"


def schema_name(command: str) -> str:
    """``"flag rule add"`` → ``flag-rule-add`` (the file is schemas/cli/flag-rule-add.schema.json)."""
    return "-".join(command.split())


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    return {
        p.name.removesuffix(".schema.json"): json.loads(p.read_text())
        for p in sorted(SCHEMAS.glob("*.schema.json"))
    }


@cache
def _registry() -> Registry:
    return Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in _schemas().values()
    )


def validator(command: str) -> jsonschema.Draft202012Validator:
    name = schema_name(command)
    schema = _schemas().get(name)
    assert schema is not None, f"no schemas/cli/{name}.schema.json for `flagstone {command}`"
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def check_output(command: str, stdout: str) -> dict[str, Any]:
    """Parse a command's --format json stdout (exactly one object) and hold it to its schema."""
    doc = json.loads(stdout)
    assert isinstance(doc, dict) and isinstance(doc.get("ok"), bool), stdout
    errors = sorted(validator(command).iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, f"`flagstone {command}` output breaks its schema: " + "; ".join(
        f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]
    )
    return doc
