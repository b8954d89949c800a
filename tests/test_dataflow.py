"""Rings are dataflows and shards close their own rounds, as gloo, NCCL and ps-lite do.

The ring's figures are checked against SimGrid (an eager, step-by-step ring in
its pure max–min model, ``benchmarks/simgrid_ps.py``) where /usr/bin/python3
has it, and against the closed form always.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pslab.algorithms import build_plan
from pslab.scenario import scenario_from_dict
from sim.collectives import ring_chain
from sim.executor import SimExecutor
from sim.platform import NominalPlatform
from sim.run import simulate
from sim.topology import build_cluster, graph_topology

B = 12.5e9  # 100 Gb/s in bytes/s
SIMGRID = "/usr/bin/python3"


def ring_scenario(latency: list[float], nbytes: int) -> dict[str, Any]:
    """CPU hosts joined in a ring, link j from h_j to h_{j+1} with ``latency[j]``."""
    n = len(latency)
    return {
        "name": "ring",
        "topology": {
            "preset": "graph",
            "servers": 0,
            "graph": {
                "nodes": [{"name": f"h{j:02d}"} for j in range(n)],
                "links": [
                    {"a": f"h{j:02d}", "b": f"h{(j + 1) % n:02d}", "bandwidth": B, "latency": lat}
                    for j, lat in enumerate(latency)
                ],
            },
        },
        "workload": {"model": {"params": nbytes // 4}, "compute_time": 0.001, "io_time": 0.0},
        "algorithm": {"name": "allreduce"},
        "run": {"iterations": 3, "warmup": 1},
    }


def allreduce_s(latency: list[float], nbytes: int) -> float:
    result = simulate(scenario_from_dict(ring_scenario(latency, nbytes)))
    (duration,) = {
        round(s.dur, 12)
        for s in result.trace.spans
        if s.name == "allreduce" and s.iteration == 1 and s.role.startswith("worker-")
    }
    return duration


def simgrid_ring(latency: list[float], nbytes: int, root: Path) -> float:
    params = {"case": "ring", "latency": latency, "bandwidth": B, "nbytes": nbytes}
    out = subprocess.run(
        [SIMGRID, str(root / "benchmarks" / "simgrid_ps.py"), json.dumps(params)],
        capture_output=True,
        text=True,
        check=True,
    )
    return max(json.loads(out.stdout.strip().splitlines()[-1])["ends"])


def _has_simgrid() -> bool:
    try:
        return (
            subprocess.run([SIMGRID, "-c", "import simgrid"], capture_output=True).returncode == 0
        )
    except OSError:
        return False


def test_ring_chain_is_the_latency_of_the_links_a_last_chunk_crossed() -> None:
    # 2(n-1) = 6 steps on 4 members: each link twice except the two after the receiver
    assert ring_chain([1.0, 2.0, 3.0, 4.0], 6) == [17.0, 15.0, 13.0, 15.0]
    assert ring_chain([1.0] * 5, 8) == [8.0] * 5  # even latencies: steps x latency
    assert ring_chain([1.0, 2.0, 3.0], 2) == [5.0, 4.0, 3.0]  # reduce-scatter: n-1 steps


def test_a_mixed_latency_ring_moves_on_as_its_data_arrive() -> None:
    """16 members, 1 us and 1 ms links alternating, 16 MB at 100 Gb/s: 2.4 ms of bandwidth
    plus the 30 links a last chunk crossed (15 of 1 ms), 17.4 ms; a barrier per step
    would pay 1 ms on each of the 30."""
    latency = [1e-6, 1e-3] * 8
    got = allreduce_s(latency, 16_000_000)
    assert got == pytest.approx(30 / 16 * 16e6 / B + 15 * 1e-3 + 15 * 1e-6, rel=1e-9)
    assert got == pytest.approx(17.415e-3, rel=1e-9)


@pytest.mark.skipif(not _has_simgrid(), reason="python3-simgrid is not installed")
@pytest.mark.parametrize("seed", range(3))
def test_dataflow_ring_matches_simgrid(seed: int, root: Path) -> None:
    rng = random.Random(seed)
    n = rng.randint(3, 9)
    latency = [rng.choice([1e-6, 5e-5, 1e-3]) for _ in range(n)]
    nbytes = n * 1_000_000
    assert allreduce_s(latency, nbytes) == pytest.approx(
        simgrid_ring(latency, nbytes, root), rel=1e-6
    )


def test_a_shard_answers_pulls_once_it_holds_its_own_pushes() -> None:
    """Two workers, two shards; ps1's link is slow, worker-1 starts late. Shard 0 has both
    pushes long before shard 1 does, and worker-0 (waiting to pull) gets shard 0's part at
    once: bytes leave ps0 while shard 1 still waits for worker-1's push."""
    link = {"bandwidth": 1.25e9, "latency": 0.0}
    hosts = [{"name": "n0"}, {"name": "n1"}, {"name": "ps0", "server": True}]
    hosts += [{"name": "ps1", "server": True}, {"name": "sw", "kind": "switch"}]
    links = [{"a": h, "b": "sw", **link} for h in ("n0", "n1", "ps0")]
    links.append({"a": "ps1", "b": "sw", "bandwidth": 1.25e9 / 4, "latency": 0.0})
    scenario = scenario_from_dict(
        {
            "name": "shards",
            "topology": {
                "preset": "graph",
                "servers": 2,
                "graph": {"nodes": hosts, "links": links},
            },
            "workload": {
                "model": {"params": "10M"},
                "compute_time": 0.01,
                "io_time": 0.0,
                "server_update_bandwidth": "1000TB/s",
            },
            "algorithm": {"name": "sync_ps"},
            "run": {"iterations": 2, "warmup": 0},
        }
    )
    cluster = build_cluster(scenario.topology)
    scenario = scenario.model_copy(update={"topology": graph_topology(scenario.topology, cluster)})
    late = 1.0  # worker-1's start
    executor = SimExecutor(
        scenario, build_plan(scenario), NominalPlatform(cluster), start_at={"worker-1": late}
    )
    part0, part1 = (shard.length * 4 for shard in executor.shards)
    for role in executor.plan.roles:
        executor.env.process(executor._drive(role))
    # worker-1 pushes at late + 10 ms: to ps1 at B/4 (its link), to ps0 at the 3B/4 of its
    # uplink left over. Look 5 ms after shard 0 has both pushes, long before shard 1 has
    # (and two server updates of the part, each at 1000 TB/s: serve, then apply the mean)
    shard0_closed = late + 0.01 + part0 / (0.75 * 1.25e9) + 2 * part0 / 1e15
    assert shard0_closed + 0.005 < late + 0.01 + part1 / (1.25e9 / 4)
    at = shard0_closed + 0.005
    executor.env.run(until=at)
    carried = {s["name"]: s["bytes"] for s in executor.net.link_stats(at)}
    # worker-0 has pulled ps0's part at B since shard 0's close
    assert carried["ps0->sw"] == pytest.approx(1.25e9 * 0.005, rel=1e-6)
    assert "ps1->sw" not in carried  # shard 1 has not closed: nothing pulled from it


def test_graph_workers_are_the_graphs_hosts() -> None:
    """16 hosts without ``nodes:`` are 16 CPU workers (never a default GPU)."""
    data = ring_scenario([1e-6] * 16, 1_600_000)
    scenario = scenario_from_dict(data)
    result = simulate(scenario)
    assert result.metrics["workers"] == 16
    cluster = build_cluster(scenario.topology)
    topo = graph_topology(scenario.topology, cluster)
    assert (topo.nodes, topo.gpus_per_node) == (16, 0)
