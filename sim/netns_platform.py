"""The platform of a netns emulation: the scenario's host links on this machine's cores.

Under ``emulation.network: netns`` every host of the scenario is a network
namespace of this machine, its link to the switch a ``tbf``-shaped veth, and
every role a process on the machine's cores. So the run that is measured is
neither the nominal cluster (whose hosts have cores of their own) nor plain
loopback (which has no links). :class:`NetnsPlatform` predicts it:

- between hosts, a transfer is a flow over the scenario's host links, shared
  max–min, at the payload rate a shaped link carries (:data:`sim.topology.FRAME_PAYLOAD`),
  plus the link latency (which the emulator sleeps, as ``tbf`` adds none), less what
  the ports' token buckets pass the moment it starts (:mod:`sim.port_buckets`);
  its CPU work at both ends is priced from the calibration profile as on
  loopback and runs alongside the flow;
- between processes of one host (a Layered SGD worker and its communicator),
  a transfer is a loopback gRPC stream, exactly as :class:`LoopbackNetwork`;
- every process's CPU work (compute, updates, serialisation) holds one of the
  machine's cores and its own interpreter lock.
"""

from __future__ import annotations

import math

import simpy

from pslab.algorithms.base import Plan, Role
from pslab.profile import Profile
from pslab.topology import host_links, host_of
from sim.network import FlowNetwork
from sim.platform import GlooRing, LocalPlatform, LoopbackNetwork
from sim.port_buckets import PortBuckets
from sim.topology import FRAME_PAYLOAD, Cluster, build_cluster, netns_graph


class NetnsNetwork(LoopbackNetwork):
    """Loopback's per-end CPU costs, plus a flow over the host links for what leaves a host."""

    # The port buckets lend a class's whole burst to whatever of it is in flight, so a
    # 64-byte pull request would take it from a push beside it: until they meter small
    # messages, a held pull stays one transfer here.
    prices_held_requests = False
    # A ring member's share crosses the shaped links as one flow, as validated on netns.
    rings_by_step = False

    def __init__(
        self,
        env: simpy.Environment,
        cluster: Cluster,
        profile: Profile,
        ring: GlooRing,
        host_of: dict[str, str],
        buckets: PortBuckets,
    ) -> None:
        super().__init__(env, cluster, profile, ring, list(host_of))
        self.host_of = host_of
        self.buckets = buckets

    def transfer(
        self,
        src: str,
        dst: str,
        nbytes: float,
        tag: object = None,
        max_rate: float = math.inf,
        collective: bool = False,
        rpc_share: float = 1.0,
    ) -> simpy.Event:
        a, b = self.host_of[src], self.host_of[dst]
        if a == b:
            return super().transfer(src, dst, nbytes, tag, max_rate, collective, rpc_share)
        ends, rpc_wait = self.cpu_ends(src, dst, nbytes, collective, rpc_share)
        lent = self.buckets.lend(a, b, nbytes)  # what the ports' buckets pass at once
        flow = FlowNetwork.transfer(self, a, b, nbytes - lent)  # the path's latency included
        flow.callbacks.append(lambda _event: self.buckets.done(a, b))
        # what is left after both ends and the link: gloo's step hand-off, or the RPC's wait
        wait = self.ring.step_wait_s if collective else rpc_wait
        return self.env.process(self._after([ends, flow], wait, tag))


class NetnsPlatform(LocalPlatform):
    """:class:`LocalPlatform` whose processes live on the scenario's hosts, joined by its
    shaped links."""

    def __init__(self, plan: Plan, profile: Profile, emulated_compute: bool) -> None:
        super().__init__(plan, profile, emulated_compute)
        nominal = build_cluster(plan.scenario.topology)
        self.links = host_links(nominal)
        g = netns_graph(nominal)
        self.host_of = {name: host_of(nominal, plan, name) for name in self.processes}
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
        fair = plan.scenario.emulation.port_queue == "fair"
        buckets = PortBuckets(env, self.links, fair, FRAME_PAYLOAD)
        return NetnsNetwork(env, self.cluster, self.profile, self.ring, self.host_of, buckets)

    def host(self, role: Role) -> str:
        return self.host_of[role.name]
