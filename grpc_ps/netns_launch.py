"""``emulation.network: netns``: the launcher's processes in one network namespace per host.

:mod:`grpc_ps.netns` builds the namespaces and shapes the links; this module places a run on
them. Every role runs on the host the simulator puts it on, the core model's placement
(:func:`pslab.topology.host_of`):

- worker ``r`` and communicator ``g`` on their node's host (``n{role.node}`` in a preset);
- parameter-server shard ``k`` on the ``k``-th server host (``ps{k}``); the leader registry on
  the first server's (or the first node's when the topology has no server host).

A role's process is started inside its host's namespace (``ip netns exec``). Servers bind to
their host's address there (:data:`BIND_ENV`), endpoints name those addresses, and
torch.distributed (gloo) rendezvous at the rank-0 role's host and talks over the namespace's
``eth0`` (``GLOO_SOCKET_IFNAME``). Processes of one host talk over that namespace's loopback
path, unshaped: the simulator's intra-node link, which these scenarios make fast. Traffic
between hosts crosses the shaped veth links and the bridge; the kernel's byte counters on the
bridge ports become the run's ``links`` metric, named as the simulator names its links
(``n0->sw``, ``sw->ps0``).

Latency. ``tbf`` limits rate only and ``netem`` is unavailable, so the propagation latency of
the scenario's links is added by the emulator itself (:class:`LatencyExecutor`), from the
cluster's path latencies: each transfer op sleeps the latency the simulator charges for it, on
the side where the simulator charges it. Data a role sends is delayed before it leaves (push, a
reduce towards the root, publish, a loss report), data it receives is delayed after it arrives
(pull, a broadcast from the root, fetch, the registry's reply). A ring all-reduce is a dataflow,
as gloo's is and ``sim.collectives`` models it: a member moves on when its own data are in, with
no lock-step between the members. So member j ends, after its bandwidth phase, the latencies of
the 2(n − 1) ring links its last chunk crossed (:func:`pslab.topology.ring_chain`): 2(n − 1)
times its upstream neighbour's hop when every hop is alike, never the slowest hop of the ring
for every member. The kernel's own path (veth, bridge: tens of µs) comes on top and is not
subtracted.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from grpc_ps.client import PSClient
from grpc_ps.communicator import CommunicatorServicer
from grpc_ps.endpoints import Endpoints
from grpc_ps.executor import EmuExecutor
from grpc_ps.netns import (
    HOST_IF,
    SUBNET,
    NetnsError,
    NetnsTopology,
    NetnsUnavailable,
    cleanup_stale,
    require_netns,
)
from pslab import ops
from pslab.algorithms.base import REGISTRY, Plan, Role
from pslab.scenario import Scenario, ScenarioError
from pslab.topology import Cluster, build_cluster, host_links, host_of, ring_chain
from pslab.trace import Trace

BIND_ENV = "PSLAB_BIND_HOST"  # the address a role's gRPC server binds (default 127.0.0.1)
HOST_ENV = "PSLAB_HOST"  # the topology host a role runs on, for its trace lanes
# torch.distributed stores, one per world. Any port would do: every namespace is the run's
# own, and these sit below Linux's ephemeral range (32768-60999), so no server's port collides.
DIST_PORTS = {"workers": 29500, "comms": 29501}
LOOPBACK_HINT = "on the command line: pslab launch --network loopback"


def check(scenario: Scenario) -> None:
    """Before any process starts: root, iproute2 and a topology netns can build, or a
    :class:`ScenarioError` that says how to run on loopback instead."""
    cluster = build_cluster(scenario.topology)  # its own errors need no netns hint
    try:
        NetnsTopology(host_links(cluster))  # checks the hosts, opens nothing
        require_netns()
    except (NetnsError, ValueError) as err:
        on = f"emulation.network: netns, topology.preset: {scenario.topology.preset}"
        raise ScenarioError(f"{on}: {err} ({LOOPBACK_HINT})") from None


class NetnsNetwork:
    """The run's namespaces, seen from the launcher: start roles, name addresses, count bytes."""

    def __init__(self, plan: Plan, cluster: Cluster) -> None:
        self.plan = plan
        self.cluster = cluster
        fair = plan.scenario.emulation.port_queue == "fair"
        self.topo = NetnsTopology(host_links(cluster), fair)

    def host_of(self, name: str) -> str:
        return host_of(self.cluster, self.plan, name)

    def open(self) -> list[str]:
        """Remove a killed run's leftovers, then build this run's namespaces; return the
        stale namespaces removed. Errors become :class:`ScenarioError` (exit 2)."""
        try:
            stale = cleanup_stale()
            self.topo.open()
        except NetnsUnavailable as err:
            raise ScenarioError(f"emulation.network: netns: {err} ({LOOPBACK_HINT})") from None
        return stale

    def close(self) -> None:
        self.topo.close()

    def address(self, name: str) -> str:
        return self.topo.address(self.host_of(name))

    def env(self, name: str) -> dict[str, str]:
        """What a role's process needs in its environment inside the namespace."""
        host = self.host_of(name)
        return {
            BIND_ENV: self.topo.address(host),
            HOST_ENV: host,
            "GLOO_SOCKET_IFNAME": HOST_IF,
            "TP_SOCKET_IFNAME": HOST_IF,
        }

    def popen(self, name: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start role ``name``'s process inside its host's namespace (Popen keywords apply)."""
        return self.topo.popen(self.host_of(name), argv, **kw)

    def endpoints(self, ports: dict[str, int]) -> Endpoints:
        """Where every service listens, by namespace address; dist stores at rank 0's host."""
        plan = self.plan
        servers = sorted((n for n in ports if n.startswith("ps-")), key=lambda n: int(n[3:]))
        dist_workers = f"tcp://{self.address(plan.workers[0].name)}:{DIST_PORTS['workers']}"
        dist_comms = (
            f"tcp://{self.address(plan.comms[0].name)}:{DIST_PORTS['comms']}" if plan.comms else ""
        )
        return Endpoints(
            servers=[f"{self.address(n)}:{ports[n]}" for n in servers],
            registry=f"{self.address(REGISTRY)}:{ports[REGISTRY]}" if REGISTRY in ports else None,
            comms=[f"{self.address(c.name)}:{ports[c.name]}" for c in plan.comms],
            dist_workers=dist_workers,
            dist_comms=dist_comms,
        )

    def counters(self) -> dict[str, dict[str, Any]]:
        return self.topo.link_counters()

    def leave(
        self,
        endpoints: Endpoints,
        rank: int,
        n_workers: int,
        params: int,
        env: dict[str, str] | None = None,
    ) -> None:
        """Tell the servers worker ``rank`` is gone, from inside a server host's namespace
        (the launcher's own namespace cannot reach the run's addresses). ``env``: what to add
        to the helper's environment (the run's token: never on its command line)."""
        host = self.host_of("ps-0")
        argv = [sys.executable, "-m", "grpc_ps.netns_launch", "leave", str(rank)]
        argv += [str(n_workers), str(params), *endpoints.servers]
        proc = self.topo.popen(
            host,
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise NetnsError(f"telling the servers worker {rank} left failed: {err.decode()}")


def links(
    reads: tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]], trace: Trace
) -> list[dict[str, Any]]:
    """Per-link bytes and utilisation, in the simulator's format, from two counter reads.

    ``reads``: :meth:`NetnsNetwork.counters` before the workers start and after the last
    role ends. Utilisation divides by the traced run's extent, from the first worker span's
    start (servers and communicators start earlier and wait for the workers' start-up,
    seconds of imports) to the last span's end, as the simulator divides by its simulated
    run time, where every role starts at 0. Bytes are Ethernet frames as the kernel counts
    them (payload, headers, the reverse direction's ACKs), so a bulk transfer shows a few
    percent above the simulator's payload bytes.
    """
    before, after = reads
    starts = [s.start for s in trace.spans if s.role.startswith("worker-")]
    extent = max(s.end for s in trace.spans) - min(starts) if starts else None
    return link_stats(before, after, extent if extent and extent > 0 else None)


