"""Flow network: exact closed-form finishing times under max–min fair sharing."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from pslab.scenario import ExplicitGraph, GraphLink, GraphNode, Link, Topology
from sim.environment import CountingEnvironment
from sim.network import FlowNetwork
from sim.topology import Cluster, build_cluster

B = 1e9  # bytes/s
LAT = 5e-6  # s per hop
M = 1e6  # bytes


def star(n: int, bandwidth: float = B, latency: float = LAT) -> Cluster:
    """n CPU hosts and one server on a switch: every path is 2 hops."""
    link = Link(bandwidth=bandwidth, latency=latency)
    return build_cluster(Topology(nodes=n, gpus_per_node=0, inter_link=link, servers=1))


def graph(links: list[tuple[str, str, float]]) -> Cluster:
    """Hosts joined by zero-latency links (a, b, bandwidth)."""
    names = sorted({v for a, b, _ in links for v in (a, b)})
    spec = ExplicitGraph(
        nodes=[GraphNode(name=v) for v in names],
        links=[GraphLink(a=a, b=b, bandwidth=bw) for a, b, bw in links],
    )
    return build_cluster(Topology(preset="graph", graph=spec))


def launch(
    env: simpy.Environment, net: FlowNetwork, flows: list[tuple[float, str, str, float]]
) -> list[float]:
    """Start (at, src, dst, nbytes) transfers; return their arrival times, filled by run."""
    done = [math.nan] * len(flows)

    def one(i: int, at: float, src: str, dst: str, nbytes: float) -> Generator[Any, Any, None]:
        yield env.timeout(at)
        yield net.transfer(src, dst, nbytes)
        done[i] = env.now

    for i, flow in enumerate(flows):
        env.process(one(i, *flow))
    return done


def test_ps_incast_takes_n_m_over_b_plus_path_latency() -> None:
    n = 8
    cluster = star(n)
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    done = launch(env, net, [(0.0, w, "ps0", M) for w in cluster.workers])
    env.run()
    assert done == pytest.approx([n * M / B + 2 * LAT] * n, rel=1e-9)


def test_full_duplex_pushes_and_pulls_do_not_slow_each_other() -> None:
    n = 8
    cluster = star(n)
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    pushes = [(0.0, w, "ps0", M) for w in cluster.workers]
    pulls = [(0.0, "ps0", w, M) for w in cluster.workers]
    done = launch(env, net, pushes + pulls)
    env.run()
    assert done == pytest.approx([n * M / B + 2 * LAT] * 2 * n, rel=1e-9)


def test_path_latency_is_added_once_after_the_bandwidth_phase() -> None:
    cluster = star(2)
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    done = launch(env, net, [(1.0, "n0", "n1", M)])
    env.run()
    assert done == pytest.approx([1.0 + M / B + 2 * LAT], rel=1e-12)


def test_same_vertex_and_empty_transfers_cost_only_latency() -> None:
    cluster = star(2)
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    done = launch(env, net, [(0.5, "n0", "n0", M), (0.5, "n0", "n1", 0)])
    env.run()
    assert done == [0.5, pytest.approx(0.5 + 2 * LAT, rel=1e-12)]
    assert net.recomputes == 0


def test_two_flows_share_a_link_and_a_late_one_gets_its_share_from_then_on() -> None:
    cluster = graph([("a", "b", B)])
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    together = launch(env, net, [(0.0, "a", "b", M), (0.0, "a", "b", M)])
    env.run()
    assert together == pytest.approx([2 * M / B] * 2, rel=1e-12)

    # A alone until t1, then A and B at B/2 each: A ends at 2M/B - t1 and B,
    # alone again, at 2M/B (the link never idles).
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    t1 = 0.3 * M / B
    staggered = launch(env, net, [(0.0, "a", "b", M), (t1, "a", "b", M)])
    env.run()
    assert staggered == pytest.approx([2 * M / B - t1, 2 * M / B], rel=1e-12)


def test_max_min_fair_rates_on_two_links() -> None:
    # L1 = x->y (10 B/s) carries A and B; L2 = y->z (4 B/s) carries B and C.
    # Filling: L2 saturates first at 2 each (B, C); A takes L1's other 8.
    # A (8 B) ends at 1. B stays at 2 (L2 is still shared) and ends at 2,
    # having sent 4. C has 4 left at t=2, then runs alone at 4: ends at 3.
    cluster = graph([("x", "y", 10.0), ("y", "z", 4.0)])
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    done = launch(env, net, [(0.0, "x", "y", 8.0), (0.0, "x", "z", 4.0), (0.0, "y", "z", 8.0)])
    env.run()
    assert done == pytest.approx([1.0, 2.0, 3.0], rel=1e-12)


def test_a_rate_cap_hands_the_rest_to_the_others() -> None:
    # B capped at 1: C takes L2's other 3, A takes L1's other 9.
    cluster = graph([("x", "y", 10.0), ("y", "z", 4.0)])
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    events = [
        net.transfer("x", "y", 9.0),
        net.transfer("x", "z", 1.0, max_rate=1.0),
        net.transfer("y", "z", 3.0),
    ]
    times: list[float] = []
    for ev in events:
        ev.callbacks.append(lambda _e: times.append(env.now))
    env.run()
    assert times == pytest.approx([1.0, 1.0, 1.0], rel=1e-12)


def test_event_value_is_the_tag() -> None:
    cluster = star(2)
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    got: list[Any] = []

    def proc() -> Generator[Any, Any, None]:
        got.append((yield net.transfer("n0", "ps0", M, tag=("push", 0))))
        got.append((yield net.transfer("n0", "n0", M, tag="local")))

    env.process(proc())
    env.run()
    assert got == [("push", 0), "local"]


def test_1024_simultaneous_flows_are_one_recompute_and_finish_together() -> None:
    n = 1024
    cluster = star(n)
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    done = launch(env, net, [(0.0, w, "ps0", M) for w in cluster.workers])
    env.run()
    assert net.recomputes <= 3
    assert done == pytest.approx([n * M / B + 2 * LAT] * n, rel=1e-9)
    assert len(set(done)) == 1


def test_flows_arriving_together_are_one_event_in_simpys_order() -> None:
    """Equal pushes end in one wake-up and arrive as one event (``Arrivals``), yet each
    waiter runs where SimPy would run it: a process it starts (an URGENT event of the
    same instant) runs before the next flow's waiter, as with an event per flow."""
    n = 8
    cluster = star(n)
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    log: list[str] = []

    def child(i: int) -> Generator[Any, Any, None]:
        log.append(f"child {i}")
        yield env.timeout(0.0)

    def push(i: int, src: str) -> Generator[Any, Any, None]:
        yield net.transfer(src, "ps0", M)
        log.append(f"push {i}")
        env.process(child(i))

    for i, w in enumerate(cluster.workers):
        env.process(push(i, w))
    env.run()
    assert log == [entry for i in range(n) for entry in (f"push {i}", f"child {i}")]


