"""The figures of a netns emulation's shaped ports that the emulator sets and the simulator prices.

``grpc_ps.shaping`` turns them into ``tc`` commands; ``sim.port_buckets`` lends a transfer the
bytes those buckets pass the moment it starts. One definition, so the two cannot drift apart.
"""

from __future__ import annotations

U32 = (1 << 32) - 1  # tbf's and htb's burst and limit are 32-bit byte counts


def tbf_params(rate: float) -> tuple[int, int]:
    """``(burst, limit)`` in bytes for a ``tbf`` (or an ``htb`` class) at ``rate`` bytes/s.

    burst = max(rate × 2 ms, 16 KiB). Between two dequeues the bucket must hold what the link
    sends while the qdisc's timer, the softirq and the scheduler catch up, a time that does not
    shrink with the rate: a bucket of a fixed size starves fast links. Measured here (veth,
    one TCP stream, payload rate over the configured rate): a 50 µs bucket reached 73 % at
    1 Gbit/s and 36 % at 10 Gbit/s; 0.2 ms reached 91-95 %, 1-2 ms 96 % from 10 Mbit/s to
    10 Gbit/s, which is the payload share of a 1514-byte frame (the link itself is full).
    2 ms leaves room for a machine busy with the emulated workers. The floor keeps a few
    full frames at low rates; a 64 KiB GSO packet larger than the bucket is split in software
    by tbf, which costs little at such rates. An idle bucket passes its burst at once: on a
    1 MB transfer at 400 Mbit/s, 2 of its 21 ms, which the simulator prices
    (``sim.port_buckets``).

    limit = burst + rate × 100 ms: the queue behind the bucket, a switch port's buffer. The
    simulator's flow model shares a link max-min fairly and never drops, so the emulated
    port should queue incast rather than drop it: one loss can cost TCP a 200 ms retransmission
    timeout, which would swamp any comparison. Measured here, 2 and 6 senders into one
    100 Mbit/s port at once dropped hundreds of packets and lost up to 25 % of the link with a
    10 ms queue, a few with 50 ms, none with 100 ms. The queue fills only under contention, and
    a sender's window bounds what it can queue; idle it costs nothing.

    Both are clamped to the 32-bit byte fields, which binds only above ~340 Gbit/s (e.g. the
    default NVLink-class ``intra_link``): far beyond what a veth carries, so such a link is
    effectively unshaped anyway.
    """
    burst = min(max(int(rate * 2e-3), 16 << 10), U32)
    return burst, min(burst + int(rate * 100e-3), U32)


def class_bits(rate: float, peers: int) -> int:
    """The rate in bit/s a fair port assures each of its classes: one per peer host and one
    for what names no peer (ARP), the port's ``rate`` (bytes/s) split evenly among them."""
    return max(round(rate * 8 / (peers + 1)), 8)
