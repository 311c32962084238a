"""Small flagstone repositories with one experiment, and simulated exposure/metric data."""

from __future__ import annotations

import functools
import json
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

FLAGS = """
onboarding-flow:
  variants: {classic: 1, short: 2}
  default: classic
second-flow:
  variants: {a: a, b: b}
  default: a
"""

EXPERIMENT = """
onboarding-length:
  flag: onboarding-flow
  status: running
  weights: {classic: 50, short: 50}
  control: classic
  dimensions: [country]
  metrics:
    primary: {name: converted, kind: proportion}
    secondary:
      - {name: revenue, kind: mean}
    guardrails:
      - {name: crashed, kind: proportion, worse: increase}
  analysis: {method: frequentist, alpha: 0.05}
  started_at: "2026-01-01T00:00:00Z"
"""

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@functools.cache
def _scaffold() -> Path:
    """``flagstone init``'s repository, made once per test run and copied from then on."""
    folder = Path(tempfile.mkdtemp(prefix="flagstone-scaffold-")) / "repo"
    exe = Path(sys.executable).parent / "flagstone"
    subprocess.run([str(exe), "init", str(folder)], check=True, capture_output=True)
    shutil.rmtree(folder / ".git", ignore_errors=True)
    return folder


def make_repo(root: Path, experiments: str = EXPERIMENT, flags: str = FLAGS) -> Path:
    """A committed flagstone repository (init's scaffold) with these flags and experiments."""
    shutil.copytree(_scaffold(), root)
    for env in ("dev", "staging", "prod"):
        folder = root / "environments" / env
        with (folder / "flags.yaml").open("a") as f:
            f.write(textwrap.dedent(flags))
        (folder / "experiments.yaml").write_text(
            "# experiments, kept in git\n" + textwrap.dedent(experiments)
        )
    git = ["git", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "base", "--no-gpg-sign"], check=True)
    return root


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    return path


def simulate(
    n: int,
    *,
    seed: int = 7,
    experiment: str = "onboarding-length",
    arms: Sequence[str] = ("classic", "short"),
    shares: Sequence[float] = (0.5, 0.5),
    rates: Mapping[str, float] | None = None,
    revenue: Mapping[str, float] | None = None,
    crash: Mapping[str, float] | None = None,
    env: str = "prod",
    countries: Sequence[str] = ("DE", "FR", "US"),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Exposure records in the runtime's format and metric events with planted effects."""
    rng = random.Random(seed)
    rates = rates or {a: 0.10 for a in arms}
    revenue = revenue or {a: 5.0 for a in arms}
    crash = crash or {a: 0.02 for a in arms}
    exposures: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for i in range(n):
        arm = rng.choices(list(arms), weights=list(shares))[0]
        unit = f"{i:032x}"
        ts = START + i * 10.0
        record = {
            "type": "exposure",
            "experiment": experiment,
            "arm": arm,
            "unit": unit,
            "flag": "onboarding-flow",
            "environment": env,
            "ts": ts,
            "dimensions": {"country": countries[i % len(countries)]},
        }
        exposures.append(record)
        if i % 3 == 0:  # a repeat exposure: the first one counts
            exposures.append({**record, "ts": ts + 5.0})
        if rng.random() < rates[arm]:
            events.append({"unit": unit, "metric": "converted", "value": 1, "ts": ts + 60})
        if rng.random() < 0.5:
            events.append(
                {
                    "unit": unit,
                    "metric": "revenue",
                    "value": rng.expovariate(1 / revenue[arm]),
                    "ts": ts + 90,
                }
            )
        if rng.random() < crash[arm]:
            events.append({"unit": unit, "metric": "crashed", "value": 1, "ts": ts + 30})
    return exposures, events
