"""The simulated cluster as a networkx graph, built from a scenario's ``Topology``.

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
a NIC, so its data skips the host.

Routing is shortest path by hop count. Among equal-length paths the choice is
a hash of the vertex pair, as ECMP does: deterministic, yet different pairs
spread over a fat tree's cores instead of all crowding the first one. A pair
uses the same path both ways (each direction is still its own resource).
"""

from __future__ import annotations

import itertools
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from pslab import units
from pslab.scenario import ExplicitGraph, Link, ScenarioError, Topology

Route = tuple[tuple[str, str], ...]


class TopologyError(ScenarioError, ValueError):
    """A topology the scenario asks for that cannot be built (an odd fat-tree k, a link to
    an undeclared node, a disconnected graph): the user's input, so the CLI reports it with
    exit status 2 like any scenario error, not as a traceback."""


_KINDS = ("host", "gpu", "switch", "nic")


@dataclass
class Cluster:
    """The graph plus where every role runs.

    ``workers[r]`` is the vertex worker ``r``'s data leaves from (a GPU, or its
    host for CPU workers); ``worker_host[r]`` is the host its CPU process runs
    on; ``node_of_worker[r]`` indexes ``node_hosts``, the hosts a per-node
    process (a Layered SGD communicator) runs on. ``hosts`` maps every host,
    servers included, to its core count.
    """

    graph: nx.Graph
    workers: list[str]
    worker_host: list[str]
    node_of_worker: list[int]
    node_hosts: list[str]
    servers: list[str]
    hosts: dict[str, int]
    _routes: dict[tuple[str, str], Route] = field(default_factory=dict, repr=False)

    def route(self, src: str, dst: str) -> Route:
        """Directed edges of a fewest-hop path from ``src`` to ``dst`` (cached)."""
        key = (src, dst)
        cached = self._routes.get(key)
        if cached is not None:
            return cached
        for v in key:
            if v not in self.graph:
                raise TopologyError(f"no vertex {v!r} in the topology")
        # Both directions use one path, found from the smaller name, so a
        # route never depends on which direction was asked for first.
        a, b = sorted(key)
        path = _shortest_path(self.graph, a, b, zlib.crc32(f"{a}\0{b}".encode()))
        forward = tuple(itertools.pairwise(path))
        self._routes[a, b] = forward
        self._routes[b, a] = tuple((v, u) for u, v in reversed(forward))
        return self._routes[key]

    def path_latency(self, src: str, dst: str) -> float:
        """Sum of the hop latencies along ``route(src, dst)``."""
        return sum(self.graph.edges[a, b]["latency"] for a, b in self.route(src, dst))


def _shortest_path(g: nx.Graph, src: str, dst: str, seed: int) -> list[str]:
    """A fewest-hop path; ``seed`` picks among equal ones (ECMP-style hashing).

    Bidirectional BFS, always growing the frontier with fewer edges to scan,
    so a route costs the neighbourhoods of its two ends, not a search of the
    whole cluster (a switch with ten thousand hosts is met, never expanded:
    expanding it for every route made 10,240 workers' routes quadratic). Every vertex keeps
    all its parents of the previous level, so the vertices where the two
    searches meet, and the parents walked back from them, cover every
    shortest path; the seed chooses one at each step.
    """
    if src == dst:
        return [src]
    parents: tuple[dict[str, list[str]], dict[str, list[str]]] = ({src: []}, {dst: []})
    frontiers = ([src], [dst])
    meet: list[str] = []
    while not meet:
        side = 0 if _reach(g, frontiers[0]) <= _reach(g, frontiers[1]) else 1
        mine, other = parents[side], parents[1 - side]
        found: dict[str, None] = {}
        for v in frontiers[side]:
            for u in g.neighbors(v):
                if u not in mine:
                    mine[u] = [v]
                    found[u] = None
                elif u in found:
                    mine[u].append(v)
        if not found:
            raise TopologyError(f"no path from {src!r} to {dst!r} in the topology")
        frontiers = (list(found), frontiers[1]) if side == 0 else (frontiers[0], list(found))
        meet = [u for u in found if u in other]
    middle = meet[seed % len(meet)]
    halves = []
    for side in (0, 1):
        half = [middle]
        while parents[side][half[-1]]:
            options = parents[side][half[-1]]
            half.append(options[seed % len(options)])
        halves.append(half)
    return halves[0][::-1] + halves[1][1:]


def _reach(g: nx.Graph, frontier: list[str]) -> int:
    """Edges that growing ``frontier`` would scan."""
    return sum(g.degree(v) for v in frontier)


