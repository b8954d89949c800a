"""The topology as the simulator prices it.

The cluster itself, its routes (ECMP-hashed fewest-hop paths) and path latencies are
the core model's (:mod:`pslab.topology`), shared with the netns emulator; the flow
network (:mod:`sim.network`) makes each direction of each link a resource. What is
the simulator's own is how a netns emulation's shaped links carry data
(:func:`netns_graph`).
"""

from __future__ import annotations

import networkx as nx

from pslab.topology import Cluster, Route, TopologyError, build_cluster, graph_topology, host_graph

__all__ = [
    "FRAME_PAYLOAD",
    "Cluster",
    "Route",
    "TopologyError",
    "build_cluster",
    "graph_topology",
    "netns_graph",
]

# tbf shapes Ethernet frames. At MTU 1500 a full TCP segment carries 1448 bytes of payload
# (20 IPv4 + 20 TCP + 12 timestamp option) in a 1514-byte frame (+14 Ethernet): the pull
# phase of docs/netns.md's incast took n·M/B × 1514/1448 to 0.1 %.
FRAME_PAYLOAD = 1448 / 1514


def netns_graph(cluster: Cluster) -> nx.Graph:
    """The hosts and links netns builds (:func:`pslab.topology.host_graph`), each link at
    the payload rate its ``tbf`` lets through."""
    g = host_graph(cluster)
    for _a, _b, d in g.edges(data=True):
        d["bandwidth"] = d["bandwidth"] * FRAME_PAYLOAD
    return g
