"""The bytes a netns emulation's shaped ports pass the moment a transfer starts.

Every port of a netns run is a token bucket (``tbf``, or per peer an ``htb`` class) whose
depth is ``pslab.port_shaping.tbf_params``' burst, 2 ms of the port's rate. A bucket that
sat idle is full, and it lets that many bytes through at once; only the rest waits for the
rate. The flow model has no buckets, so on short transfers it ran slow: a 2-worker incast
of 1 MB at 400 Mbit/s measured 87-91 ms per iteration against 95.9 predicted, and with the
emulator's burst cut to 16 KiB the same run measured 94-97 ms. A push and a pull phase
each start with every class's bucket full: 2 workers' 2 buckets, about 4 ms a phase.

So a transfer between hosts is lent, off the bytes that then queue for the rate, what the
buckets on its path hold: the least over its two ports (the sender's egress, classed by
destination, and the switch's port to the receiver, classed by source), since a byte must
pass both. A bucket fills at its class's assured rate while its class carries nothing and
stays empty while it does (the class sends at least as fast as its tokens come).
"""

from __future__ import annotations

from dataclasses import dataclass

import simpy

from pslab.port_shaping import class_bits, tbf_params
from pslab.topology import HostLink


@dataclass
class _Bucket:
    depth: float  # bytes of frames
    refill: float  # bytes of frames per second while idle
    tokens: float
    since: float = 0.0  # when it last went idle, or was last topped up
    busy: int = 0  # transfers through it now

    def top_up(self, now: float) -> None:
        if not self.busy:
            self.tokens = min(self.depth, self.tokens + self.refill * (now - self.since))
            self.since = now


class PortBuckets:
    """The buckets of every shaped port: per peer host on a fair port, one per FIFO port."""

    def __init__(
        self, env: simpy.Environment, links: list[HostLink], fair: bool, payload: float
    ) -> None:
        """``payload``: the share of a frame's bytes that are the transfer's (buckets count
        frames)."""
        self.env = env
        self.payload = payload
        self.fair = fair
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}
        peers = len(links) - 1
        for link in links:
            if link.bandwidth is None:  # no link of its own: nothing shapes it
                continue
            depth = float(tbf_params(link.bandwidth)[0])
            refill = class_bits(link.bandwidth, peers) / 8 if fair else link.bandwidth
            for way in ("out", "in"):
                for peer in [other.name for other in links if other is not link] if fair else [""]:
                    self._buckets[way, link.name, peer] = _Bucket(depth, refill, depth)

    def _path(self, a: str, b: str) -> list[_Bucket]:
        keys = (("out", a, b if self.fair else ""), ("in", b, a if self.fair else ""))
        return [self._buckets[k] for k in keys if k in self._buckets]

    def lend(self, a: str, b: str, nbytes: float) -> float:
        """A transfer of ``nbytes`` from host ``a`` to ``b`` starts: the bytes its buckets pass
        at once (taken from them), which it no longer queues for. Call :meth:`done` at its end."""
        path = self._path(a, b)
        now = self.env.now
        for bucket in path:
            bucket.top_up(now)
        frames = min((bucket.tokens for bucket in path), default=0.0)
        frames = min(frames, nbytes / self.payload)
        for bucket in path:
            bucket.tokens -= frames
            bucket.busy += 1
        return min(frames * self.payload, nbytes)  # (n / p) * p can exceed n by a rounding

    def done(self, a: str, b: str) -> None:
        """The transfer from ``a`` to ``b`` has ended: a bucket it leaves idle starts filling."""
        now = self.env.now
        for bucket in self._path(a, b):
            bucket.busy -= 1
            if not bucket.busy:
                bucket.since = now
