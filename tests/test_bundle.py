from __future__ import annotations

import json
import shutil
from pathlib import Path

from flagstone.bundle import CompileMemo, build_bundle, compile_condition, content_hash, dump_bundle
from flagstone.load import load_repository
from flagstone.model import Repository
from flagstone.validate import validate_loaded
from tests.test_validate_corpus import CASES

ROOT = Path(__file__).resolve().parent.parent


def test_build__same_source__byte_for_byte_identical(tmp_path: Path) -> None:
    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    first = dump_bundle(build_bundle(load_repository(root)[0], "prod", commit="a" * 40))
    second = dump_bundle(build_bundle(load_repository(root)[0], "prod", commit="a" * 40))
    assert first == second
    doc = json.loads(first)
    assert doc["hash"] == content_hash(doc)
    assert list(doc) == sorted(doc)


def test_build__rollouts_become_bucket_ranges_and_layers_get_ranges(tmp_path: Path) -> None:
    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    doc = build_bundle(load_repository(root)[0], "dev")
    assert doc["flags"]["new-checkout"]["rules"][1]["serve"] == {
        "rollout": [{"variant": "on", "end": 2000}, {"variant": "off", "end": 10000}]
    }
    assert doc["experiments"]["checkout-test"]["layer_range"] == [0, 5000]
    assert doc["flags"]["new-checkout"]["experiment"] == "checkout-test"
    assert doc["flags"]["new-checkout"]["targets"] == {"user-17": "on"}


def test_build__any_change__changes_the_hash(tmp_path: Path) -> None:
    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    before = build_bundle(load_repository(root)[0], "dev")["hash"]
    flags = root / "environments" / "dev" / "flags.yaml"
    flags.write_text(flags.read_text().replace("on: 20, off: 80", "on: 21, off: 79"))
    assert build_bundle(load_repository(root)[0], "dev")["hash"] != before


def test_compile_condition__normalizes_to_one_tree_shape() -> None:
    assert compile_condition({"country": {"in": ["DE"]}, "plan": "pro"}) == {
        "all": [
            {"attr": "country", "op": "in", "value": ["DE"]},
            {"attr": "plan", "op": "eq", "value": "pro"},
        ]
    }
    assert compile_condition({"not": {"segment": "beta"}}) == {"not": {"segment": "beta"}}
    assert compile_condition({"age": {"gte": 18, "lt": 65}}) == {
        "all": [{"attr": "age", "op": "gte", "value": 18}, {"attr": "age", "op": "lt", "value": 65}]
    }


def test_bundle_schema__every_built_bundle_validates(tmp_path: Path) -> None:
    import jsonschema

    from flagstone.schema import builtin_schemas
    from tests.test_conformance import VECTORS

    validator = jsonschema.Draft202012Validator(builtin_schemas()["bundle.schema.json"])
    root = Path(__file__).resolve().parent.parent
    repo, _ = load_repository(root)
    bundles = [build_bundle(repo, env, commit="a" * 40) for env in ("dev", "staging", "prod")]
    bundles.append(VECTORS["bundle"])
    for bundle in bundles:
        assert list(validator.iter_errors(bundle)) == []
    broken = dict(bundles[0], version=2)
    assert not validator.is_valid(broken)


def test_build_bundle_bytes__equal_the_canonical_dump(tmp_path: Path) -> None:
    from flagstone.bundle import build_bundle_bytes

    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    repo = load_repository(root)[0]
    bundle, data = build_bundle_bytes(repo, "prod", commit="b" * 40)
    assert data == dump_bundle(build_bundle(repo, "prod", commit="b" * 40))
    assert bundle["hash"] == content_hash(json.loads(data))


