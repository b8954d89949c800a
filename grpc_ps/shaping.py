"""How one shaped port of a netns emulation queues: the ``tc`` commands for it.

Every host link is shaped in both directions to the scenario's rate. What the port does when
several flows compete for it decides how they share it, and the simulator's network shares a
link max–min fairly (as SimGrid does). A single FIFO queue does not: in a 6-worker incast at
200 Mbit/s the TCP flows through one FIFO port finished up to 0.5 s apart instead of together,
so the first workers started their next iteration early and the measured iteration came out
8 % shorter than a fair link allows (docs/netns.md). So by default each port is an ``htb``
whose rate is split evenly among the peer hosts, one class each (borrowing what an idle peer
leaves), each class with its own byte FIFO: a deficit round robin over peers, which is
max–min fair between host pairs. ``emulation.port_queue: fifo`` keeps the single ``tbf``.

Only ``tbf``, ``htb``, ``[bp]fifo`` and the ``u32`` classifier are assumed: the kernels this
runs on lack ``fq``, ``sfq``, ``fq_codel`` and ``netem``.
"""

from __future__ import annotations

from typing import Literal

_U32 = (1 << 32) - 1  # tbf's burst and limit are 32-bit byte counts
QUANTUM = 64 << 10  # bytes a class sends per round: one whole GSO packet, equal for all


def tbf_params(rate: float) -> tuple[int, int]:
    """``(burst, limit)`` in bytes for a ``tbf`` at ``rate`` bytes/s.

    burst = max(rate × 2 ms, 16 KiB). Between two dequeues the bucket must hold what the link
    sends while the qdisc's timer, the softirq and the scheduler catch up, a time that does not
    shrink with the rate: a bucket of a fixed size starves fast links. Measured here (veth,
    one TCP stream, payload rate over the configured rate): a 50 µs bucket reached 73 % at
    1 Gbit/s and 36 % at 10 Gbit/s; 0.2 ms reached 91-95 %, 1-2 ms 96 % from 10 Mbit/s to
    10 Gbit/s, which is the payload share of a 1514-byte frame (the link itself is full).
    2 ms leaves room for a machine busy with the emulated workers. The floor keeps a few
    full frames at low rates; a 64 KiB GSO packet larger than the bucket is split in software
    by tbf, which costs little at such rates. An idle link may send one burst at once, ≤ 2 ms
    early: small against the multi-megabyte transfers being measured.

    limit = burst + rate × 100 ms: the queue behind the bucket, a switch port's buffer. The
    simulator's flow model shares a link max-min fairly and never drops, so the emulated
    port should queue incast rather than drop it: one loss can cost TCP a 200 ms retransmission
    timeout, which would swamp any comparison. Measured here, 2 and 6 senders into one
    100 Mbit/s port at once dropped hundreds of packets and lost up to 25 % of the link with a
    10 ms queue, a few with 50 ms, none with 100 ms. The queue fills only under contention, and
    a sender's window bounds what it can queue; idle it costs nothing.

    Both are clamped to tbf's 32-bit byte fields, which binds only above ~340 Gbit/s (e.g. the
    default NVLink-class ``intra_link``): far beyond what a veth carries, so such a link is
    effectively unshaped anyway.
    """
    burst = min(max(int(rate * 2e-3), 16 << 10), _U32)
    return burst, min(burst + int(rate * 100e-3), _U32)


def port_commands(
    dev: str, rate: float, peers: list[str], key: Literal["src", "dst"], fair: bool
) -> list[list[str]]:
    """``tc`` argv (without ``tc -n NS``) that shape ``dev``'s egress to ``rate`` bytes/s.

    ``peers``: the other hosts' addresses; ``key``: which address of a packet names its peer
    (``dst`` on a host's own interface, ``src`` on the switch's port towards the host).
    """
    burst, limit = tbf_params(rate)
    bits = f"{round(rate * 8)}bit"
    if not fair:
        tbf = ["tbf", "rate", bits, "burst", str(burst), "limit", str(limit)]
        return [["qdisc", "replace", "dev", dev, "root", *tbf]]
    size = ["burst", str(burst), "cburst", str(burst), "quantum", str(QUANTUM)]
    cmds = [
        ["qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
        [
            "class",
            "add",
            "dev",
            dev,
            "parent",
            "1:",
            "classid",
            "1:ffff",
            "htb",
            "rate",
            bits,
            "ceil",
            bits,
            "burst",
            str(burst),
            "cburst",
            str(burst),
        ],
    ]
    share = f"{max(round(rate * 8 / (len(peers) + 1)), 8)}bit"
    for k, peer in enumerate([None, *peers], start=1):  # class 1: what names no peer (ARP)
        cls = f"1:{k:x}"
        cmds.append(
            [
                "class",
                "add",
                "dev",
                dev,
                "parent",
                "1:ffff",
                "classid",
                cls,
                "htb",
                "rate",
                share,
                "ceil",
                bits,
                *size,
            ]
        )
        cmds.append(["qdisc", "add", "dev", dev, "parent", cls, "bfifo", "limit", str(limit)])
        if peer is not None:
            match = ["u32", "match", "ip", key, f"{peer}/32", "flowid", cls]
            cmds.append(
                ["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", *match]
            )
    return cmds
