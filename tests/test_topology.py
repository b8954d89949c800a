"""The core topology model: presets, worker placement, routing, and the errors a user can cause."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
import yaml

from pslab.scenario import ExplicitGraph, GraphLink, GraphNode, Link, Topology
from pslab.topology import TopologyError, build_cluster, graph_topology, lay_out

INTRA = Link(bandwidth=300e9, latency=1e-6)
INTER = Link(bandwidth=1.25e9, latency=10e-6)
SERVER = Link(bandwidth=5e9, latency=3e-6)


def hops(route: tuple[tuple[str, str], ...]) -> list[str]:
    """The vertices a route visits."""
    return [route[0][0], *(b for _, b in route)]


def test_single_node_gpus_hang_off_the_intra_node_switch() -> None:
    topo = Topology(preset="single_node", gpus_per_node=4, intra_link=INTRA, cores_per_node=16)
    c = build_cluster(topo)
    assert set(c.graph.nodes) == {"n0", "n0/nvs", "ps0", *(f"n0/gpu{j}" for j in range(4))}
    assert c.graph.nodes["n0/nvs"]["kind"] == "switch"
    assert c.graph.nodes["n0/gpu2"]["kind"] == "gpu"
    assert c.graph.edges["n0", "n0/nvs"]["bandwidth"] == INTRA.bandwidth
    assert c.graph.edges["n0/gpu1", "n0/nvs"]["name"] == "n0/gpu1<->n0/nvs"
    assert c.workers == [f"n0/gpu{j}" for j in range(4)]
    assert c.worker_host == ["n0"] * 4
    assert c.node_of_worker == [0] * 4
    assert c.node_hosts == ["n0"]
    assert c.servers == ["ps0"]
    assert c.hosts == {"n0": 16, "ps0": 8}
    assert c.route("n0/gpu0", "n0/gpu3") == (("n0/gpu0", "n0/nvs"), ("n0/nvs", "n0/gpu3"))
    assert hops(c.route("n0/gpu0", "ps0")) == ["n0/gpu0", "n0/nvs", "n0", "ps0"]


def test_cpu_workers_share_their_host() -> None:
    c = build_cluster(Topology(preset="single_node", gpus_per_node=0, workers_per_node=3))
    assert c.workers == ["n0"] * 3
    assert c.worker_host == ["n0"] * 3
    assert "n0/nvs" not in c.graph


def test_cluster_nodes_and_servers_on_one_switch() -> None:
    topo = Topology(
        nodes=3,
        gpus_per_node=2,
        servers=2,
        intra_link=INTRA,
        inter_link=INTER,
        server_link=SERVER,
        cores_per_node=4,
        server_cores=2,
    )
    c = build_cluster(topo)
    assert c.graph.nodes["sw"]["kind"] == "switch"
    assert c.graph.edges["n1", "sw"]["bandwidth"] == INTER.bandwidth
    assert c.graph.edges["ps1", "sw"]["bandwidth"] == SERVER.bandwidth
    assert c.workers == ["n0/gpu0", "n0/gpu1", "n1/gpu0", "n1/gpu1", "n2/gpu0", "n2/gpu1"]
    assert c.worker_host == ["n0", "n0", "n1", "n1", "n2", "n2"]
    assert c.node_of_worker == [0, 0, 1, 1, 2, 2]
    assert c.node_hosts == ["n0", "n1", "n2"]
    assert c.servers == ["ps0", "ps1"]
    assert c.hosts == {"n0": 4, "n1": 4, "n2": 4, "ps0": 2, "ps1": 2}
    # Between GPUs of one node: the nvs only. Across nodes: via hosts and sw.
    assert hops(c.route("n1/gpu0", "n1/gpu1")) == ["n1/gpu0", "n1/nvs", "n1/gpu1"]
    assert hops(c.route("n0/gpu0", "n2/gpu1")) == [
        "n0/gpu0",
        "n0/nvs",
        "n0",
        "sw",
        "n2",
        "n2/nvs",
        "n2/gpu1",
    ]
    assert hops(c.route("n1/gpu1", "ps0")) == ["n1/gpu1", "n1/nvs", "n1", "sw", "ps0"]
    assert c.path_latency("n1/gpu1", "ps0") == pytest.approx(
        2 * INTRA.latency + INTER.latency + SERVER.latency
    )
    assert c.path_latency("n0", "n0") == 0.0


def test_workers_per_node_spread_round_robin_over_gpus() -> None:
    c = build_cluster(Topology(nodes=2, gpus_per_node=2, workers_per_node=3))
    assert c.workers == ["n0/gpu0", "n0/gpu1", "n0/gpu0", "n1/gpu0", "n1/gpu1", "n1/gpu0"]
    assert c.node_of_worker == [0, 0, 0, 1, 1, 1]


def test_server_link_defaults_to_inter_link() -> None:
    c = build_cluster(Topology(nodes=2, inter_link=INTER))
    assert c.graph.edges["ps0", "sw"]["bandwidth"] == INTER.bandwidth


def test_routes_run_both_ways_over_one_path_and_are_cached() -> None:
    c = build_cluster(Topology(preset="fat_tree", fat_tree_k=4, nodes=8, gpus_per_node=0))
    there = c.route("n0", "n1")
    back = c.route("n1", "n0")
    assert back == tuple((b, a) for a, b in reversed(there))
    assert c.route("n0", "n1") is there


def test_fat_tree_shape_and_hop_counts() -> None:
    k = 4
    topo = Topology(preset="fat_tree", fat_tree_k=k, nodes=15, gpus_per_node=0, servers=1)
    c = build_cluster(topo)
    kinds = nx.get_node_attributes(c.graph, "kind")
    switches = [v for v, kind in kinds.items() if kind == "switch"]
    assert len([s for s in switches if s.startswith("core")]) == (k // 2) ** 2
    assert len([s for s in switches if "/agg" in s]) == k * k // 2
    assert len([s for s in switches if "/edge" in s]) == k * k // 2
    assert all(c.graph.degree(s) == k for s in switches if "/edge" not in s)
    # Hosts go round-robin over the 8 edge switches: n0 and n8 share pod0/edge0,
    # n1 is on pod0/edge1, n2 in pod 1.
    assert hops(c.route("n0", "n8")) == ["n0", "pod0/edge0", "n8"]
    assert len(c.route("n0", "n1")) == 4
    route = c.route("n0", "n2")
    assert len(route) == 6
    assert hops(route)[3].startswith("core")
    assert len(c.route("n0", "ps0")) == 6  # ps0, the 16th attached, is on edge 15 mod 8 = 7 (pod 3)


def test_fat_tree_spreads_pairs_over_the_cores() -> None:
    c = build_cluster(Topology(preset="fat_tree", fat_tree_k=4, nodes=16, servers=0))
    cores = {hops(c.route("n0", f"n{i}"))[3] for i in range(16) if i % 8 >= 2}
    assert len(cores) > 1


def test_fat_tree_too_small_or_odd_k_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"k=4 holds 16 hosts"):
        build_cluster(Topology(preset="fat_tree", fat_tree_k=4, nodes=16, servers=1))
    with pytest.raises(ValueError, match="even"):
        build_cluster(Topology(preset="fat_tree", fat_tree_k=3, nodes=2))


def test_explicit_graph_with_servers_gpus_and_cpu_hosts() -> None:
    spec = ExplicitGraph(
        nodes=[
            GraphNode(name="a", cores=32),
            GraphNode(name="a/gpu0", kind="gpu"),
            GraphNode(name="a/gpu1", kind="gpu"),
            GraphNode(name="b"),
            GraphNode(name="s", server=True),
            GraphNode(name="t", kind="switch"),
        ],
        links=[
            GraphLink(a="a/gpu0", b="a", bandwidth=100e9),
            GraphLink(a="a/gpu1", b="a", bandwidth=100e9),
            GraphLink(a="a", b="t", bandwidth=1e9, latency=1e-6),
            GraphLink(a="b", b="t", bandwidth=1e9, latency=1e-6),
            GraphLink(a="s", b="t", bandwidth=4e9, latency=2e-6),
        ],
    )
    c = build_cluster(Topology(preset="graph", graph=spec, cores_per_node=4, server_cores=6))
    assert c.servers == ["s"]
    assert c.node_hosts == ["a", "b"]
    assert c.workers == ["a/gpu0", "a/gpu1", "b"]
    assert c.worker_host == ["a", "a", "b"]
    assert c.node_of_worker == [0, 0, 1]
    assert c.hosts == {"a": 32, "b": 4, "s": 6}
    assert hops(c.route("a/gpu1", "s")) == ["a/gpu1", "a", "t", "s"]
    assert c.path_latency("b", "s") == pytest.approx(3e-6)


def test_explicit_graph_errors() -> None:
    dangling = ExplicitGraph(
        nodes=[GraphNode(name="a")], links=[GraphLink(a="a", b="nowhere", bandwidth=1e9)]
    )
    with pytest.raises(ValueError, match="'nowhere' is not declared"):
        build_cluster(Topology(preset="graph", graph=dangling))
    apart = build_cluster(
        Topology(
            preset="graph", graph=ExplicitGraph(nodes=[GraphNode(name="a"), GraphNode(name="b")])
        )
    )
    with pytest.raises(ValueError, match="no path"):
        apart.route("a", "b")
    with pytest.raises(ValueError, match="no vertex"):
        apart.route("a", "zz")
    servers_only = ExplicitGraph(nodes=[GraphNode(name="s", server=True)])
    with pytest.raises(ValueError, match="no worker host"):
        build_cluster(Topology(preset="graph", graph=servers_only))


def test_graphml_loads_relative_to_base_dir(tmp_path: Path) -> None:
    g = nx.Graph()
    g.add_node("h0", kind="host", cores=3)
    g.add_node("h1", kind="host")
    g.add_node("ps", kind="host", server="true")
    g.add_node("sw", kind="switch")
    g.add_edge("h0", "sw", bandwidth="10Gb/s", latency="2us")
    g.add_edge("h1", "sw", bandwidth=1.25e9, latency=2e-6)
    g.add_edge("ps", "sw", bandwidth="40Gb/s")
    nx.write_graphml(g, tmp_path / "net.graphml")
    topo = Topology(preset="graph", graph=ExplicitGraph(graphml="net.graphml"), workers_per_node=2)
    c = build_cluster(topo, base_dir=tmp_path)
    assert c.servers == ["ps"]
    assert c.workers == ["h0", "h0", "h1", "h1"]
    assert c.hosts == {"h0": 3, "h1": 8, "ps": 8}
    assert c.graph.edges["h0", "sw"]["bandwidth"] == pytest.approx(1.25e9)
    assert c.graph.edges["ps", "sw"]["bandwidth"] == pytest.approx(5e9)
    assert c.path_latency("h0", "ps") == pytest.approx(2e-6)
    assert c.graph.nodes["sw"] == {"kind": "switch"}


def test_graphml_errors(tmp_path: Path) -> None:
    missing = Topology(preset="graph", graph=ExplicitGraph(graphml="nope.graphml"))
    with pytest.raises(ValueError, match="cannot read GraphML"):
        build_cluster(missing, base_dir=tmp_path)
    g = nx.Graph()
    g.add_node("h", kind="toaster")
    nx.write_graphml(g, tmp_path / "bad.graphml")
    bad = Topology(preset="graph", graph=ExplicitGraph(graphml="bad.graphml"))
    with pytest.raises(ValueError, match="toaster"):
        build_cluster(bad, base_dir=tmp_path)


def _hosts_graph(nodes: list[GraphNode]) -> ExplicitGraph:
    return ExplicitGraph(
        nodes=[*nodes, GraphNode(name="sw", kind="switch")],
        links=[GraphLink(a=n.name, b="sw", bandwidth=1e9) for n in nodes],
    )


def test_graph_hosts_are_the_workers_and_cpu_hosts_are_cpu_workers() -> None:
    hosts = [GraphNode(name=f"h{i}") for i in range(16)] + [GraphNode(name="ps0", server=True)]
    topo = Topology(preset="graph", graph=_hosts_graph(hosts))
    cluster = build_cluster(topo)
    laid_out = graph_topology(topo, cluster)
    assert (laid_out.nodes, laid_out.gpus_per_node, laid_out.n_workers) == (16, 0, 16)
    assert cluster.workers == [f"h{i}" for i in range(16)]


def test_a_hosts_gpus_attribute_adds_its_gpus() -> None:
    hosts = [GraphNode(name=f"h{i}", gpus=2) for i in range(3)]
    topo = Topology(preset="graph", graph=_hosts_graph(hosts), intra_link=INTRA)
    cluster = build_cluster(topo)
    assert cluster.workers == [f"h{i}/gpu{j}" for i in range(3) for j in range(2)]
    assert hops(cluster.route("h0/gpu1", "h2")) == ["h0/gpu1", "h0/nvs", "h0", "sw", "h2"]
    assert cluster.graph.edges["h0/gpu0", "h0/nvs"]["bandwidth"] == INTRA.bandwidth
    laid_out = graph_topology(topo, cluster)
    assert (laid_out.nodes, laid_out.gpus_per_node, laid_out.n_workers) == (3, 2, 6)


def test_graph_layout_errors_name_the_field() -> None:
    hosts = [GraphNode(name=f"h{i}") for i in range(16)]
    with pytest.raises(TopologyError, match=r"topology\.nodes: 20, but .* 16 worker hosts"):
        build_cluster(Topology(preset="graph", nodes=20, graph=_hosts_graph(hosts)))
    topo = Topology(preset="graph", gpus_per_node=1, graph=_hosts_graph(hosts))
    with pytest.raises(TopologyError, match=r"topology\.gpus_per_node: 1, but .* 0 GPUs"):
        graph_topology(topo, build_cluster(topo))
    mixed = [GraphNode(name="a", gpus=2), GraphNode(name="b")]
    topo = Topology(preset="graph", graph=_hosts_graph(mixed))
    with pytest.raises(TopologyError, match=r"topology\.graph: every worker host"):
        graph_topology(topo, build_cluster(topo))
    gpu = GraphNode(name="a/gpu0", kind="gpu")
    spec = ExplicitGraph(
        nodes=[GraphNode(name="a", gpus=2), gpu],
        links=[GraphLink(a="a", b="a/gpu0", bandwidth=1e9)],
    )
    with pytest.raises(TopologyError, match="gpus: 2, but 1 gpu vertices"):
        build_cluster(Topology(preset="graph", graph=spec))


STAR = """
name: star
topology:
  preset: graph
  gpus_per_node: 0
  workers_per_node: 2
  graph:
    nodes: [{name: a}, {name: b}, {name: c}, {name: s, server: true}, {name: t, kind: switch}]
    links:
      - {a: a, b: t, bandwidth: 1Gb/s, latency: 5us}
      - {a: b, b: t, bandwidth: 1Gb/s, latency: 5us}
      - {a: c, b: t, bandwidth: 1Gb/s, latency: 5us}
      - {a: s, b: t, bandwidth: 1Gb/s, latency: 5us}
