"""N clients at once: the contention probe read against the model that prices transfers."""

from __future__ import annotations

import pytest

from pslab.profile import Machine, Profile
from pslab.scenario import load_scenario
from pslab.stream_costs import Contention, contention, probe_factors, stream_end
from sim.run import simulate_emulated

MS = 1e-3
BIG, SMALL = 8 << 20, 16 << 10


def _profile(**figures: object) -> Profile:
    base = dict(
        send_cpu_s_per_byte=1e-9,
        recv_cpu_s_per_byte=1.5e-9,
        server_send_cpu_s_per_byte=0.8e-9,
        server_recv_cpu_s_per_byte=1.6e-9,
        rpc_overhead_s=0.5 * MS,
        rpc_cpu_s=1.2 * MS,
        rpc_cold_cpu_s=2 * MS,
        rpc_cold_ramp_s=4 * MS,
        update_s_per_byte=0.8e-9,
        send_cold_cpu_s_per_byte=0.1e-9,
        recv_cold_cpu_s_per_byte=0.2e-9,
        contention_gap_s=20 * MS,
    )
    machine = Machine(hostname="test", cores=2, python="3")
    return Profile(machine=machine, measured_at=0.0, **{**base, **figures})


def _as_priced(p: Profile, clients: int, nbytes: int, cycle_s: float) -> list[float]:
    """What a probe would measure if the model were exact: the push cold after the sleep,
    the pull warm, the server cold over its idle gap, its update per push."""
    push = stream_end(p, nbytes, sending=True, server=False)
    pull = stream_end(p, nbytes, sending=False, server=False)
    client = push.hot_s + push.cold_extra_s + pull.hot_s  # a 20 ms sleep > the 4 ms ramp
    recv = stream_end(p, nbytes, sending=False, server=True)
    send = stream_end(p, nbytes, sending=True, server=True)
    hot = recv.hot_s + send.hot_s + nbytes * p.update_s_per_byte
    # the server's idle gap over its 2n ops, solved with its own CPU: cold enough to pay all
    server = hot + recv.cold_extra_s + send.cold_extra_s
    assert (cycle_s - clients * server) / (2 * clients) >= p.rpc_cold_ramp_s
    return [client, server, cycle_s]


def test_a_probe_that_measured_the_model_exactly_reads_as_no_contention() -> None:
    p = _profile()
    for clients in (1, 4):
        f = probe_factors(p, clients, BIG, _as_priced(p, clients, BIG, 0.5))
        assert f.client == pytest.approx(1.0, rel=1e-12)
        assert f.server == pytest.approx(1.0, rel=1e-12)


def test_factors_interpolate_in_clients_and_log_size_and_hold_beyond() -> None:
    p = _profile()
    measured = {}
    for clients, scale in ((1, 1.0), (4, 1.6)):
        for size in (SMALL, BIG):
            c, s, t = _as_priced(p, clients, size, 0.5)
            grow = scale if size == BIG else 1.0 + (scale - 1.0) / 2
            measured[p.contention_key(clients, size)] = [c * grow, s, t]
    p = p.model_copy(update={"stream_contention": measured})
    assert contention(p, 1, BIG).client == pytest.approx(1.0)
    assert contention(p, 4, BIG).client == pytest.approx(1.6)
    assert contention(p, 2, BIG).client == pytest.approx(1.2)  # a third of the way to 4
    assert contention(p, 4, SMALL).client == pytest.approx(1.3)
    middle = int((SMALL * BIG) ** 0.5)  # half way in log-size
    assert contention(p, 4, middle).client == pytest.approx(1.45, rel=1e-6)
    assert contention(p, 9, 1 << 30).client == pytest.approx(1.6)  # held at the far ends
    assert contention(p, 4, BIG).server == pytest.approx(1.0)
    assert contention(_profile(), 4, BIG) == Contention()  # no probe: as priced


def test_a_run_with_contention_pays_it_on_each_end_of_a_transfer(root) -> None:
    # 4 async workers with emulated compute and one shard: every CPU second a worker spends
    # is a transfer's client end, so the client factor doubles it; the shard's is its own
    scenario = load_scenario("scenarios/validation/async_ps_emulated.yaml", ["run.iterations=8"])
    nbytes = 2_000_000 * 4
    p = _profile(rpc_cold_cpu_s=0.0, send_cold_cpu_s_per_byte=0.0, recv_cold_cpu_s_per_byte=0.0)

    def cpu(profile: Profile) -> dict[str, float]:
        return simulate_emulated(scenario, profile).metrics["cpu_time_by_process_s"]

    plain = cpu(p)
    probes = {p.contention_key(n, nbytes): _as_priced(p, n, nbytes, 2.0) for n in (1, 8)}
    doubled = {k: [c * 2.0, s, t] for k, (c, s, t) in probes.items()}
    slow = cpu(p.model_copy(update={"stream_contention": doubled}))
    assert slow["worker-0"] == pytest.approx(2 * plain["worker-0"], rel=1e-9)
    assert slow["ps-0"] == pytest.approx(plain["ps-0"], rel=1e-9)
