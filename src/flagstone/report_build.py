"""What ``flagstone build`` did, as data (exported by ``flagstone.report`` with every other
result): a module of its own, so a build imports none of the other result types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flagstone.errors import Problem


@dataclass(frozen=True, slots=True)
class BuiltBundle:
    env: str
    path: str
    format: str  # flagstone or flagd
    hash: str | None = None
    flags: int = 0
    dirty: bool = False  # built from uncommitted changes
    signed: bool = False


@dataclass(frozen=True, slots=True)
class BuildResult:
    bundles: Sequence[BuiltBundle] = ()
    problems: Sequence[Problem] = ()  # errors that refused the build, or export warnings
    dry_run: bool = False  # computed, not written

    @property
    def ok(self) -> bool:
        return not any(p.is_error for p in self.problems)

    def built_lines(self) -> str:
        """One line per bundle written (or that would be, ``dry_run``): its text output."""
        verb = "would write" if self.dry_run else "wrote"
        lines = []
        for bundle in self.bundles:
            if bundle.format == "flagd":
                lines.append(f"{verb} {bundle.path} (flagd)\n")
                continue
            note = " from uncommitted changes" if bundle.dirty else ""
            lines.append(
                f"{verb} {bundle.path}  {(bundle.hash or '')[:19]}  {bundle.flags} flags{note}"
                + ("  signed" if bundle.signed else "")
                + "\n"
            )
        return "".join(lines)

    def payload(self) -> dict[str, Any]:
        from flagstone.report import problem_dict

        return {
            "bundles": [
                {
                    "env": b.env,
                    "path": b.path,
                    "format": b.format,
                    "hash": b.hash,
                    "flags": b.flags,
                    "dirty": b.dirty,
                    "signed": b.signed,
                }
                for b in self.bundles
            ],
            "dry_run": self.dry_run,
            "problems": [problem_dict(p) for p in self.problems],
        }