workload: {model: {params: 1000}, compute_time: 1ms}
algorithm: {name: sync_ps, lr: 0.1}
run: {iterations: 3, warmup: 1}
"""


def test_every_side_counts_a_graphs_workers_from_the_graph(tmp_path: Path) -> None:
    """The simulator, the emulator and the CLI lay a graph out once, in the core model: 3
    hosts x 2 workers, whatever ``topology.nodes`` (default 1) says."""
    from grpc_ps.launch import Launcher
    from pslab.algorithms import build_plan
    from pslab.scenario import scenario_from_dict

    scenario = scenario_from_dict(yaml.safe_load(STAR))
    assert scenario.topology.n_workers == 2  # as written: nodes 1
    laid_out, cluster = lay_out(scenario)
    assert laid_out.topology.n_workers == 6 and cluster.node_hosts == ["a", "b", "c"]
    assert len(build_plan(laid_out).workers) == 6
    assert lay_out(laid_out)[0].topology == laid_out.topology  # laying out again changes nothing
    launcher = Launcher(scenario, tmp_path)  # starts nothing until run()
    assert len(launcher.plan.workers) == 6 and launcher.scenario.topology.nodes == 3


@pytest.mark.parametrize(
    ("topology", "message"),
    [
        ("{preset: fat_tree, fat_tree_k: 4, nodes: 16, servers: 1}", "raise topology.fat_tree_k"),
        (
            "{preset: graph, graph: {nodes: [{name: a}], links: [{a: a, b: z, bandwidth: 1Gb/s}]}}",
            "node 'z' is not declared",
        ),
        ("{preset: graph, graph: {graphml: nowhere.graphml}}", "cannot read GraphML"),
        ("{preset: graph, graph: {graphml: bad.graphml}}", "edge a-b: expected a bandwidth"),
    ],
)
def test_a_topology_error_is_a_clear_message_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], topology: str, message: str
) -> None:
    from pslab_cli.main import main

    g = nx.Graph()
    g.add_edge("a", "b", bandwidth="fast")
    nx.write_graphml(g, tmp_path / "bad.graphml")
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\ntopology: {topology}\n")
    assert main(["sim", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
