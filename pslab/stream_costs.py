"""What one end of a gRPC transfer costs on this machine, from a calibration profile.

The simulator's loopback and netns platforms charge it for every push and pull.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from pslab.profile import STREAM_ENDS, Profile, parse_stream_key


@dataclass(frozen=True)
class EndCost:
    """An end's CPU for one transfer back to back, and what it adds entered fully cold (the
    simulator's ``Warmth`` charges that extra over the RPC's ramp)."""

    hot_s: float
    cold_extra_s: float


def rpc_ramp_s(profile: Profile) -> float:
    return profile.rpc_cold_ramp_s or profile.cold_ramp_s


class _Curve:
    """An end's CPU beyond its share of an RPC's fixed cost, against the stream's bytes:
    the straight lines through the sizes calibration measured.

    Per byte it is not one figure: a stream has fixed costs of its own (a thread to feed the
    request iterator, the reply's buffer), and larger messages stream cheaper per byte. On
    the 2-core machine a client's push cost 0.85 ms/MB at 2 MB and 0.43 at 80 MB. Below the
    smallest size the cost is that size's per byte; above the largest it goes on along the
    last line (its marginal cost per byte), so a size between two calibrated ones is
    interpolated, never extrapolated from one figure."""

    def __init__(self, points: dict[int, float]) -> None:
        self.sizes = sorted(points)
        self.costs = [size * points[size] for size in self.sizes]

    def __call__(self, nbytes: float) -> float:
        sizes, costs = self.sizes, self.costs
        if nbytes <= sizes[0] or len(sizes) == 1:
            return nbytes * costs[0] / sizes[0]
        i = min(bisect_left(sizes, nbytes), len(sizes) - 1)  # the line from sizes[i-1] to i
        slope = (costs[i] - costs[i - 1]) / (sizes[i] - sizes[i - 1])
        return max(costs[i - 1] + slope * (nbytes - sizes[i - 1]), 0.0)


def _points(profile: Profile, end: str) -> dict[int, float]:
    """The per-byte figures of ``end`` by stream size; a server's falls back to a client's
    where the profile has none of its own."""
    plain = getattr(profile, f"{end}_cpu_s_per_byte")
    if not plain and end.startswith("server_"):
        return _points(profile, end.removeprefix("server_"))
    points = {profile.stream_bytes or 1: plain}
    for key, per_byte in profile.stream_cpu_s_per_byte_at.items():
        name, size = parse_stream_key(key)
        if name == end:
            points[size] = per_byte
    return points


class StreamCosts:
    """Each end of a transfer priced from one profile (its curves read once)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._curves = {end: _Curve(_points(profile, end)) for end in STREAM_ENDS}

    def end(self, nbytes: float, sending: bool, server: bool, rpc_share: float = 1.0) -> EndCost:
        """One end of a transfer of ``nbytes``: its per-byte work (a gRPC server's end
        measured on its own, a client's otherwise), half an RPC's fixed CPU; cold, half an
        RPC's cold extra and the per-byte extra of a stream entered idle. ``rpc_share``:
        the part of the RPC's fixed figures this transfer carries (½ for each leg of a
        request and its reply)."""
        p = self.profile
        end = ("server_" if server else "") + ("send" if sending else "recv")
        cold_per_byte = p.send_cold_cpu_s_per_byte if sending else p.recv_cold_cpu_s_per_byte
        fixed, cold = p.rpc_cpu_s / 2 * rpc_share, p.rpc_cold_cpu_s / 2 * rpc_share
        return EndCost(self._curves[end](nbytes) + fixed, cold + nbytes * cold_per_byte)
