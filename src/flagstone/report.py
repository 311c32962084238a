"""What every command reports, as data, and its plain-string renderings (pure).

One result type per command outcome. Each says whether it is ``ok`` (exit code 0), gives
its command-specific JSON keys (``payload``) and, where the format makes sense, its
markdown and GitHub-annotation forms. ``document`` wraps a payload in the envelope every
command shares, ``{"ok": bool, …}``, and ``error_document`` is the envelope of an
expected failure, ``{"ok": false, "error": {"code", "message"}}``; the JSON Schemas in
``schemas/cli/`` describe both. Rich text rendering lives in ``cli/output.py``.

Rules are 1-based in everything a user reads, JSON included: ``"rule": 1`` is the first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from flagstone.errors import FlagstoneError, LoadError, Problem, format_path
from flagstone.model import enabled_of, traffic_of
from flagstone.report_build import BuildResult, BuiltBundle

if TYPE_CHECKING:
    from flagstone.diff import Change
    from flagstone.history import HistoryEntry, Restoration
    from flagstone.policy import Violation
    from flagstone.promote import Drift, Promotion
    from flagstone.runtime.evaluate import Resolution
    from flagstone.scaffold import InitResult
    from flagstone.spec import SpecReport


@runtime_checkable
class Result(Protocol):
    """A command's outcome; ``ok`` is true exactly when the command exits 0."""

    @property
    def ok(self) -> bool: ...

    def payload(self) -> dict[str, Any]: ...


def document(result: Result) -> dict[str, Any]:
    return {**result.payload(), "ok": result.ok}


def dumps(doc: Mapping[str, Any]) -> str:
    """The one JSON encoding of command output: sorted keys, standard JSON only, and no
    secret this process has decrypted or read (``secrets.redact_text``)."""
    from flagstone.secrets import redact_text

    try:
        text = json.dumps(doc, sort_keys=True, indent=2, allow_nan=False, default=str)
    except ValueError:
        raise FlagstoneError(
            "the output holds NaN or Infinity, which JSON cannot represent; "
            "run `flagstone validate` to find the value"
        ) from None
    return redact_text(text) + "\n"


def error_document(error: FlagstoneError) -> dict[str, Any]:
    detail: dict[str, Any] = {"code": error.code, "message": str(error)}
    if isinstance(error, LoadError):
        detail["problem"] = problem_dict(error.problem)
    return {"ok": False, "error": detail}


