"""`flagstone init`: the files of a new flagstone repository."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from flagstone.edit import apply_files
from flagstone.errors import ConflictError, FlagstoneError
from flagstone.schema import builtin_schemas, name_problem

TEMPLATES = files("flagstone") / "templates"
# Where flagstone's source, composite action and pre-commit hooks live (pyproject.toml's
# Source URL): the scaffold pins its workflow, hooks and documentation links to the
# release tag of the flagstone that wrote it, so no package index is needed.
SOURCE_REPOSITORY = "flagstone-dev/flagstone"
ROLLOUT_BY_POSITION = (100, 50, 10)  # dev serves everyone; later environments ramp up


@dataclass(frozen=True, slots=True)
class InitResult:
    root: Path
    written: tuple[str, ...]
    git_initialized: bool
    dry_run: bool = False  # nothing was written: ``written`` is what would be


def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def release_tag() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "v" + version("flagstone")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "main"


def _fill(text: str, **values: str) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def scaffold_files(project: str, environments: list[str], today: dt.date) -> dict[str, str]:
    """Repository-relative path -> text of every file `init` writes."""
    tag = release_tag()
    home = f"https://github.com/{SOURCE_REPOSITORY}"
    out: dict[str, str] = {
        "flagstone.yaml": _fill(
            _template("flagstone.yaml"),
            project=_yaml_scalar(project),
            environments=", ".join(environments),
            docs=f"{home}/blob/{tag}/docs",
        ),
        "schemas/config.schema.json": _template("config.schema.json"),
        "specs/example.yaml": _template("specs/example.yaml"),
        ".github/workflows/flagstone.yml": _fill(
            _template("github/flagstone.yml"), action=f"{SOURCE_REPOSITORY}@{tag}"
        ),
        ".github/workflows/flagstone-comment.yml": _template("github/flagstone-comment.yml"),
        ".pre-commit-config.yaml": _fill(
            _template("pre-commit-config.yaml"), repository=home, tag=tag
        ),
        ".gitignore": _template("gitignore"),
        ".gitattributes": _template("gitattributes"),
    }
    for name, schema in builtin_schemas().items():
        out[f"schemas/{name}"] = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    expires = (today + dt.timedelta(days=90)).isoformat()
    for position, env in enumerate(environments):
        rollout = ROLLOUT_BY_POSITION[min(position, len(ROLLOUT_BY_POSITION) - 1)]
        if position == len(environments) - 1 and len(environments) > 1:
            rollout = ROLLOUT_BY_POSITION[-1]
        is_last = position == len(environments) - 1 and len(environments) > 1
        base_url = "https://api.example.com" if is_last else f"https://api.{env}.example.com"
        folder = f"environments/{env}"
        out[f"{folder}/flags.yaml"] = _fill(
            _template("environments/flags.yaml"),
            expires=expires,
            rollout=str(rollout),
            rollout_off=str(100 - rollout),
        )
        out[f"{folder}/segments.yaml"] = _template("environments/segments.yaml")
        out[f"{folder}/experiments.yaml"] = _template("environments/experiments.yaml")
        out[f"{folder}/config.yaml"] = _fill(
            _template("environments/config.yaml"), base_url=base_url
        )
    return out


def check_environment_names(names: list[str]) -> list[str]:
    """The environments to create, in order, refused before anything is written if a name
    would not load (the rule flagstone.yaml's environments follow) or could leave the
    target folder (``../../tmp/x``)."""
    if not any(names):
        raise FlagstoneError(
            "no environment given: name them in promotion order, e.g. --environments dev,staging,prod"
        )
    for env in names:
        problem = name_problem(env)
        if problem is not None:
            raise FlagstoneError(f"environment {problem}; nothing was written")
    repeated = sorted({env for env in names if names.count(env) > 1})
    if repeated:
        raise FlagstoneError(f"environment {repeated[0]!r} is listed twice; nothing was written")
    return names


def _yaml_scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when it is safely plain, else double-quoted (a
    JSON string is a valid YAML double-quoted scalar), so no project name can add keys."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._-]*", text) and not text.endswith(" "):
        return text
    return json.dumps(text)


def init_repository(
    target: Path,
    *,
    project: str | None = None,
    environments: list[str] | None = None,
    force: bool = False,
    today: dt.date | None = None,
    dry_run: bool = False,
) -> InitResult:
    """Write a new repository into ``target``; refuse to overwrite unless ``force``.
    With ``dry_run``, check the same and say what would be written, writing nothing."""
    from flagstone.gitio import init_repo

    environments = check_environment_names(
        ["dev", "staging", "prod"] if environments is None else environments
    )
    name = project or target.resolve().name
    content = scaffold_files(name, environments, today or dt.date.today())
    existing = sorted(rel for rel in content if (target / rel).exists())
    if existing and not force:
        shown = ", ".join(existing[:5]) + (
            f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        )
        raise ConflictError(
            f"{len(existing)} file(s) already exist in {target}: {shown}; "
            "nothing was written (pass --force to overwrite them)"
        )
    if dry_run:
        return InitResult(target, tuple(sorted(content)), False, dry_run=True)
    # git init first, so that the files are written under the repository's write lock;
    # a failed write then removes what init created (the folder and .git included).
    missing = [p for p in (target, *target.parents) if not p.exists()]
    target.mkdir(parents=True, exist_ok=True)
    initialized = False
    try:
        initialized = init_repo(target)
        apply_files(target, content)
        _wire_secret_drivers(target)
    except BaseException:
        if initialized:
            shutil.rmtree(target / ".git", ignore_errors=True)
        for folder in missing:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return InitResult(target, tuple(sorted(content)), initialized)


def _wire_secret_drivers(target: Path) -> None:
    """.gitattributes names flagstone's diff and merge drivers for secrets files; this
    clone's git config defines them (`flagstone secret drivers` does it in other clones)."""
    from flagstone import gitio
    from flagstone.errors import GitError

    # Not a repository we may configure: .gitattributes still says what to run.
    with contextlib.suppress(GitError):
        gitio.set_config(target, SECRET_DRIVERS)


SECRET_DRIVERS = {
    "diff.flagstone-secrets.textconv": "flagstone secret textconv",
    "diff.flagstone-secrets.cachetextconv": "false",
    "merge.flagstone-secrets.name": "flagstone secrets: merge by key and re-encrypt",
    "merge.flagstone-secrets.driver": "flagstone secret merge %O %A %B %P",
}
