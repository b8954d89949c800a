"""Server policies: pure state machines, driven by both the SimPy server and the gRPC servicer.

A policy is told what happened (a push arrived, a worker asks to pull, a
worker left) and answers what to do (apply now, release this pull). It owns
no tensors and no clock, so the simulator and the emulator cannot disagree
about *when* an update happens, only about how long things take.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class PolicyError(Exception):
    """A request the policy cannot accept (unknown worker, push after leaving, ...)."""


@dataclass
class Apply:
    """Apply these pushes now, as one update. ``staleness`` has one entry per push."""

    workers: list[int]
    staleness: list[int]
    version: int  # the server version after this update


@dataclass
class StalenessPolicy:
    """BSP, SSP and ASP under one staleness bound (Petuum's model).

    ``aggregate`` collects one push from every live worker and applies their
    mean as a single update (BSP). Otherwise every push is applied on arrival
    and a worker that has completed ``c`` pushes may pull once the slowest
    live worker has completed at least ``c - bound`` (``bound=None``: ASP).
    """

    n_workers: int
    bound: int | None = None
    aggregate: bool = False
    version: int = 0
    clock: list[int] = field(default_factory=list)
    live: set[int] = field(default_factory=set)
    _round: dict[int, int] = field(default_factory=dict)  # worker -> computed-on version

    def __post_init__(self) -> None:
        if self.n_workers < 1:
            raise PolicyError("a server needs at least one worker")
        self.clock = [0] * self.n_workers
        self.live = set(range(self.n_workers))

    def _check(self, worker: int) -> None:
        if not 0 <= worker < self.n_workers:
            raise PolicyError(f"worker {worker} is not in 0..{self.n_workers - 1}")
        if worker not in self.live:
            raise PolicyError(f"worker {worker} has left")

    def on_push(self, worker: int, computed_on: int) -> Apply | None:
        self._check(worker)
        if computed_on > self.version:
            raise PolicyError(
                f"push computed on version {computed_on}, server is at {self.version}"
            )
        if self.aggregate and worker in self._round:
            raise PolicyError(f"worker {worker} pushed twice in round {self.version}")
        self.clock[worker] += 1
        if not self.aggregate:
            self.version += 1
            return Apply([worker], [self.version - 1 - computed_on], self.version)
        self._round[worker] = computed_on
        return self._close_round()

    def _close_round(self) -> Apply | None:
        # _round only holds live workers, so counting first keeps a push O(1) until the last
        live = self.live
        if not live or len(self._round) < len(live) or not live.issubset(self._round):
            return None
        workers = sorted(self._round)
        stale = [self.version - self._round[w] for w in workers]
        self._round.clear()
        self.version += 1
        return Apply(workers, stale, self.version)

    def may_pull(self, worker: int) -> bool:
        self._check(worker)
        if self.aggregate:
            return self.version >= self.clock[worker]
        if self.bound is None:
            return True
        slowest = min(self.clock[w] for w in self.live)
        return self.clock[worker] - slowest <= self.bound

    def leave(self, worker: int) -> Apply | None:
        """A worker is gone: it no longer holds others back; a BSP round may now close."""
        self.live.discard(worker)
        self._round.pop(worker, None)
        return self._close_round() if self.aggregate and self._round else None


@dataclass
class LeaderBoard:
    """Who leads: the worker with the lowest reported running-mean loss, per group and overall."""

    groups: list[list[int]]
    losses: dict[int, float] = field(default_factory=dict)

    def group_of(self, worker: int) -> list[int]:
        for g in self.groups:
            if worker in g:
                return g
        raise PolicyError(f"worker {worker} is in no group")

    def report(self, worker: int, loss: float) -> tuple[int, int]:
        """Record a loss; return (local leader, global leader). Ties go to the lower rank."""
        self.group_of(worker)
        self.losses[worker] = float(loss)
        return self.leaders(worker)

    def leaders(self, worker: int) -> tuple[int, int]:
        def best(members: list[int]) -> int:
            known = [w for w in members if w in self.losses]
            return min(known, key=lambda w: (self.losses[w], w)) if known else members[0]

        everyone = [w for g in self.groups for w in g]
        return best(self.group_of(worker)), best(everyone)
