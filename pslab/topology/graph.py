"""Preset ``graph``: a cluster the scenario draws itself, in YAML lists and/or GraphML."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import networkx as nx

from pslab import units
from pslab.scenario import ExplicitGraph, Link, Topology
from pslab.topology.cluster import Cluster, TopologyError, add_link, place_workers

_KINDS = ("host", "gpu", "switch", "nic")


def build_graph(topo: Topology, spec: ExplicitGraph, base_dir: Path) -> Cluster:
    """GraphML and/or YAML lists; YAML entries add to or override GraphML."""
    g = nx.Graph()
    if spec.graphml is not None:
        _load_graphml(g, base_dir / spec.graphml)
    for node in spec.nodes:
        g.add_node(node.name, kind=node.kind, server=node.server, cores=node.cores, gpus=node.gpus)
    for link in spec.links:
        for end in (link.a, link.b):
            if end not in g:
                raise TopologyError(f"graph link {link.a}-{link.b}: node {end!r} is not declared")
        add_link(g, link.a, link.b, Link(bandwidth=link.bandwidth, latency=link.latency))
    all_hosts = [v for v, d in g.nodes(data=True) if d["kind"] == "host"]
    servers = [h for h in all_hosts if g.nodes[h]["server"]]
    node_hosts = [h for h in all_hosts if not g.nodes[h]["server"]]
    if not node_hosts:
        raise TopologyError("graph topology has no worker host (a kind: host node without server)")
    if "nodes" in topo.model_fields_set and topo.nodes != len(node_hosts):
        raise TopologyError(
            f"topology.nodes: {topo.nodes}, but topology.graph has {len(node_hosts)} worker "
            "hosts; a graph's hosts are its nodes (leave nodes out)"
        )
    hosts: dict[str, int] = {}
    for h in all_hosts:
        default = topo.server_cores if g.nodes[h]["server"] else topo.cores_per_node
        hosts[h] = g.nodes[h]["cores"] = g.nodes[h]["cores"] or default
    declared = {h: g.nodes[h].get("gpus") for h in all_hosts}
    for v in g.nodes:
        g.nodes[v].pop("server", None)
        g.nodes[v].pop("gpus", None)
        if g.nodes[v]["kind"] != "host":
            g.nodes[v].pop("cores", None)
    owner = _nearest_host(g, all_hosts)
    gpus: dict[str, list[str]] = {h: [] for h in all_hosts}
    for v, d in g.nodes(data=True):
        if d["kind"] == "gpu" and v in owner:
            gpus[owner[v]].append(v)
    for h, count in declared.items():
        if count is not None and gpus[h] and count != len(gpus[h]):
            raise TopologyError(f"graph host {h!r}: gpus: {count}, but {len(gpus[h])} gpu vertices")
        if count and not gpus[h]:
            gpus[h] = _add_gpus(g, topo, h, count)
    workers, worker_host, node_of_worker = place_workers(node_hosts, gpus, topo.workers_per_node)
    return Cluster(g, workers, worker_host, node_of_worker, node_hosts, servers, hosts)


def graph_topology(topo: Topology, cluster: Cluster) -> Topology:
    """A graph topology with the worker layout its graph gives: its worker hosts as
    ``nodes``, their GPU count as ``gpus_per_node`` (0 for CPU hosts, never a default GPU).

    The plan lays workers out node by node with the same count on every node, so
    hosts that differ are an error; so is a ``gpus_per_node`` the graph contradicts.
    """
    if topo.preset != "graph":
        return topo
    kinds = cluster.graph.nodes
    per_host: dict[str, list[str]] = {h: [] for h in cluster.node_hosts}
    for worker, host in zip(cluster.workers, cluster.worker_host, strict=True):
        per_host[host].append(worker)
    shapes = {
        h: (len(ws), len({w for w in ws if kinds[w]["kind"] == "gpu"}))
        for h, ws in per_host.items()
    }
    if len(set(shapes.values())) > 1:
        shown = ", ".join(f"{h}: {n} workers on {k} GPUs" for h, (n, k) in shapes.items())
        raise TopologyError(
            f"topology.graph: every worker host needs the same workers and GPUs ({shown})"
        )
    _, gpus = next(iter(shapes.values()))
    if "gpus_per_node" in topo.model_fields_set and topo.gpus_per_node != gpus:
        raise TopologyError(
            f"topology.gpus_per_node: {topo.gpus_per_node}, but topology.graph's hosts have "
            f"{gpus} GPUs each (set gpus per graph node instead)"
        )
    return topo.model_copy(update={"nodes": len(cluster.node_hosts), "gpus_per_node": gpus})


def _add_gpus(g: nx.Graph, topo: Topology, host: str, count: int) -> list[str]:
    """``count`` GPUs behind ``host`` on an intra-node switch, as the presets build them."""
    nvs = f"{host}/nvs"
    g.add_node(nvs, kind="switch")
    add_link(g, host, nvs, topo.intra_link)
    names = [f"{host}/gpu{j}" for j in range(count)]
    for gpu in names:
        g.add_node(gpu, kind="gpu")
        add_link(g, gpu, nvs, topo.intra_link)
    return names


def _nearest_host(g: nx.Graph, hosts: Iterable[str]) -> dict[str, str]:
    """Each vertex's nearest host by hops (ties: the host listed first): a GPU's owner."""
    owner = {h: h for h in hosts}
    queue = deque(owner)
    while queue:
        v = queue.popleft()
        for u in g.neighbors(v):
            if u not in owner:
                owner[u] = owner[v]
                queue.append(u)
    return owner


def _load_graphml(g: nx.Graph, path: Path) -> None:
    """Read GraphML: node ``kind``/``cores``/``server``/``gpus``, edge ``bandwidth``/``latency``.

    Attribute values may be numbers or strings with units ("10Gb/s", "2us").
    """
    try:
        raw = nx.read_graphml(path)
    except (OSError, nx.NetworkXError) as err:
        raise TopologyError(f"cannot read GraphML {path}: {err}") from None
    for v, d in raw.nodes(data=True):
        kind = str(d.get("kind", "host"))
        if kind not in _KINDS:
            raise TopologyError(f"{path}: node {v!r} has kind {kind!r}, expected one of {_KINDS}")
        cores, gpus = d.get("cores"), d.get("gpus")
        g.add_node(
            str(v),
            kind=kind,
            server=_truthy(d.get("server", False)),
            cores=None if cores is None else int(cores),
            gpus=None if gpus is None else int(gpus),
        )
    for a, b, d in raw.edges(data=True):
        if "bandwidth" not in d:
            raise TopologyError(f"{path}: edge {a}-{b} has no bandwidth")
        try:
            link = Link(
                bandwidth=units.parse_bandwidth(d["bandwidth"]),
                latency=units.parse_time(d.get("latency", 0.0)),
            )
        except units.UnitError as err:
            raise TopologyError(f"{path}: edge {a}-{b}: {err}") from None
        add_link(g, str(a), str(b), link)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)
