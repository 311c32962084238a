"""Who uses an object: what stops a flag or segment from being deleted, in words."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from flagstone.conditions import segments_in
from flagstone.errors import DocPath
from flagstone.model import Environment, Kind


@dataclass(frozen=True, slots=True, order=True)
class Reference:
    kind: Kind  # the kind of the object that refers
    key: str
    where: str  # "as a prerequisite", "in rule 2", "in its audience", "as its flag", ...
    file: str = field(compare=False, default="")
    path: DocPath = field(compare=False, default=())  # where in the file, for file:line:col

    def __str__(self) -> str:
        return f"{self.kind[:-1]} {self.key} ({self.where})"


def references_to(env: Environment, kind: Kind, key: str) -> list[Reference]:
    """Every object in ``env`` that names the flag or segment ``key``, sorted."""
    return sorted(_flag_references(env, key) if kind == "flags" else _segment_references(env, key))


def _flag_references(env: Environment, key: str) -> Iterator[Reference]:
    for other in env.flags.values():
        for index, prerequisite in enumerate(other.raw.get("prerequisites") or ()):
            if other.key != key and prerequisite.get("flag") == key:
                where: DocPath = (other.key, "prerequisites", index)
                yield Reference("flags", other.key, "as a prerequisite", other.file, where)
    for experiment in env.experiments.values():
        if experiment.raw.get("flag") == key:
            yield Reference(
                "experiments",
                experiment.key,
                "as its flag",
                experiment.file,
                (experiment.key, "flag"),
            )


def _segment_references(env: Environment, key: str) -> Iterator[Reference]:
    for flag in env.flags.values():
        for index, rule in enumerate(flag.raw.get("rules") or ()):
            if rule.get("segment") == key or key in segments_in(rule.get("when")):
                where: DocPath = (flag.key, "rules", index)
                yield Reference("flags", flag.key, f"in rule {index + 1}", flag.file, where)
    for segment in env.segments.values():
        if segment.key != key and key in segments_in(segment.raw.get("when")):
            yield Reference(
                "segments", segment.key, "in its condition", segment.file, (segment.key, "when")
            )
    for experiment in env.experiments.values():
        if key in segments_in(experiment.raw.get("audience")):
            where = (experiment.key, "audience")
            yield Reference(
                "experiments", experiment.key, "in its audience", experiment.file, where
            )