def test_flows_outside_the_changed_component_keep_their_schedule() -> None:
    # Two disjoint links; traffic coming and going on one never moves the other.
    cluster = graph([("a", "b", B), ("c", "d", B)])
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    churn = [(0.1 * k * M / B, "a", "b", 0.05 * M) for k in range(20)]
    done = launch(env, net, [(0.0, "c", "d", 3 * M), *churn])
    env.run()
    assert done[0] == pytest.approx(3 * M / B, rel=1e-12)
    assert done[1:] == pytest.approx([t + 0.05 * M / B for t, *_ in churn], rel=1e-9)


def test_cpu_processor_sharing() -> None:
    cluster = star(1)
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    net.add_resource("cpu:n0", 2)
    net.add_resource("cpu:n1", 2)
    times: dict[str, list[float]] = {"three": [], "alone": []}

    def job(key: str, resource: str) -> Generator[Any, Any, None]:
        yield net.work(resource, 1.0, max_rate=1.0)
        times[key].append(env.now)

    for _ in range(3):
        env.process(job("three", "cpu:n0"))
    env.process(job("alone", "cpu:n1"))
    env.run()
    assert times["three"] == pytest.approx([1.5] * 3, rel=1e-12)
    assert times["alone"] == pytest.approx([1.0], rel=1e-12)


