"""Algorithm facts live in pslab/algorithms and pslab/algorithm_config: one settings model
per variant (a setting the variant never reads is an error naming it), each registry
entry's server / asynchronous / all-reduce facts, and one shard layout for both sides."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from grpc_ps import roles
from grpc_ps.launch import launch
from pslab.algorithm_config import VARIANTS
from pslab.algorithms import ALGORITHMS, build_plan
from pslab.scenario import AlgorithmName, Scenario, ScenarioError, scenario_from_dict
from pslab_cli.main import main
from sim.run import simulate

ROOT = Path(__file__).resolve().parents[1]


def scenario(algorithm: dict[str, Any], **topology: Any) -> dict[str, Any]:
    return {
        "name": "facts",
        "topology": {"nodes": 2, "gpus_per_node": 2, "servers": 1, **topology},
        "workload": {"model": {"params": 10_000}, "compute_time": "1ms", "io_time": 0},
        "algorithm": algorithm,
        "run": {"iterations": 4, "warmup": 1},
    }


def error(algorithm: dict[str, Any]) -> str:
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(scenario(algorithm))
    return str(e.value)


def test_tau_on_sync_ps_is_rejected_with_its_path_and_who_reads_it() -> None:
    msg = error({"name": "sync_ps", "tau": 4})
    assert "  algorithm.tau: sync_ps has no such setting" in msg
    assert "only easgd, leader_sgd, local_sgd read it" in msg
    assert "algorithm.sync_ps" not in msg  # pydantic's tag never reaches the path


def test_a_misspelt_setting_suggests_the_variants_own_field() -> None:
    msg = error({"name": "leader_sgd", "lambda_locl": 0.2})
    assert "algorithm.lambda_locl: unknown field (did you mean 'lambda_local'?)" in msg
    assert "known: name, lr" in msg and "partition_bytes" not in msg  # leader_sgd's own


def test_an_unknown_variant_names_algorithm_name_with_a_suggestion() -> None:
    msg = error({"name": "leader-sgd"})
    assert "algorithm.name: unknown 'leader-sgd' (did you mean 'leader_sgd'?)" in msg


def test_a_bad_value_inside_a_variant_has_a_clean_path() -> None:
    assert "  algorithm.tau: Input should be greater than or equal to 1" in error(
        {"name": "local_sgd", "tau": 0}
    )


def test_the_cli_exits_2_without_a_traceback(capsys) -> None:
    args = ["sim", str(ROOT / "scenarios" / "ps_incast.yaml"), "--set", "algorithm.tau=4"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "algorithm.tau: sync_ps has no such setting" in err and "Traceback" not in err


def test_smoothing_and_the_shared_settings_are_every_variants() -> None:
    for name, model in VARIANTS.items():
        assert {"name", "lr", "momentum", "smoothing"} <= set(model.model_fields), name
        data = scenario({"name": name.value, "smoothing": {"sigma": 0.5}, "lr": 0.2})
        assert scenario_from_dict(data).algorithm.smoothing.sigma == 0.5


def test_a_section_without_a_name_is_sync_ps() -> None:
    algo = scenario_from_dict(scenario({"lr": 0.2})).algorithm
    assert algo.name is AlgorithmName.sync_ps and algo.lr == 0.2


def test_replace_to_another_variant_keeps_the_shared_settings_only() -> None:
    base = scenario_from_dict(scenario({"name": "local_sgd", "tau": 4, "lr": 0.2}))
    ps = base.replace(**{"algorithm.name": "sync_ps"})
    assert ps.algorithm.name is AlgorithmName.sync_ps and ps.algorithm.lr == 0.2
    assert not hasattr(ps.algorithm, "tau")
    with pytest.raises(ScenarioError, match=r"algorithm\.tau: sync_ps has no such setting"):
        base.replace(**{"algorithm.name": "sync_ps", "algorithm.tau": 2})


def test_a_server_variant_without_a_server_is_refused() -> None:
    needing = {n for n, entry in ALGORITHMS.items() if entry.needs_server}
    assert needing == {"sync_ps", "async_ps", "ssp", "easgd"}
    for name in AlgorithmName:
        data = scenario({"name": name.value}, servers=0)
        if name in needing:
            with pytest.raises(ScenarioError, match=r"needs topology\.servers >= 1"):
                scenario_from_dict(data)
        else:
            assert build_plan(scenario_from_dict(data)).server is None


@pytest.mark.parametrize(
    ("algorithm", "asynchronous", "world"),
    [
        ({"name": "sync_ps"}, False, []),
        ({"name": "async_ps"}, True, []),
        ({"name": "ssp"}, True, []),
        ({"name": "easgd"}, False, []),
        ({"name": "easgd", "synchronous": False}, True, []),
        ({"name": "leader_sgd"}, False, []),
        ({"name": "leader_sgd", "synchronous": False}, True, []),
        ({"name": "allreduce"}, False, ["worker-0", "worker-1", "worker-2", "worker-3"]),
        ({"name": "local_sgd"}, False, ["worker-0", "worker-1", "worker-2", "worker-3"]),
        ({"name": "layered_sgd"}, False, ["comm-0", "comm-1"]),
        ({"name": "layered_sgd", "groups": 1}, False, []),
    ],
)
def test_the_registry_entry_says_async_and_who_all_reduces(algorithm, asynchronous, world) -> None:
    plan = build_plan(scenario_from_dict(scenario(algorithm)))
    assert plan.asynchronous is asynchronous
    assert [r.name for r in plan.collective_world] == world


def float16_ps() -> Scenario:
    """10,000 float16 keys in 8,000-byte partitions: 4,000 keys each (2,000 at float32),
    so the two element sizes cut different ranges over two shards."""
    data = scenario({"name": "sync_ps", "partition_bytes": 8000}, servers=2)
    data["workload"]["model"] = {"params": 10_000, "dtype": "float16"}
    data["emulation"] = {"model": "synthetic"}
    return scenario_from_dict(data)


def test_a_float16_scenario_shards_identically_on_both_sides() -> None:
    s = float16_ps()
    expected = [(0, 8000), (8000, 2000)]  # 3 partitions of 4,000 keys: 2 + 1
    seen: list[Any] = []
    simulate(s, on_start=lambda executor: seen.extend(executor.shards))
    simulated = [(shard.offset, shard.length) for shard in seen]
    plan = build_plan(s)
    served = [roles.ps_servicer(plan, k, time.perf_counter_ns()) for k in range(2)]
    assert simulated == [(sv.offset, sv.length) for sv in served] == expected


def dying(algorithm: str) -> Scenario:
    """Two emulated workers, asynchronous, communicating every other step."""
    return scenario_from_dict(
        {
            "name": f"dying-{algorithm}",
            "topology": {"preset": "single_node", "gpus_per_node": 0, "workers_per_node": 2},
            "workload": {"model": {"params": 1000}, "compute_time": "1ms", "io_time": 0},
            "algorithm": {"name": algorithm, "tau": 2, "synchronous": False},
            "run": {"iterations": 10, "seed": 0, "warmup": 1},
            "emulation": {"compute": "emulated", "model": "synthetic"},
        }
    )


@pytest.mark.slow  # real processes: a few seconds each on a quiet machine
@pytest.mark.parametrize("algorithm", ["easgd", "leader_sgd"])
def test_an_asynchronous_run_survives_a_dead_worker(monkeypatch, algorithm: str) -> None:
    monkeypatch.setenv("PSLAB_KILL_AT", "worker-1:2")
    result = launch(dying(algorithm))
    assert result.metrics["lost_workers"] == ["worker-1"]
    done = {s.iteration for s in result.trace.spans if s.role == "worker-0"}
    assert done == set(range(10))  # the survivor trained on to the end without it
