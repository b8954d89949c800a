"""The emulator for real: processes, gRPC on loopback, torch training, faults."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from grpc_ps.launch import LaunchError, launch
from pslab.algorithm_config import VARIANTS, AlgorithmName
from pslab.data import Batches, load
from pslab.models import FlatModel
from pslab.scenario import scenario_from_dict
from pslab.trace import load_spans

pytestmark = pytest.mark.slow  # real processes: several seconds each

ALGORITHMS = [
    "sync_ps",
    "async_ps",
    "ssp",
    "allreduce",
    "layered_sgd",
    "easgd",
    "leader_sgd",
    "local_sgd",
]


def periodic(algorithm: str) -> dict:
    """τ = 4 for the variants that communicate every τ steps (sync_ps has no such setting)."""
    return {"tau": 4} if "tau" in VARIANTS[AlgorithmName(algorithm)].model_fields else {}


def digits(algorithm: str, workers: int = 4, iterations: int = 150, **algo) -> dict:
    return {
        "name": f"digits-{algorithm}",
        "topology": {
            "preset": "single_node",
            "gpus_per_node": 0,
            "workers_per_node": workers,
            "cores_per_node": 2,
            "servers": 1,
        },
        "workload": {"model": "digits_mlp", "batch_size": 32, "compute_time": 0, "io_time": 0},
        "algorithm": {"name": algorithm, "lr": 0.3, **periodic(algorithm), **algo},
        "run": {"iterations": iterations, "seed": 0, "warmup": 2},
        "emulation": {"compute": "real", "model": "digits_mlp", "device": "cpu"},
    }


def test_sync_ps_equals_one_process_on_the_mean_gradient() -> None:
    n, steps, lr = 3, 6, 0.2
    result = launch(scenario_from_dict(digits("sync_ps", n, steps, lr=lr)))
    model = FlatModel("digits_mlp", 0, torch.device("cpu"))
    data = load(0, torch.device("cpu"))
    batches = [Batches(data, r, n, 32, 0) for r in range(n)]
    for i in range(steps):
        total = torch.zeros_like(model.grad)
        for b in batches:
            model.forward_backward(*b.batch(i))
            total += model.grad
        model.params -= lr * total / n
    assert result.params is not None
    np.testing.assert_allclose(result.params, model.params.numpy(), rtol=1e-4, atol=1e-6)


def test_layered_sgd_equals_sync_ps_on_the_same_seed_and_data() -> None:
    kw = {"lr": 0.2, "momentum": 0.9}
    ps = launch(scenario_from_dict(digits("sync_ps", 4, 8, **kw)))
    data = digits("layered_sgd", 4, 8, per_tensor=True, groups=2, **kw)
    layered = launch(scenario_from_dict(data))
    assert ps.params is not None and layered.params is not None
    np.testing.assert_allclose(layered.params, ps.params, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_variant_trains_digits_to_90_percent(algorithm: str) -> None:
    metrics = launch(scenario_from_dict(digits(algorithm))).metrics
    assert metrics["test_accuracy"] >= 0.9, metrics
    assert 0 <= metrics["test_accuracy"] <= 1
    assert metrics["iteration_time_s"] > 0


def test_emulated_metrics_have_the_simulator_schema(tmp_path) -> None:
    from sim.run import simulate

    data = digits("async_ps", 2, 8)
    data["emulation"] = {"compute": "emulated", "model": "synthetic"}
    data["workload"].update(compute_time="5ms", io_time="2ms")
    scenario = scenario_from_dict(data)
    measured = launch(scenario, tmp_path).metrics
    predicted = simulate(scenario).metrics
    assert set(predicted) - {"simulated_time_s"} <= set(measured)
    assert measured["compute_time_s"] == pytest.approx(0.005, rel=0.5)
    assert measured["staleness"]["histogram"]
    assert (tmp_path / "trace.json").exists() and (tmp_path / "metrics.json").exists()
    # the server's updates sit on the iterations of the pushes that made them, as simulated
    spans = load_spans(json.loads((tmp_path / "trace.json").read_text())).spans
    applied = sorted(s.iteration for s in spans if s.name == "apply")
    assert applied == sorted(list(range(8)) * 2)  # ASP: one update per push, 2 workers


def test_a_dead_worker_stops_sync_ps_naming_it(monkeypatch) -> None:
    monkeypatch.setenv("PSLAB_KILL_AT", "worker-1:3")
    data = digits("sync_ps", 3, 40)
    data["emulation"]["rpc_timeout"] = 20
    start = time.monotonic()
    with pytest.raises(LaunchError, match=r"worker-1 vanished \(killed by signal 9\)"):
        launch(scenario_from_dict(data))
    assert time.monotonic() - start < 20 + 15  # within the RPC deadline (plus start-up)


def test_async_ps_carries_on_without_a_dead_worker(monkeypatch) -> None:
    monkeypatch.setenv("PSLAB_KILL_AT", "worker-1:3")
    result = launch(scenario_from_dict(digits("async_ps", 3, 40)))
    assert result.metrics["lost_workers"] == ["worker-1"]
    assert result.metrics["test_accuracy"] > 0.5


@pytest.mark.parametrize(
    ("algorithm", "extra", "topology"),
    [
        ("sync_ps", {"smoothing": {"sigma": 0.5}}, {}),
        ("async_ps", {}, {"servers": 2}),
        ("leader_sgd", {"synchronous": False, "groups": 2}, {}),
    ],
    ids=["smoothed-sync", "two-shards-async", "async-multi-leader"],
)
def test_smoothing_sharding_and_async_leaders_train(algorithm, extra, topology) -> None:
    data = digits(algorithm, **extra)
    data["topology"].update(topology)
    metrics = launch(scenario_from_dict(data)).metrics
    assert metrics["test_accuracy"] >= 0.9, metrics


@pytest.mark.parametrize("algorithm", ["sync_ps", "layered_sgd"])
def test_simulated_numerics_follow_the_emulated_training(algorithm: str) -> None:
    from sim.run import simulate

    groups = {"groups": 2} if algorithm == "layered_sgd" else {}
    data = digits(algorithm, 4, 12, lr=0.2, **groups)
    data["numerics"] = {"model": "digits_mlp", "target_accuracy": 0.5}
    scenario = scenario_from_dict(data)
    simulated = simulate(scenario)
    measured = launch(scenario)
    assert simulated.params is not None and measured.params is not None
    np.testing.assert_allclose(simulated.params, measured.params, rtol=1e-4, atol=1e-6)
    assert simulated.metrics["test_accuracy"] == pytest.approx(
        measured.metrics["test_accuracy"], abs=1e-6
    )
    assert simulated.metrics["time_to_target_s"] is not None
