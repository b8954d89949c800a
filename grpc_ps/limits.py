"""How much of a server one peer, and all peers together, may hold at once.

Every call that can block or carry data (a push, a pull, an Init, a publication, a fetch, a
sync loss report) holds one of the server's threads while it runs; a peer that opens such
calls and then stalls would hold them all, and the health check and Stats, which need a
thread too, would time out. So such calls are admitted against three limits, and answered
RESOURCE_EXHAUSTED at once past any of them:

* ``streams_per_peer``: calls in progress from one peer (a connection, as gRPC names it:
  the clients of one process share one);
* ``streams``: calls in progress from all peers; the thread pool is this plus
  :data:`RESERVE`, so cheap calls (health, Stats, Register, Leave) always find a thread;
* ``bytes``: request bytes received and held by calls in progress (the chunk a handler is
  working on, a waiting push's first chunk, a ``*One`` call's whole message).

gRPC's own buffering below that is bounded per call (flow-control window, receive limit:
see :func:`grpc_ps.server.grpc_options`), so the three bound what peers can make the server
hold. Admission costs a lock and a few additions per call and per chunk.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

RESERVE = 8  # threads kept free of admitted calls, for the cheap ones


@dataclass(frozen=True)
class Limits:
    streams: int
    streams_per_peer: int
    bytes: int

    def __post_init__(self) -> None:
        if min(self.streams, self.streams_per_peer, self.bytes) < 1:
            raise ValueError(f"limits must be positive: {self}")

    @classmethod
    def for_workers(cls, n_workers: int, message_bytes: int) -> Limits:
        """Room for what a run's workers do at once, with slack.

        A worker has at most a push and a pull in flight per shard, so ``2 n`` calls; the
        defaults double that (retries overlap the call they replace) and add 16. One peer
        may hold as many as the whole run, as several workers in one process share a
        connection, but not more: the other half stays for other peers. Bytes: one
        message of ``message_bytes`` per admitted call.
        """
        per_peer = 4 * n_workers + 8
        streams = 2 * per_peer
        return cls(streams, per_peer, streams * message_bytes)


class Admission:
    """The books of :class:`Limits`: calls in progress per peer, and bytes held."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._per_peer: Counter[str] = Counter()
        self._streams = 0
        self._bytes = 0

    def enter(self, peer: str) -> str:
        """Admit a call from ``peer``: "" if admitted (then :meth:`leave`), else why not."""
        with self._lock:
            if self._streams >= self.limits.streams:
                return f"the server has {self._streams} calls in progress, its limit"
            if self._per_peer[peer] >= self.limits.streams_per_peer:
                return f"{self._per_peer[peer]} calls in progress from this peer, its limit"
            self._streams += 1
            self._per_peer[peer] += 1
            return ""

    def leave(self, peer: str) -> None:
        with self._lock:
            self._streams -= 1
            self._per_peer[peer] -= 1
            if not self._per_peer[peer]:
                del self._per_peer[peer]

    def hold(self, n: int) -> bool:
        """Hold ``n`` more received bytes; False (nothing held) past the limit."""
        with self._lock:
            if self._bytes + n > self.limits.bytes:
                return False
            self._bytes += n
            return True

    def drop(self, n: int) -> None:
        with self._lock:
            self._bytes -= n

    def snapshot(self) -> tuple[int, int]:
        """Calls in progress and bytes held now."""
        with self._lock:
            return self._streams, self._bytes
