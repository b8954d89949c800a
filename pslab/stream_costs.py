"""What one end of a gRPC transfer costs on this machine, from a calibration profile.

The simulator's loopback and netns platforms charge it for every push and pull.
"""

from __future__ import annotations

from dataclasses import dataclass

from pslab.profile import Profile


@dataclass(frozen=True)
class EndCost:
    """An end's CPU for one transfer back to back, and what it adds entered fully cold (the
    simulator's ``Warmth`` charges that extra over the RPC's ramp)."""

    hot_s: float
    cold_extra_s: float


def rpc_ramp_s(profile: Profile) -> float:
    return profile.rpc_cold_ramp_s or profile.cold_ramp_s


def stream_end(
    profile: Profile, nbytes: float, sending: bool, server: bool, rpc_share: float = 1.0
) -> EndCost:
    """One end of a transfer of ``nbytes``: per-byte work (a gRPC server's end measured on
    its own, a client's otherwise), half an RPC's fixed CPU; cold, half an RPC's cold
    extra and the per-byte extra of a stream entered idle. ``rpc_share``: the part of the
    RPC's fixed figures this transfer carries (½ for each leg of a request and its reply)."""
    p = profile
    if sending:
        per_byte = p.server_send_cpu_s_per_byte if server else 0.0
        per_byte = per_byte or p.send_cpu_s_per_byte
        cold_per_byte = p.send_cold_cpu_s_per_byte
    else:
        per_byte = p.server_recv_cpu_s_per_byte if server else 0.0
        per_byte = per_byte or p.recv_cpu_s_per_byte
        cold_per_byte = p.recv_cold_cpu_s_per_byte
    fixed, cold = p.rpc_cpu_s / 2 * rpc_share, p.rpc_cold_cpu_s / 2 * rpc_share
    return EndCost(nbytes * per_byte + fixed, cold + nbytes * cold_per_byte)
