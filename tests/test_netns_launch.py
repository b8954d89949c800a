"""``emulation.network: netns`` through the launcher: placement, latency, errors, a real run.

Placement, endpoints, the latency the emulator adds and the errors run anywhere. The launch
itself needs root and ``ip netns`` and is skipped (with the reason) without them; it runs a
sync_ps of 2 worker hosts and 1 server host on shaped links, checks the kernel's link bytes
and the added latency, and that the run leaves no namespace behind, also when a role dies.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import as_from_a_terminal, needs_netns

from grpc_ps import netns, netns_launch
from grpc_ps.launch import Launcher, LaunchError, launch
from grpc_ps.lifeline import pid_alive
from grpc_ps.netns_launch import Latencies, NetnsNetwork, isolated
from pslab.algorithms import build_plan
from pslab.scenario import Scenario, ScenarioError, scenario_from_dict
from pslab.topology import build_cluster, host_of, lay_out, ring_chain
from pslab.trace import SpanRecord, Trace
from pslab_cli.main import main as cli
from sim.platform import NominalPlatform

PARAMS = 125_000  # 0.5 MB of float32
ITERATIONS = 4
LATENCY = 20e-3  # per link: a worker-server path is two links, 40 ms
TINY = "scenarios/netns/tiny.yaml"


def _scenario(algorithm: str = "sync_ps", **topology: Any) -> Scenario:
    topo = {
        "preset": "cluster",
        "nodes": 2,
        "gpus_per_node": 0,
        "workers_per_node": 1,
        "inter_link": {"bandwidth": "400Mb/s", "latency": LATENCY},
        "servers": 1,
        **topology,
    }
    return scenario_from_dict(
        {
            "name": "netns-launch-test",
            "topology": topo,
            "workload": {"model": {"params": PARAMS}, "compute_time": "10ms", "io_time": 0},
            "algorithm": {"name": algorithm, "lr": 0.1},
            "run": {"iterations": ITERATIONS, "warmup": 1},
            "emulation": {"compute": "emulated", "model": "synthetic", "network": "netns"},
        }
    )


def _our_namespaces() -> list[str]:
    """Namespaces this test process made (``pslab-<our pid>-…``) that still exist."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    mine = re.compile(rf"pslab-{os.getpid()}-\d+-")
    return [line.split()[0] for line in out.stdout.splitlines() if mine.match(line)]


# ------------------------------------------------------------------ anywhere


def _network(scenario: Scenario) -> NetnsNetwork:
    """The launcher's view of a run's namespaces (never opened here)."""
    return NetnsNetwork(build_plan(scenario), build_cluster(scenario.topology))


def _latencies(scenario: Scenario, me: str) -> Latencies:
    return Latencies(build_plan(scenario), me, build_cluster(scenario.topology))


def test_roles_run_where_the_simulator_puts_them() -> None:
    layered = _network(_scenario("layered_sgd", nodes=2, workers_per_node=2, servers=0))
    assert [layered.host_of(w.name) for w in layered.plan.workers] == ["n0", "n0", "n1", "n1"]
    assert [layered.host_of(c.name) for c in layered.plan.comms] == ["n0", "n1"]
    assert layered.host_of("registry") == "n0"  # no server host: the first node
    ps = _network(_scenario(servers=2))
    assert ps.host_of("ps-1") == "ps1" and ps.host_of("registry") == "ps0"
    with pytest.raises(KeyError, match="no role"):
        ps.host_of("worker-9")
    # one placement: the simulator's platform puts every process where netns starts it
    assert host_of(ps.cluster, ps.plan, "ps-0") == NominalPlatform(ps.cluster).server_host(0)


def test_endpoints_name_namespace_addresses() -> None:
    network = _network(_scenario("layered_sgd", nodes=2, workers_per_node=2, servers=1))
    ep = network.endpoints({"ps-0": 7000, "comm-0": 7001, "comm-1": 7002})
    # hosts n0, n1, ps0 are .1, .2, .3 of the run's own subnet
    assert ep.servers == ["10.77.0.3:7000"]
    assert ep.comms == ["10.77.0.1:7001", "10.77.0.2:7002"]
    assert ep.registry is None
    assert ep.dist_workers == "tcp://10.77.0.1:29500"  # rank 0's host
    assert ep.dist_comms == "tcp://10.77.0.1:29501"
    env = network.env("comm-1")
    assert env["PSLAB_BIND_HOST"] == "10.77.0.2" and env["GLOO_SOCKET_IFNAME"] == "eth0"