def link_stats(
    before: dict[str, dict[str, Any]],
    after: dict[str, dict[str, Any]],
    elapsed_s: float | None = None,
) -> list[dict[str, Any]]:
    """Per-link bytes and utilisation between two :meth:`NetnsTopology.link_counters` snapshots.

    The simulator's ``link_stats`` format: ``[{"name", "bytes", "utilization"}]``, only
    links that carried bytes, sorted by name; utilisation = bytes / (bandwidth · elapsed).
    ``elapsed_s`` defaults to the time between the two reads; pass the run's own duration
    to compare with a simulated run of that length.
    """
    stats = []
    for name, end in after.items():
        start = before[name]
        carried = end["bytes"] - start["bytes"]
        if carried <= 0:
            continue
        elapsed = end["time"] - start["time"] if elapsed_s is None else elapsed_s
        stats.append(
            {
                "name": name,
                "bytes": float(carried),
                "utilization": carried / (end["bandwidth"] * elapsed) if elapsed > 0 else 0.0,
            }
        )
    return sorted(stats, key=lambda s: s["name"])


# ------------------------------------------------------------ in the role's process


def bind_host() -> str:
    """The address a role's gRPC server binds: its namespace's, or loopback."""
    return os.environ.get(BIND_ENV, "127.0.0.1")