def test_cpu_sharing_is_piecewise_and_respects_caps() -> None:
    cluster = star(1)
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    net.add_resource("cpu:n0", 2)
    net.add_resource("cpu:ps0", 2)
    ends: dict[str, float] = {}

    def job(name: str, resource: str, amount: float, cap: float) -> Generator[Any, Any, None]:
        yield net.work(resource, amount, max_rate=cap)
        ends[name] = env.now

    # Three share 2 cores at 2/3 each; the two 1 s jobs end at 1.5 s, and the
    # third, with 1 s of work left, runs alone on one core until 2.5 s.
    for name, amount in (("a", 1.0), ("b", 1.0), ("c", 2.0)):
        env.process(job(name, "cpu:n0", amount, 1.0))
    # A job capped at half a core leaves 1.5 cores to an uncapped one.
    env.process(job("slow", "cpu:ps0", 1.0, 0.5))
    env.process(job("fast", "cpu:ps0", 3.0, math.inf))
    env.run()
    assert ends == pytest.approx({"a": 1.5, "b": 1.5, "c": 2.5, "slow": 2.0, "fast": 2.0})


def test_a_private_resource_is_a_delay_for_one_job_at_a_time() -> None:
    env = simpy.Environment()
    net = FlowNetwork(env, star(1))
    net.add_resource("gpu:g0", 2.0, private=True)
    ends: list[float] = []

    def jobs() -> Generator[Any, Any, None]:
        yield net.work("gpu:g0", 3.0, max_rate=1.0)  # capped: one unit per second
        ends.append(env.now)
        yield net.work("gpu:g0", 3.0, max_rate=math.inf)  # the resource's whole capacity
        ends.append(env.now)

    env.process(jobs())
    env.run()
    assert ends == [3.0, 4.5]
    assert net.carried_each("gpu:") == {"g0": 6.0}
    net.work("gpu:g0", 1.0)
    with pytest.raises(RuntimeError, match="two jobs at once"):
        net.work("gpu:g0", 1.0)


def test_a_transfer_made_earlier_runs_from_its_start() -> None:
    env = simpy.Environment()
    net = FlowNetwork(env, star(2))
    later = [net.transfer_later("n0", "n1", M, tag="a"), net.transfer_later("n1", "n1", M)]
    ends: list[tuple[Any, float]] = []

    def waiter(event: simpy.Event) -> Generator[Any, Any, None]:
        ends.append(((yield event), env.now))

    for event in later:
        env.process(waiter(event))
    env.timeout(1.0).callbacks.append(lambda _e: net.start(later))
    env.run()
    # the same as a transfer started at 1 s: bandwidth phase, then two hops' latency;
    # a transfer to itself (no route) is only its latency, none here
    assert ends == [(None, 1.0), ("a", pytest.approx(1.0 + M / B + 2 * LAT, rel=1e-12))]


def test_work_needs_a_registered_resource() -> None:
    net = FlowNetwork(simpy.Environment(), star(1))
    with pytest.raises(ValueError, match="add_resource"):
        net.work("cpu:n0", 1.0)
    with pytest.raises(ValueError, match="add_resource"):
        net.work("n0->sw", 1.0)
    net.add_resource("cpu:n0", 2)
    with pytest.raises(ValueError, match="already exists"):
        net.add_resource("cpu:n0", 2)


def test_link_stats_count_bytes_per_direction() -> None:
    n = 4
    cluster = star(n)
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    launch(env, net, [(0.0, w, "ps0", M) for w in cluster.workers])
    env.run()
    elapsed = n * M / B
    stats = {s["name"]: s for s in net.link_stats(elapsed)}
    assert [s["name"] for s in net.link_stats(elapsed)] == sorted(stats)
    assert set(stats) == {"sw->ps0"} | {f"n{i}->sw" for i in range(n)}
    assert stats["sw->ps0"]["bytes"] == n * M
    assert stats["sw->ps0"]["utilization"] == pytest.approx(1.0)
    assert stats["n0->sw"]["utilization"] == pytest.approx(1 / n)


