"""Promotion: copy objects forward (dev → staging → prod), keeping the target's pinned values.

``plan_promotion`` is pure: it works out what moves (and what the selection drags along),
writes the new target files in round-trip mode — the target keeps its comments and
formatting — and validates the result. ``apply_promotion`` writes them atomically (all or
nothing) and can commit with trailers that make promotion history computable from git.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flagstone import blocks
from flagstone.blocks import Blocks
from flagstone.conditions import segments_in
from flagstone.diff import Change, diff_environments
from flagstone.edit import (
    Document,
    DocumentSet,
    Indentation,
    apply_files,
    check_write,
    delete_path,
    detect_indentation,
    merge_into,
    repository_lock,
    set_path,
)
from flagstone.errors import ConflictError, FlagstoneError, Problem
from flagstone.model import KEYED_KINDS, Environment, Kind, Repository
from flagstone.paths import MISSING, dotted_leaves, get_path
from flagstone.secrets import SECRET, Secrets
from flagstone.validate import marked_config_paths


@dataclass(frozen=True, slots=True)
class Move:
    kind: Kind
    key: str  # object key; for config the dotted prefix promoted ("" = all of it)
    reason: str  # "selected", or why a dependency came along

    @property
    def label(self) -> str:
        return f"{self.kind}.{self.key}" if self.key else self.kind


@dataclass
class Promotion:
    src: str
    dst: str
    moves: list[Move]
    files: dict[str, str]  # repository-relative path -> new text
    changes: list[Change]
    kept: list[str] = field(
        default_factory=list
    )  # pinned or secret paths left as the target had them
    skip_order_reason: str | None = None
    basis: dict[str, bytes | None] = field(default_factory=dict)  # the bytes the plan read
    existing: list[Problem] = field(default_factory=list)  # target errors it did not cause

    @property
    def empty(self) -> bool:
        return not self.changes


class PromotionInvalid(FlagstoneError):
    def __init__(self, problems: list[Problem], message: str | None = None) -> None:
        super().__init__(
            message
            or f"the promotion would leave the target invalid ({len(problems)} error(s)); nothing was written"
        )
        self.problems = problems


def plan_promotion(
    repo: Repository,
    src: str,
    dst: str,
    *,
    only: Sequence[str] = (),
    kinds: Sequence[str] = (),
    include_deps: bool = True,
    skip_order_reason: str | None = None,
    reencrypt_secrets: bool = False,
) -> Promotion:
    """What promoting ``src`` into ``dst`` would write. Secrets never travel as they are
    stored (a ciphertext is bound to its file's key): they stay as the target has them,
    or with ``reencrypt_secrets`` are decrypted with the user's identity and encrypted
    into the target's secrets file for the target's recipients."""
    source, target = repo.env(src), repo.env(dst)
    _refuse_unreadable(repo, src, dst)
    order = repo.settings.environments
    if order.index(dst) != order.index(src) + 1 and skip_order_reason is None:
        expected = order[order.index(dst) - 1] if order.index(dst) > 0 else None
        raise FlagstoneError(
            f"{src} → {dst} is out of promotion order ({' → '.join(order)})"
            + (f": promote from {expected}" if expected else "")
            + ", or pass --skip-order REASON (recorded in the commit)"
        )
    moves = _select(source, target, only, kinds)
    moves += _dependencies(source, target, moves, include_deps)
    pinned = set(repo.settings.pinned) | {
        f"config.{p}" for p in marked_config_paths(repo, "x-flagstone-pinned")
    }
    files, kept, basis = _write_targets(repo, source, target, moves, pinned, repo.secrets)
    if reencrypt_secrets:
        from flagstone.sops import reencrypt_for

        prefixes = [m.key for m in moves if m.kind == "config"]
        moved = reencrypt_for(repo.root, repo.settings.raw, src, dst, prefixes)
        if moved is not None:
            rel, text, raw, keys = moved
            files[rel] = text
            if raw is not None:
                basis[rel] = raw
            kept = [
                k for k in kept if k.removeprefix("config.").removesuffix(" (secret)") not in keys
            ]
    checked = check_write(repo, target.name, files)
    if not checked.allowed:
        raise PromotionInvalid(checked.new)
    frozen = frozen_experiment_changes(repo, target, checked.after)
    if frozen:
        raise PromotionInvalid(
            frozen,
            "the promotion would change a started experiment's design or status; nothing was written",
        )
    changes = diff_environments(target, checked.after, dst, repo.secrets)
    return Promotion(
        src, dst, moves, files, changes, kept, skip_order_reason, basis, checked.existing
    )


def _refuse_unreadable(repo: Repository, *envs: str) -> None:
    """A file that cannot be read would look like an empty one: keys "missing" in the
    source, or a target file rewritten without them. Refuse instead, naming the files."""
    from flagstone.load import UNREADABLE, environment_files, read_environment

    broken = [
        p
        for env in envs
        for p in read_environment(env, environment_files(repo.root, env))[1]
        if p.code in UNREADABLE
    ]
    if broken:
        names = ", ".join(sorted({p.file for p in broken}))
        raise PromotionInvalid(
            broken, f"cannot promote: {names} cannot be read; fix it first, nothing was written"
        )


def frozen_experiment_changes(
    repo: Repository, before: Environment, after: Environment
) -> list[Problem]:
    """A promotion may not change what a running or stopped experiment's assignment and
    analysis rest on (``experiments.FROZEN_FIELDS``): it would move enrolled units between
    arms or change what the conclusion compares; nor move its status backwards."""
    from flagstone.experiments import frozen_problems
    from flagstone.load import attach_positions, read_worktree_text

    problems = frozen_problems(
        before,
        after,
        "the promotion",
        "conclude it there first (flagstone experiment conclude), "
        "or leave the experiment out of the promotion",
    )
    return attach_positions(problems, read_worktree_text(repo.root)) if problems else []


def _select(
    source: Environment, target: Environment, only: Sequence[str], kinds: Sequence[str]
) -> list[Move]:
    for kind in kinds:
        if kind not in (*KEYED_KINDS, "config"):
            raise FlagstoneError(
                f"unknown kind {kind!r}: use flags, segments, experiments or config"
            )
    wanted_kinds = list(kinds) or [*KEYED_KINDS, "config"]
    if not only:
        moves = []
        for kind in KEYED_KINDS:
            if kind not in wanted_kinds:
                continue
            before = target.objects(kind)
            for key, obj in source.objects(kind).items():
                if key not in before or before[key].raw != obj.raw:
                    moves.append(Move(kind, key, "selected"))
        if "config" in wanted_kinds and source.config is not None:
            moves.append(Move("config", "", "selected"))
        return moves
    moves = []
    for name in only:
        if name == "config" or name.startswith("config."):
            moves.append(Move("config", name.removeprefix("config").lstrip("."), "selected"))
            continue
        kind_hint, _, key = (
            name.partition(".") if name.split(".", 1)[0] in KEYED_KINDS else ("", "", name)
        )
        found = [
            k for k in KEYED_KINDS if (not kind_hint or k == kind_hint) and key in source.objects(k)
        ]
        if not found:
            raise FlagstoneError(
                f"{name!r} is not a flag, segment or experiment in {source.name} "
                "(write config keys as config.some.key)"
            )
        if len(found) > 1:
            raise FlagstoneError(
                f"{key!r} is a {' and a '.join(k[:-1] for k in found)} in {source.name}; "
                f"name one: {', '.join(f'{k}.{key}' for k in found)}"
            )
        moves.append(Move(found[0], key, "selected"))
    return moves


def _dependencies(
    source: Environment, target: Environment, moves: list[Move], include: bool
) -> list[Move]:
    moving = {(m.kind, m.key) for m in moves}
    found: list[Move] = []
    queue = list(moves)
    while queue:
        move = queue.pop(0)
        needs: list[tuple[Kind, str, str]] = []
        if move.kind == "flags":
            flag = source.flags[move.key]
            for rule in flag.rules:
                if rule.segment:
                    needs.append(("segments", rule.segment, f"used by flag {move.key}"))
                needs += [
                    ("segments", s, f"used by flag {move.key}")
                    for s in segments_in(rule.when or {})
                ]
            needs += [
                ("flags", p.flag, f"a prerequisite of flag {move.key}") for p in flag.prerequisites
            ]
        elif move.kind == "segments":
            needs += [
                ("segments", s, f"used by segment {move.key}")
                for s in segments_in(source.segments[move.key].when)
            ]
        elif move.kind == "experiments":
            experiment = source.experiments[move.key]
            needs.append(("flags", experiment.flag, f"the flag of experiment {move.key}"))
            needs += [
                ("segments", s, f"in experiment {move.key}'s audience")
                for s in segments_in(experiment.audience or {})
            ]
        for kind, key, reason in needs:
            if (kind, key) in moving or key in target.objects(kind):
                continue
            if not include:
                raise FlagstoneError(
                    f"{move.label} needs {kind[:-1]} {key!r}, which {target.name} lacks: "
                    "promote it too (drop --no-deps) or name it with --only"
                )
            dependency = Move(kind, key, reason)
            moving.add((kind, key))
            found.append(dependency)
            queue.append(dependency)
    return found


def _write_targets(
    repo: Repository,
    source: Environment,
    target: Environment,
    moves: Sequence[Move],
    pinned: set[str],
    secrets: Secrets,
) -> tuple[dict[str, str], list[str], dict[str, bytes | None]]:
    docs = DocumentSet(repo.root)
    document = docs.__getitem__
    kept: list[str] = []
    spliced, basis, rest = _splice_objects(
        repo, source, target, [m for m in moves if m.kind != "config"], pinned, kept
    )
    for move in moves:
        if move.kind == "config":
            kept += _promote_config(repo, source, target, move.key, pinned, secrets, document)
    for move in rest:
        node = copy.deepcopy(document(source.file_for(move.kind, move.key)).data[move.key])
        target_doc = document(target.file_for(move.kind, move.key))
        old = target_doc.data.get(move.key)
        kept += _restore_pinned(node, old, move, pinned)
        # Merged in place, the target keeps its own comments on the object.
        merge_into(target_doc.data, move.key, node)
    texts = {**docs.texts(under=f"{target.directory}/"), **spliced}
    return texts, kept, {**docs.basis, **basis}


def _restore_pinned(node: Any, old: Any, move: Move, pinned: set[str]) -> list[str]:
    """Put the target's pinned values of ``move``'s object back into ``node``."""
    kept = []
    prefix = f"{move.kind}.{move.key}."
    for path in sorted(pinned):
        if path.startswith(prefix) and old is not None:
            field_path = tuple(path[len(prefix) :].split("."))
            restored = get_path(old, field_path)
            if restored is not MISSING:
                set_path(node, field_path, copy.deepcopy(restored))
                kept.append(path)
    return kept


def _file_blocks(root: Path, rel: str) -> tuple[bytes | None, str, Blocks | None]:
    from flagstone.load import MAX_FILE_BYTES

    path = root / rel
    if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
        # before any parse: a round trip of a huge file costs minutes and gigabytes
        raise FlagstoneError(
            f"{rel} is {path.stat().st_size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit; "
            "split the kind into a folder of files (flags/*.yaml)"
        )
    raw = path.read_bytes() if path.is_file() else None
    try:
        text = (raw or b"").decode("utf-8")
    except UnicodeDecodeError:
        return raw, "", None
    return raw, text, blocks.split(text)


def _splice_objects(
    repo: Repository,
    source: Environment,
    target: Environment,
    moves: Sequence[Move],
    pinned: set[str],
    kept: list[str],
) -> tuple[dict[str, str], dict[str, bytes | None], list[Move]]:
    """Promote objects block by block: each target file keeps every byte outside the
    blocks of the objects that move, and no whole file is parsed in round-trip mode — the
    difference between seconds and milliseconds for 500 objects in a 3,000-flag file.

    A moved object is copied as the source writes it when the files share one indentation
    style and the target's block has no comments; otherwise its two blocks alone are
    merged in round-trip mode (``merge_into``: the target keeps its comments and style).
    Files that cannot be cut safely come back in the third list for the whole-file path.
    """
    by_file: dict[str, list[Move]] = {}
    for move in moves:
        by_file.setdefault(target.file_for(move.kind, move.key), []).append(move)
    sources: dict[str, tuple[Indentation, Blocks | None]] = {}

    def source_blocks(rel: str, kind: Kind) -> tuple[Indentation, Blocks | None]:
        if rel not in sources:
            _, text, found = _file_blocks(repo.root, rel)
            usable = found if _matches(found, source, kind, rel) else None
            sources[rel] = (detect_indentation(text), usable)
        return sources[rel]

    texts: dict[str, str] = {}
    basis: dict[str, bytes | None] = {}
    rest: list[Move] = []
    for rel, file_moves in by_file.items():
        raw, text, found = _file_blocks(repo.root, rel)
        kind = file_moves[0].kind
        if raw is None:
            found = blocks.Blocks([], {})
        if found is None or not _matches(found, target, kind, rel):
            rest += file_moves
            continue
        style = detect_indentation(text) if text else None
        replace: dict[str, str] = {}
        append: list[str] = []
        for move in file_moves:
            src_rel = source.file_for(move.kind, move.key)
            src_style, src_found = source_blocks(src_rel, move.kind)
            if src_found is None or move.key not in src_found.spans:
                break
            new = src_found.text(move.key)
            old_obj = target.objects(move.kind).get(move.key)
            touches_pinned = old_obj is not None and any(
                p.startswith(f"{move.kind}.{move.key}.") for p in pinned
            )
            old_block = found.text(move.key) if move.key in found.spans else None
            if (
                touches_pinned
                or (old_block is not None and "#" in old_block)
                or (style is not None and src_style != style)
            ):
                new = _merge_block(new, old_block, move, pinned, style or src_style, kept)
            if old_block is None:
                append.append(new)
            elif new != old_block:
                replace[move.key] = new
        else:
            texts[rel] = found.splice(replace, append)
            basis[rel] = raw
            continue
        rest += file_moves
    return {rel: t for rel, t in texts.items() if t.encode("utf-8") != basis[rel]}, basis, rest


def _matches(found: Blocks | None, env: Environment, kind: Kind, rel: str) -> bool:
    """Whether the cut agrees with what the YAML parser read: the same top-level keys."""
    if found is None:
        return False
    in_file = {key for key, obj in env.objects(kind).items() if obj.file == rel}
    return set(found.spans) == in_file


def _merge_block(
    new_block: str,
    old_block: str | None,
    move: Move,
    pinned: set[str],
    style: Indentation,
    kept: list[str],
) -> str:
    """Merge one object's source block into its target block in round-trip mode."""
    node = Document.parse(new_block).data[move.key]
    doc = Document.parse(old_block or "")
    doc.indentation = style
    kept += _restore_pinned(node, doc.data.get(move.key), move, pinned)
    merge_into(doc.data, move.key, node)
    return doc.dump()


def _promote_config(
    repo: Repository,
    source: Environment,
    target: Environment,
    prefix: str,
    pinned: set[str],
    secrets: Secrets,
    document: Any,
) -> list[str]:
    if source.config is None:
        return []
    src_doc = document(source.file_for("config"))
    dst_doc = document(target.file_for("config"))
    kept = []
    src_leaves = dict(dotted_leaves(src_doc.data))
    dst_leaves = dict(dotted_leaves(dst_doc.data))
    in_scope = [
        k
        for k in {**dst_leaves, **src_leaves}
        if not prefix or k == prefix or k.startswith(prefix + ".")
    ]
    for dotted in sorted(in_scope):
        is_pinned = any(
            dotted == p.removeprefix("config.")
            or dotted.startswith(p.removeprefix("config.") + ".")
            for p in pinned
            if p.startswith("config.")
        )
        secret = secrets.is_secret(dotted, src_leaves.get(dotted)) or secrets.is_secret(
            dotted, dst_leaves.get(dotted)
        )
        if is_pinned or secret:
            if src_leaves.get(dotted, MISSING) != dst_leaves.get(dotted, MISSING):
                kept.append(f"config.{dotted}" + (" (secret)" if secret and not is_pinned else ""))
            continue
        path = tuple(dotted.split("."))
        if dotted in src_leaves:
            set_path(dst_doc.data, path, copy.deepcopy(src_leaves[dotted]), create=True)
        else:
            delete_path(dst_doc.data, path)
    return kept


def apply_promotion(
    root: Path,
    promotion: Promotion,
    *,
    commit: bool = False,
    branch: str | None = None,
    expect_target_rev: str | None = None,
    message: str | None = None,
) -> str | None:
    """Write the promotion (all files or none); with ``commit``, commit it. Returns the sha.

    Runs under the repository's write lock and refuses if a file the plan read changed
    since (another writer): the commit then records exactly what was reviewed.
    """
    from flagstone import gitio

    target_dir = f"environments/{promotion.dst}"
    source_dir = f"environments/{promotion.src}"
    with repository_lock(root):
        if expect_target_rev is not None and gitio.changed_since(
            root, expect_target_rev, [target_dir]
        ):
            raise ConflictError(
                f"{promotion.dst} changed since {expect_target_rev}: review the promotion again"
            )
        trailers = None
        if commit:
            if not gitio.is_clean(root, [target_dir]):
                raise ConflictError(
                    f"{target_dir}/ has uncommitted changes: commit or stash them before promoting with --commit"
                )
            if not gitio.is_clean(root, [source_dir]):
                # Flagstone-Source must name a commit that holds what is promoted.
                raise ConflictError(
                    f"{source_dir}/ has uncommitted changes: commit them first, so that the "
                    "promotion names the commit it copies from"
                )
            trailers = {
                "Flagstone-Promote": f"{promotion.src} -> {promotion.dst}",
                "Flagstone-Source": gitio.head_sha(root) or "uncommitted",
                "Flagstone-Keys": ", ".join(m.label for m in promotion.moves),
            }
            if promotion.skip_order_reason:
                trailers["Flagstone-Skip-Order"] = promotion.skip_order_reason
        previous = gitio.create_branch(root, branch) if branch is not None else None
        try:
            return apply_files(
                root,
                promotion.files,
                commit=(message or promotion_message(promotion)) if commit else None,
                trailers=trailers,
                basis=promotion.basis,
            )
        except BaseException:
            if branch is not None and previous is not None:
                gitio.leave_branch(root, branch, previous)
            raise


def promotion_message(promotion: Promotion) -> str:
    lines = [f"Promote {promotion.src} → {promotion.dst}: {len(promotion.moves)} object(s)", ""]
    lines += [
        f"- {c.kind[:-1] if c.kind != 'config' else 'config'} {c.key}: {c.summary}"
        for c in promotion.changes
    ]
    if promotion.kept:
        lines += ["", "Kept in " + promotion.dst + ": " + ", ".join(promotion.kept)]
    if promotion.skip_order_reason:
        lines += ["", f"Out of order: {promotion.skip_order_reason}"]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Drift:
    kind: str
    key: str
    state: str  # "not promoted yet", "only in <later>: flow it back", "differs"
    changes: tuple[str, ...]


def drift(repo: Repository, earlier: str, later: str) -> list[Drift]:
    """What differs between two environments, beyond pinned values."""
    a, b = repo.env(earlier), repo.env(later)
    pinned = set(repo.settings.pinned) | {
        f"config.{p}" for p in marked_config_paths(repo, "x-flagstone-pinned")
    }
    out: dict[tuple[str, str], list[Change]] = {}
    for change in diff_environments(a, b, f"{earlier} → {later}", repo.secrets):
        dotted = f"{change.kind}.{change.key}" + (f".{change.field}" if change.field else "")
        if any(dotted == p or dotted.startswith(p + ".") for p in pinned):
            continue
        if change.kind == "config" and SECRET in (change.old, change.new):
            continue  # secrets differ per environment by design: promotion never copies them
        out.setdefault((change.kind, change.key), []).append(change)
    result = []
    for (kind, key), changes in sorted(out.items()):
        action = changes[0].action
        state = {
            "removed": f"only in {earlier}: not promoted to {later} yet",
            "added": f"only in {later}: flow it back to {earlier}",
        }.get(action, f"differs: {later} is not {earlier}'s")
        result.append(Drift(kind, key, state, tuple(c.summary for c in changes)))
    return result
