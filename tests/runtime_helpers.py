"""Build real bundles from small YAML repositories for runtime tests."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from flagstone.bundle import build_bundle
from flagstone.load import load_repository


def bundle_from_yaml(
    tmp: Path,
    flags: str,
    segments: str = "{}\n",
    experiments: str = "{}\n",
    config: str = "{}\n",
    env: str = "prod",
) -> dict[str, Any]:
    root = tmp / f"repo-{len(list(tmp.glob('repo-*')))}"
    (root / "environments" / env).mkdir(parents=True)
    (root / "flagstone.yaml").write_text(f"environments: [{env}]\n")
    for name, text in (
        ("flags", flags),
        ("segments", segments),
        ("experiments", experiments),
        ("config", config),
    ):
        (root / "environments" / env / f"{name}.yaml").write_text(textwrap.dedent(text))
    repo, problems = load_repository(root)
    assert [p for p in problems if p.is_error] == []
    return build_bundle(repo, env, commit="0" * 40)
