"""What servers decide beyond the policy: BSP sums, publication order, the leaders' barrier.

Pure objects, as :mod:`pslab.policies` is: told what arrived, they answer what to do,
own no clock and no lock, and hold whatever arrays the caller gives them (numpy in the
gRPC servicers, torch in the simulator's numerics) without copying. The SimPy server, the
numerics mode and the gRPC servicers all call them at the same logical moment, so the
two executors cannot disagree about *what* a server answers, only about how long it took.
"""

from __future__ import annotations

from collections.abc import ItemsView
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pslab.policies import Apply, LeaderBoard, PolicyError

T = TypeVar("T")


@dataclass
class Update(Generic[T]):
    """Apply ``total``, the sum of ``count`` pushes of ``mode``, as one update, now.

    ``iteration``: the iteration the update's first push was computed in.
    """

    total: T
    count: int
    mode: str
    iteration: int
    done: Apply


@dataclass
class RoundSum(Generic[T]):
    """A shard's pushes between updates: one at a time (ASP, SSP), or a BSP round's sum.

    A BSP round's first push becomes its sum (taken, not copied) and every later one is
    added into it in place, in arrival order, so every executor sums in the same order.
    """

    aggregate: bool
    total: T | None = None
    count: int = 0
    mode: str = ""
    iteration: int = -1

    @property
    def open(self) -> bool:
        """Whether a BSP round holds pushes not yet applied."""
        return self.total is not None

    def check(self, mode: str) -> None:
        """Refuse a push whose mode differs from the open round's (before anything changes)."""
        if self.mode and mode != self.mode:
            raise PolicyError(f"a {mode} push in a round of {self.mode} pushes")

    def parts(self, part: T) -> tuple[list[T], int]:
        """What would be summed, and how many pushes, if ``part`` joined now."""
        if self.total is None:
            return [part], 1
        return [self.total, part], self.count + 1

    def add(
        self, part: T, mode: str, iteration: int, done: Apply | None
    ) -> tuple[Update | None, bool]:
        """A push the policy accepted (``done``: its answer); the update due now, if any.

        The flag says whether ``part`` was taken (it is, or will be, the update's total);
        if not, it was added into the round's sum and the caller may reuse it.
        """
        self.check(mode)
        if not self.aggregate:
            assert done is not None, "a policy that does not aggregate applies every push"
            return Update(part, 1, mode, iteration, done), True
        taken = self.total is None
        if taken:
            self.total, self.count, self.mode, self.iteration = part, 1, mode, iteration
        else:
            self.total += part  # type: ignore[operator]
            self.count += 1
        return (self.close(done) if done is not None else None), taken

    def close(self, done: Apply) -> Update:
        """The open round as one update (the policy closed it: the last push, a leave)."""
        assert self.total is not None, "no round is open"
        update = Update(self.total, self.count, self.mode, self.iteration, done)
        self.total, self.count, self.mode, self.iteration = None, 0, "", -1
        return update


@dataclass
class Publications(Generic[T]):
    """The registry's published copies, per key: the newest round wins.

    A publication of a round older than the one held is dropped (a slow leader's late
    copy never replaces a newer one); one of the same round replaces it.
    """

    held: dict[str, tuple[int, T]] = field(default_factory=dict)

    def publish(self, key: str, rnd: int, value: T) -> bool:
        """Store ``value`` as ``key``'s round ``rnd``; False if a newer round is held."""
        current = self.held.get(key)
        if current is not None and rnd < current[0]:
            return False
        self.held[key] = (rnd, value)
        return True

    def ready(self, key: str, min_round: int) -> bool:
        """Whether a fetch of ``key`` at ``min_round`` or later can be answered now."""
        current = self.held.get(key)
        return current is not None and current[0] >= min_round

    def get(self, key: str) -> tuple[int, T]:
        """The round and value held under ``key`` (call :meth:`ready` first)."""
        return self.held[key]

    def items(self) -> ItemsView[str, tuple[int, T]]:
        return self.held.items()


class LeaderRounds:
    """Who leads, as each report is answered, for synchronous and asynchronous Leader SGD.

    Asynchronous: a report is answered from the losses as they stand when it arrives.
    Synchronous: a round's reports are a barrier over every worker, and each worker of
    the round is answered with the leaders as they stood when the round's last report
    arrived, so all of them see the same leaders, whatever arrives after.
    """

    def __init__(self, groups: list[list[int]], sync: bool) -> None:
        self.board = LeaderBoard(groups)
        self.sync = sync
        self.n_workers = sum(len(g) for g in groups)
        self._reported: dict[int, set[int]] = {}  # sync: round -> workers that reported
        self._answers: dict[tuple[int, int], tuple[int, int]] = {}  # (worker, round) -> leaders

    def report(self, worker: int, rnd: int, loss: float) -> bool:
        """Record ``worker``'s loss for round ``rnd``; True if this decided answers.

        Asynchronous, it always decides its own; synchronous, only the round's last does,
        everyone's at once.
        """
        self.board.report(worker, loss)  # an unknown worker raises before anything changes
        if not self.sync:
            self._answers[worker, rnd] = self.board.leaders(worker)
            return True
        reported = self._reported.setdefault(rnd, set())
        reported.add(worker)
        if len(reported) < self.n_workers:
            return False
        del self._reported[rnd]
        for w in reported:
            self._answers[w, rnd] = self.board.leaders(w)
        return True

    def ready(self, worker: int, rnd: int) -> bool:
        """Whether ``worker``'s report of round ``rnd`` has its answer."""
        return (worker, rnd) in self._answers

    def answer(self, worker: int, rnd: int) -> tuple[int, int]:
        """(local leader, global leader) for ``worker``'s report of ``rnd``, handed out once."""
        return self._answers.pop((worker, rnd))
