"""A netns port's token bucket passes its burst at once; the simulator lends it to transfers."""

from __future__ import annotations

import pytest
import simpy
from conftest import zero_cost_profile

from pslab.compare import op_durations
from pslab.port_shaping import class_bits, tbf_params
from pslab.scenario import load_scenario
from pslab.topology import HostLink
from sim.port_buckets import PortBuckets
from sim.run import simulate_emulated
from sim.topology import FRAME_PAYLOAD

RATE = 50e6  # bytes/s: 400 Mbit/s, netns-tiny's links
BURST = tbf_params(RATE)[0]
LINKS = [HostLink("n0", RATE), HostLink("n1", RATE), HostLink("ps0", RATE)]


def _buckets(fair: bool) -> tuple[simpy.Environment, PortBuckets]:
    env = simpy.Environment()
    return env, PortBuckets(env, LINKS, fair, payload=1.0)


def test_an_idle_class_lends_its_burst_and_refills_at_its_assured_rate() -> None:
    env, buckets = _buckets(fair=True)
    assert buckets.lend("n0", "ps0", 1e6) == BURST
    assert buckets.lend("n0", "ps0", 1e6) == 0.0  # the same classes, emptied
    assert buckets.lend("n1", "ps0", 1e6) == BURST  # ps0's port holds a class per peer
    buckets.done("n0", "ps0")
    assert buckets.lend("n0", "ps0", 1e6) == 0.0  # one transfer still keeps the class busy
    buckets.done("n0", "ps0")
    buckets.done("n0", "ps0")
    refill = class_bits(RATE, len(LINKS) - 1) / 8
    env.run(until=BURST / 2 / refill)
    assert buckets.lend("n0", "ps0", 1e6) == pytest.approx(BURST / 2)
    assert buckets.lend("ps0", "n0", 10.0) == 10.0  # never more than the transfer


def test_a_transfer_gets_the_least_its_two_ports_hold() -> None:
    _, buckets = _buckets(fair=True)
    buckets.lend("n0", "n1", BURST / 4)  # n0's class for n1 and n1's port's class for n0
    assert buckets.lend("n0", "n1", 1e6) == pytest.approx(BURST * 3 / 4)


def test_a_small_transfer_is_lent_all_of_itself_and_no_more() -> None:
    """Frames to payload and back can round above the transfer (123 bytes at 1448/1514):
    what is left to queue is never negative."""
    buckets = PortBuckets(simpy.Environment(), LINKS, True, payload=FRAME_PAYLOAD)
    assert buckets.lend("n0", "ps0", 123.0) == 123.0


def test_a_fifo_port_has_one_bucket_for_every_peer() -> None:
    _, buckets = _buckets(fair=False)
    assert buckets.lend("n0", "ps0", 1e6) == BURST
    assert buckets.lend("n1", "ps0", 1e6) == 0.0  # ps0's one port bucket is spent


def test_an_incast_phase_is_shorter_by_every_peers_burst() -> None:
    """Two workers push 1 MB each into the server's port at once (a profile with no CPU
    costs): each is lent its class's burst, and both finish when the rest has passed the
    shared port, as the flow model's max–min sharing gives it."""
    scenario = load_scenario("scenarios/netns/tiny.yaml", ["run.iterations=6"])
    run = scenario.run
    ops = op_durations(
        simulate_emulated(scenario, zero_cost_profile()).trace, run.warmup, run.iterations
    )
    model_bytes = 1e6
    rate = RATE * FRAME_PAYLOAD
    latency = 2 * 100e-6  # two hops of the scenario's links
    phase = 2 * (model_bytes - BURST * FRAME_PAYLOAD) / rate + latency
    assert ops["push"] == pytest.approx(phase, rel=1e-9)
    assert ops["pull"] == pytest.approx(phase, rel=1e-9)
