"""Every scenario file runs in the simulator and its summary makes sense."""

from __future__ import annotations

from pathlib import Path

import pytest

from pslab.scenario import load_scenario
from sim.run import simulate

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "scenarios").rglob("*.yaml"))
HEAVY = {"scale_1024.yaml", "layered_sgd_cluster.yaml"}


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, id=p.name, marks=[pytest.mark.slow] if p.name in HEAVY else [])
        for p in FILES
    ],
)
def test_scenario_simulates(path: Path) -> None:
    scenario = load_scenario(path)
    m = simulate(scenario, path.parent).metrics
    assert m["iteration_time_s"] > 0
    assert m["throughput_samples_per_s"] > 0
    assert 0.0 <= m["overlap_ratio"] <= 1.0
    assert m["exposed_comm_time_s"] <= m["comm_time_s"] + 1e-12
    # an iteration holds at least its own (blocking) compute
    assert m["iteration_time_s"] >= m["compute_time_s"] * 0.999
    assert m["workers"] == scenario.topology.n_workers


def test_the_scenario_set_covers_the_contract() -> None:
    names = {p.stem for p in FILES}
    assert {
        "quickstart",
        "ps_incast",
        "ring_allreduce",
        "layered_sgd_cluster",
        "leader_sgd_multi",
        "easgd",
        "scale_1024",
    } <= names
