"""The events ``sim.network`` schedules itself: its late wake-ups, its flows, their arrivals.

They are built the way ``simpy.Timeout`` builds itself, without a call to
``Event.__init__``: a run makes millions of them.

Why they set SimPy's ``_ok`` and ``_value`` rather than use its public API
(issue #15), as measured on 6 December 2026 (sim_scale's stragglers, 4,096 x 20):

* ``Flow`` through ``Event.__init__``, a ``Timeout`` of its latency whose callback
  calls ``succeed``, and ``succeed`` in place of ``arrive_now``: the same metrics to
  the bit, but 56 % more events (sync_ps 585,871 -> 913,570; async_ps 617,648 ->
  945,328) and 11-15 % more CPU time for sync_ps (7.5 -> 8.4-8.7 s; async_ps's
  two runs differed by more than that).
* ``Late`` has no public form: ``Environment.schedule`` takes a priority but only
  processes a triggered event, and ``succeed``/``trigger``/``Timeout`` trigger at
  NORMAL priority, which would let a later NORMAL event of the same instant run
  after the settle and so break the coalescing of an instant's starts and ends.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappush
from typing import Any

import simpy
from simpy.core import StopSimulation
from simpy.events import NORMAL, PENDING, EventPriority

# Settle after every NORMAL event of the same instant, so a whole instant's
# starts and ends are coalesced into one rate computation.
LATE = EventPriority(NORMAL + 1)


class Late(simpy.Event):
    """A timeout processed after every NORMAL event of its instant, calling ``callback``.

    What ``simpy.Timeout`` does, at priority ``LATE`` (and, like it, without a
    call to ``Event.__init__``): the network's own wake-ups see every start and
    end their instant will bring. ``generation`` tells a superseded alarm
    (``LateAlarm``) from the live one.
    """

    def __init__(
        self,
        env: simpy.Environment,
        delay: float,
        callback: Callable[[simpy.Event], None],
        generation: int = 0,
    ) -> None:
        self.env = env
        self.callbacks = [callback]
        self._value = None
        self._ok = True
        self.generation = generation
        env.schedule(self, LATE, delay)


class LateAlarm:
    """``CountingEnvironment.alarm`` on a plain SimPy environment: a ``Late`` event per
    setting, a superseded one returning at once (the network runs on either)."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.generation = 0
        self.callback: Callable[[], None] | None = None

    def __call__(self, delay: float, priority: int, callback: Callable[[], None]) -> None:
        assert priority == LATE, "a plain environment's alarm is a Late event"
        self.generation += 1
        self.callback = callback
        Late(self.env, delay, self._ring, self.generation)

    def off(self) -> None:
        self.generation += 1

    def _ring(self, event: simpy.Event) -> None:
        if event.generation == self.generation and self.callback is not None:  # type: ignore[attr-defined]
            self.callback()


class At(simpy.Event):
    """A timeout that ends at ``when`` exactly: the end of a role's delays run back to back
    (``pslab.driver.drive``), the very float the chain of timeouts would have reached,
    which ``env.timeout(when - now)`` may miss by a rounding."""

    def __init__(self, env: simpy.Environment, when: float) -> None:
        self.env = env
        self.callbacks = []
        self._value = None
        self._ok = True
        heappush(env._queue, (when, NORMAL, next(env._eid), self))  # type: ignore[attr-defined]


