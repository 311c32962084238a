"""`flagstone verify`: commits that touch a protected environment must follow the policy.

The policy and the allowed-signers file are read from the *base* of the range, never
from the commits being verified, so a pull request cannot authorize itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flagstone import gitio
from flagstone.errors import FlagstoneError, LoadError
from flagstone.load import load_settings, read_environment
from flagstone.model import ENVIRONMENTS_DIR, SETTINGS_FILE, Protection


@dataclass(frozen=True, slots=True)
class Violation:
    commit: str
    subject: str
    author: str
    env: str
    rule: str  # signature, author, promotion
    reason: str


def default_range(root: Path) -> str:
    gitio.ensure_repo(root)
    for base in ("origin/main", "origin/master"):
        try:
            gitio.resolve(root, base)
        except FlagstoneError:
            continue
        return f"{base}..HEAD"
    raise FlagstoneError(
        "no origin/main to compare with: pass --range BASE..HEAD (in CI, the pull request's base)"
    )


def verify_range(root: Path, rev_range: str) -> list[Violation]:
    if ".." not in rev_range:
        raise FlagstoneError("--range takes BASE..HEAD")
    base, head = rev_range.split("..", 1)
    base_sha = gitio.resolve(root, base)
    settings_bytes = gitio.show(root, base_sha, SETTINGS_FILE)
    if settings_bytes is None:
        raise FlagstoneError(
            f"{SETTINGS_FILE} does not exist at {base}: the policy is read from the base of the range"
        )
    try:
        settings = load_settings(settings_bytes)
    except LoadError as e:
        raise FlagstoneError(f"{SETTINGS_FILE} at {base} cannot be read: {e}") from None
    protected = settings.protected
    if not protected:
        return []
    signers_files = {env: p.allowed_signers for env, p in protected.items() if p.require_signature}
    signers = b""  # one file: every protected environment's signers
    for env, rel in signers_files.items():
        if rel is None:
            raise FlagstoneError(
                f"policy for {env} requires signatures but names no allowed_signers file"
            )
        data = gitio.show(root, base_sha, rel)
        if data is None:
            raise FlagstoneError(f"the allowed signers file {rel} does not exist at {base}")
        signers += data if data.endswith(b"\n") else data + b"\n"
    # A merge brings in commits that are checked themselves (or were already in the
    # base); its first-parent diff would re-attribute main's changes to it.
    entries = gitio.log(
        root, f"{base_sha}..{head or 'HEAD'}", raw=True, merges=False, allowed_signers=signers
    )
    violations: list[Violation] = []
    for info, files in entries:
        envs = sorted(
            {
                parts[1]
                for _, rel, _, _ in files
                if len(parts := rel.split("/")) > 2 and parts[0] == ENVIRONMENTS_DIR
            }
        )
        for env in envs:
            protection = protected.get(env)
            if protection is not None:
                violations += check_commit(root, info, env, protection, settings.pinned)
    return violations


def check_commit(
    root: Path, info: gitio.CommitInfo, env: str, protection: Protection, pinned: tuple[str, ...]
) -> list[Violation]:
    out = []

    def violation(rule: str, reason: str) -> None:
        out.append(
            Violation(
                info.sha,
                info.subject,
                f"{info.author_name} <{info.author_email}>",
                env,
                rule,
                reason,
            )
        )

    if protection.require_signature and info.signature != "G":
        described = {
            "N": "is not signed",
            "U": "is signed by a key that is not an allowed signer",
            "B": "has a bad signature",
            "E": "has a signature that cannot be checked",
        }
        violation(
            "signature",
            f"changes {env} but {described.get(info.signature, f'has signature status {info.signature}')}",
        )
    if protection.allowed_authors is not None and info.author_email.lower() not in {
        a.lower() for a in protection.allowed_authors
    }:
        violation("author", f"{info.author_email} may not change {env}")
    if protection.promote_from is not None:
        reason = _promotion_problem(root, info, env, protection.promote_from, pinned)
        if reason:
            violation("promotion", reason)
    return out


def _promotion_problem(
    root: Path, info: gitio.CommitInfo, env: str, source_env: str, pinned: tuple[str, ...]
) -> str | None:
    expected = f"{source_env} -> {env}"
    trailer = info.trailers.get("Flagstone-Promote")
    if trailer != expected:
        return f"changes {env} directly; changes must arrive by promotion ({expected})"
    source = info.trailers.get("Flagstone-Source")
    if not source:
        return "has no Flagstone-Source trailer naming the promoted revision"
    try:
        source_sha = gitio.resolve(root, source)
    except FlagstoneError:
        return f"names Flagstone-Source {source}, which is not in this repository"
    keys = [k.strip() for k in info.trailers.get("Flagstone-Keys", "").split(",") if k.strip()]
    src_env = read_environment(
        source_env, gitio.tree_files(root, source_sha, f"{ENVIRONMENTS_DIR}/{source_env}")
    )[0]
    dst_env = read_environment(env, gitio.tree_files(root, info.sha, f"{ENVIRONMENTS_DIR}/{env}"))[
        0
    ]
    for label in keys:
        kind, _, key = label.partition(".")
        if kind == "config":
            continue  # config keeps pinned values; its keys are checked leaf by leaf below
        if kind not in ("flags", "segments", "experiments"):
            return f"Flagstone-Keys names {label!r}, which is not a flag, segment or experiment"
        theirs = src_env.objects(kind).get(key)  # type: ignore[arg-type]
        ours = dst_env.objects(kind).get(key)  # type: ignore[arg-type]
        if (
            theirs is None
            or ours is None
            or _unpinned(theirs.raw, kind, key, pinned) != _unpinned(ours.raw, kind, key, pinned)
        ):
            return f"claims to promote {label} from {source_env}@{source_sha[:12]}, but {env}'s {label} differs from it"
    return None


def _unpinned(raw: Any, kind: str, key: str, pinned: tuple[str, ...]) -> Any:
    prefix = f"{kind}.{key}."
    fields = {p[len(prefix) :].split(".")[0] for p in pinned if p.startswith(prefix)}
    return {k: v for k, v in raw.items() if k not in fields} if isinstance(raw, dict) else raw
