"""Rules, defaults and segments written alike are one value after the load and are checked
once; a finding still shows wherever the same text is wrong: in an environment without
the segment it names, or under a flag without the variant it serves."""

from __future__ import annotations

from pathlib import Path

RULES = "  rules:\n    - segment: beta\n      serve: on\n  default: off\n"
FLAGS = (
    "a:\n  variants: {on: true, off: false}\n"
    + RULES
    + "b:\n  variants: {on: true, off: false}\n"
    + RULES
    + "c:\n  variants: {off: 0, low: 1}\n"
    + RULES
    + "d:\n  variants: {on: 1, off: none}\n  default: off\n"
    + "e:\n  variants: {on: 1, off: none}\n  default: off\n"
)


def findings(root: Path) -> list[tuple[str, str, tuple[object, ...]]]:
    from flagstone.validate import validate_repository

    return sorted((p.file, p.code, p.path) for p in validate_repository(root))


def test_validate__a_rule_written_alike__is_wrong_where_its_context_is(
    repo_from_case, commit
) -> None:
    root = repo_from_case("valid/base")
    commit(
        {
            "environments/dev/segments.yaml": "beta:\n  when: {plan: pro}\n",
            "environments/prod/segments.yaml": "{}\n",
            "environments/dev/flags.yaml": FLAGS,
            "environments/prod/flags.yaml": FLAGS,
            "environments/dev/experiments.yaml": "{}\n",
            "environments/prod/experiments.yaml": "{}\n",
        },
        "one rule text under three flags in two environments",
    )
    dev, prod = "environments/dev/flags.yaml", "environments/prod/flags.yaml"
    serve = ("rules", 0, "serve")
    assert findings(root) == sorted(
        [
            (dev, "unknown-variant", ("c", *serve)),
            (prod, "unknown-variant", ("c", *serve)),
            *((prod, "unknown-segment", (k, "rules", 0, "segment")) for k in "abc"),
            # one variants text of mixed types, under two flags in two environments
            *((f, "variant-types", (k, "variants")) for f in (dev, prod) for k in "de"),
        ]
    )