class Flow(simpy.Event):
    """The event a caller waits on, carrying its flow's request."""

    def __init__(
        self,
        env: simpy.Environment,
        route: tuple[int, ...],
        amount: float,
        max_rate: float,
        latency: float,
        tag: Any,
        root: int,
        cap: float,
    ) -> None:
        """``root``: the resource a new pool of it would share; ``cap``: its cap there (its
        ``max_rate`` and its other resources' capacities)."""
        self.env = env  # Event.__init__ inlined, as simpy.Timeout does: one call less per flow
        self.callbacks = []
        self._value = PENDING
        self.route = route  # resource indices
        self.left = amount  # what it still has to move when it enters progressive filling
        self.amount = amount
        self.max_rate = max_rate
        self.latency = latency
        self.tag = tag
        self.root = root
        self.cap = cap

    def arrive(self) -> None:
        """The bandwidth phase is over: succeed one path latency from now.

        Scheduled directly, as ``simpy.Timeout`` schedules itself, so a
        completion costs one event, not a helper timeout plus this one.
        """
        self._ok = True
        self._value = self.tag
        self.env.schedule(self, NORMAL, self.latency)

    def arrive_now(self) -> None:
        """Succeed and run the waiters at once, where SimPy would process this event next
        anyway.

        Only for a zero-latency flow, the first of a completion's, called last by the
        completion wake-up: that wake-up runs after every NORMAL event of its instant,
        so this flow's event would be popped right after it, before anything its
        waiters schedule. Processing it here keeps that order and saves the event.
        Not for ``env.run(until=flow)``: stopping there needs the event in the queue.
        """
        callbacks = self.callbacks
        self._ok = True
        self._value = self.tag
        self.callbacks = None  # as Environment.step does: processed
        for callback in callbacks:
            callback(self)


class Arrivals(simpy.Event):
    """The arrivals of flows one completion finished, with one latency, as one event.

    ``Flow.arrive`` on each would schedule them at one instant with consecutive ids,
    so SimPy would process them one after another in that order, each flow's waiters
    run before the next flow is popped, unless they schedule an URGENT event for that
    instant (a process they start), which SimPy pops first. This event processes its
    flows in the same order and, when the queue's head would come before the next
    flow, puts itself back in the queue under its own key (which sorts where the next
    flow's would have: every event scheduled since has a larger id) and lets SimPy
    process that head first. At a BSP round's close 10,240 pulls arrive together:
    one heap push and pop instead of 10,240, on a queue as long as the run has workers.

    It puts itself on SimPy's queue as ``Environment.schedule`` would, since it needs
    its key.
    """

    def __init__(self, env: simpy.Environment, flows: list[Flow], delay: float) -> None:
        self.env = env
        self.callbacks = [self._process]
        self._value = None
        self._ok = True
        for flow in flows:  # triggered from now on, as Flow.arrive makes them
            flow._ok = True
            flow._value = flow.tag
        self.flows = flows
        self.next = 0
        self.key = (env._now + delay, NORMAL, next(env._eid))  # type: ignore[attr-defined]
        heappush(env._queue, (*self.key, self))  # type: ignore[attr-defined]

    def _process(self, _event: simpy.Event) -> None:
        flows, key = self.flows, self.key
        queue = self.env._queue  # type: ignore[attr-defined]
        i, n = self.next, len(flows)
        while i < n:
            flow = flows[i]
            i += 1
            callbacks, flow.callbacks = flow.callbacks, None  # as Environment.step does
            for callback in callbacks:
                callback(flow)
            if i < n and queue and queue[0] < key:  # SimPy would pop that before the next flow
                self.next = i
                self.callbacks = [self._process]
                heappush(queue, (*key, self))
                return


def arrive_all(env: simpy.Environment, flows: list[Flow]) -> None:
    """``Flow.arrive`` for each of ``flows``, in order, but each run of two or more
    consecutive flows with one latency as one ``Arrivals`` event, unless one of them is
    a flow ``env.run(until=flow)`` waits for (its stop needs its own event in the queue).
    Most completions finish one flow: that costs a length test more than before."""
    n = len(flows)
    if n < 2:
        if n:
            flows[0].arrive()
        return
    stop = StopSimulation.callback
    i = 0
    while i < n:
        latency, j = flows[i].latency, i + 1
        while j < n and flows[j].latency == latency:
            j += 1
        run = flows[i:j]
        if j - i == 1 or any(stop in flow.callbacks for flow in run):
            for flow in run:
                flow.arrive()
        else:
            Arrivals(env, run, latency)
        i = j
