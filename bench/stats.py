"""Statistics for 20 metrics x 4 arms from aggregates: analyze_experiment per method.

Baseline, measured in the same run: the scipy code a data scientist would write for the
fixed-horizon read — ``scipy.stats.ttest_ind_from_stats`` (Welch) per metric and arm,
then statsmodels' ``multipletests`` (Holm) — which computes far less (no relative lift,
no SRM, no guardrails, no notices) and so is a floor, not a peer.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from flagstone.stats import (  # noqa: E402
    AnalysisSpec,
    Cuped,
    ExperimentSpec,
    Look,
    Mean,
    MetricSpec,
    Proportion,
    Ratio,
    analyze_experiment,
)

ARMS = ("control", "a", "b", "c")
GOAL_MS = 50.0


def workload(seed: int = 1) -> tuple[list[MetricSpec], dict, dict, list[Look]]:
    rng = np.random.default_rng(seed)
    metrics: list[MetricSpec] = []
    data: dict = {}
    cuped_data: dict = {}
    n = 250_000
    for i in range(20):
        name = f"m{i:02d}"
        role = "primary" if i == 0 else ("guardrail" if i >= 17 else "secondary")
        kind = "proportion" if i % 3 == 0 else ("ratio" if i % 3 == 1 and i < 8 else "mean")
        metrics.append(
            MetricSpec(
                name, kind, role=role, worse="increase" if role == "guardrail" else "decrease"
            )
        )  # type: ignore[arg-type]
        by_arm, by_arm_cuped = {}, {}
        for k, arm in enumerate(ARMS):
            if kind == "proportion":
                by_arm[arm] = Proportion(n, int(rng.binomial(n, 0.1 + 0.002 * k)))
            elif kind == "ratio":
                by_arm[arm] = Ratio(n, 5.0 * n, 60.0 * n, 2.0 * n, 5.0 * n, 11.0 * n + k * 1000)
            else:
                mean = 10 + 0.02 * k
                by_arm[arm] = Mean(n, mean * n, (mean * mean + 9) * n)
            post = by_arm[arm] if not isinstance(by_arm[arm], Ratio) else Mean(n, 5.0 * n, 60.0 * n)
            pre = Mean(n, post.sum * 0.95, post.sum_sq * 0.9)
            by_arm_cuped[arm] = Cuped(post, pre, post.sum_sq * 0.85)
        data[name] = by_arm
        cuped_data[name] = by_arm_cuped
    looks = [
        Look(
            f"2026-01-{day:02d}",
            {m: {a: _scaled(s, day / 15) for a, s in arms.items()} for m, arms in data.items()},
        )
        for day in range(1, 15)
    ]
    return metrics, data, cuped_data, looks


def _scaled(s: Proportion | Mean | Ratio, share: float) -> Proportion | Mean | Ratio:
    n = max(2, int(s.n * share))
    if isinstance(s, Proportion):
        return Proportion(n, int(s.successes * share))
    if isinstance(s, Mean):
        return Mean(n, s.sum * share, s.sum_sq * share)
    return Ratio(
        n,
        s.num_sum * share,
        s.num_sum_sq * share,
        s.den_sum * share,
        s.den_sum_sq * share,
        s.num_den_sum * share,
    )


def scipy_baseline(data: dict) -> Callable[[], object]:
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    def run() -> object:
        p_values = []
        for by_arm in data.values():
            c = by_arm["control"]
            for arm in ARMS[1:]:
                t = by_arm[arm]
                p_values.append(
                    stats.ttest_ind_from_stats(
                        t.mean,
                        np.sqrt(t.variance),
                        t.n,
                        c.mean,
                        np.sqrt(c.variance),
                        c.n,
                        equal_var=False,
                    ).pvalue
                )
        return multipletests(p_values, method="holm")

    return run


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median CPU milliseconds of the process (every thread, so BLAS threads count too):
    wall time on a shared 2-core machine swings with the other processes' load."""
    fn()  # warm caches and lazy imports
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument(
        "--no-write", action="store_true", help="print, do not update docs/benchmarks.md"
    )
    args = parser.parse_args()
    repeats = 5 if args.quick else 31
    metrics, data, cuped_data, looks = workload()
    weights = dict.fromkeys(ARMS, 25.0)

    def spec(**analysis: object) -> ExperimentSpec:
        return ExperimentSpec(
            "bench", ARMS, "control", weights, tuple(metrics), AnalysisSpec(**analysis)
        )  # type: ignore[arg-type]

    frequentist = analyze_experiment(spec(), data)
    cases: list[tuple[str, Callable[[], object]]] = [
        (
            "frequentist (Welch / z, delta-method lifts, Holm, SRM, guardrails)",
            lambda: analyze_experiment(spec(), data),
        ),
        (
            "bayesian (exact beta-binomial for proportions)",
            lambda: analyze_experiment(spec(method="bayesian"), data),
        ),
        (
            "sequential, 15 looks",
            lambda: analyze_experiment(spec(method="sequential"), data, looks),
        ),
        ("frequentist + CUPED", lambda: analyze_experiment(spec(cuped=True), cuped_data)),
        (
            "to_dict() of the frequentist result",
            frequentist.to_dict,
        ),
    ]
    loads = [os.getloadavg()[0]]
    baseline = median_ms(scipy_baseline(data), repeats)
    rows = [(name, median_ms(fn, repeats)) for name, fn in cases]
    loads.append(os.getloadavg()[0])
    lines = [
        "## Statistics",
        "",
        f"Command: `.venv/bin/python bench/stats.py` (run by `make bench`). Measured {time.strftime('%Y-%m-%d')} on "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, load average "
        f"{loads[0]:.1f} to {loads[1]:.1f}; median CPU time (user + system, all threads) of {repeats} runs. Workload: 20 metrics "
        "(7 proportions, 3 ratios, 10 means; 3 guardrails) × 4 arms from sufficient statistics, 250,000 units per arm. "
        "Baseline in the same run: scipy `ttest_ind_from_stats` per metric and arm + statsmodels `multipletests` "
        f"(Holm) — {baseline:.2f} ms; it computes a fraction of what `analyze_experiment` reports.",
        "",
        f"| analysis | time | × baseline | goal < {GOAL_MS:.0f} ms |",
        "|---|---:|---:|---|",
    ]
    for name, ms in rows:
        lines.append(
            f"| {name} | {ms:.1f} ms | {ms / baseline:.2f} | {'met' if ms < GOAL_MS else 'missed'} |"
        )
    lines.append("")
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        from runtime import write_section

        write_section(section)


if __name__ == "__main__":
    main()
