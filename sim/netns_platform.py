"""The platform of a netns emulation: the scenario's host links on this machine's cores.

Under ``emulation.network: netns`` every host of the scenario is a network
namespace of this machine, its link to the switch a ``tbf``-shaped veth, and
every role a process on the machine's cores. So the run that is measured is
neither the nominal cluster (whose hosts have cores of their own) nor plain
loopback (which has no links). :class:`NetnsPlatform` predicts it:

- between hosts, a transfer is a flow over the scenario's host links, shared
  max–min, at the payload rate a shaped link carries (:data:`FRAME_PAYLOAD`),
  plus the link latency (which the emulator sleeps, as ``tbf`` adds none);
  its CPU work at both ends is priced from the calibration profile as on
  loopback and runs alongside the flow;
- between processes of one host (a Layered SGD worker and its communicator),
  a transfer is a loopback gRPC stream, exactly as :class:`LoopbackNetwork`;
- every process's CPU work (compute, updates, serialisation) holds one of the
  machine's cores and its own interpreter lock.
"""

from __future__ import annotations

import math

import networkx as nx
import simpy

from pslab.algorithms.base import Plan, Role
from pslab.profile import Profile
from sim.network import FlowNetwork
from sim.platform import GlooRing, LocalPlatform, LoopbackNetwork
from sim.topology import Cluster, build_cluster

# tbf shapes Ethernet frames. At MTU 1500 a full TCP segment carries 1448 bytes of payload
# (20 IPv4 + 20 TCP + 12 timestamp option) in a 1514-byte frame (+14 Ethernet): the pull
# phase of docs/netns.md's incast took n·M/B × 1514/1448 to 0.1 %.
FRAME_PAYLOAD = 1448 / 1514


def host_graph(cluster: Cluster) -> nx.Graph:
    """The scenario's hosts and switches and the links between them: what netns builds.

    GPUs are left out (a GPU worker is a process of its host's namespace), and so is a
    switch that then joins nothing (a node's NVLink switch): inside a namespace,
    processes talk over its loopback, not over the scenario's intra-node links.
    """
    g = cluster.graph.copy()
    g.remove_nodes_from([v for v, kind in g.nodes(data="kind") if kind == "gpu"])
    g.remove_nodes_from(
        [v for v, kind in g.nodes(data="kind") if kind == "switch" and g.degree(v) < 2]
    )
    for _a, _b, d in g.edges(data=True):
        d["bandwidth"] = d["bandwidth"] * FRAME_PAYLOAD
    return g


class NetnsNetwork(LoopbackNetwork):
    """Loopback's per-end CPU costs, plus a flow over the host links for what leaves a host."""

    def __init__(
        self,
        env: simpy.Environment,
        cluster: Cluster,
        profile: Profile,
        ring: GlooRing,
        host_of: dict[str, str],
    ) -> None:
        super().__init__(env, cluster, profile, ring, list(host_of))
        self.host_of = host_of

    def transfer(
        self,
        src: str,
        dst: str,
        nbytes: float,
        tag: object = None,
        max_rate: float = math.inf,
        collective: bool = False,
    ) -> simpy.Event:
        a, b = self.host_of[src], self.host_of[dst]
        if a == b:
            return super().transfer(src, dst, nbytes, tag, max_rate, collective)
        send, recv, _ = self.cpu_ends(src, dst, nbytes, collective)
        flow = FlowNetwork.transfer(self, a, b, nbytes)  # the host path's latency included
        # what is left after both ends and the link: gloo's step hand-off, or the RPC's wait
        wait = self.ring.step_wait_s if collective else self.profile.rpc_overhead_s
        return self.env.process(self._after([send, recv, flow], wait, tag))


class NetnsPlatform(LocalPlatform):
    """:class:`LocalPlatform` whose processes live on the scenario's hosts, joined by its
    shaped links."""

    def __init__(self, plan: Plan, profile: Profile, emulated_compute: bool) -> None:
        super().__init__(plan, profile, emulated_compute)
        nominal = build_cluster(plan.scenario.topology)
        g = host_graph(nominal)
        self.host_of = {name: plan.host_of(name) for name in self.processes}
        for name, host in self.host_of.items():
            # a process hangs off its host; a ring step between two of them waits one hand-off
            g.add_node(name, kind="host", cores=1)
            g.add_edge(name, host, bandwidth=math.inf, latency=self.ring.step_wait_s / 2)
        self.cluster = Cluster(
            graph=g,
            workers=self.cluster.workers,
            worker_host=[self.host_of[w] for w in self.cluster.workers],
            node_of_worker=[r.node for r in plan.workers],
            node_hosts=nominal.node_hosts,
            servers=self.cluster.servers,
            hosts={v: d["cores"] for v, d in g.nodes(data=True) if d["kind"] == "host"},
        )

    def network(self, env: simpy.Environment, plan: Plan) -> FlowNetwork:
        return NetnsNetwork(env, self.cluster, self.profile, self.ring, self.host_of)

    def host(self, role: Role) -> str:
        return self.host_of[role.name]
