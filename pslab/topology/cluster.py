"""The cluster graph, where every role runs, and the routes and latencies between vertices.

Routing is shortest path by hop count. Among equal-length paths the choice is
a hash of the vertex pair, as ECMP does: deterministic, yet different pairs
spread over a fat tree's cores instead of all crowding the first one. A pair
uses the same path both ways (each direction is still its own resource).
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from pslab.scenario import Link, ScenarioError

Route = tuple[tuple[str, str], ...]


class TopologyError(ScenarioError, ValueError):
    """A topology the scenario asks for that cannot be built (an odd fat-tree k, a link to
    an undeclared node, a disconnected graph): the user's input, so the CLI reports it with
    exit status 2 like any scenario error, not as a traceback."""


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

    @property
    def registry_host(self) -> str:
        """The leader registry's host: the first server's, or the first node's without one."""
        return self.servers[0] if self.servers else self.node_hosts[0]

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


def ring_chain(latency: list[float], steps: int) -> list[float]:
    """Per member j, the latency of the ``steps`` ring links ending at j.

    ``latency[k]`` is the link from member k to member k+1 (mod n). A ring is a
    dataflow (a member sends step s once its own step s−1 chunk is in), so the
    chunk that member j receives at the last step has crossed exactly those links:
    the simulator and the netns emulator charge a ring member this.
    """
    n = len(latency)
    prefix = np.concatenate(([0.0], np.cumsum(np.tile(latency, steps // n + 2))))
    # links j-steps .. j-1, shifted by whole turns to stay non-negative
    base = (steps // n + 1) * n
    return [float(prefix[base + j] - prefix[base + j - steps]) for j in range(n)]


def add_link(g: nx.Graph, a: str, b: str, link: Link) -> None:
    g.add_edge(a, b, bandwidth=link.bandwidth, latency=link.latency, name=f"{a}<->{b}")


def place_workers(
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