def usage_error_document(message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": "usage", "message": message}}


def one_based(index: int | None) -> int | None:
    return None if index is None else index + 1


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _cell(text: object) -> str:
    """A markdown table cell: pipes escaped, newlines folded."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _text(text: object) -> str:
    """Repository or commit text (an author, a value) for a markdown table cell: shown as
    written, never as markup, HTML or an @mention (``_cell`` then escapes its pipes)."""
    from flagstone.report_diff import escape

    return escape(str(text)).replace("\\|", "|")


def _code(text: object) -> str:
    value = str(text).replace("`", "'").replace("\n", " ")
    return f"`{value}`"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --- problems (validate, and the findings of every writer) ----------------------------


def problem_dict(p: Problem) -> dict[str, object]:
    return {
        "file": p.file,
        "line": p.line,
        "column": p.col,
        "severity": p.severity,
        "code": p.code,
        "message": p.message,
        "path": list(p.path),
        "hint": p.hint,
    }


def _escape_data(text: str) -> str:
    # GitHub workflow commands: https://docs.github.com/actions/reference/workflow-commands
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def problems_github(problems: Sequence[Problem], *, strict: bool = False) -> str:
    lines = []
    for p in problems:
        level = "error" if p.is_error or strict else "warning"
        message = p.message + (f" ({p.hint})" if p.hint else "")
        lines.append(
            f"::{level} file={_escape_property(p.file)},line={p.line},col={p.col},"
            f"title={_escape_property('flagstone ' + p.code)}::{_escape_data(message)}"
        )
    return "".join(line + "\n" for line in lines)


def problems_markdown(problems: Sequence[Problem], title: str = "flagstone validate") -> str:
    errors = sum(1 for p in problems if p.is_error)
    if not problems:
        return f"**{title}**: no problems found.\n"
    header = f"**{title}**: {errors} error(s), {len(problems) - errors} warning(s)\n\n"
    rows = [
        ("❌" if p.is_error else "⚠️", _code(f"{p.file}:{p.line}:{p.col}"), p.message, _code(p.code))
        for p in problems
    ]
    return header + _table(("", "location", "problem", "code"), rows)


@dataclass(frozen=True, slots=True)
class Validation:
    problems: Sequence[Problem]
    strict: bool = False  # warnings fail too
    checked: str = ""  # what was checked, for the summary line

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.is_error)

    @property
    def warnings(self) -> int:
        return len(self.problems) - self.errors

    @property
    def ok(self) -> bool:
        return self.errors == 0 and not (self.strict and self.warnings)

    def payload(self) -> dict[str, Any]:
        return {
            "errors": self.errors,
            "warnings": self.warnings,
            "strict": self.strict,
            "problems": [problem_dict(p) for p in self.problems],
        }

    def markdown(self) -> str:
        return problems_markdown(self.problems)

    def github(self) -> str:
        return problems_github(self.problems, strict=self.strict)


# --- test -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpecRun:
    report: SpecReport

    @property
    def ok(self) -> bool:
        return self.report.ok

    def payload(self) -> dict[str, Any]:
        r = self.report
        return {
            "passed": sum(c.passed for c in r.results),
            "failed": len(r.failed),
            "results": [
                {
                    "file": c.file,
                    "line": c.line,
                    "column": c.col,
                    "case": c.index,
                    "env": c.env,
                    "name": c.name,
                    "passed": c.passed,
                    "failures": list(c.failures),
                    "trace": list(c.trace),
                }
                for c in r.results
            ],
            "problems": [problem_dict(p) for p in r.problems],
        }

    def markdown(self) -> str:
        r = self.report
        passed = sum(c.passed for c in r.results)
        icon = "✅" if r.ok else "❌"
        out = f"**flagstone test** {icon} {passed} passed, {len(r.failed)} failed\n"
        if r.failed:
            rows = [
                (_code(f"{c.file}:{c.line}:{c.col}"), c.env, c.name, "; ".join(c.failures))
                for c in r.failed
            ]
            out += "\n" + _table(("case", "env", "name", "failure"), rows)
        if r.problems:
            out += "\n" + problems_markdown(r.problems, "unreadable specs")
        return out


# --- eval -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlagEvaluation:
    flag: str
    resolution: Resolution
    trace: tuple[str, ...] | None = None  # with --explain

    def as_dict(self) -> dict[str, Any]:
        r = self.resolution
        doc = {
            "flag": self.flag,
            "value": r.value,
            "variant": r.variant,
            "reason": r.reason,
            "rule": one_based(r.rule_index),
            "bucket": r.bucket,
            "experiment": r.experiment,
            "message": r.message,
        }
        if self.trace is not None:
            doc["trace"] = list(self.trace)
        return doc


@dataclass(frozen=True, slots=True)
class Evaluation:
    """``eval FLAG``: one flag's answer at the top level; ``eval --all``: ``flags``."""

    env: str
    results: Sequence[FlagEvaluation]
    every_flag: bool = False
    ok: bool = True

    def payload(self) -> dict[str, Any]:
        if self.every_flag:
            return {"env": self.env, "flags": [r.as_dict() for r in self.results]}
        return {"env": self.env, **self.results[0].as_dict()}

    def markdown(self) -> str:
        rows = [
            (
                _code(r.flag),
                _code(r.resolution.variant),
                _code(json.dumps(r.resolution.value, default=str)),
                r.resolution.reason,
                "" if r.resolution.rule_index is None else r.resolution.rule_index + 1,
            )
            for r in self.results
        ]
        return _table(("flag", "variant", "value", "reason", "rule"), rows)


# --- diff, promote, drift -------------------------------------------------------------


def changes_payload(changes: Sequence[Change]) -> dict[str, Any]:
    from flagstone.diff import count, review_warnings

    return {
        "equal": not changes,
        "counts": count(changes),
        "changes": [c.as_dict() for c in changes],
        "warnings": [
            {"env": w.env, "kind": w.kind, "key": w.key, "message": w.message}
            for w in review_warnings(changes)
        ],
    }


@dataclass(frozen=True, slots=True)
class DiffResult:
    changes: Sequence[Change]
    env_order: Sequence[str]
    title: str
    fail_on_changes: bool = False  # --exit-code
    # Files that could not be read at a revision: reported, never shown as changes.
    problems: Sequence[Problem] = ()

    @property
    def ok(self) -> bool:
        return not (self.fail_on_changes and self.changes) and not self.problems

    def payload(self) -> dict[str, Any]:
        return {
            **changes_payload(self.changes),
            "problems": [problem_dict(p) for p in self.problems],
        }

    def markdown(self) -> str:
        from flagstone.report_diff import MARKER, changes_markdown, code, escape

        text = changes_markdown(self.changes, self.env_order, self.title)
        if not self.problems:
            return text
        # Right after the marker: a reviewer sees first that the diff is incomplete.
        errors = [
            f"> ❌ {code(f'{p.file}:{p.line}:{p.col}')} cannot be read: {escape(p.message)}"
            for p in self.problems
        ]
        return text.replace(
            MARKER + "\n",
            MARKER + "\n" + "\n".join(errors) + "\n\n"
            "> Changes in those files are not shown: fix them, then the diff is complete.\n\n",
            1,
        )


@dataclass(frozen=True, slots=True)
class PromotionResult:
    src: str
    dst: str
    plan: Promotion | None
    env_order: Sequence[str] = ()
    dry_run: bool = False
    written: bool = False
    commit: str | None = None
    problems: Sequence[Problem] = ()  # why the promotion was refused
    refusal: str | None = None  # the refusal in one sentence

    @property
    def ok(self) -> bool:
        return self.plan is not None and not any(p.is_error for p in self.problems)

    def payload(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "src": self.src,
            "dst": self.dst,
            "dry_run": self.dry_run,
            "written": self.written,
            "commit": self.commit,
            "moves": [
                {"kind": m.kind, "key": m.key, "reason": m.reason}
                for m in (plan.moves if plan else ())
            ],
            "kept": list(plan.kept) if plan else [],
            "files": sorted(plan.files) if plan else [],
            **changes_payload(plan.changes if plan else ()),
            "problems": [problem_dict(p) for p in self.problems],
            "refusal": self.refusal,
        }

    def markdown(self) -> str:
        from flagstone.report_diff import changes_markdown

        if self.plan is None:
            return problems_markdown(self.problems, f"promote {self.src} → {self.dst} refused")
        text = changes_markdown(
            self.plan.changes, self.env_order, f"promote {self.src} → {self.dst}"
        )
        extra = [
            f"- also promoting {m.kind[:-1]} {_code(m.key)}: {m.reason}"
            for m in self.plan.moves
            if m.reason != "selected"
        ]
        if self.plan.kept:
            extra.append(f"- kept in {self.dst}: " + ", ".join(_code(k) for k in self.plan.kept))
        return text + ("\n" + "\n".join(extra) + "\n" if extra else "")


def kind_word(kind: str) -> str:
    return kind[:-1] if kind.endswith("s") else kind


@dataclass(frozen=True, slots=True)
class DriftResult:
    earlier: str
    later: str
    found: Sequence[Drift]

    @property
    def ok(self) -> bool:
        return not self.found

    def payload(self) -> dict[str, Any]:
        return {
            "earlier": self.earlier,
            "later": self.later,
            "drift": [
                {"kind": d.kind, "key": d.key, "state": d.state, "changes": list(d.changes)}
                for d in self.found
            ],
        }

    def markdown(self) -> str:
        if not self.found:
            return (
                f"**flagstone drift**: {self.later} matches {self.earlier} (pinned values aside)\n"
            )
        rows = [
            (kind_word(d.kind), _code(d.key), d.state, "; ".join(d.changes)) for d in self.found
        ]
        return (
            f"**flagstone drift {self.earlier} {self.later}**: {_plural(len(self.found), 'difference')}\n\n"
            + _table(("kind", "key", "state", "changes"), rows)
        )


# --- history, rollback, revert, verify ------------------------------------------------

# git's %G?, checked against the policy's allowed-signers files (history, verify).
SIGNATURES = {
    "G": "good signature",
    "U": "unknown key",
    "N": "unsigned",
    "B": "bad signature",
    "X": "expired signature",
    "Y": "expired key",
    "R": "revoked key",
    "E": "unknown key",  # the key to check it with is not available
}


def signature_words(code: str) -> str:
    return SIGNATURES.get(code, code)


PROMOTION_TRAILERS = ("Flagstone-Promote", "Flagstone-Source", "Flagstone-Keys")


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """``history KEY`` (one key) or ``history`` (the audit log: every key). Not ok when a
    file could not be read at some revision: that is reported, never taken for a change."""

    key: str | None
    entries: Sequence[HistoryEntry]
    envs: Sequence[str] = ()

    @property
    def ok(self) -> bool:
        return not any(e.problem is not None for e in self.entries)

    def payload(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "envs": list(self.envs),
            "entries": [
                {
                    "commit": e.commit.sha,
                    "date": e.commit.date.isoformat(),
                    "author": e.commit.author_name,
                    "email": e.commit.author_email,
                    "signature": e.commit.signature,
                    "signature_status": signature_words(e.commit.signature),
                    "subject": e.commit.subject,
                    "trailers": {
                        k: v for k, v in e.commit.trailers.items() if k.startswith("Flagstone-")
                    },
                    "env": e.env,
                    "kind": e.kind,
                    "key": e.key,
                    "action": e.action,
                    "changes": list(e.changes),
                    "problem": problem_dict(e.problem) if e.problem is not None else None,
                }
                for e in self.entries
            ],
        }

    def markdown(self) -> str:
        rows = [
            (
                f"{e.commit.date:%Y-%m-%d %H:%M}",
                _text(e.commit.author_name),
                _code(e.commit.sha[:12]),
                signature_words(e.commit.signature),
                _text(e.env),
                _code(e.key),
                ("❌ " if e.problem else "") + _text("; ".join(e.changes)),
            )
            for e in self.entries
        ]
        return _table(("date", "author", "commit", "signature", "env", "key", "change"), rows)


@dataclass(frozen=True, slots=True)
class RestorationResult:
    """``rollback`` and ``revert``: the planned restorations and what was written."""

    plans: Sequence[Restoration]
    dry_run: bool = False
    written: bool = False
    commits: Mapping[str, str | None] = field(default_factory=dict)  # env -> commit sha
    problems: Sequence[Problem] = ()
    refusal: str | None = None  # why the restoration was refused, in one sentence
    declined: bool = False  # the user answered no

    @property
    def ok(self) -> bool:
        return not self.declined and not any(p.is_error for p in self.problems)

    def payload(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "written": self.written,
            "restorations": [
                {
                    "env": p.env,
                    "message": p.message,
                    "files": sorted(p.files),
                    "commit": self.commits.get(p.env),
                    **changes_payload(p.changes),
                }
                for p in self.plans
            ],
            "problems": [problem_dict(p) for p in self.problems],
            "refusal": self.refusal,
        }


@dataclass(frozen=True, slots=True)
class VerifyResult:
    range: str
    violations: Sequence[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations

    def payload(self) -> dict[str, Any]:
        return {
            "range": self.range,
            "violations": [
                {
                    "commit": v.commit,
                    "subject": v.subject,
                    "author": v.author,
                    "env": v.env,
                    "rule": v.rule,
                    "reason": v.reason,
                }
                for v in self.violations
            ],
        }

    def markdown(self) -> str:
        if not self.violations:
            return f"**flagstone verify**: every commit in {_code(self.range)} follows the policy\n"
        rows = [
            (_code(v.commit[:12]), _text(v.author), _text(v.env), v.rule, _text(v.reason))
            for v in self.violations
        ]
        return f"**flagstone verify**: {len(self.violations)} violation(s)\n\n" + _table(
            ("commit", "author", "env", "rule", "reason"), rows
        )


# --- init and the edit commands -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitReport:
    result: InitResult
    next_steps: str
    ok: bool = True

    def payload(self) -> dict[str, Any]:
        return {
            "root": str(self.result.root.resolve()),
            "written": list(self.result.written),
            "git_initialized": self.result.git_initialized,
            "next": self.next_steps,
            "dry_run": self.result.dry_run,
        }


@dataclass(frozen=True, slots=True)
class EditResult:
    """A command-line edit: what it did (or would do), and the findings that refused it."""

    env: str
    description: str
    files: Sequence[str] = ()
    changed: bool = True  # False: the files already said so
    dry_run: bool = False
    commit: str | None = None
    diff: str = ""  # unified diff of the change, for --dry-run
    problems: Sequence[Problem] = ()
    refusal: str | None = None  # why the edit was refused, in one sentence

    @property
    def ok(self) -> bool:
        return not any(p.is_error for p in self.problems)

    @property
    def written(self) -> bool:
        return self.ok and self.changed and not self.dry_run

    def payload(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "description": self.description,
            "files": list(self.files),
            "changed": self.changed,
            "dry_run": self.dry_run,
            "written": self.written,
            "commit": self.commit,
            "diff": self.diff,
            "problems": [problem_dict(p) for p in self.problems],
            "refusal": self.refusal,
        }


@dataclass(frozen=True, slots=True)
class ConfigValue:
    env: str
    key: str
    value: Any
    secret: bool = False  # the value is encrypted and is not shown
    ok: bool = True

    def payload(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "key": self.key,
            "secret": self.secret,
            "value": None if self.secret else self.value,
        }


# --- list and show ---------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z_][\w.@/+-]*$")
# YAML 1.2 (what flagstone reads): only these plain words are not strings; on/off/yes/no are.
_YAML_WORDS = frozenset({"true", "false", "null", "~"})


def flow(value: Any) -> str:
    """A value as YAML flow style would write it: ``{country: {in: [DE, FR]}}``."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{flow(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, str):
        plain = _PLAIN.match(value) and value.lower() not in _YAML_WORDS
        return value if plain else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, default=str)


def serve_words(serve: Any) -> str:
    """``on``, or ``rollout on 20% / off 80% by company_id``."""
    if isinstance(serve, Mapping) and isinstance(serve.get("rollout"), Mapping):
        shares = " / ".join(f"{k} {v:g}%" for k, v in serve["rollout"].items())
        return f"rollout {shares}" + (f" by {serve['by']}" if serve.get("by") else "")
    return flow(serve)


def rule_words(rule: Mapping[str, Any]) -> str:
    if "segment" in rule:
        match = f"segment {rule['segment']}"
    else:
        match = f"when {flow(rule.get('when', {}))}"
    name = f"{rule['name']}: " if rule.get("name") else ""
    return f"{name}{match} → {serve_words(rule.get('serve'))}"


def flag_state(raw: Mapping[str, Any]) -> str:
    """A flag in one environment, in a few words: ``on · 2 rules`` or ``disabled → off``."""
    if not enabled_of(raw):
        off = raw.get("off_variant")
        return f"disabled → {off}" if off is not None else "disabled → the app's default"
    rules = len(raw.get("rules") or ())
    return serve_words(raw.get("default")) + (f" · {_plural(rules, 'rule')}" if rules else "")


def state_words(kind: str, raw: Mapping[str, Any]) -> str:
    if kind == "flags":
        return flag_state(raw)
    if kind == "segments":
        return flow(raw.get("when", {}))
    traffic = traffic_of(raw)
    return f"{raw.get('status', '?')} · flag {raw.get('flag', '?')} · {traffic:g}% traffic"


def _summary(kind: str, raw: Mapping[str, Any], file: str) -> dict[str, Any]:
    if kind == "flags":
        return {
            "file": file,
            "enabled": enabled_of(raw),
            "variants": list(raw.get("variants") or ()),
            "default": raw.get("default"),
            "rules": len(raw.get("rules") or ()),
            "expires": raw.get("expires"),
        }
    if kind == "segments":
        return {"file": file, "when": raw.get("when")}
    return {
        "file": file,
        "status": raw.get("status"),
        "flag": raw.get("flag"),
        "traffic": traffic_of(raw),
    }


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    objects: Mapping[str, tuple[Mapping[str, Any], str] | None]  # env -> (raw, file) or absent

    def first(self) -> Mapping[str, Any]:
        return next(o[0] for o in self.objects.values() if o is not None)

    @property
    def description(self) -> str | None:
        raw = self.first()
        text = raw.get("description") or raw.get("hypothesis")
        return None if text is None else str(text)


@dataclass(frozen=True, slots=True)
class Listing:
    """``flag list``, ``segment list``, ``experiment list``: one row per key, one column per
    environment."""

    kind: str  # flags, segments, experiments
    envs: Sequence[str]
    items: Sequence[ListedObject]
    ok: bool = True

    def states(self, item: ListedObject) -> list[str | None]:
        return [
            None if (o := item.objects.get(env)) is None else state_words(self.kind, o[0])
            for env in self.envs
        ]

    def payload(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "envs": list(self.envs),
            "items": [
                {
                    "key": item.key,
                    "description": item.description,
                    "environments": {
                        env: None
                        if (o := item.objects.get(env)) is None
                        else _summary(self.kind, *o)
                        for env in self.envs
                    },
                }
                for item in self.items
            ],
        }

    def markdown(self) -> str:
        rows = [
            (_code(item.key), *(s if s is not None else "—" for s in self.states(item)))
            for item in self.items
        ]
        return _table((kind_word(self.kind), *self.envs), rows)


@dataclass(frozen=True, slots=True)
class ObjectView:
    """``flag show`` and friends: an object's fields side by side, one column per environment."""

    kind: str
    key: str
    envs: Sequence[str]
    objects: Mapping[str, tuple[Mapping[str, Any], str] | None]  # env -> (raw, file)
    used_by: Mapping[str, Sequence[Any]] = field(default_factory=dict)  # env -> References
    ok: bool = True

    def rows(self) -> list[tuple[str, list[str | None]]]:
        """(field, value in words per environment); None where the field is absent."""
        labels: dict[str, None] = {}
        per_env: dict[str, dict[str, str]] = {}
        for env in self.envs:
            found = self.objects.get(env)
            cells: dict[str, str] = {}
            if found is not None:
                raw, file = found
                for name, value in raw.items():
                    if name == "rules" and isinstance(value, list):
                        for i, rule in enumerate(value, start=1):
                            cells[f"rule {i}"] = (
                                rule_words(rule) if isinstance(rule, Mapping) else flow(rule)
                            )
                    elif name == "targets" and isinstance(value, Mapping):
                        for variant, ids in value.items():
                            cells[f"targets {variant}"] = flow(ids)
                    elif name == "default" and self.kind == "flags":
                        cells[name] = serve_words(value)
                    else:
                        cells[name] = flow(value)
                used = self.used_by.get(env) or ()
                if used:
                    cells["used by"] = ", ".join(str(r) for r in used)
                cells["file"] = file
            for label in cells:
                labels.setdefault(label, None)
            per_env[env] = cells
        return [(label, [per_env[env].get(label) for env in self.envs]) for label in labels]

    def payload(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "envs": list(self.envs),
            "environments": {
                env: None
                if (o := self.objects.get(env)) is None
                else {
                    "file": o[1],
                    "value": dict(o[0]),
                    "used_by": [str(r) for r in self.used_by.get(env) or ()],
                }
                for env in self.envs
            },
        }

    def markdown(self) -> str:
        rows = [
            (label, *(_cell(v) if v is not None else "—" for v in values))
            for label, values in self.rows()
        ]
        title = f"**{kind_word(self.kind)} {_code(self.key)}**\n\n"
        return title + _table(("", *self.envs), rows)


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    key: str  # dotted
    values: Mapping[str, Any]  # env -> value (missing where the env lacks the key)
    secret: bool = False
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class ConfigListing:
    envs: Sequence[str]
    entries: Sequence[ConfigEntry]
    ok: bool = True

    def cells(self, entry: ConfigEntry) -> list[str | None]:
        return [
            None
            if env not in entry.values
            else ("<secret>" if entry.secret else flow(entry.values[env]))
            for env in self.envs
        ]

    def payload(self) -> dict[str, Any]:
        return {
            "envs": list(self.envs),
            "keys": [
                {
                    "key": e.key,
                    "secret": e.secret,
                    "pinned": e.pinned,
                    "values": {
                        env: None if e.secret else e.values[env]
                        for env in self.envs
                        if env in e.values
                    },
                }
                for e in self.entries
            ],
        }

    def markdown(self) -> str:
        rows = [
            (
                _code(e.key) + (" (pinned)" if e.pinned else ""),
                *(_code(c) if c is not None else "—" for c in self.cells(e)),
            )
            for e in self.entries
        ]
        return _table(("key", *self.envs), rows)


__all__ = [
    "BuildResult",
    "BuiltBundle",
    "ConfigValue",
    "DiffResult",
    "DriftResult",
    "EditResult",
    "Evaluation",
    "FlagEvaluation",
    "HistoryResult",
    "InitReport",
    "PromotionResult",
    "RestorationResult",
    "Result",
    "SpecRun",
    "Validation",
    "VerifyResult",
    "document",
    "dumps",
    "error_document",
    "format_path",
    "problem_dict",
    "problems_github",
    "problems_markdown",
]
