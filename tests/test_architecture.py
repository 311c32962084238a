"""Imports point one way; the runtime stays light. Walks ``ast`` imports per module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "flagstone"

# third-party package -> the only modules allowed to import it
OWNERS = {
    "git": {"gitio.py"},
    "ruamel": {"load.py", "edit.py"},
    "typer": {"cli/"},
    "rich": {"cli/"},
    "click": {"cli/"},
    "scipy": {"stats/"},
}
# pyrage: imported lazily, only to open the secrets a server bundle carries sealed.
# jsonschema_rs and re2: imported on the first load (the bundle check, bounded regexes).
RUNTIME_ALLOWED = {
    "flagstone",
    "mmh3",
    "cryptography",
    "openfeature",
    "pyrage",
    "jsonschema_rs",
    "msgspec",  # splits a bundle into flag texts and decodes them typed, in C (loader, flag_shape)
    "re2",
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.slow
def test_heavy_libraries__are_imported_only_by_their_owning_modules() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        for package in imported_roots(path) & OWNERS.keys():
            if not any(
                rel == owner or (owner.endswith("/") and rel.startswith(owner))
                for owner in OWNERS[package]
            ):
                offenders.append(f"{rel} imports {package}")
    assert offenders == []


def test_runtime__imports_only_stdlib_and_small_compiled_libraries() -> None:
    stdlib = set(sys.stdlib_module_names)
    offenders = []
    for path in (SRC / "runtime").rglob("*.py"):
        extra = imported_roots(path) - stdlib - RUNTIME_ALLOWED
        offenders += [f"{path.name} imports {name}" for name in sorted(extra)]
        flagstone_imports = {
            node.module
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("flagstone.")
        }
        offenders += [
            f"{path.name} imports {m}"
            for m in sorted(flagstone_imports)
            if not (m.startswith("flagstone.runtime") or m == "flagstone.errors")
        ]
    assert offenders == []


def test_import_flagstone__loads_no_cli_or_heavy_library() -> None:
    code = (
        "import sys, flagstone; flagstone.__version__; "
        "print(sorted(m for m in ('typer','rich','ruamel','jsonschema','scipy','git','yaml_rs') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_building_bundles__loads_the_runtime_formats_but_not_its_client() -> None:
    code = (
        "import sys, flagstone.bundle, flagstone.runtime; "
        "print(sorted(m for m in ('flagstone.runtime.client','flagstone.runtime.evaluate',"
        "'flagstone.runtime.sinks') if m in sys.modules)); "
        "from flagstone.runtime import Client, MemorySink; print(Client.__module__, MemorySink.__module__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == [
        "[]",
        "flagstone.runtime.client flagstone.runtime.sinks",
    ]