def test_latency_is_what_the_simulator_charges() -> None:
    layered = _scenario("layered_sgd", nodes=3, workers_per_node=2, servers=1)
    plan = build_plan(layered)
    worker = _latencies(layered, "worker-0")
    assert worker.servers() == 0.0  # Layered SGD has no server
    pusher = _latencies(_scenario(nodes=3, servers=2), "worker-0")
    assert pusher.servers() == pytest.approx(2 * LATENCY)  # n0 -> sw -> ps0 (or ps1)
    assert worker.to("comm-0") == 0.0  # same host: loopback, no link
    assert worker.to("comm-1") == pytest.approx(2 * LATENCY)
    comms = tuple(c.name for c in plan.comms)
    # a ring of 3 hosts: 2(n-1) = 4 steps of one host-to-host hop (two links) each
    assert _latencies(layered, "comm-0").ring(comms) == pytest.approx(4 * 2 * LATENCY)
    workers = tuple(w.name for w in plan.workers)
    # a dataflow ring, no lock-step: the 10 ring links ending at worker-0 cross 5 host hops
    # (every other one: its neighbour on its own host is loopback); lock-step took 10 x 2L
    assert worker.ring(workers) == pytest.approx(5 * 2 * LATENCY)
    assert worker.ring(("worker-0",)) == 0.0


def test_a_ring_member_waits_for_the_links_its_own_data_crossed() -> None:
    """Uneven hops: each member's latency is the simulator's ``ring_chain`` for it, never
    the slowest hop times the steps for everyone."""
    spec = _scenario("allreduce", nodes=3)
    graph = {
        "nodes": [{"name": h} for h in ("a", "b", "c")] + [{"name": "t", "kind": "switch"}],
        "links": [
            {"a": "a", "b": "t", "bandwidth": 1e8, "latency": LATENCY},
            {"a": "b", "b": "t", "bandwidth": 1e8, "latency": LATENCY},
            {"a": "c", "b": "t", "bandwidth": 1e8, "latency": 3 * LATENCY},
        ],
    }
    data = spec.model_dump(mode="json")
    data["topology"] = {"preset": "graph", "gpus_per_node": 0, "graph": graph}
    scenario, _ = lay_out(Scenario.model_validate(data))
    ring = ("worker-0", "worker-1", "worker-2")  # hops a-b 2L, b-c 4L, c-a 4L
    got = [_latencies(scenario, w).ring(ring) for w in ring]
    assert got == pytest.approx(
        [ring_chain([2 * LATENCY, 4 * LATENCY, 4 * LATENCY], 4)[j] for j in range(3)]
    )
    assert got == pytest.approx([14 * LATENCY, 12 * LATENCY, 14 * LATENCY])


def test_only_the_runs_own_subnet_inside_a_namespace_is_isolated() -> None:
    assert not isolated("127.0.0.1")
    assert not isolated("0.0.0.0")
    assert not isolated("not-an-address")
    # this process sits in the machine's namespace (more than lo and eth0), so not even the
    # run's subnet counts as isolated here
    if netns_launch._in_own_namespace():
        pytest.skip("the test process itself runs in a bare namespace")
    assert not isolated("10.77.0.1")


def test_without_root_launch_says_how_to_run_on_loopback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root: Any
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ScenarioError, match=r"needs root.*--network loopback"):
        Launcher(_scenario(), root)  # before any process or namespace exists
    assert cli(["launch", str(root / TINY)]) == 2
    message = capsys.readouterr().err
    assert "needs root" in message and "pslab launch --network loopback" in message
    # --network netns turns any scenario into a netns run, with the same error
    assert cli(["launch", str(root / "scenarios/quickstart.yaml"), "--network", "netns"]) == 2
    assert "needs root" in capsys.readouterr().err


def test_unsupported_topologies_are_refused_before_anything_starts(root: Any) -> None:
    with pytest.raises(ScenarioError, match=r"fat_tree.*loopback"):
        Launcher(_scenario(preset="fat_tree", nodes=2), root)


def test_link_utilisation_is_over_the_traced_run() -> None:
    def read(nbytes: float, at: float) -> dict[str, dict[str, Any]]:
        return {"n0->sw": {"bytes": nbytes, "bandwidth": 100.0, "packets": 1, "time": at}}

    trace = Trace("emu")
    trace.add(SpanRecord("comm-0", "n0", "reduce", "comm", 1.0, 6.0, 0))  # waits for workers
    trace.add(SpanRecord("worker-0", "n0", "push", "comm", 5.0, 7.0, 0))
    trace.add(SpanRecord("worker-0", "n0", "pull", "comm", 8.0, 9.0, 0))
    # 400 bytes in a 4 s run (first worker span to the last span) at 100 B/s, whatever the
    # reads' own times (start-up included)
    (link,) = netns_launch.links((read(100.0, 0.0), read(500.0, 60.0)), trace)
    assert link == {"name": "n0->sw", "bytes": 400.0, "utilization": 1.0}


