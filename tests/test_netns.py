"""Hosts in network namespaces with tc-shaped links: reachability, rate, counters, cleanup.

The topology helpers and the errors run anywhere; everything that creates namespaces needs
root and ``ip netns`` and is skipped (with the reason) without them. All traffic stays inside
namespaces these tests create.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import needs_netns

from grpc_ps import netns
from grpc_ps.netns import NetnsError, NetnsTopology, NetnsUnavailable, cleanup_stale
from grpc_ps.netns_launch import link_stats
from pslab.scenario import Topology
from pslab.topology import HostLink, TopologyError, build_cluster, host_links

ROOT = Path(__file__).resolve().parent.parent
FAST = 200e6 / 8  # bytes/s: the nodes' links
SLOW = 100e6 / 8  # the server's link, slower, so the two shaping points can be told apart
NBYTES = 4 << 20
ATTEMPTS = 5
CLUSTER = Topology(
    preset="cluster",
    nodes=2,
    servers=1,
    inter_link={"bandwidth": FAST, "latency": 20e-6},
    server_link={"bandwidth": SLOW, "latency": 50e-6},
)


def hosts_from_topology(topo: Topology) -> list[HostLink]:
    """The hosts netns builds for ``topo``: the core model's cluster, seen as a star."""
    return host_links(build_cluster(topo))


def _open(hosts: list[HostLink]) -> NetnsTopology:
    """Open a topology, skipping where the kernel refuses namespaces despite root."""
    topo = NetnsTopology(hosts)
    try:
        topo.open()
    except NetnsUnavailable as err:
        pytest.skip(str(err))
    return topo


def _namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return sorted(line.split()[0] for line in out.stdout.splitlines() if line.startswith(prefix))


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip() for line in out.splitlines()}


def _gone(pid: int) -> bool:
    """Dead, or a zombie (outside every namespace, waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# ------------------------------------------------------------------ anywhere


def test_hosts_from_cluster_topology() -> None:
    assert hosts_from_topology(CLUSTER) == [
        HostLink("n0", FAST, "sw", 20e-6),
        HostLink("n1", FAST, "sw", 20e-6),
        HostLink("ps0", SLOW, "sw", 50e-6),
    ]
    plain = Topology(preset="cluster", nodes=1, servers=2, inter_link={"bandwidth": FAST})
    assert [h.bandwidth for h in hosts_from_topology(plain)] == [FAST, FAST, FAST]


def test_hosts_from_single_node_hang_servers_off_the_node() -> None:
    topo = Topology(preset="single_node", servers=2, intra_link={"bandwidth": 1e9, "latency": 2e-6})
    assert hosts_from_topology(topo) == [
        HostLink("n0", None),
        HostLink("ps0", 1e9, "n0", 2e-6),
        HostLink("ps1", 1e9, "n0", 2e-6),
    ]


def test_other_presets_are_refused_with_the_way_out() -> None:
    with pytest.raises(TopologyError, match=r"one switch.*emulation.network: loopback"):
        hosts_from_topology(Topology(preset="fat_tree", nodes=4))
    two_nics = Topology(preset="cluster", nodes=2, nics_per_node=2, gpus_per_node=0)
    with pytest.raises(TopologyError, match="one switch"):  # two paths out of each host
        hosts_from_topology(two_nics)


def test_a_single_nic_is_in_series_on_its_hosts_link() -> None:
    pcie = {"bandwidth": FAST / 2, "latency": 1e-6}
    topo = Topology.model_validate({**CLUSTER.model_dump(), "nics_per_node": 1, "pcie_link": pcie})
    # host -> NIC (PCIe) -> switch: the slower rate, both latencies
    n0 = hosts_from_topology(topo)[0]
    assert (n0.name, n0.bandwidth, n0.peer) == ("n0", FAST / 2, "sw")
    assert n0.latency == pytest.approx(21e-6)


def test_a_star_graph_is_built_with_its_own_names() -> None:
    graph = {
        "nodes": [
            {"name": "a"},
            {"name": "b"},
            {"name": "s", "server": True},
            {"name": "tor", "kind": "switch"},
        ],
        "links": [
            {"a": h, "b": "tor", "bandwidth": FAST, "latency": 5e-6} for h in ("a", "b", "s")
        ],
    }
    topo = Topology(preset="graph", gpus_per_node=0, graph=graph)
    assert hosts_from_topology(topo) == [
        HostLink("a", FAST, "tor", 5e-6),
        HostLink("b", FAST, "tor", 5e-6),
        HostLink("s", FAST, "tor", 5e-6),
    ]


def test_path_latency_sums_both_hosts_links() -> None:
    cluster = build_cluster(CLUSTER)  # the core model's latencies, which the emulator sleeps
    assert cluster.path_latency("n0", "ps0") == pytest.approx(70e-6)
    assert cluster.path_latency("n0", "n1") == pytest.approx(40e-6)
    assert cluster.path_latency("n1", "n1") == 0.0
    topo = NetnsTopology(hosts_from_topology(CLUSTER))
    with pytest.raises(KeyError, match="no host 'n7'"):
        topo.address("n7")


def test_bad_hosts_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        NetnsTopology([HostLink("n0", FAST), HostLink("n0", FAST)])
    with pytest.raises(ValueError, match="bad host name"):
        NetnsTopology([HostLink("sw", FAST)])
    with pytest.raises(ValueError, match="bandwidth"):
        NetnsTopology([HostLink("n0", 0.0)])


def test_without_root_the_error_says_how_to_run_on_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NetnsUnavailable, match=r"root.*emulation.network: loopback"):
        NetnsTopology([HostLink("n0", FAST)]).open()
    with pytest.raises(NetnsUnavailable, match="root"):
        cleanup_stale()


def test_without_tc_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda tool: None if tool == "tc" else tool)
    with pytest.raises(NetnsUnavailable, match=r"needs tc .*emulation.network: loopback"):
        NetnsTopology([HostLink("n0", FAST)]).open()


# ------------------------------------------------------------- namespaces

ECHO = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5000)); s.listen(8); print("ready", flush=True)
while True:
    c, _ = s.accept(); c.sendall(c.recv(64)); c.close()
"""
PROBE = r"""
import socket, sys
for addr in sys.argv[2:]:
    with socket.create_connection((addr, 5000), timeout=5) as c:
        c.sendall(sys.argv[1].encode()); assert c.recv(64) == sys.argv[1].encode()
print("ok", flush=True)
"""
RECEIVE = r"""
import json, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); c.settimeout(15)
buf = bytearray(1 << 20); total = first = 0; t0 = None
while n := c.recv_into(buf):
    if t0 is None: t0, first = time.perf_counter(), n
    total += n
print(json.dumps({"bytes": total, "first": first, "s": time.perf_counter() - t0}), flush=True)
"""
SEND = r"""
import socket, sys
with socket.create_connection((sys.argv[1], 5001), timeout=15) as s:
    s.sendall(bytes(int(sys.argv[2])))
"""