def _in_own_namespace() -> bool:
    """Whether this process sees only the interfaces of a host :mod:`grpc_ps.netns` built:
    loopback and ``eth0``, the veth whose other end is the run's switch. The machine's own
    namespace has its real interfaces too."""
    try:
        names = {name for _, name in socket.if_nameindex()}
    except OSError:
        return False
    return names <= {"lo", HOST_IF}


def isolated(host: str) -> bool:
    """True for an address of the run's own subnet bound from inside a namespace of its own.

    Such an address exists only in the namespaces the run made (:mod:`grpc_ps.netns` adds
    nothing to the machine's namespace, and a namespace holding only loopback and the veth to
    the run's switch routes nowhere else), so nothing outside the run can reach the server and
    TLS or a token would protect nothing: :func:`grpc_ps.server.serve` may bind it insecure.
    Anything else (loopback included) gets the server's own checks.
    """
    try:
        inside = ipaddress.ip_address(host) in ipaddress.ip_network(f"{SUBNET}.0/24")
    except ValueError:
        return False
    return inside and _in_own_namespace()


def bind_kwargs() -> dict[str, Any]:
    """``serve()`` keywords for a role's server: where to bind, and whether that is isolated."""
    host = bind_host()
    return {"host": host, "insecure": isolated(host)}


def trace_host() -> str:
    """The host name a role's trace spans carry (``localhost`` outside netns)."""
    return os.environ.get(HOST_ENV, "localhost")


def make_executor(
    plan: Plan,
    role: Role,
    endpoints: Endpoints,
    t0_ns: int,
    comm_servicer: CommunicatorServicer | None = None,
) -> EmuExecutor:
    """The executor for a role: with the scenario's link latencies added under netns."""
    if plan.scenario.emulation.network == "netns":
        return LatencyExecutor(
            plan, role, endpoints, t0_ns, host=trace_host(), comm_servicer=comm_servicer
        )
    return EmuExecutor(plan, role, endpoints, t0_ns, comm_servicer=comm_servicer)


