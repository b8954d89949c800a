"""The cluster as the netns emulator builds it: hosts, the switch between them, processes on hosts.

Inside a network namespace a host's processes talk over its loopback, so the
emulator keeps only the hosts and what joins them (:func:`host_graph`), and it
can build that only as a star: one switch with every host on a link of its own,
or (``single_node``) every host on a link to one central host
(:func:`host_links`).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from pslab.algorithms.base import REGISTRY, Plan
from pslab.topology.cluster import Cluster, TopologyError

_STAR_HINT = (
    "netns emulation builds one switch with every host on a link of its own (preset cluster, "
    "single_node, or such a graph); use emulation.network: loopback for this topology"
)


@dataclass(frozen=True)
class HostLink:
    """One host and its link to the rest of the network.

    ``bandwidth`` is the link's rate in bytes/s, each direction; ``None`` means the host has no
    link of its own (in ``single_node``, the node itself: its servers hang off it). ``peer`` is
    the vertex at the link's far end, which names the link as the simulator does (``n0->sw``,
    ``sw->n0``; ``ps0->n0`` in ``single_node``); ``latency`` is the link's, in seconds.
    """

    name: str
    bandwidth: float | None
    peer: str = "sw"
    latency: float = 0.0


def host_graph(cluster: Cluster) -> nx.Graph:
    """The cluster's hosts and switches and the links between them: what netns builds.

    GPUs are left out (a GPU worker is a process of its host's namespace), and so is a
    switch that then joins nothing (a node's NVLink switch).
    """
    g = cluster.graph.copy()
    g.remove_nodes_from([v for v, kind in g.nodes(data="kind") if kind == "gpu"])
    g.remove_nodes_from(
        [v for v, kind in g.nodes(data="kind") if kind == "switch" and g.degree(v) < 2]
    )
    return g


def host_links(cluster: Cluster) -> list[HostLink]:
    """Every host's own link, worker hosts then servers, or a :class:`TopologyError` for a
    cluster that is no star. A NIC between a host and the switch is in series on its link:
    the link carries the slower of the two rates and both latencies."""
    g = _series_reduced(host_graph(cluster))
    hosts = cluster.node_hosts + cluster.servers
    switches = [v for v, kind in g.nodes(data="kind") if kind != "host"]
    if len(hosts) == 1 and not switches:
        return [HostLink(hosts[0], None)]
    hub = switches[0] if len(switches) == 1 else None
    if not switches:  # a central host: the one every other is linked to
        hub = next((h for h in hosts if g.degree(h) == len(hosts) - 1), None)
    if hub is None or any(h != hub and list(g.neighbors(h)) != [hub] for h in hosts):
        raise TopologyError(_STAR_HINT)
    return [
        HostLink(h, None)
        if h == hub
        else HostLink(h, g.edges[h, hub]["bandwidth"], hub, g.edges[h, hub]["latency"])
        for h in hosts
    ]


def _series_reduced(g: nx.Graph) -> nx.Graph:
    """``g`` with every NIC of two links (a host's only one) replaced by one
    link: the slower rate, the summed latency."""
    for v in [v for v, kind in g.nodes(data="kind") if kind == "nic" and g.degree(v) == 2]:
        (a, da), (b, db) = ((u, g.edges[v, u]) for u in g.neighbors(v))
        g.remove_node(v)
        if g.has_edge(a, b):  # a host with two NICs on the switch: two paths, no star
            raise TopologyError(_STAR_HINT)
        g.add_edge(
            a,
            b,
            bandwidth=min(da["bandwidth"], db["bandwidth"]),
            latency=da["latency"] + db["latency"],
        )
    return g


def host_of(cluster: Cluster, plan: Plan, name: str) -> str:
    """The host process ``name`` runs on: one placement for the netns emulator that starts
    it there and the simulator that prices it. A worker or communicator runs on its node's
    host, shard ``k`` on server ``k``, the registry on :attr:`Cluster.registry_host`."""
    if name.startswith("ps-"):
        return cluster.servers[int(name.split("-", 1)[1])]
    if name == REGISTRY:
        return cluster.registry_host
    for role in plan.roles:
        if role.name == name:
            return cluster.node_hosts[role.node]
    raise KeyError(f"no role {name!r} in the plan")