def test_defaults__a_left_out_key_means_the_same_to_the_model_bundle_and_diff(
    tmp_path: Path,
) -> None:
    from flagstone.diff import diff_environments

    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    flags = root / "environments" / "dev" / "flags.yaml"
    flags.write_text(
        flags.read_text()
        + "gate:\n  variants: {on: true, off: false}\n  default: on\n"
        + "gated:\n  variants: {a: 1, b: 2}\n  default: a\n"
        + "  prerequisites: [{flag: gate, variant: on}]\n"
    )
    repo = load_repository(root)[0]
    env = repo.env("dev")
    bundle = build_bundle(repo, "dev")["flags"]
    assert (env.flags["gate"].enabled, env.flags["gate"].salt) == (True, "gate")
    assert (bundle["gate"]["enabled"], bundle["gate"]["salt"]) == (True, "gate")
    assert env.flags["gated"].prerequisites[0].variants == ("on",)
    assert bundle["gated"]["prerequisites"] == [{"flag": "gate", "variants": ["on"]}]
    # Writing the default out is no change at all.
    flags.write_text(
        flags.read_text().replace("  default: on\n", "  default: on\n  enabled: true\n")
    )
    assert diff_environments(env, load_repository(root)[0].env("dev"), "dev") == []


def test_build__an_object_identical_across_environments__compiles_once(tmp_path: Path) -> None:
    from flagstone.bundle import CompileMemo, build_bundle_bytes

    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "repo")
    envs = ("dev", "prod")
    for env in envs:  # one flag written differently in each
        flags = root / "environments" / env / "flags.yaml"
        flags.write_text(
            flags.read_text()
            + f"apart:\n  variants: {{a: 1, b: 2}}\n  default: {'a' if env == 'dev' else 'b'}\n"
        )
    repo = load_repository(root)[0]
    memo = CompileMemo()
    shared = {env: build_bundle_bytes(repo, env, memo=memo) for env in envs}
    alone = {env: build_bundle_bytes(repo, env) for env in envs}
    assert {e: b for e, (_, b) in shared.items()} == {e: b for e, (_, b) in alone.items()}
    dev, prod = repo.env("dev"), repo.env("prod")
    same = [k for k, f in prod.flags.items() if k in dev.flags and dev.flags[k].raw == f.raw]
    differ = [k for k, f in prod.flags.items() if k in dev.flags and dev.flags[k].raw != f.raw]
    assert same and differ, "the case needs flags written alike and not alike"
    bundles = {e: shared[e][0]["flags"] for e in envs}
    assert all(bundles["prod"][k] is bundles["dev"][k] for k in same)
    assert not any(bundles["prod"][k] is bundles["dev"][k] for k in differ)
    # the variants written alike in both are one value after the load, compiled once
    assert bundles["prod"]["apart"]["variants"] is bundles["dev"]["apart"]["variants"]
    assert bundles["prod"]["apart"]["default"] != bundles["dev"]["apart"]["default"]


def _loaded(repo: Repository) -> str:
    """Every value the load read, per environment, as one text (order and types kept)."""
    return json.dumps(
        {
            name: {
                "flags": {k: f.raw for k, f in env.flags.items()},
                "segments": {k: s.raw for k, s in env.segments.items()},
                "experiments": {k: e.raw for k, e in env.experiments.items()},
                "config": env.config.values if env.config is not None else None,
            }
            for name, env in repo.environments.items()
        },
        default=repr,
    )


def test_build_and_validate__never_change_what_the_load_shares_across_environments(
    tmp_path: Path,
) -> None:
    # The load shares one object among the environments that write an entry alike
    # (load.BlockCache) and the build compiles a shared object once (CompileMemo): a step
    # that changed one in place would change another environment's answers.
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "environments", root / "environments")
    shutil.copytree(ROOT / "schemas", root / "schemas")
    shutil.copy(ROOT / "flagstone.yaml", root / "flagstone.yaml")
    repo, problems = load_repository(root)
    names = list(repo.environments)
    dev, prod = repo.environments["dev"], repo.environments["prod"]
    assert any(
        dev.flags[k].raw[field] is prod.flags[k].raw[field]
        for k in dev.flags.keys() & prod.flags.keys()
        for field in dev.flags[k].raw.keys() & prod.flags[k].raw.keys()
        if isinstance(dev.flags[k].raw[field], (dict, list))
    ), "the example shares no object across environments: this test would prove nothing"
    before = _loaded(repo)
    memo = CompileMemo()
    first = {name: dump_bundle(build_bundle(repo, name, memo=memo)) for name in names}
    validate_loaded(repo, problems)
    again = {name: dump_bundle(build_bundle(repo, name, memo=CompileMemo())) for name in names}
    assert _loaded(repo) == before
    assert again == first
    for name in names:
        alone = load_repository(root, [name])[0]  # no cache: nothing shared
        assert dump_bundle(build_bundle(alone, name)) == first[name], name
