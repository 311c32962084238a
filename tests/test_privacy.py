"""Privacy claims, each tested: logs written by the real runtime carry no raw id and no
personal attribute, a non-consenting unit is never logged, erasure removes exactly one
person's rows, retention deletes what is old, and pseudonyms join across processes."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import git
import pytest
from pyrage import x25519

from flagstone import Client
from flagstone.bundle import build_bundle
from flagstone.privacy import forget, pseudonymizer, retain
from flagstone.runtime.errors import BundleError
from flagstone.runtime.evaluate import compile_bundle, has_consent
from flagstone.runtime.sinks import MemorySink
from tests.cli_schemas import check_output
from tests.conftest import CASES

KEY = "a-shared-pseudonym-key-0123456789"
EXPERIMENT = """\
checkout-test:
  flag: new-checkout
  status: running
  traffic: 100
  consent: required
  dimensions: [country]
  metrics:
    primary: {name: conversion, kind: proportion}
"""


@pytest.fixture
def repo(git_repo: git.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = Path(git_repo.working_dir)
    shutil.copytree(CASES / "valid" / "base", root, dirs_exist_ok=True)
    for env in ("dev", "prod"):
        (root / "environments" / env / "experiments.yaml").write_text(EXPERIMENT)
    identity = x25519.Identity.generate()
    key_file = tmp_path / "home" / "key.txt"
    key_file.parent.mkdir()
    key_file.write_text(f"{identity}\n")
    schema_path = root / "schemas" / "config.schema.json"
    schema = json.loads(schema_path.read_text())
    schema["properties"]["analytics"] = {
        "type": "object",
        "properties": {
            "pseudonym_key": {"type": "string", "minLength": 16, "x-flagstone-secret": True}
        },
    }
    schema_path.write_text(json.dumps(schema))
    settings = root / "flagstone.yaml"
    settings.write_text(
        settings.read_text()
        + f"privacy:\n  pii: [email, ip]\n  retention_days: 30\nsecrets:\n  recipients: [{identity.to_public()}]\n"
    )
    git_repo.git.add("-A")
    git_repo.git.commit("-m", "base", "--no-gpg-sign")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("FLAGSTONE_AGE_KEY_FILE", str(key_file))
    monkeypatch.delenv("FLAGSTONE_PSEUDONYM_KEY", raising=False)
    return root


def run_app(
    bundle: Path, log: Path, units: list[dict[str, object]], **options: object
) -> list[dict[str, object]]:
    with Client.from_file(bundle, analytics_file=log, **options) as client:  # type: ignore[arg-type]
        for context in units:
            client.assign("checkout-test", context)
            client.variant("new-checkout", context)
    return [json.loads(line) for line in log.read_text().splitlines()]


UNITS = [
    {
        "user_id": f"user-{i}",
        "email": f"person{i}@example.test",
        "ip": f"203.0.113.{i}",
        "country": "DE",
        "consent": {"experiments": i % 2 == 0},
    }
    for i in range(20)
]


def test_runtime_logs__no_raw_id_no_pii__non_consenting_never_logged(
    cli, repo: Path, tmp_path: Path
) -> None:
    assert cli(["build", "--env", "prod", "--out", "dist"], cwd=repo).exit_code == 0
    records = run_app(
        repo / "dist" / "prod.json", tmp_path / "exposures.jsonl", UNITS, pseudonym_key=KEY
    )
    text = (tmp_path / "exposures.jsonl").read_text()
    exposures = [r for r in records if r["type"] == "exposure"]
    assert len(exposures) == 10  # the consenting half, each once
    for unit in UNITS:
        assert f'"{unit["user_id"]}"' not in text
        assert str(unit["email"]) not in text and str(unit["ip"]) not in text
    hashed = pseudonymizer(KEY)
    logged = {r["unit"] for r in exposures}
    assert logged == {hashed(str(u["user_id"])) for u in UNITS if u["consent"]["experiments"]}  # type: ignore[index]


def test_validate__pii_in_dimensions_or_payloads__rejected(cli, repo: Path) -> None:
    experiments = repo / "environments/dev/experiments.yaml"
    experiments.write_text(
        EXPERIMENT.replace("dimensions: [country]", "dimensions: [country, email]")
    )
    flags = repo / "environments/dev/flags.yaml"
    flags.write_text(flags.read_text().replace("long: Hello there", 'long: "Hello ${email}"'))
    report = json.loads(cli(["validate", "--format", "json"], cwd=repo).stdout)
    codes = {
        (p["code"], p["file"], p["line"]) for p in report["problems"] if p["code"].startswith("pii")
    }
    assert ("pii-dimension", "environments/dev/experiments.yaml", 6) in codes
    assert any(c[0] == "pii-in-payload" and c[1] == "environments/dev/flags.yaml" for c in codes)
    assert not report["ok"]


def test_pseudonymize__key_from_secrets__matches_the_runtime(
    cli, repo: Path, tmp_path: Path
) -> None:
    assert (
        cli(["secret", "set", "prod", "analytics.pseudonym_key"], cwd=repo, input=KEY).exit_code
        == 0
    )
    result = cli(
        ["privacy", "pseudonymize", "--env", "prod"],
        cwd=repo,
        input="user_id\nuser-0\nuser-2,extra\n",
    )
    assert result.exit_code == 0, result.stderr
    hashed = pseudonymizer(KEY)
    assert result.stdout == f"user-0,{hashed('user-0')}\nuser-2,{hashed('user-2')}\n"
    assert KEY not in result.stdout + result.stderr
    # the key reaches the runtime sealed in a server bundle: two processes, one pseudonym
    service = x25519.Identity.generate()
    (tmp_path / "svc.txt").write_text(f"{service}\n")
    built = cli(
        [
            "build",
            "--env",
            "prod",
            "--include-secrets",
            "--recipient",
            str(service.to_public()),
            "--out",
            "server",
        ],
        cwd=repo,
    )
    assert built.exit_code == 0, built.stderr
    bundle = repo / "server" / "prod.json"
    first = run_app(bundle, tmp_path / "a.jsonl", UNITS[:2], identity=tmp_path / "svc.txt")
    second = run_app(bundle, tmp_path / "b.jsonl", UNITS[:2], identity=tmp_path / "svc.txt")
    units = lambda rs: [r["unit"] for r in rs if r["type"] == "exposure"]  # noqa: E731
    assert units(first) == units(second) == [hashed("user-0")]


def _logs(folder: Path, now: float) -> None:
    folder.mkdir(parents=True)
    hashed = pseudonymizer(KEY)
    rows = [
        {
            "type": "exposure",
            "experiment": "e",
            "arm": "a",
            "unit": hashed("user-7"),
            "flag": "f",
            "environment": "prod",
            "ts": now,
            "dimensions": {},
        },
        {
            "type": "exposure",
            "experiment": "e",
            "arm": "a",
            "unit": "user-7",
            "flag": "f",
            "environment": "prod",
            "ts": now,
            "dimensions": {},
        },
        {
            "type": "exposure",
            "experiment": "e",
            "arm": "b",
            "unit": hashed("user-8"),
            "flag": "f",
            "environment": "prod",
            "ts": now - 40 * 86400,
            "dimensions": {},
        },
        {
            "type": "evaluations",
            "flag": "f",
            "variant": "on",
            "reason": "DEFAULT",
            "count": 3,
            "from": now - 60,
            "to": now,
        },
    ]
    (folder / "exposures.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows) + "not json\n"
    )
    (folder / "sub").mkdir()
    (folder / "sub" / "usage.jsonl").write_text(
        json.dumps(rows[3]) + "\n" + json.dumps({**rows[2], "unit": "user-7"}) + "\n"
    )


def test_privacy_forget__removes_exactly_that_units_rows(
    cli, repo: Path, tmp_path: Path, monkeypatch
) -> None:
    now = dt.datetime.now(dt.UTC).timestamp()
    data = tmp_path / "data"
    _logs(data, now)
    before = (data / "exposures.jsonl").read_text().splitlines()
    monkeypatch.setenv("FLAGSTONE_PSEUDONYM_KEY", KEY)
    result = cli(
        ["privacy", "forget", "--unit", "user-7", "--data", str(data), "--format", "json"], cwd=repo
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["removed"] == 3 and doc["pseudonymized"] is True
    after = (data / "exposures.jsonl").read_text().splitlines()
    assert after == [before[2], before[3], before[4]]  # user-8, the counts, the unreadable line
    assert "user-7" not in (data / "sub" / "usage.jsonl").read_text()
    check_output("privacy forget", result.stdout)


def test_privacy_forget__no_key__raw_ids_only(repo: Path, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC).timestamp()
    _logs(tmp_path / "data", now)
    report = forget(tmp_path / "data", "user-7", None)
    assert report.removed == 2  # the raw rows; the pseudonymized one needs the key


def test_privacy_retention__deletes_rows_older_than_retention_days(
    cli, repo: Path, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC).timestamp()
    data = tmp_path / "data"
    _logs(data, now)
    dry = cli(["privacy", "retention", "--data", str(data), "--dry-run"], cwd=repo)
    assert dry.exit_code == 0 and "2 row(s) would be deleted" in dry.stderr
    result = cli(["privacy", "retention", "--data", str(data)], cwd=repo)
    assert result.exit_code == 0, result.stderr
    rows = [
        json.loads(line)
        for line in (data / "exposures.jsonl").read_text().splitlines()
        if line.startswith("{")
    ]
    assert all(r.get("ts", r.get("to")) >= now - 30 * 86400 for r in rows) and len(rows) == 3
    assert retain(data, 30).removed == 0  # nothing left to delete


def test_privacy_retention__without_a_setting__says_what_to_do(cli, tmp_path: Path) -> None:
    root = shutil.copytree(CASES / "valid" / "base", tmp_path / "r")
    (tmp_path / "d").mkdir()
    result = cli(["privacy", "retention", "--data", str(tmp_path / "d")], cwd=root)
    assert result.exit_code == 2 and "set privacy.retention_days" in result.stderr


# --- consent: privacy.consent_attribute ----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "context", "consents"),
    [
        ("consent.experiments", {"consent": True}, True),
        ("consent.experiments", {"consent": {"experiments": True}}, True),
        ("consent.experiments", {"consent": {"experiments": 1}}, False),
        ("consent.experiments", {"consent": {"experiments": "true"}}, False),
        ("consent.experiments", {"consent": False}, False),
        ("consent.experiments", {"consent": [True]}, False),
        ("consent.experiments", {"consent.experiments": True}, False),
        ("consent.experiments", {}, False),
        ("gdpr.purposes.ab", {"gdpr": True}, True),
        ("gdpr.purposes.ab", {"gdpr": {"purposes": True}}, True),
        ("gdpr.purposes.ab", {"gdpr": {"purposes": {"ab": True}}}, True),
        ("gdpr.purposes.ab", {"gdpr": {"purposes": {"ab": {"granted": True}}}}, False),
        ("gdpr.purposes.ab", {"gdpr": {"purposes": {"ads": True}}}, False),
        ("gdpr.purposes.ab", {"consent": True}, False),
        ("ab_ok", {"ab_ok": True}, True),
        ("ab_ok", {"ab_ok": "yes"}, False),
    ],
)
def test_has_consent__the_value_at_the_path_or_a_prefix_is_exactly_true(
    path: str, context: dict[str, object], consents: bool
) -> None:
    assert has_consent(context, tuple(path.split("."))) is consents


def _set_consent_attribute(repo: Path, attribute: str) -> None:
    settings = repo / "flagstone.yaml"
    text = settings.read_text().replace(
        "privacy:\n", f"privacy:\n  consent_attribute: {attribute}\n"
    )
    settings.write_text(text)


def test_consent_attribute__configured__built_into_the_bundle_and_honoured_by_the_runtime(
    cli, repo: Path, tmp_path: Path
) -> None:
    _set_consent_attribute(repo, "gdpr.purposes.ab_testing")
    built = cli(["build", "--env", "prod", "--out", "dist"], cwd=repo)
    assert built.exit_code == 0, built.stderr
    bundle = json.loads((repo / "dist" / "prod.json").read_text())
    experiment = bundle["experiments"]["checkout-test"]
    assert experiment["consent_attribute"] == "gdpr.purposes.ab_testing"
    # everyone grants the default purpose; only every third unit the configured one
    units = [
        {**u, "consent": True, "gdpr": {"purposes": {"ab_testing": i % 3 == 0}}}
        for i, u in enumerate(UNITS)
    ]
    records = run_app(repo / "dist" / "prod.json", tmp_path / "log.jsonl", units, pseudonym_key=KEY)
    hashed = pseudonymizer(KEY)
    logged = {r["unit"] for r in records if r["type"] == "exposure"}
    assert logged == {hashed(str(u["user_id"])) for i, u in enumerate(UNITS) if i % 3 == 0}


def test_consent_attribute__absent_from_a_bundle__means_consent_experiments(
    cli, repo: Path
) -> None:
    assert cli(["build", "--env", "prod", "--out", "dist"], cwd=repo).exit_code == 0
    raw = json.loads((repo / "dist" / "prod.json").read_text())
    assert raw["experiments"]["checkout-test"]["consent_attribute"] == "consent.experiments"
    del raw["experiments"]["checkout-test"]["consent_attribute"], raw["hash"]
    experiment = compile_bundle(raw).experiments["checkout-test"]
    assert experiment.assign({"user_id": "u", "consent": {"experiments": True}})[0] is not None
    assert experiment.assign({"user_id": "u", "consent": {"experiments": False}}) == (
        None,
        "consent required and not given",
    )


@pytest.mark.parametrize("attribute", ["''", "consent..experiments", ".consent", "consent.", "[a]"])
def test_consent_attribute__not_a_dotted_path__validate_rejects_it(
    cli, repo: Path, attribute: str
) -> None:
    _set_consent_attribute(repo, attribute)
    result = cli(["validate", "--format", "json"], cwd=repo)
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    assert [p["file"] for p in report["problems"] if "consent_attribute" in json.dumps(p)] == [
        "flagstone.yaml"
    ]


@pytest.mark.parametrize("attribute", ["", "a..b", 7])
def test_consent_attribute__malformed_in_a_bundle__refused_at_load(
    cli, repo: Path, attribute: object
) -> None:
    assert cli(["build", "--env", "prod", "--out", "dist"], cwd=repo).exit_code == 0
    raw = json.loads((repo / "dist" / "prod.json").read_text())
    raw["experiments"]["checkout-test"]["consent_attribute"] = attribute
    del raw["hash"]
    with pytest.raises(BundleError, match="consent_attribute"):
        compile_bundle(raw)


def test_consent_attribute__flagd_export__agrees_with_the_runtime(
    cli, repo: Path, tmp_path: Path
) -> None:
    from flagstone.flagd import export_environment
    from flagstone.load import load_repository
    from tests.flagd_helpers import flagd_details, flagd_provider

    _set_consent_attribute(repo, "gdpr.purposes.ab")
    loaded, _ = load_repository(repo)
    document, _ = export_environment(loaded, "prod")
    path = tmp_path / "flagd.json"
    path.write_text(json.dumps(document))
    ours = Client.from_dict(build_bundle(loaded, "prod"))
    shapes: list[object] = [
        True, {"purposes": True}, {"purposes": {"ab": True}}, {"purposes": {"ab": 1}},
        {"purposes": {"ads": True}}, False, None, {"experiments": True},
    ]  # fmt: skip
    contexts = [
        {"user_id": f"user-{i}-{j}", "country": "DE", "gdpr": shape}
        for i, shape in enumerate(shapes)
        for j in range(4)
    ] + [{"user_id": "user-c", "consent": True}]
    variants = document["flags"]["new-checkout"]["variants"]
    with flagd_provider(path) as client:
        theirs = [flagd_details(client, "new-checkout", variants, c).variant for c in contexts]
    mine = [ours.details("new-checkout", c) for c in contexts]
    assert theirs == [r.variant for r in mine]
    enrolled = [r.experiment is not None for r in mine]
    assert any(enrolled[:12]) and not any(enrolled[12:])


# --- consent: the count of units left out --------------------------------------------------


def _serve(client: Client, units: list[dict[str, object]], times: int = 3) -> None:
    for _ in range(times):  # every entry point, repeatedly: a unit is counted once
        for context in units:
            client.assign("checkout-test", context)
            client.variant("new-checkout", context)
            client.value("new-checkout", context)
            client.details("new-checkout", context)


def test_runtime__units_without_consent__counted_once_each_with_no_id_in_the_record(
    cli, repo: Path
) -> None:
    assert cli(["build", "--env", "prod", "--out", "dist"], cwd=repo).exit_code == 0
    sink = MemorySink()
    targeted = {"user_id": "user-17", "country": "DE"}  # a target: the experiment is not asked
    no_unit = {"country": "DE", "consent": False}
    with Client.from_file(repo / "dist" / "prod.json", sink=sink, pseudonym_key=KEY) as client:
        _serve(client, UNITS)
        for context in (targeted, no_unit):
            client.variant("new-checkout", context)
    counts = [r for r in sink.records if r["type"] == "consent_not_given"]
    assert sum(r["units"] for r in counts) == 10  # user-1, -3, …, -19: -17 through assign()
    assert {(r["experiment"], r["flag"], r["environment"]) for r in counts} == {
        ("checkout-test", "new-checkout", "prod")
    }
    assert all(
        set(r) == {"type", "experiment", "flag", "environment", "units", "from", "to"}
        for r in counts
    )
    text = json.dumps(sink.records)
    hashed = pseudonymizer(KEY)
    for unit in UNITS[1::2]:
        assert f'"{unit["user_id"]}"' not in text and hashed(str(unit["user_id"])) not in text
    # only units the experiment considered: a targeted unit served by the flag is not counted
    sink2 = MemorySink()
    with Client.from_file(repo / "dist" / "prod.json", sink=sink2, pseudonym_key=KEY) as client:
        client.variant("new-checkout", targeted)
        client.details("new-checkout", targeted)
        client.variant("new-checkout", no_unit)
        client.assign("checkout-test", no_unit)
    assert [r for r in sink2.records if r["type"] == "consent_not_given"] == []


def test_runtime__experiment_without_consent_requirement__writes_no_counts(cli, repo: Path) -> None:
    for env in ("dev", "prod"):
        (repo / "environments" / env / "experiments.yaml").write_text(
            EXPERIMENT.replace("  consent: required\n", "")
        )
    assert cli(["build", "--env", "prod", "--out", "dist"], cwd=repo).exit_code == 0
    sink = MemorySink()
    with Client.from_file(repo / "dist" / "prod.json", sink=sink, pseudonym_key=KEY) as client:
        _serve(client, UNITS, times=1)
    assert [r for r in sink.records if r["type"] == "consent_not_given"] == []
    assert len([r for r in sink.records if r["type"] == "exposure"]) == 20


def _consent_data(cli, repo: Path, tmp_path: Path) -> list[str]:
    """The runtime's records from two processes (the second serves user-0 … user-9 again,
    five of them without consent) and conversions; the analyze arguments that read them."""
    assert cli(["build", "--env", "prod", "--out", "dist"], cwd=repo).exit_code == 0
    data = tmp_path / "data"
    bundle = repo / "dist" / "prod.json"
    for name, units in (("a.jsonl", UNITS), ("b.jsonl", UNITS[:10])):
        with Client.from_file(bundle, analytics_file=data / name, pseudonym_key=KEY) as client:
            _serve(client, units, times=2)
    hashed = pseudonymizer(KEY)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        "".join(
            json.dumps({"unit": hashed(f"user-{i}"), "metric": "conversion", "value": 1, "ts": 4e9})
            + "\n"
            for i in range(0, 20, 4)
        )
    )
    return ["--exposures", str(data), "--metrics", str(metrics)]


def test_analyze__reports_units_left_out_for_lacking_consent__text_json_markdown(
    cli, repo: Path, tmp_path: Path
) -> None:
    args = ["analyze", "checkout-test", "--env", "prod", *_consent_data(cli, repo, tmp_path)]
    result = cli([*args, "--format", "json"], cwd=repo)
    assert result.exit_code in (0, 1), result.stdout + result.stderr
    doc = check_output("analyze", result.stdout)
    assert doc["excluded"]["consent_not_given"] == 15
    assert doc["excluded"]["consent_refused"] == 0
    assert sum(doc["units"].values()) == 10  # the consenting half, each once
    note = "15 unit(s) were not enrolled for lacking consent"
    assert [n for n in doc["notes"] if note in n] != []
    for fmt in ("text", "markdown"):
        shown = cli([*args, "--format", fmt], cwd=repo)
        assert note in " ".join(shown.stdout.split()), (fmt, shown.stdout)
    # a statistics file from a warehouse carries the count as an `excluded` row
    stats = tmp_path / "stats.csv"
    stats.write_text(
        "kind,arm,slice,look,metric,n,sum,sum_sq\n"
        "metric,on,,,conversion,5,2,2\nmetric,off,,,conversion,5,1,1\n"
        "excluded,,,,consent_not_given,7,,\n"
    )
    from_stats = cli(
        ["analyze", "checkout-test", "--env", "prod", "--stats", str(stats), "-f", "json"], cwd=repo
    )
    assert check_output("analyze", from_stats.stdout)["excluded"]["consent_not_given"] == 7


def test_analyze_printed_sql__counts_units_left_out_for_lacking_consent__as_the_built_in_path(
    cli, repo: Path, tmp_path: Path
) -> None:
    data = _consent_data(cli, repo, tmp_path)
    args = ["analyze", "checkout-test", "--env", "prod"]
    printed = cli([*args, "--print-sql", *data], cwd=repo)
    assert printed.exit_code == 0, printed.stderr
    assert "CREATE OR REPLACE TEMP VIEW consent_counts" in printed.stdout
    cursor = duckdb.connect().execute(printed.stdout)  # the printed text as it is
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    assert [r["n"] for r in rows if r["metric"] == "consent_not_given"] == [15.0]
    stats = tmp_path / "stats.csv"
    with stats.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    built_in = check_output("analyze", cli([*args, *data, "-f", "json"], cwd=repo).stdout)
    from_sql = check_output(
        "analyze", cli([*args, "--stats", str(stats), "-f", "json"], cwd=repo).stdout
    )
    assert from_sql["excluded"] == built_in["excluded"]
    assert built_in["excluded"]["consent_not_given"] == 15
    assert from_sql["units"] == built_in["units"]
    # every warehouse dialect reads the counts from the relation the header names
    for dialect in ("postgres", "snowflake", "bigquery"):
        text = cli([*args, "--print-sql", "--dialect", dialect], cwd=repo).stdout
        assert "--   consent_counts(experiment, environment, units)" in text, dialect
        assert text.count("FROM consent_counts") == 1, dialect


def test_analyze_printed_sql__experiment_without_consent_requirement__reads_no_counts(
    cli, repo: Path
) -> None:
    (repo / "environments" / "prod" / "experiments.yaml").write_text(
        EXPERIMENT.replace("  consent: required\n", "")
    )
    for dialect in ("duckdb", "postgres", "snowflake", "bigquery"):
        text = cli(
            ["analyze", "checkout-test", "--env", "prod", "--print-sql", "--dialect", dialect],
            cwd=repo,
        ).stdout
        assert "WITH exposed AS (" in text and "consent_counts" not in text, dialect


def test_runtime__a_bundle_listing_pii_as_a_dimension__still_never_logs_it(
    cli, repo: Path, tmp_path: Path
) -> None:
    """validate and build keep PII out of dimensions; a bundle made otherwise (by hand, an
    older build) still cannot make the runtime log it, since the bundle's pii list wins."""
    assert cli(["build", "--env", "prod", "--out", "dist"], cwd=repo).exit_code == 0
    raw = json.loads((repo / "dist" / "prod.json").read_text())
    assert raw["pii"] == ["email", "ip"]
    assert raw["experiments"]["checkout-test"]["dimensions"] == ["country"]
    raw["experiments"]["checkout-test"]["dimensions"] = ["country", "email", "ip"]
    del raw["hash"]
    sink = MemorySink()
    with Client.from_dict(raw, sink=sink, pseudonym_key=KEY) as client:
        _serve(client, UNITS, times=1)
    exposures = [r for r in sink.records if r["type"] == "exposure"]
    assert len(exposures) == 10 and all(r["dimensions"] == {"country": "DE"} for r in exposures)
    text = json.dumps(sink.records)
    for unit in UNITS:
        assert str(unit["email"]) not in text and str(unit["ip"]) not in text
