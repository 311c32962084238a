"""End to end through the real CLI (subprocesses) and the real runtime, in a temp git repository:
create → start → the runtime assigns simulated users and logs exposures → analyze finds the
planted effect → conclude --rollout puts the decision in the YAML and the git log; a 45/55
split is caught by the SRM check and blocks conclude. Then the HTML report, in Chromium."""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
import yaml

from flagstone import Client
from tests.analyze_data import make_repo, write_jsonl
from tests.cli_schemas import check_output

EMPTY = "{}\n"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout


def simulate_users(
    bundle: Path, log: Path, n: int, rates: dict[str, float], seed: int
) -> list[dict]:
    """Users hit the app: the runtime assigns them and logs exposures; they convert."""
    rng = random.Random(seed)
    events = []
    with Client.from_file(
        bundle, analytics_file=log, pseudonym_key="test-key", flush_interval=3600
    ) as client:
        for i in range(n):
            user = f"user-{seed}-{i}"
            context = {"user_id": user, "country": rng.choice(["DE", "FR"])}
            arm = client.assign("onboarding-length", context)
            if arm is None:
                continue
            if rng.random() < rates[arm]:
                # Metric pipelines key events by the same pseudonym the runtime logs.
                events.append(
                    {"unit": client_pseudonym(user), "metric": "converted", "value": 1, "ts": 4e9}
                )
    return events


def client_pseudonym(unit: str) -> str:
    from flagstone.runtime.sinks import Pseudonymizer

    return Pseudonymizer("test-key")(unit)


