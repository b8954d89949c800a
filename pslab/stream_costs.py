"""What one end of a gRPC transfer costs on this machine, from a calibration profile.

One formula, two users: the simulator's loopback platform charges it for every
push and pull, and the contention probe's figures are read against it (a probe
cycle priced here, measured there; their ratio is the slow-down that N clients
at once cause). Keeping both on this one function is what makes the ratio mean
"what the model misses", not "what two formulas disagree on".
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from pslab.profile import Profile


@dataclass(frozen=True)
class EndCost:
    """An end's CPU for one transfer back to back, and what an idle gap before it adds."""

    hot_s: float
    cold_extra_s: float

    def after(self, gap_s: float, ramp_s: float) -> float:
        """The CPU after ``gap_s`` idle: the cold extra grows linearly over the ramp."""
        return self.hot_s + self.cold_extra_s * cold_share(gap_s, ramp_s)


def cold_share(gap_s: float, ramp_s: float) -> float:
    """How much of an op's cold extra an idle gap of ``gap_s`` brings back."""
    if ramp_s <= 0:
        return 0.0
    return min(max(gap_s, 0.0) / ramp_s, 1.0)


def rpc_ramp_s(profile: Profile) -> float:
    return profile.rpc_cold_ramp_s or profile.cold_ramp_s


def stream_end(profile: Profile, nbytes: float, sending: bool, server: bool) -> EndCost:
    """One end of a transfer of ``nbytes``: per-byte work (a gRPC server's end measured on
    its own, a client's otherwise), half an RPC's fixed CPU; cold, half an RPC's cold
    extra and the per-byte extra of a stream entered idle."""
    p = profile
    if sending:
        per_byte = p.server_send_cpu_s_per_byte if server else 0.0
        per_byte = per_byte or p.send_cpu_s_per_byte
        cold_per_byte = p.send_cold_cpu_s_per_byte
    else:
        per_byte = p.server_recv_cpu_s_per_byte if server else 0.0
        per_byte = per_byte or p.recv_cpu_s_per_byte
        cold_per_byte = p.recv_cold_cpu_s_per_byte
    return EndCost(
        nbytes * per_byte + p.rpc_cpu_s / 2, p.rpc_cold_cpu_s / 2 + nbytes * cold_per_byte
    )


@dataclass(frozen=True)
class Contention:
    """How much more CPU a transfer's client and server ends spend than :func:`stream_end`
    says, with this many processes at work (1.0: as priced)."""

    client: float = 1.0
    server: float = 1.0


def probe_factors(profile: Profile, clients: int, nbytes: int, measured: list[float]) -> Contention:
    """One contention probe read against the model: ``clients`` processes each cycling
    (asleep ``profile.contention_gap_s``, push ``nbytes``, pull them) against one shard;
    ``measured`` is [a client's CPU per cycle, the server's, a cycle's seconds].

    A client's push comes after its sleep (cold), its pull straight after (warm). The
    server's gap between ops is its idle time spread over the 2·clients ops of a cycle,
    and its update per push is its own figure, not a transfer's, so it is taken out."""
    client_cpu, server_cpu, cycle_s = measured
    ramp = rpc_ramp_s(profile)
    push = stream_end(profile, nbytes, sending=True, server=False)
    pull = stream_end(profile, nbytes, sending=False, server=False)
    client = push.after(profile.contention_gap_s, ramp) + pull.hot_s
    update = nbytes * profile.update_s_per_byte
    gap = max(cycle_s - clients * server_cpu, 0.0) / (2 * clients)
    served = stream_end(profile, nbytes, sending=False, server=True).after(gap, ramp)
    served += stream_end(profile, nbytes, sending=True, server=True).after(gap, ramp)
    return Contention(
        client=client_cpu / client if client > 0 else 1.0,
        server=max(server_cpu - update, 0.0) / served if served > 0 else 1.0,
    )


def contention(profile: Profile, clients: int, nbytes: float) -> Contention:
    """The slow-down for a run whose ``clients`` processes (every one but the shards) move
    ``nbytes`` a transfer: the probes' factors, linear in the number of clients between
    the measured ones and in log-size between the sizes, held at the ends beyond them."""
    points: dict[int, dict[int, Contention]] = {}
    for key, measured in profile.stream_contention.items():
        n, size = (int(x) for x in key.split("x"))
        points.setdefault(size, {})[n] = probe_factors(profile, n, size, measured)
    if not points:
        return Contention()
    sizes = sorted(points)
    at_size = [_between(clients, points[size]) for size in sizes]
    return _between(
        math.log(max(nbytes, 1.0)), dict(zip(map(math.log, sizes), at_size, strict=True))
    )


def _between(x: float, points: dict[float, Contention]) -> Contention:
    """Linear between the two measured points around ``x``, held at the ends."""
    xs = sorted(points)
    if x <= xs[0]:
        return points[xs[0]]
    for x0, x1 in itertools.pairwise(xs):
        if x <= x1:
            a, b, w = points[x0], points[x1], (x - x0) / (x1 - x0)
            return Contention(
                a.client + (b.client - a.client) * w, a.server + (b.server - a.server) * w
            )
    return points[xs[-1]]