def _start(topo: NetnsTopology, host: str, script: str, *args: str) -> subprocess.Popen[str]:
    """A Python snippet inside ``host``; returns once it has printed ``ready``."""
    proc = topo.popen(
        host, [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture(scope="module")
def cluster() -> Iterator[NetnsTopology]:
    topo = _open(hosts_from_topology(CLUSTER))
    with topo:
        yield topo


@needs_netns
def test_every_host_reaches_every_other(cluster: NetnsTopology) -> None:
    hosts = [h.name for h in cluster.hosts]
    servers = [_start(cluster, h, ECHO, cluster.address(h)) for h in hosts]
    probes = [
        cluster.popen(
            h,
            [sys.executable, "-c", PROBE, h, *(cluster.address(o) for o in hosts if o != h)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for h in hosts
    ]
    try:
        assert [p.communicate(timeout=10)[0].strip() for p in probes] == ["ok"] * len(hosts)
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait()


@needs_netns
@pytest.mark.parametrize(
    ("src", "dst", "target", "shaped_at"),
    [
        ("n0", "n1", FAST, "both ends at 200 Mbit/s"),
        ("n0", "ps0", SLOW, "sw->ps0: the bridge port's egress"),
        ("ps0", "n1", SLOW, "ps0->sw: the host's own egress"),
    ],
)
def test_tcp_reaches_the_shaped_rate_and_is_counted(
    cluster: NetnsTopology, src: str, dst: str, target: float, shaped_at: str
) -> None:
    # The shaper caps the rate; a busy machine can only lower it (a descheduled sender or
    # receiver leaves the link idle). So no attempt may exceed the target, and the best of
    # a few must come within 10 % of it.
    rates = []
    for _ in range(ATTEMPTS):
        receiver = _start(cluster, dst, RECEIVE, cluster.address(dst))
        before = cluster.link_counters()
        argv = [sys.executable, "-c", SEND, cluster.address(dst), str(NBYTES)]
        sender = cluster.popen(src, argv)
        out, _ = receiver.communicate(timeout=15)
        assert sender.wait(timeout=15) == 0
        after = cluster.link_counters()
        got = json.loads(out)
        assert got["bytes"] == NBYTES
        # The first read may hold the token bucket's burst, sent before the limit applies.
        rates.append((got["bytes"] - got["first"]) / got["s"])
        _check_counters(cluster, link_stats(before, after), src, dst)
        if rates[-1] >= 0.9 * target:
            break
    shown = ", ".join(f"{r * 8 / 1e6:.1f}" for r in rates)
    print(f"{src}->{dst} ({shaped_at}): {shown} Mbit/s of {target * 8 / 1e6:.0f}")
    assert max(rates) <= 1.1 * target
    assert max(rates) >= 0.9 * target


def _check_counters(topo: NetnsTopology, stats: list[dict[str, Any]], src: str, dst: str) -> None:
    """The transfer's bytes show on its two links, its ACKs on the reverse ones, none elsewhere."""
    by_name = {s["name"]: s for s in stats}
    for link in (f"{src}->sw", f"sw->{dst}"):
        assert by_name[link]["bytes"] >= NBYTES  # payload + headers
        assert 0 < by_name[link]["utilization"] <= 1.05
    for link in (f"{dst}->sw", f"sw->{src}"):
        assert by_name[link]["bytes"] < 0.1 * NBYTES
    for other in {h.name for h in topo.hosts} - {src, dst}:
        assert by_name.get(f"sw->{other}", {"bytes": 0})["bytes"] < 1000  # ARP at most


@needs_netns
def test_exit_removes_everything_even_after_an_interrupt() -> None:
    links = _root_links()
    topo = _open([HostLink("n0", FAST), HostLink("n1", None), HostLink("ps0", SLOW, "n1")])
    with pytest.raises(KeyboardInterrupt), topo:
        sleeper = topo.popen("n0", ["sleep", "30"])
        assert _namespaces(topo.prefix) == sorted(
            topo.prefix + h for h in ("n0", "n1", "ps0", "sw")
        )
        # an unshaped host has no link of its own; the server's link ends at its peer n1
        assert sorted(topo.link_counters()) == ["n0->sw", "n1->ps0", "ps0->n1", "sw->n0"]
        raise KeyboardInterrupt
    assert _namespaces(topo.prefix) == []
    assert sleeper.returncode is not None
    assert _root_links() <= links
    root_addrs = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert netns.SUBNET not in root_addrs
    with pytest.raises(NetnsError, match="not open"):
        topo.popen("n0", ["true"])


CHILD = r"""
import sys
from grpc_ps.netns import NetnsTopology
from pslab.topology import HostLink
topo = NetnsTopology([HostLink("a", 1e6), HostLink("b", None)])
topo.open()
sleeper = topo.popen("a", ["sleep", "60"])
print(topo.prefix, sleeper.pid, flush=True)
"""


def _child(tail: str) -> tuple[subprocess.Popen[str], str, int]:
    """A Python process that opens a topology with a process inside, then runs ``tail``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD + tail],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    prefix, pid = proc.stdout.readline().split()
    return proc, prefix, int(pid)


@needs_netns
def test_sigterm_removes_everything_and_still_kills() -> None:
    proc, prefix, sleeper = _child("import time; time.sleep(60)")
    assert len(_namespaces(prefix)) == 3
    proc.terminate()
    assert proc.wait(timeout=15) == -signal.SIGTERM
    assert _namespaces(prefix) == []
    assert _gone(sleeper)


@needs_netns
def test_cleanup_stale_removes_a_killed_runs_leftovers_only() -> None:
    with NetnsTopology([HostLink("live", None)]) as live:
        proc, prefix, sleeper = _child("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
        assert proc.wait(timeout=15) == -signal.SIGKILL
        leaked = _namespaces(prefix)
        assert len(leaked) == 3 and not _gone(sleeper)

        removed = cleanup_stale()
        assert set(leaked) <= set(removed)
        assert not any(name.startswith(live.prefix) for name in removed)
        assert _namespaces(prefix) == []
        assert _gone(sleeper)
        assert len(_namespaces(live.prefix)) == 2


@needs_netns
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads around
def test_a_forked_child_never_tears_down_its_parents_namespaces() -> None:
    with NetnsTopology([HostLink("a", None)]) as topo:
        pid = os.fork()
        if pid == 0:  # the child: inherited SIGTERM handler, atexit and open topology
            try:
                topo.close()
                os.kill(os.getpid(), signal.SIGTERM)
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        assert len(_namespaces(topo.prefix)) == 2
    assert _namespaces(topo.prefix) == []
