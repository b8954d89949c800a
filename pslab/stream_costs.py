"""What one end of a gRPC transfer costs on this machine, from a calibration profile.

The simulator's loopback and netns platforms charge it for every push and pull. Per byte
it is not one figure: a stream has fixed costs of its own (a thread to feed the request
iterator, the reply's buffer), and on the 2-core machine a client's push cost 0.85 ms/MB at
2 MB and 0.43 at 80 MB. So each end is priced on a :class:`~pslab.size_curve.SizeCurve`
through the sizes calibration measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from pslab.profile import STREAM_ENDS, Profile, parse_stream_key
from pslab.size_curve import SizeCurve


@dataclass(frozen=True)
class EndCost:
    """An end's CPU for one transfer back to back, and what it adds entered fully cold (the
    simulator's ``Warmth`` charges that extra over the RPC's ramp)."""

    hot_s: float
    cold_extra_s: float


def rpc_ramp_s(profile: Profile) -> float:
    return profile.rpc_cold_ramp_s or profile.cold_ramp_s


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
        self._curves = {end: SizeCurve(_points(profile, end)) for end in STREAM_ENDS}

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
