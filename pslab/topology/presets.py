"""The generated topologies: ``single_node``, ``cluster`` (one switch) and ``fat_tree``."""

from __future__ import annotations

import itertools

import networkx as nx

from pslab.scenario import Link, Topology
from pslab.topology.cluster import Cluster, TopologyError, add_link, place_workers


def build_preset(topo: Topology) -> Cluster:
    """The cluster of a generated preset, named as the package docstring says."""
    g = nx.Graph()
    node_hosts = [f"n{i}" for i in range(topo.nodes)]
    uplinks = {host: _add_node(g, topo, host) for host in node_hosts}
    servers = [f"ps{k}" for k in range(topo.servers)]
    for ps in servers:
        g.add_node(ps, kind="host", cores=topo.server_cores)
    server_link = topo.server_link or topo.inter_link
    if topo.preset == "single_node":
        # The servers are processes on the same machine; their link stands for
        # the host-memory path between the worker's process and theirs.
        for ps in servers:
            add_link(g, ps, node_hosts[0], topo.server_link or topo.intra_link)
    elif topo.preset == "cluster":
        g.add_node("sw", kind="switch")
        for port in itertools.chain.from_iterable(uplinks.values()):
            add_link(g, port, "sw", topo.inter_link)
        for ps in servers:
            add_link(g, ps, "sw", server_link)
    else:
        edges = _fat_tree_switches(g, topo.fat_tree_k, topo.core_link or topo.inter_link)
        attached = [(p, topo.inter_link) for h in node_hosts for p in uplinks[h]]
        attached += [(s, server_link) for s in servers]
        capacity = len(edges) * (topo.fat_tree_k // 2)
        if len(attached) > capacity:
            raise TopologyError(
                f"a fat tree with k={topo.fat_tree_k} holds {capacity} hosts (k³/4), "
                f"but {topo.nodes} nodes + {topo.servers} servers need {len(attached)}; "
                "raise topology.fat_tree_k"
            )
        for i, (host, link) in enumerate(attached):
            add_link(g, host, edges[i % len(edges)], link)
    workers, worker_host, node_of_worker = place_workers(
        node_hosts,
        {h: [f"{h}/gpu{j}" for j in range(topo.gpus_per_node)] for h in node_hosts},
        topo.workers_per_node,
    )
    hosts = {v: d["cores"] for v, d in g.nodes(data=True) if d["kind"] == "host"}
    return Cluster(g, workers, worker_host, node_of_worker, node_hosts, servers, hosts)


def _add_node(g: nx.Graph, topo: Topology, host: str) -> list[str]:
    """One node shaped as ``single_node``: a host and its GPUs on an intra-node switch.
    Returns the vertices that attach the node to the network (the host or its NICs)."""
    g.add_node(host, kind="host", cores=topo.cores_per_node)
    nics = [f"{host}/nic{k}" for k in range(topo.nics_per_node or 0)]
    for nic in nics:  # a NIC sits on the host's PCIe
        g.add_node(nic, kind="nic")
        add_link(g, host, nic, topo.pcie_link or topo.intra_link)
    if topo.gpus_per_node == 0:
        return nics or [host]
    nvs = f"{host}/nvs"
    g.add_node(nvs, kind="switch")
    if topo.pcie_link is None:
        add_link(g, host, nvs, topo.intra_link)
    for j in range(topo.gpus_per_node):
        gpu = f"{host}/gpu{j}"
        g.add_node(gpu, kind="gpu")
        add_link(g, gpu, nvs, topo.intra_link)
        if topo.pcie_link is not None:
            port = f"{gpu}/pcie"
            g.add_node(port, kind="switch")
            add_link(g, gpu, port, topo.pcie_link)
            add_link(g, port, host, Link(bandwidth=topo.pcie_link.bandwidth))
            if topo.gpudirect and nics:
                add_link(g, port, nics[j * len(nics) // topo.gpus_per_node], topo.pcie_link)
    return nics or [host]


def _fat_tree_switches(g: nx.Graph, k: int, link: Link) -> list[str]:
    """Add a k-ary fat tree's switches (Al-Fares et al. 2008); return its edge switches.

    k pods of k/2 aggregation and k/2 edge switches, fully connected within a
    pod; aggregation switch ``a`` of every pod connects to core switches
    ``a·k/2 … (a+1)·k/2 − 1``. Each edge switch has k/2 host ports.
    """
    if k % 2:
        raise TopologyError(f"topology.fat_tree_k must be even, got {k}")
    half = k // 2
    cores = [f"core{c}" for c in range(half * half)]
    for c in cores:
        g.add_node(c, kind="switch")
    edges: list[str] = []
    for p in range(k):
        aggs = [f"pod{p}/agg{a}" for a in range(half)]
        pod_edges = [f"pod{p}/edge{e}" for e in range(half)]
        for s in aggs + pod_edges:
            g.add_node(s, kind="switch")
        for a, agg in enumerate(aggs):
            for e in pod_edges:
                add_link(g, e, agg, link)
            for c in cores[a * half : (a + 1) * half]:
                add_link(g, agg, c, link)
        edges += pod_edges
    return edges