class Latencies:
    """The simulator's per-op latency for role ``me``, from the scenario's cluster."""

    def __init__(self, plan: Plan, me: str, cluster: Cluster) -> None:
        self.plan = plan
        self.cluster = cluster
        self.me = me
        self.host = {name: host_of(cluster, plan, name) for name in plan.processes()}

    def to(self, name: str) -> float:
        """One message between this role and role or service ``name`` (either way)."""
        return self._hop(self.me, name)

    def _hop(self, a: str, b: str) -> float:
        return self.cluster.path_latency(self.host[a], self.host[b])

    def servers(self) -> float:
        """A push to, or pull from, every shard at once: the slowest shard's path."""
        shards = self.plan.server.shards if self.plan.server else 0
        return max((self.to(f"ps-{k}") for k in range(shards)), default=0.0)

    def ring(self, group: Sequence[str]) -> float:
        """A ring all-reduce, for this member: the 2(n − 1) ring links ending at it, which
        its last chunk crossed (member k sends to k + 1)."""
        n = len(group)
        if n < 2:
            return 0.0
        hops = [self._hop(group[k], group[(k + 1) % n]) for k in range(n)]
        return ring_chain(hops, 2 * (n - 1))[list(group).index(self.me)]


class LatencyExecutor(EmuExecutor):
    """:class:`EmuExecutor` plus the scenario's propagation latency on every transfer.

    Each override sleeps inside the op's span (so the trace shows the op as long as the
    simulator prices it) on the side the simulator charges: before sending, after receiving.
    """

    def __init__(self, plan: Plan, role: Role, *args: Any, **kw: Any) -> None:
        self.latency = Latencies(plan, role.name, build_cluster(plan.scenario.topology))
        super().__init__(plan, role, *args, **kw)

    def _op_push(self, op: ops.Push) -> tuple[Any, int]:
        self._sleep(self.latency.servers())
        return super()._op_push(op)

    def _op_pull(self, op: ops.Pull) -> tuple[Any, int]:
        result = super()._op_pull(op)
        self._sleep(self.latency.servers())
        return result

    def _op_allreduce(self, op: ops.AllReduce) -> tuple[Any, int]:
        result = super()._op_allreduce(op)
        self._sleep(self.latency.ring(op.group))
        return result

    def _op_reduce(self, op: ops.Reduce) -> tuple[Any, int]:
        if self.role.name != op.root:  # the root's wait already holds its senders' delay
            self._sleep(self.latency.to(op.root))
        return super()._op_reduce(op)

    def _op_broadcast(self, op: ops.Broadcast) -> tuple[Any, int]:
        result = super()._op_broadcast(op)
        if self.role.name != op.root:
            self._sleep(self.latency.to(op.root))
        return result

    def _op_report_loss(self, op: ops.ReportLoss) -> tuple[Any, int]:
        self._sleep(self.latency.to(REGISTRY))
        result = super()._op_report_loss(op)
        self._sleep(self.latency.to(REGISTRY))
        return result

    def _op_publish(self, op: ops.Publish) -> tuple[Any, int]:
        self._sleep(self.latency.to(REGISTRY))
        return super()._op_publish(op)

    def _op_fetch(self, op: ops.Fetch) -> tuple[Any, int]:
        found, nbytes = super()._op_fetch(op)
        if found:
            self._sleep(self.latency.to(REGISTRY))
        return found, nbytes


def main(argv: list[str] | None = None) -> int:
    """``python -m grpc_ps.netns_launch leave RANK N PARAMS ADDR...`` (run in a namespace)."""
    p = argparse.ArgumentParser(prog="python -m grpc_ps.netns_launch")
    sub = p.add_subparsers(dest="command", required=True)
    leave = sub.add_parser("leave", help="tell the servers a worker is gone")
    leave.add_argument("rank", type=int)
    leave.add_argument("n_workers", type=int)
    leave.add_argument("params", type=int)
    leave.add_argument("servers", nargs="+")
    args = p.parse_args(argv)
    client = PSClient(args.servers, args.rank, args.n_workers, args.params)
    try:
        client.leave()
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
