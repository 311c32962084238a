from __future__ import annotations

from pathlib import Path

from scipy.stats import chi2_contingency

from flagstone.runtime import Client
from tests.runtime_helpers import bundle_from_yaml

N = 100_000


def rollout_client(tmp_path: Path, on: float) -> Client:
    flags = f"f:\n  variants: {{on: true, off: false}}\n  default: {{rollout: {{on: {on}, off: {round(100 - on, 2)}}}}}\n"
    return Client.from_dict(bundle_from_yaml(tmp_path, flags))


def test_rollout__share_within_half_a_point_over_100k_ids(tmp_path: Path) -> None:
    for share in (1, 20, 33.33, 50, 99):
        client = rollout_client(tmp_path, share)
        on = sum(client.variant("f", {"user_id": f"user-{i}"}) == "on" for i in range(N))
        assert abs(100 * on / N - share) < 0.5, share


def test_rollout__raising_the_percentage__keeps_everyone_already_in(tmp_path: Path) -> None:
    low, high = rollout_client(tmp_path, 20), rollout_client(tmp_path, 50)
    ids = [f"user-{i}" for i in range(20_000)]
    in_low = {u for u in ids if low.variant("f", {"user_id": u}) == "on"}
    in_high = {u for u in ids if high.variant("f", {"user_id": u}) == "on"}
    assert in_low < in_high


def test_rollout__0_and_100_percent__are_exact(tmp_path: Path) -> None:
    nobody, everybody = rollout_client(tmp_path, 0), rollout_client(tmp_path, 100)
    ids = [f"user-{i}" for i in range(5_000)]
    assert all(nobody.variant("f", {"user_id": u}) == "off" for u in ids)
    assert all(everybody.variant("f", {"user_id": u}) == "on" for u in ids)


EXPERIMENTS = """
    exp-a:
      flag: a
      status: running
      metrics: {primary: {name: m, kind: proportion}}
    exp-b:
      flag: b
      status: running
      weights: {x: 30, y: 30, z: 40}
      metrics: {primary: {name: m, kind: proportion}}
"""
FLAGS = "a:\n  variants: {control: 0, treatment: 1}\n  default: control\nb:\n  variants: {x: x, y: y, z: z}\n  default: x\n"


def test_experiments__assignments_are_independent(tmp_path: Path) -> None:
    client = Client.from_dict(bundle_from_yaml(tmp_path, FLAGS, experiments=EXPERIMENTS))
    table = {(a, b): 0 for a in ("control", "treatment") for b in "xyz"}
    for i in range(30_000):
        ctx = {"user_id": f"u{i}"}
        table[(client.assign("exp-a", ctx), client.assign("exp-b", ctx))] += 1
    observed = [[table[(a, b)] for b in "xyz"] for a in ("control", "treatment")]
    assert chi2_contingency(observed).pvalue > 0.001
    shares = [sum(table[(a, b)] for a in ("control", "treatment")) / 30_000 for b in "xyz"]
    assert [round(s, 2) for s in shares] == [0.3, 0.3, 0.4]


def test_experiment__arm_is_independent_of_its_flags_own_rollout(tmp_path: Path) -> None:
    flags = "same:\n  variants: {on: true, off: false}\n  default: {rollout: {on: 50, off: 50}}\n"
    experiments = (
        "same:\n  flag: same\n  status: draft\n  metrics: {primary: {name: m, kind: proportion}}\n"
    )
    client = Client.from_dict(
        bundle_from_yaml(tmp_path, flags, experiments=experiments.replace("draft", "running"))
    )
    rollout = Client.from_dict(bundle_from_yaml(tmp_path, flags))
    agree = sum(
        client.assign("same", {"user_id": f"u{i}"}) == rollout.variant("same", {"user_id": f"u{i}"})
        for i in range(20_000)
    )
    assert abs(agree / 20_000 - 0.5) < 0.02


def test_traffic__raising_it_only_adds_units_and_keeps_their_arm(tmp_path: Path) -> None:
    def client(traffic: int) -> Client:
        exps = f"e:\n  flag: a\n  status: running\n  traffic: {traffic}\n  metrics: {{primary: {{name: m, kind: proportion}}}}\n"
        return Client.from_dict(bundle_from_yaml(tmp_path, FLAGS, experiments=exps))

    low, high = client(10), client(40)
    ids = [f"u{i}" for i in range(20_000)]
    low_arms = {u: low.assign("e", {"user_id": u}) for u in ids}
    high_arms = {u: high.assign("e", {"user_id": u}) for u in ids}
    enrolled_low = {u for u, a in low_arms.items() if a is not None}
    assert all(high_arms[u] == low_arms[u] for u in enrolled_low)
    assert abs(len(enrolled_low) / 20_000 - 0.10) < 0.01
    assert abs(sum(a is not None for a in high_arms.values()) / 20_000 - 0.40) < 0.015


def test_layer__experiments_never_share_a_unit(tmp_path: Path) -> None:
    exps = EXPERIMENTS.replace(
        "status: running\n", "status: running\n      layer: checkout\n      traffic: 50\n"
    )
    client = Client.from_dict(bundle_from_yaml(tmp_path, FLAGS, experiments=exps))
    both = in_a = in_b = 0
    for i in range(20_000):
        ctx = {"user_id": f"u{i}"}
        a, b = client.assign("exp-a", ctx), client.assign("exp-b", ctx)
        both += a is not None and b is not None
        in_a += a is not None
        in_b += b is not None
    assert both == 0
    assert abs(in_a / 20_000 - 0.5) < 0.015 and abs(in_b / 20_000 - 0.5) < 0.015


def test_consent__required_and_missing__means_no_enrolment_and_the_flags_normal_value(
    tmp_path: Path,
) -> None:
    exps = EXPERIMENTS.replace("status: running\n", "status: running\n      consent: required\n", 1)
    client = Client.from_dict(bundle_from_yaml(tmp_path, FLAGS, experiments=exps))
    assert client.assign("exp-a", {"user_id": "u1"}) is None
    assert client.details("a", {"user_id": "u1"}).reason == "DEFAULT"
    assert client.assign("exp-a", {"user_id": "u1", "consent": {"experiments": True}}) is not None
    r = client.details("a", {"user_id": "u1", "consent": True})
    assert (r.reason, r.experiment) == ("SPLIT", "exp-a")


def test_experiment__not_running__assigns_nobody(tmp_path: Path) -> None:
    client = Client.from_dict(
        bundle_from_yaml(tmp_path, FLAGS, experiments=EXPERIMENTS.replace("running", "stopped"))
    )
    assert {client.assign("exp-a", {"user_id": f"u{i}"}) for i in range(100)} == {None}
