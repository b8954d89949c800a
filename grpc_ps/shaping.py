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

from pslab.port_shaping import class_bits, tbf_params

QUANTUM = 64 << 10  # bytes a class sends per round: one whole GSO packet, equal for all


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
    share = f"{class_bits(rate, len(peers))}bit"
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