def test_phases_of_the_validation_experiment() -> None:
    from experiments import netns_validation as exp

    trace = Trace("emu")
    for it, t in ((1, 10.0), (2, 20.0)):
        for rank, (push_start, push_end, pull_end) in enumerate([(0, 2, 5), (1, 3, 4)]):
            for name, start, end in (("push", push_start, push_end), ("pull", 3, pull_end)):
                trace.add(SpanRecord(f"worker-{rank}", "n0", name, "comm", t + start, t + end, it))
    got = exp.phases(trace, warmup=1, iterations=4)
    assert got["push_s"] == pytest.approx(3.0) and got["pull_s"] == pytest.approx(2.0)
    assert got["push_each_s"] == pytest.approx([3.0, 3.0])


# ------------------------------------------------------------- namespaces


@needs_netns
@pytest.mark.slow
def test_a_netns_run_moves_its_bytes_over_the_shaped_links_and_cleans_up() -> None:
    scenario = _scenario()
    result = launch(scenario)
    assert _our_namespaces() == []
    model_bytes = PARAMS * 4
    links = {link["name"]: link for link in result.metrics["links"]}
    # every push crosses n->sw and sw->ps0, every pull ps0->sw and sw->n (payload + headers)
    for name in ("n0->sw", "n1->sw", "sw->n0", "sw->n1"):
        assert model_bytes * ITERATIONS <= links[name]["bytes"] < 1.2 * model_bytes * ITERATIONS
    for name in ("sw->ps0", "ps0->sw"):
        assert links[name]["bytes"] >= 2 * model_bytes * ITERATIONS
    assert all(0 < link["utilization"] <= 1.05 for link in links.values())
    spans = result.trace.spans
    assert {s.host for s in spans if s.role.startswith("worker-")} == {"n0", "n1"}
    assert {s.host for s in spans if s.role == "ps-0"} == {"ps0"}
    # the path latency (two 20 ms links) is added to every push and pull
    transfers = [s for s in spans if s.name in ("push", "pull")]
    assert len(transfers) == 2 * 2 * ITERATIONS
    assert min(s.dur for s in transfers) >= 2 * LATENCY
    assert result.metrics["iteration_time_s"] >= 4 * LATENCY


@needs_netns
@pytest.mark.slow
def test_a_dying_role_still_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSLAB_KILL_AT", "worker-1:1")
    with pytest.raises(LaunchError, match="worker-1 vanished"):
        launch(_scenario())
    assert _our_namespaces() == []


def _start_cli(root: Any) -> tuple[subprocess.Popen[str], str]:
    """``pslab launch`` of the tiny netns scenario in a process of its own, once its server
    host's namespace holds a running role; returns it and its namespaces' prefix."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pslab_cli.main", "launch", str(root / TINY)],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    prefix = f"pslab-{proc.pid}-"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        names = [n for n in _namespaces() if n.startswith(prefix) and n.endswith("-ps0")]
        if names and netns._pids_inside(names[0]):
            return proc, prefix
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"the launcher never started its server: {proc.communicate()[1]}")


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


@needs_netns
@pytest.mark.slow
def test_ctrl_c_removes_every_namespace_and_process(root: Any) -> None:
    proc, prefix = _start_cli(root)
    inside = [p for n in _namespaces() if n.startswith(prefix) for p in netns._pids_inside(n)]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert [n for n in _namespaces() if n.startswith(prefix)] == []
    assert not any(pid_alive(p) for p in inside)


@needs_netns
@pytest.mark.slow
def test_the_next_run_removes_a_killed_runs_namespaces(root: Any) -> None:
    proc, prefix = _start_cli(root)
    proc.kill()  # SIGKILL: no handler runs, the namespaces and the roles in them stay
    proc.wait(timeout=10)
    assert [n for n in _namespaces() if n.startswith(prefix)]
    network = _network(_scenario())
    try:
        stale = network.open()  # what every netns launch does first
    finally:
        network.close()
    assert any(n.startswith(prefix) for n in stale)
    assert [n for n in _namespaces() if n.startswith(prefix)] == []


@needs_netns
@pytest.mark.slow
def test_an_async_run_outlives_a_dead_worker_across_namespaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the launcher tells the servers from inside a namespace, with the run's token
    monkeypatch.setenv("PSLAB_KILL_AT", "worker-1:1")
    result = launch(_scenario("async_ps"))
    assert result.metrics["lost_workers"] == ["worker-1"]
    assert _our_namespaces() == []
