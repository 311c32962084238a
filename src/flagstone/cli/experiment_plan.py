"""``flagstone experiment plan``: units per arm, duration, or the reverse (the MDE)."""

from __future__ import annotations

import json
import math
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flagstone.cli.app import ExitCode, Format, command, err, out
from flagstone.cli.groups import experiment_app
from flagstone.errors import FlagstoneError

if TYPE_CHECKING:
    from flagstone.stats.power import Plan


class CorrectionChoice(StrEnum):
    holm = "holm"
    bh = "bh"
    bonferroni = "bonferroni"
    none = "none"


def plan_json(plan: Plan, mode: str) -> dict[str, Any]:
    d = plan.design
    return {
        "ok": True,
        "mode": mode,
        "kind": d.kind,
        "baseline": d.baseline,
        "baseline_sd": d.baseline_sd,
        "relative": d.relative,
        "alpha": d.alpha,
        "test_alpha": d.test_alpha,
        "power": d.power,
        "achieved_power": plan.achieved_power,
        "sides": d.sides,
        "arms": d.arms,
        "metrics": d.metrics,
        "comparisons": d.comparisons,
        "correction": d.correction,
        "mde_absolute": plan.mde_absolute,
        "mde_relative": plan.mde_relative,
        "units_per_arm": plan.units_per_arm,
        "total_units": plan.total_units,
        "traffic": d.traffic,
        "daily_units": d.daily_units,
        "enrolled_per_day": plan.enrolled_per_day,
        "days": plan.days,
    }


def effect_text(plan: Plan) -> str:
    d = plan.design
    if d.kind == "proportion":
        absolute = f"{plan.mde_absolute * 100:+.3g} percentage points"
    else:
        absolute = f"{plan.mde_absolute:+.4g}"
    relative = f" ({plan.mde_relative:+.3%} relative)" if plan.mde_relative is not None else ""
    return absolute + relative


def plan_lines(plan: Plan, mode: str) -> list[tuple[str, str]]:
    d = plan.design
    baseline = f"{d.baseline:.4g}" if d.kind == "mean" else f"{d.baseline * 100:.4g}%"
    sd = f", sd {d.baseline_sd:g}" if d.baseline_sd is not None else ""
    sides = "two-sided" if d.sides == 2 else "one-sided"
    rows = [
        ("metric", f"{d.kind}, baseline {baseline}{sd}"),
        ("detects" if mode == "sample-size" else "minimum detectable effect", effect_text(plan)),
        ("power", f"{plan.achieved_power:.1%} (target {d.power:.0%}) at α = {d.alpha:g}, {sides}"),
    ]
    if d.comparisons > 1:
        how = "none" if d.correction == "none" else f"{d.correction}: planned at α/{d.comparisons}"
        rows.append(
            (
                "comparisons",
                f"{d.comparisons} ({d.arms - 1} treatment arm(s) × {d.metrics} metric(s)); "
                f"α per test {d.test_alpha:.4g} ({how})",
            )
        )
    rows.append(("units per arm", f"{plan.units_per_arm:,}"))
    rows.append(("total units", f"{plan.total_units:,} over {d.arms} arms"))
    if plan.days is not None and plan.enrolled_per_day is not None and d.daily_units is not None:
        rows.append(
            (
                "duration",
                f"{plan.days:,} day(s) at {plan.enrolled_per_day:,.0f} enrolled units/day "
                f"({d.traffic:g}% of {d.daily_units:,.0f} daily units)",
            )
        )
    return rows


def render_markdown(plan: Plan, mode: str) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in plan_lines(plan, mode)]
    return "\n".join(lines) + "\n"


@command(name="plan", group=experiment_app)
def plan(
    baseline: Annotated[
        float,
        typer.Option(help="Control's conversion rate (0–1), or its mean with --baseline-sd."),
    ],
    mde: Annotated[
        float | None,
        typer.Option(help="Minimum detectable effect: absolute, or relative with --relative."),
    ] = None,
    relative: Annotated[
        bool, typer.Option("--relative", help="--mde (and the reverse's output) is relative.")
    ] = False,
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    power: Annotated[float, typer.Option(help="Target power.")] = 0.8,
    sides: Annotated[int, typer.Option(help="1 or 2 sided test.", min=1, max=2)] = 2,
    arms: Annotated[int, typer.Option(help="Arms, control included.", min=2)] = 2,
    traffic: Annotated[float, typer.Option(help="Percent of eligible units enrolled.")] = 100.0,
    daily_units: Annotated[
        float | None, typer.Option("--daily-units", help="Eligible units per day (for duration).")
    ] = None,
    correction: Annotated[
        CorrectionChoice, typer.Option(help="Multiple-testing correction planned for.")
    ] = CorrectionChoice.holm,
    metrics: Annotated[
        int, typer.Option(help="Metrics tested (primary + secondary) under the correction.", min=1)
    ] = 1,
    baseline_sd: Annotated[
        float | None,
        typer.Option("--baseline-sd", help="Standard deviation of a mean metric's values."),
    ] = None,
    units: Annotated[
        int | None,
        typer.Option(help="Units per arm you have: prints the minimum detectable effect instead."),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Units per arm and duration to detect an effect, or the effect a sample can detect."""
    try:
        from flagstone.stats.power import Design, minimum_detectable_effect, sample_size

        if (mde is None) == (units is None):
            raise FlagstoneError("pass --mde (to get a sample size) or --units (to get the MDE)")
        numbers = {"--baseline": baseline, "--mde": mde, "--alpha": alpha, "--power": power}
        numbers |= {
            "--traffic": traffic,
            "--daily-units": daily_units,
            "--baseline-sd": baseline_sd,
        }
        for option, number in numbers.items():
            if number is not None and not math.isfinite(number):  # JSON has no NaN, no Infinity
                raise FlagstoneError(f"{option} must be a finite number, got {number}")
        design = Design(
            baseline=baseline,
            baseline_sd=baseline_sd,
            alpha=alpha,
            power=power,
            sides=2 if sides == 2 else 1,
            arms=arms,
            metrics=metrics,
            correction=correction.value,
            relative=relative,
            traffic=traffic,
            daily_units=daily_units,
        )
        if units is not None:
            mode, result = "mde", minimum_detectable_effect(design, units)
        else:
            assert mde is not None
            mode, result = "sample-size", sample_size(design, mde)
    except FlagstoneError as e:
        if fmt is Format.json:
            doc = {"ok": False, "error": {"code": "plan", "message": str(e)}}
            sys.stdout.write(json.dumps(doc, sort_keys=True, allow_nan=False) + "\n")
            err.print(f"error: {e}", markup=False, highlight=False)
            raise typer.Exit(ExitCode.ERROR) from None
        raise
    if fmt is Format.json:
        try:
            text = json.dumps(plan_json(result, mode), sort_keys=True, indent=2, allow_nan=False)
        except ValueError:  # an infinite figure: standard JSON has no way to write it
            raise FlagstoneError(
                "the plan has an infinite figure, which JSON cannot hold; check --traffic and --daily-units"
            ) from None
        sys.stdout.write(text + "\n")
        return
    if fmt is Format.markdown:
        sys.stdout.write(render_markdown(result, mode))
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in plan_lines(result, mode):
        table.add_row(key, value)
    out.print(table)
