"""The simulator's SimPy environment: SimPy's event loop, counted, with a plain clock.

A 10,240-worker run processes millions of events, each resuming a role's
generators, and every op reads the clock several times (the driver twice, the
network at each start and end): about 20 reads per worker-iteration. So:

* ``now`` is a plain attribute, set where SimPy sets its ``_now``, instead of
  SimPy's property: a read is a dictionary lookup, not a call.
* ``run`` processes events in its own loop, ``Environment.step`` inlined (a
  frame less per event), and counts them (for the benchmark's events/s).
* ``timeout``, ``event``, ``process`` and SimPy's other event classes are bound
  to the instance once, as SimPy binds them for an ``Environment`` itself: its
  ``bind_early`` looks only at the instance's own class, so in a subclass every
  ``env.timeout(...)`` went through a descriptor that built a bound method
  (about 1,500 instructions, twice per worker-iteration).
* ``alarm`` is a timer kept beside the event queue, not in it: the network's
  next-completion wake-up (``sim.network``) rings 2 to 3 times per
  worker-iteration and moves at flows' starts. As events, each setting was an
  object, a push and a pop on a queue as long as the run has workers, and
  each superseded one stayed there until its time. The loop compares the
  alarm's key with the queue's head, so it runs exactly where its event would.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop
from typing import Any

import simpy
from simpy.core import BoundClass, EmptySchedule, SimTime


class CountingEnvironment(simpy.Environment):
    """SimPy's environment with ``now`` as an attribute and a counted run loop."""

    now: float = 0.0  # shadows SimPy's property: an instance attribute, kept equal to _now

    def __init__(self) -> None:
        super().__init__()
        for name, attr in vars(simpy.Environment).items():
            if type(attr) is BoundClass:
                setattr(self, name, getattr(self, name))
        self.now = self._now
        self.events_processed = 0
        # The alarm's key (time, priority, event id: where its event would sort in the
        # queue) and what it calls; None when unset.
        self._alarm: tuple[float, int, int] | None = None
        self._on_alarm: Callable[[], None] = _unset

    def alarm(self, delay: float, priority: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` after ``delay``, where an event of ``priority`` scheduled now
        would be processed, in place of the alarm set before (if any, it never fires).
        One owner per environment: the flow network."""
        self._alarm = (self._now + delay, priority, next(self._eid))  # type: ignore[attr-defined]
        self._on_alarm = callback

    def alarm_off(self) -> None:
        self._alarm = None

    def _ring(self) -> None:
        """Process the alarm, due before the queue's head."""
        alarm = self._alarm
        assert alarm is not None
        self._alarm = None
        self.now = self._now = alarm[0]
        self._on_alarm()

    def _alarm_first(self) -> bool:
        """Whether the alarm comes before the queue's head (``run`` inlines this)."""
        alarm = self._alarm
        return alarm is not None and (not self._queue or alarm < self._queue[0])

    def peek(self) -> SimTime:
        if self._alarm_first():
            assert self._alarm is not None
            return self._alarm[0]
        return super().peek()

    def step(self) -> None:
        """SimPy's ``step`` (``run(until=...)`` uses it), keeping ``now`` up to date."""
        if self._alarm_first():
            self._ring()
            return
        try:
            self.now = self._now = self._queue[0][0]
        except IndexError:
            raise EmptySchedule from None
        super().step()

    def run(self, until: SimTime | simpy.Event | None = None) -> Any:
        """Run to the end, counting events; with ``until``, SimPy's own loop (uncounted).

        The loop is ``Environment.step``'s, less what only ``until`` needs (a
        ``StopSimulation`` raised by a callback): an event that failed and was not
        defused still crashes the run, as there."""
        if until is not None:
            return super().run(until)
        queue = self._queue
        processed = 0
        try:
            while True:
                alarm = self._alarm
                if alarm is not None and (not queue or alarm < queue[0]):  # _alarm_first
                    self._ring()
                    processed += 1
                    continue
                if not queue:
                    break
                now, _, _, event = heappop(queue)
                self.now = self._now = now
                callbacks, event.callbacks = event.callbacks, None
                for callback in callbacks:
                    callback(event)
                processed += 1
                if not event._ok and not hasattr(event, "_defused"):
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    raise exc
        finally:
            self.events_processed += processed
        return None


def _unset() -> None:
    raise AssertionError("an alarm rang that was never set")