@pytest.mark.slow
def test_e2e__create_start_assign_analyze_conclude(flagstone_exe, tmp_path) -> None:
    repo = make_repo(tmp_path / "repo", EMPTY)

    def fs(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = flagstone_exe(list(args), cwd=repo)
        assert result.returncode == code, result.stdout + result.stderr
        return result

    fs(
        "experiment",
        "create",
        "onboarding-length",
        "-e",
        "prod",
        "--flag",
        "onboarding-flow",
        "--metric",
        "primary:converted:proportion",
        "--mde",
        "0.05",
        "--commit",
    )
    fs(
        "experiment",
        "start",
        "onboarding-length",
        "-e",
        "prod",
        "--baseline",
        "0.1",
        "--daily-units",
        "5000",
        "--commit",
    )
    fs("build", "--env", "prod")
    bundle = repo / "dist" / "prod.json"
    log = tmp_path / "data" / "exposures.jsonl"
    events = simulate_users(bundle, log, 5000, {"classic": 0.10, "short": 0.15}, seed=1)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    exposures = [r for r in records if r["type"] == "exposure"]
    assert exposures and all(
        len(r["unit"]) == 32 and not r["unit"].startswith("user") for r in exposures
    )
    metrics = write_jsonl(tmp_path / "data" / "metrics.jsonl", events)

    data = ["--exposures", str(log), "--metrics", str(metrics)]
    doc = check_output(
        "analyze", fs("analyze", "onboarding-length", "-e", "prod", *data, "-f", "json").stdout
    )
    assert doc["trustworthy"] and doc["result"]["srm"]["p_value"] > 0.001
    (comparison,) = doc["result"]["metrics"][0]["comparisons"]
    assert comparison["verdict"] == "better", comparison

    fs(
        "experiment",
        "conclude",
        "onboarding-length",
        "-e",
        "prod",
        "--winner",
        "short",
        "--reason",
        "3-step onboarding converts better",
        *data,
        "--rollout",
        "--commit",
    )
    experiments = yaml.safe_load((repo / "environments/prod/experiments.yaml").read_text())
    decision = experiments["onboarding-length"]["decision"]
    assert decision["winner"] == "short"
    assert decision["results"]["metrics"]["converted"]["arms"]["short"]["verdict"] == "better"
    flags = yaml.safe_load((repo / "environments/prod/flags.yaml").read_text())
    assert flags["onboarding-flow"]["default"] == "short"
    subjects = git(repo, "log", "--format=%s").splitlines()
    assert subjects[0].startswith("prod: experiment onboarding-length concluded: winner short")
    assert "started" in subjects[1] and "created" in subjects[2]
    history = fs("history", "onboarding-length", "--env", "prod").stdout
    assert "concluded" in history or "decision" in history


@pytest.mark.slow
def test_e2e__a_45_55_split__is_caught_by_srm_and_blocks_conclude(flagstone_exe, tmp_path) -> None:
    repo = make_repo(tmp_path / "repo", EMPTY)
    fs = lambda *a, code=0: _run(flagstone_exe, repo, list(a), code)  # noqa: E731
    fs(
        "experiment",
        "create",
        "onboarding-length",
        "-e",
        "prod",
        "--flag",
        "onboarding-flow",
        "--metric",
        "primary:converted:proportion",
        "--weights",
        "classic=45,short=55",
        "--commit",
    )
    fs("experiment", "start", "onboarding-length", "-e", "prod", "--commit")
    fs("build", "--env", "prod")
    log = tmp_path / "exposures.jsonl"
    events = simulate_users(
        repo / "dist" / "prod.json", log, 6000, {"classic": 0.1, "short": 0.1}, seed=2
    )
    # The bundle really serves 45/55; the experiment record says 50/50, as after a botched edit.
    path = repo / "environments/prod/experiments.yaml"
    path.write_text(
        path.read_text().replace("{classic: 45, short: 55}", "{classic: 50, short: 50}")
    )
    git(repo, "commit", "-qam", "weights edited by hand", "--no-gpg-sign")
    metrics = write_jsonl(tmp_path / "metrics.jsonl", events)
    data = ["--exposures", str(log), "--metrics", str(metrics)]
    analyzed = fs("analyze", "onboarding-length", "-e", "prod", *data, code=1)
    assert "sample ratio mismatch" in analyzed.stdout
    refused = fs(
        "experiment",
        "conclude",
        "onboarding-length",
        "-e",
        "prod",
        "--winner",
        "short",
        "--reason",
        "r",
        *data,
        code=2,
    )
    assert "sample ratio mismatch" in refused.stderr
    assert yaml.safe_load(path.read_text())["onboarding-length"]["status"] == "running"
    assert git(repo, "status", "--porcelain") == ""


def _run(exe, repo: Path, args: list[str], code: int) -> subprocess.CompletedProcess[str]:
    result = exe(args, cwd=repo)
    assert result.returncode == code, result.stdout + result.stderr
    return result


def png_size_and_ink(data: bytes) -> tuple[int, int, float]:
    """(width, height, share of pixels that are not near-white) of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 3
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * channels
    previous, ink, line = bytearray(stride), 0, 0
    for y in range(height):
        kind, row = raw[line], bytearray(raw[line + 1 : line + 1 + stride])
        line += 1 + stride
        for x in range(stride):
            a = row[x - channels] if x >= channels else 0
            b, c = previous[x], previous[x - channels] if x >= channels else 0
            if kind == 1:
                row[x] = (row[x] + a) & 255
            elif kind == 2:
                row[x] = (row[x] + b) & 255
            elif kind == 3:
                row[x] = (row[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[x] = (row[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 4 == 0:
            ink += sum(1 for x in range(0, stride, channels * 4) if min(row[x : x + 3]) < 200)
        previous = row
    sampled = ((height + 3) // 4) * len(range(0, stride, channels * 4))
    return width, height, ink / sampled


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
    reason="needs Chromium: sudo apt-get install chromium",
)
def test_html_report__renders_in_headless_chromium_with_charts(cli, tmp_path) -> None:
    from tests.analyze_data import EXPERIMENT, simulate

    repo = make_repo(tmp_path / "repo", EXPERIMENT)
    exposures, events = simulate(3000, rates={"classic": 0.1, "short": 0.14})
    exp = write_jsonl(tmp_path / "e.jsonl", exposures)
    met = write_jsonl(tmp_path / "m.jsonl", events)
    report = tmp_path / "report.html"
    result = cli(
        [
            "analyze",
            "onboarding-length",
            "-e",
            "prod",
            "--exposures",
            str(exp),
            "--metrics",
            str(met),
            "--html",
            str(report),
        ],
        cwd=repo,
    )
    assert result.exit_code == 0, result.stderr
    page = report.read_text()
    assert page.count("<svg") == 3  # one CI chart per metric
    assert "<script" not in page and "src=" not in page and "<link" not in page  # self-contained
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1000,1400",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    width, height, ink = png_size_and_ink(shot.read_bytes())
    assert (width, height) == (1000, 1400)
    assert 0.01 < ink < 0.5, ink  # text, tables and charts; neither blank nor a solid block