def build_cluster(topo: Topology, base_dir: Path | None = None) -> Cluster:
    """Build the cluster a topology describes; ``base_dir`` resolves a GraphML path."""
    if topo.preset == "graph":
        assert topo.graph is not None  # the schema requires it for this preset
        return _explicit(topo, topo.graph, base_dir or Path.cwd())
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
            _add_link(g, ps, node_hosts[0], topo.server_link or topo.intra_link)
    elif topo.preset == "cluster":
        g.add_node("sw", kind="switch")
        for port in itertools.chain.from_iterable(uplinks.values()):
            _add_link(g, port, "sw", topo.inter_link)
        for ps in servers:
            _add_link(g, ps, "sw", server_link)
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
            _add_link(g, host, edges[i % len(edges)], link)
    workers, worker_host, node_of_worker = _place_workers(
        node_hosts,
        {h: [f"{h}/gpu{j}" for j in range(topo.gpus_per_node)] for h in node_hosts},
        topo.workers_per_node,
    )
    hosts = {v: d["cores"] for v, d in g.nodes(data=True) if d["kind"] == "host"}
    return Cluster(g, workers, worker_host, node_of_worker, node_hosts, servers, hosts)


def _add_link(g: nx.Graph, a: str, b: str, link: Link) -> None:
    g.add_edge(a, b, bandwidth=link.bandwidth, latency=link.latency, name=f"{a}<->{b}")


def _add_node(g: nx.Graph, topo: Topology, host: str) -> list[str]:
    """One node shaped as ``single_node``: a host and its GPUs on an intra-node switch.
    Returns the vertices that attach the node to the network (the host or its NICs)."""
    g.add_node(host, kind="host", cores=topo.cores_per_node)
    nics = [f"{host}/nic{k}" for k in range(topo.nics_per_node or 0)]
    for nic in nics:  # a NIC sits on the host's PCIe
        g.add_node(nic, kind="nic")
        _add_link(g, host, nic, topo.pcie_link or topo.intra_link)
    if topo.gpus_per_node == 0:
        return nics or [host]
    nvs = f"{host}/nvs"
    g.add_node(nvs, kind="switch")
    if topo.pcie_link is None:
        _add_link(g, host, nvs, topo.intra_link)
    for j in range(topo.gpus_per_node):
        gpu = f"{host}/gpu{j}"
        g.add_node(gpu, kind="gpu")
        _add_link(g, gpu, nvs, topo.intra_link)
        if topo.pcie_link is not None:
            port = f"{gpu}/pcie"
            g.add_node(port, kind="switch")
            _add_link(g, gpu, port, topo.pcie_link)
            _add_link(g, port, host, Link(bandwidth=topo.pcie_link.bandwidth))
            if topo.gpudirect and nics:
                _add_link(g, port, nics[j * len(nics) // topo.gpus_per_node], topo.pcie_link)
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
                _add_link(g, e, agg, link)
            for c in cores[a * half : (a + 1) * half]:
                _add_link(g, agg, c, link)
        edges += pod_edges
    return edges


def _place_workers(
    node_hosts: list[str], gpus: dict[str, list[str]], workers_per_node: int | None
) -> tuple[list[str], list[str], list[int]]:
    """Rank order: node by node; on a node, one worker per GPU (round-robin when
    ``workers_per_node`` is set), or ``workers_per_node`` CPU workers on a GPU-less host."""
    workers: list[str] = []
    worker_host: list[str] = []
    node_of_worker: list[int] = []
    for i, host in enumerate(node_hosts):
        devices = gpus[host] or [host]
        count = workers_per_node or (len(gpus[host]) or 1)
        for j in range(count):
            workers.append(devices[j % len(devices)])
            worker_host.append(host)
            node_of_worker.append(i)
    return workers, worker_host, node_of_worker


def _explicit(topo: Topology, spec: ExplicitGraph, base_dir: Path) -> Cluster:
    """Preset ``graph``: GraphML and/or YAML lists; YAML entries add to or override GraphML."""
    g = nx.Graph()
    if spec.graphml is not None:
        _load_graphml(g, base_dir / spec.graphml)
    for node in spec.nodes:
        g.add_node(node.name, kind=node.kind, server=node.server, cores=node.cores, gpus=node.gpus)
    for link in spec.links:
        for end in (link.a, link.b):
            if end not in g:
                raise TopologyError(f"graph link {link.a}-{link.b}: node {end!r} is not declared")
        _add_link(g, link.a, link.b, Link(bandwidth=link.bandwidth, latency=link.latency))
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
    workers, worker_host, node_of_worker = _place_workers(node_hosts, gpus, topo.workers_per_node)
    return Cluster(g, workers, worker_host, node_of_worker, node_hosts, servers, hosts)


def _add_gpus(g: nx.Graph, topo: Topology, host: str, count: int) -> list[str]:
    """``count`` GPUs behind ``host`` on an intra-node switch, as the presets build them."""
    nvs = f"{host}/nvs"
    g.add_node(nvs, kind="switch")
    _add_link(g, host, nvs, topo.intra_link)
    names = [f"{host}/gpu{j}" for j in range(count)]
    for gpu in names:
        g.add_node(gpu, kind="gpu")
        _add_link(g, gpu, nvs, topo.intra_link)
    return names


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
        link = Link(
            bandwidth=units.parse_bandwidth(d["bandwidth"]),
            latency=units.parse_time(d.get("latency", 0.0)),
        )
        _add_link(g, str(a), str(b), link)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)
