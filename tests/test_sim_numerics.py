"""Time to accuracy: the simulator carries real tensors through the same role programs."""

from __future__ import annotations

import numpy as np
import pytest

from pslab.algorithm_config import VARIANTS, AlgorithmName
from pslab.scenario import ScenarioError, scenario_from_dict
from sim.run import simulate

pytestmark = pytest.mark.slow  # real training inside simulations: several seconds each


def periodic(algorithm: str) -> dict:
    """τ = 4 for the variants that communicate every τ steps (sync_ps has no such setting)."""
    return {"tau": 4} if "tau" in VARIANTS[AlgorithmName(algorithm)].model_fields else {}


def digits(algorithm: str, iterations: int = 40, **algo) -> dict:
    return {
        "name": f"numerics-{algorithm}",
        "topology": {"preset": "cluster", "nodes": 2, "gpus_per_node": 2, "servers": 1},
        "workload": {"model": "digits_mlp", "batch_size": 32, "compute_time": "5ms"},
        "algorithm": {"name": algorithm, "lr": 0.3, **periodic(algorithm), **algo},
        "run": {"iterations": iterations, "warmup": 2},
        "numerics": {"model": "digits_mlp", "target_accuracy": 0.8},
    }


def test_synchronous_variants_compute_the_same_model() -> None:
    results = [
        simulate(scenario_from_dict(digits(a))) for a in ("sync_ps", "allreduce", "layered_sgd")
    ]
    for r in results[1:]:
        np.testing.assert_allclose(r.params, results[0].params, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("algorithm", ["async_ps", "easgd", "leader_sgd", "local_sgd"])
def test_each_variant_learns_and_reports_time_to_target(algorithm: str) -> None:
    result = simulate(scenario_from_dict(digits(algorithm)))
    m = result.metrics
    assert m["test_accuracy"] >= 0.8
    assert 0 < m["time_to_target_s"] <= m["simulated_time_s"]
    losses = [c for c in result.trace.counters if c[1] == "test"]
    assert len(losses) >= 40 and losses[-1][3]["loss"] < losses[0][3]["loss"]


def test_numerics_model_must_match_the_workload() -> None:
    data = digits("sync_ps")
    data["workload"]["model"] = "resnet50"
    with pytest.raises(ScenarioError, match=r"numerics\.model"):
        scenario_from_dict(data)