def test_link_stats_count_flows_still_in_flight() -> None:
    cluster = graph([("a", "b", B)])
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    net.transfer("a", "b", M)
    env.run(until=0.25 * M / B)
    (stat,) = net.link_stats(env.now)
    assert stat["bytes"] == pytest.approx(0.25 * M, rel=1e-9)


# -- a slow, obvious reference: the same model without any of the speed tricks


def reference(
    caps: dict[str, float], flows: list[tuple[float, list[str], float, float]]
) -> list[float]:
    """Fluid simulation of (start, resources, amount, max_rate) flows, max–min
    recomputed over every flow at every start and end."""
    left = [amount for _, _, amount, _ in flows]
    end = [math.inf] * len(flows)
    now = 0.0
    while any(math.isinf(e) for e in end):
        live = [i for i, f in enumerate(flows) if f[0] <= now and math.isinf(end[i])]
        rate = dict.fromkeys(live, 0.0)
        spare = dict(caps)
        open_ = set(live)
        while open_:
            users = {r: sum(r in flows[i][1] for i in open_) for r in caps}
            shares = [spare[r] / u for r, u in users.items() if u]
            level = min(shares + [flows[i][3] for i in open_])
            tight = {r for r, u in users.items() if u and spare[r] / u <= level * (1 + 1e-9)}
            frozen = {i for i in open_ if tight & set(flows[i][1]) or flows[i][3] <= level}
            for i in frozen:
                rate[i] = level
                for r in flows[i][1]:
                    spare[r] -= level
            open_ -= frozen
        starts = [f[0] - now for f in flows if f[0] > now]
        step = min([left[i] / rate[i] for i in live] + starts)
        for i in live:
            left[i] -= rate[i] * step
        now += step
        for i in live:
            if left[i] <= 1e-9 * flows[i][2]:
                end[i] = now
    return end


def random_case(cluster: Cluster, seed: int) -> tuple[list[float], list[float]]:
    """40 transfers and CPU jobs, some capped, starting on a coarse time grid so
    that many coincide (the coalesced path) and others do not (the incremental
    path); returns (network's arrival times, reference's)."""
    rng = random.Random(seed)
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    net.add_resource("cpu:n0", 2.0)
    caps = {
        f"{u}->{v}": bw
        for a, b, bw in cluster.graph.edges(data="bandwidth")
        for u, v in ((a, b), (b, a))
    }
    caps["cpu:n0"] = 2.0
    ends = [*cluster.workers, *cluster.servers]
    flows: list[tuple[float, list[str], float, float]] = []
    done: list[float] = []

    def go(at: float, start: Callable[[], simpy.Event], slot: int) -> Generator[Any, Any, None]:
        yield env.timeout(at)
        yield start()
        done[slot] = env.now

    for k in range(40):
        at = rng.randrange(6) * 1e-3
        if k % 5 == 0:
            amount, cap = rng.uniform(1e-3, 5e-3), rng.choice([0.5, 1.0])
            flows.append((at, ["cpu:n0"], amount, cap))
            start = partial(net.work, "cpu:n0", amount, max_rate=cap)
        else:
            src, dst = rng.sample(ends, 2)
            nbytes = rng.uniform(0.2, 3) * M
            cap = rng.choice([math.inf, math.inf, 0.3 * B])
            flows.append((at, [f"{u}->{v}" for u, v in cluster.route(src, dst)], nbytes, cap))
            start = partial(net.transfer, src, dst, nbytes, max_rate=cap)
        done.append(math.nan)
        env.process(go(at, start, k))
    env.run()
    return done, reference(caps, flows)


@pytest.mark.parametrize("seed", range(5))
def test_matches_a_plain_reference_on_random_workloads(seed: int) -> None:
    topo = Topology(
        nodes=3,
        gpus_per_node=2,
        servers=2,
        inter_link=Link(bandwidth=B, latency=0.0),
        intra_link=Link(bandwidth=4 * B, latency=0.0),
        server_link=Link(bandwidth=2 * B, latency=0.0),
    )
    got, want = random_case(build_cluster(topo), seed)
    assert got == pytest.approx(want, rel=1e-9)


# -- pools (one bottleneck, virtual clock) against progressive filling alone


