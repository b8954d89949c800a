"""The cluster a scenario describes, built once: its graph, where every role runs, its routes.

The simulator prices flows on it (:mod:`sim.topology`); the netns emulator builds its
namespaces and links from it and sleeps its path latencies (:mod:`grpc_ps.netns`).

Vertices have a ``kind`` (``host``, ``gpu``, ``switch``, ``nic``); hosts carry
``cores``. Edges are undirected links with ``bandwidth`` (bytes/s), ``latency``
(s) and a ``name``; the flow network treats each direction as its own
resource (full duplex).

Naming, shared by every preset: node hosts ``n{i}``, their GPUs ``n{i}/gpu{j}``
behind an intra-node switch ``n{i}/nvs`` (NVLink/PCIe), parameter-server hosts
``ps{k}``, the cluster switch ``sw``; fat-tree switches ``core{c}``,
``pod{p}/agg{a}``, ``pod{p}/edge{e}``. GPU traffic to another node goes
gpu → nvs → host → network, which is how a GPU's data leaves a node without
GPUDirect; traffic between GPUs of one node stays on the nvs. With a
``pcie_link`` each GPU instead reaches its host over its own PCIe link (via a
port ``n{i}/gpu{j}/pcie``) and the nvs joins only GPUs (NVLink/NVSwitch); with
``nics_per_node`` the host reaches the network through NICs ``n{i}/nic{k}``,
each at ``inter_link``; with ``gpudirect`` a GPU's PCIe port links straight to
a NIC, so its data skips the host. Preset ``graph`` names its own vertices.
"""

from __future__ import annotations

from pathlib import Path

from pslab.scenario import Scenario, Topology
from pslab.topology.cluster import Cluster, Route, TopologyError, ring_chain
from pslab.topology.graph import build_graph, graph_topology
from pslab.topology.hosts import HostLink, host_graph, host_links, host_of
from pslab.topology.presets import build_preset

__all__ = [
    "Cluster",
    "HostLink",
    "Route",
    "TopologyError",
    "build_cluster",
    "graph_topology",
    "host_graph",
    "host_links",
    "host_of",
    "lay_out",
    "ring_chain",
]


def build_cluster(topo: Topology, base_dir: Path | None = None) -> Cluster:
    """Build the cluster a topology describes; ``base_dir`` resolves a GraphML path."""
    if topo.preset == "graph":
        assert topo.graph is not None  # the schema requires it for this preset
        return build_graph(topo, topo.graph, base_dir or Path.cwd())
    return build_preset(topo)


def lay_out(scenario: Scenario, base_dir: Path | None = None) -> tuple[Scenario, Cluster]:
    """The scenario with the worker layout its cluster gives, and that cluster.

    A graph's workers are its hosts' (:func:`graph_topology`), so everything that counts
    workers (the plan, the emulator's processes, a progress bar) takes the laid-out
    scenario, never ``topology.nodes`` as written.
    """
    cluster = build_cluster(scenario.topology, base_dir)
    topology = graph_topology(scenario.topology, cluster)
    if topology is not scenario.topology:
        scenario = scenario.model_copy(update={"topology": topology})
    return scenario, cluster
