"""A gloo ring on this machine, step by step: members start as they arrive, not at the last.

gloo's ring all-reduce is a dataflow: a member sends step s once it is in the
call and holds step s−1's chunk from its predecessor. So members that arrive
early work through what they can before the last one comes. Measured here
(8 members, 8 MB; ``experiments.gloo_ring_dataflow``, two runs), the ring ended
31–38 ms after the last member arrived when all arrived within 1–2.5 ms, and
22–27 ms after it when their arrivals spread over 13–26 ms. The members still
left within 1.9–3.3 ms of each other. The machine platform used to start the
whole ring at the last arrival, so every early member's work came after it.

A step is two works (``LoopbackNetwork.ring_send``, ``ring_receive``): the
sender's CPU for its chunk (its calibrated CPU over the ring's steps, outside
its interpreter lock; the ring's cold extra on its first step), then the
successor's hand-off, which takes a core. With every member arriving at once
the steps go in lock-step, the n members sharing the cores at each, and the
ring takes the calibration's all-reduce time (``GlooRing``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import simpy

if TYPE_CHECKING:
    from sim.platform import LoopbackNetwork


class StepRing:
    """One all-reduce of ``members`` (ring order: member j sends to j+1) over ``nbytes``."""

    def __init__(self, net: LoopbackNetwork, members: list[str], nbytes: float) -> None:
        n = len(members)
        self.net, self.members = net, members
        self.steps = 2 * (n - 1)
        self.chunk = nbytes / n
        self.arrived = [False] * n
        self.sending = [False] * n
        self.sent = [0] * n  # steps each member has sent
        self.received = [0] * n  # chunks each member holds from its predecessor
        self.done = [net.env.event() for _ in members]

    def arrive(self, j: int) -> simpy.Event:
        """Member ``j`` is in the call; its event succeeds once it has sent its last chunk
        and holds its predecessor's."""
        self.arrived[j] = True
        if self.steps == 0 or self.chunk == 0:
            self.done[j].succeed()
        else:
            self._advance(j)
        return self.done[j]

    def _advance(self, j: int) -> None:
        """Start member ``j``'s next step if it is in, idle, and holds that step's input."""
        s = self.sent[j]
        if self.sending[j] or not self.arrived[j] or s == self.steps or self.received[j] < s:
            return
        self.sending[j] = True
        work = self.net.ring_send(self.members[j], self.chunk, first=s == 0)
        work.callbacks.append(lambda _event: self._sent(j))

    def _sent(self, j: int) -> None:
        self.sending[j] = False
        self.sent[j] += 1
        k = (j + 1) % len(self.members)
        taken = self.net.ring_receive(self.members[k], self.chunk)
        taken.callbacks.append(lambda _event: self._received(k))
        self._advance(j)
        self._finish(j)

    def _received(self, k: int) -> None:
        self.received[k] += 1
        self._advance(k)
        self._finish(k)

    def _finish(self, j: int) -> None:
        if self.sent[j] == self.steps and self.received[j] == self.steps:
            self.done[j].succeed()