@st.composite
def flow_sets(draw: st.DrawFn) -> tuple[Cluster, list[tuple[float, str, str, float, float]]]:
    """A random connected graph (a star with extra links, few bandwidths so that caps tie
    and pools form) and transfers or CPU jobs on a coarse start grid, some capped.

    A flow is (start, src, dst, amount, max_rate); src == "cpu" is a job on cpu:h0.
    """
    hosts = [f"h{i}" for i in range(draw(st.integers(2, 7)))]
    bws = st.sampled_from([B, B, 2 * B, 4 * B])
    links = [(h, "sw", draw(bws)) for h in hosts]
    for a, b in draw(
        st.lists(st.tuples(st.sampled_from(hosts), st.sampled_from(hosts)), max_size=4)
    ):
        if a < b and all({a, b} != {x, y} for x, y, _ in links):
            links.append((a, b, draw(bws)))
    flows = []
    for _ in range(draw(st.integers(1, 24))):
        at = draw(st.integers(0, 5)) * 1e-3
        cap = draw(st.sampled_from([math.inf, math.inf, math.inf, 0.3 * B]))
        if draw(st.integers(0, 5)) == 0:
            flows.append((at, "cpu", "", draw(st.sampled_from([1e-3, 2.5e-3])), 1.0))
        else:
            src, dst = draw(st.permutations(hosts))[:2]
            flows.append((at, src, dst, draw(st.sampled_from([0.5, 1.0, 2.0])) * M, cap))
    return graph(links), flows


def finish_times(
    cluster: Cluster,
    flows: list[tuple[float, str, str, float, float]],
    pooled: bool,
    env_type: type[simpy.Environment] = simpy.Environment,
) -> tuple[list[float], dict[str, float]]:
    env = env_type()
    net = FlowNetwork(env, cluster, pooled=pooled)
    net.add_resource("cpu:h0", 2.0)
    done = [math.nan] * len(flows)

    def one(i: int, at: float, src: str, dst: str, amount: float, cap: float) -> Any:
        yield env.timeout(at)
        if src == "cpu":
            yield net.work("cpu:h0", amount, max_rate=cap)
        else:
            yield net.transfer(src, dst, amount, max_rate=cap)
        done[i] = env.now

    for i, flow in enumerate(flows):
        env.process(one(i, *flow))
    env.run()
    stats = {s["name"]: s["bytes"] for s in net.link_stats(env.now)}
    stats["cpu"] = net.carried("cpu:")
    return done, stats


@settings(max_examples=120, deadline=None, derandomize=True)
@given(flow_sets())
def test_pools_give_the_completion_times_of_progressive_filling(
    case: tuple[Cluster, list[tuple[float, str, str, float, float]]],
) -> None:
    cluster, flows = case
    pooled, pooled_bytes = finish_times(cluster, flows, pooled=True)
    filled, filled_bytes = finish_times(cluster, flows, pooled=False)
    assert pooled == pytest.approx(filled, rel=1e-9)
    assert pooled_bytes == pytest.approx(filled_bytes, rel=1e-9)
    # The simulator's environment rings the network's wake-up as an alarm, not an event
    # (CountingEnvironment.alarm): the same times, bit for bit.
    counted, counted_bytes = finish_times(cluster, flows, True, CountingEnvironment)
    assert counted == pooled and counted_bytes == pooled_bytes


def test_an_incast_with_stragglers_stays_pooled() -> None:
    """Pushes arriving one by one share the server link on one clock: the closed form
    of egalitarian sharing, and no flow ever goes through progressive filling."""
    n = 64
    cluster = star(n, latency=0.0)
    env = simpy.Environment()
    net = FlowNetwork(env, cluster)
    gap = 0.1 * M / B  # a new push every tenth of a lone push's time
    done = launch(env, net, [(k * gap, w, "ps0", M) for k, w in enumerate(cluster.workers)])
    env.run()
    assert net._filling.live_count == 0 and not net._pools
    filled = finish_times(
        cluster, [(k * gap, w, "ps0", M, math.inf) for k, w in enumerate(cluster.workers)], False
    )[0]
    assert done == pytest.approx(filled, rel=1e-9)
    # the server link never idles from the first start to the last end: n M / B in all
    assert max(done) == pytest.approx(n * M / B, rel=1e-9)
