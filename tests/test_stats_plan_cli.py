"""flagstone experiment plan: the real CLI, its JSON held to schemas/cli/experiment-plan.schema.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from statsmodels.stats.power import NormalIndPower, TTestIndPower

from tests.cli_schemas import validator


def plan_json(cli, *args: str) -> dict:  # type: ignore[no-untyped-def]
    result = cli(["experiment", "plan", *args, "--format", "json"])
    doc = json.loads(result.stdout)
    validator("experiment plan").validate(doc)  # errors: the shared envelope's branch
    assert result.exit_code == (0 if doc["ok"] else 2), result.stderr
    return doc


def test_plan__issue_example__units_per_arm_and_duration(cli) -> None:  # type: ignore[no-untyped-def]
    doc = plan_json(
        cli, "--baseline", "0.12", "--mde", "0.01", "--traffic", "50", "--daily-units", "20000"
    )
    es = 0.01 / math.sqrt((0.12 * 0.88 + 0.13 * 0.87) / 2)
    assert doc["units_per_arm"] == math.ceil(
        NormalIndPower().solve_power(es, alpha=0.05, power=0.8)
    )
    assert doc["total_units"] == 2 * doc["units_per_arm"]
    assert doc["enrolled_per_day"] == 10_000
    assert doc["days"] == math.ceil(doc["total_units"] / 10_000)
    assert doc["mode"] == "sample-size" and doc["kind"] == "proportion"


def test_plan__three_arms_three_metrics_holm__plans_at_alpha_over_six(cli) -> None:  # type: ignore[no-untyped-def]
    doc = plan_json(
        cli,
        "--baseline",
        "0.12",
        "--mde",
        "0.01",
        "--arms",
        "3",
        "--correction",
        "holm",
        "--metrics",
        "3",
    )
    assert doc["comparisons"] == 6 and doc["test_alpha"] == pytest.approx(0.05 / 6)
    es = 0.01 / math.sqrt((0.12 * 0.88 + 0.13 * 0.87) / 2)
    assert doc["units_per_arm"] == math.ceil(
        NormalIndPower().solve_power(es, alpha=0.05 / 6, power=0.8)
    )
    assert doc["total_units"] == 3 * doc["units_per_arm"]
    none = plan_json(
        cli,
        "--baseline",
        "0.12",
        "--mde",
        "0.01",
        "--arms",
        "3",
        "--correction",
        "none",
        "--metrics",
        "3",
    )
    assert none["units_per_arm"] < doc["units_per_arm"]


def test_plan__relative_mde__is_a_share_of_the_baseline(cli) -> None:  # type: ignore[no-untyped-def]
    doc = plan_json(
        cli,
        "--baseline",
        "0.12",
        "--mde",
        "0.05",
        "--relative",
        "--alpha",
        "0.1",
        "--power",
        "0.9",
        "--sides",
        "1",
    )
    assert doc["mde_absolute"] == pytest.approx(0.006) and doc["mde_relative"] == pytest.approx(
        0.05
    )
    es = 0.006 / math.sqrt((0.12 * 0.88 + 0.126 * 0.874) / 2)
    assert doc["units_per_arm"] == math.ceil(
        NormalIndPower().solve_power(es, alpha=0.1, power=0.9, alternative="larger")
    )


def test_plan__mean_metric__uses_the_baseline_sd(cli) -> None:  # type: ignore[no-untyped-def]
    doc = plan_json(cli, "--baseline", "25", "--baseline-sd", "40", "--mde", "2")
    assert doc["kind"] == "mean"
    assert doc["units_per_arm"] == math.ceil(
        TTestIndPower().solve_power(2 / 40, alpha=0.05, power=0.8)
    )


def test_plan__units__gives_the_reverse_mde(cli) -> None:  # type: ignore[no-untyped-def]
    doc = plan_json(cli, "--baseline", "0.12", "--units", "17166")
    assert doc["mode"] == "mde" and doc["units_per_arm"] == 17166
    assert doc["mde_absolute"] == pytest.approx(0.01, rel=1e-3)
    assert doc["achieved_power"] == pytest.approx(0.8, abs=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--baseline", "1.2", "--mde", "0.1"], "between 0 and 1"),
        (["--baseline", "0.1"], "pass --mde"),
        (["--baseline", "0.1", "--mde", "0.01", "--units", "100"], "pass --mde"),
        (["--baseline", "0.5", "--units", "3"], "cannot reach"),
    ],
)
def test_plan__impossible_request__is_one_json_error_and_exit_2(
    cli, args: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    doc = plan_json(cli, *args)
    assert doc["ok"] is False and message in doc["error"]["message"]


def test_plan__text__reads_as_a_plan(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        [
            "experiment",
            "plan",
            "--baseline",
            "0.12",
            "--mde",
            "0.01",
            "--arms",
            "3",
            "--daily-units",
            "20000",
            "--traffic",
            "50",
        ]
    )
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    units = json.loads(
        cli(
            [
                "experiment",
                "plan",
                "--baseline",
                "0.12",
                "--mde",
                "0.01",
                "--arms",
                "3",
                "--format",
                "json",
            ]
        ).stdout
    )["units_per_arm"]
    assert f"units per arm {units:,}" in text
    assert "+1 percentage points (+8.333% relative)" in text
    assert "over 3 arms" in text and "day(s) at 10,000 enrolled units/day" in text


def test_plan__text_error__is_one_red_line_without_traceback(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli(["experiment", "plan", "--baseline", "0", "--mde", "0.1"])
    assert result.exit_code == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr + result.stdout


@pytest.mark.slow
def test_plan__installed_entry_point__writes_one_json_object(flagstone_exe, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = flagstone_exe(
        ["experiment", "plan", "--baseline", "0.3", "--mde", "0.02", "--format", "json"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    validator("experiment plan").validate(doc)  # errors: the shared envelope's branch
    assert doc["ok"] is True and doc["units_per_arm"] > 0
    markdown = flagstone_exe(
        ["experiment", "plan", "--baseline", "0.3", "--mde", "0.02", "--format", "markdown"],
        cwd=tmp_path,
    )
    assert markdown.returncode == 0 and markdown.stdout.startswith("| | |")


def test_plan__imports_no_scipy_stats() -> None:
    # scipy.stats costs more than the rest of the command's start-up; power.py needs only scipy.special.
    import subprocess
    import sys

    code = "import sys, flagstone.stats.power; print('scipy.stats' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"
