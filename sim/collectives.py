"""Collectives as the flows they make: rings as dataflows, rooted ones as fan-in/fan-out.

A ring member moves on when its own data are in, as gloo's and NCCL's do: no
barrier between the ring's steps (``ring_chain``); on this machine's platform, where a
ring's cost is its members' CPU, step by step from each member's arrival
(:mod:`sim.step_ring`). Rooted collectives are
dataflows too, as the emulator's communicator serves them: a member's reduce
streams its part when the member gets there and ends when that part is in; the
root's ends when every part is; the root's broadcast offers its data and goes
on, and each member receives when it asks, once the data are offered.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import simpy

from pslab import ops
from pslab.algorithm_config import CollectiveAlgo
from pslab.algorithms.base import Role
from pslab.topology import ring_chain
from sim.step_ring import StepRing

if TYPE_CHECKING:
    from pslab.scenario import Scenario
    from sim.costs import Costs
    from sim.executor import Proc
    from sim.network import FlowNetwork
    from sim.numerics import Numerics
    from sim.platform import LocalPlatform, LoopbackNetwork, NominalPlatform
    from sim.topology import Cluster

# What a collective call is of: "allreduce", or ("reduce", root) for rooted ones.
Kind = str | tuple[str, str]
# Collective bodies start their work and succeed the event they are given when it ends.
Body = Callable[[simpy.Event], None]


@dataclass
class Rendezvous:
    """One collective call, gathered until all members arrived.

    Every member waits on the same ``done`` event, so a call costs one event
    for its members however many there are.
    """

    done: simpy.Event
    arrived: int = 0
    left: int = 0  # a rooted call's: members whose part is still to reach the root
    received: int = 0  # a reduce's parts at the root: the first is its total, the rest added
    ring: StepRing | None = None  # an all-reduce run step by step (``rings_by_step``)


class CollectiveOps:
    """``SimExecutor``'s collective ops (a mixin: it reads the executor's state)."""

    env: simpy.Environment
    net: FlowNetwork
    platform: NominalPlatform | LocalPlatform
    costs: Costs
    cluster: Cluster
    cpu_of: dict[str, str]
    scenario: Scenario
    numerics: Numerics | None
    endpoint: dict[str, str]
    bpp: int
    model_bytes: int
    rendezvous: dict[tuple[Any, ...], Rendezvous]
    seq: dict[tuple[Any, ...], int]
    _group_ids: dict[tuple[str, ...], int]
    _last_group: dict[tuple[str, Kind], tuple[tuple[str, ...], int]]
    _latency: dict[tuple[str, str], float]

    def _span_bytes(self, span: ops.Span) -> int:
        return self.model_bytes if span is None else (span[1] - span[0]) * self.bpp

    def _succeed_in(self, event: simpy.Event, delay: float) -> None:
        """Succeed ``event`` ``delay`` seconds from now, through SimPy's public API only: at
        once, or when a timeout of that delay is processed. That costs one event more per
        collective call (not per member); ``succeed`` raises if ``event`` was triggered."""
        if delay <= 0:
            event.succeed()
            return
        self.env.timeout(delay).callbacks.append(lambda _timeout: event.succeed())

    @staticmethod
    def _when_all(events: list[simpy.Event], then: Callable[[], Any]) -> None:
        """Call ``then`` once every one of ``events`` (all fresh) has been processed.

        A countdown on the events' callbacks: what ``env.all_of`` does, without
        the Condition's own event and bookkeeping, for waits nobody yields on.
        """
        left = len(events)
        if left == 0:
            then()
            return

        def one(_event: simpy.Event) -> None:
            nonlocal left
            left -= 1
            if left == 0:
                then()

        for event in events:
            event.callbacks.append(one)

    def _group_id(self, role: str, kind: Kind, group: tuple[str, ...]) -> int:
        """A small int naming a group's value, remembered per (role, kind) by identity.

        Programs mostly pass the same tuple object to every call of one kind,
        so the by-value lookup (hashing and comparing every name) runs once,
        not on every call. Only the last tuple per (role, kind) is held, so a
        program that builds a fresh tuple per call keeps no more alive than
        its calls in flight already do.
        """
        entry = self._last_group.get((role, kind))
        if entry is None or entry[0] is not group:
            gid = self._group_ids.setdefault(group, len(self._group_ids))
            entry = self._last_group[role, kind] = (group, gid)
        return entry[1]

    def _meet(self, role: Role, kind: Kind, group: tuple[str, ...]) -> Rendezvous:
        """This role's next call of (kind, group), counted in. Calls are matched by their
        sequence number per role, so members meet in the n-th call whatever order they
        arrive in; the call is forgotten once every member has arrived."""
        gid = self._group_id(role.name, kind, group)
        mine = (role.name, kind, gid)
        n = self.seq[mine]
        self.seq[mine] = n + 1
        key = (kind, gid, n)
        rv = self.rendezvous.get(key)
        if rv is None:
            rv = self.rendezvous[key] = Rendezvous(self.env.event())
        rv.arrived += 1
        if rv.arrived == len(group):
            del self.rendezvous[key]
        return rv

    def _collective(
        self, role: Role, kind: Kind, group: tuple[str, ...], body: Body
    ) -> simpy.Event:
        """Join this role's next call of (kind, group); the last to arrive starts ``body``.
        Returns the event that succeeds, for every member at once, when ``body`` says the
        work is done."""
        rv = self._meet(role, kind, group)
        if rv.arrived == len(group):
            body(rv.done)
        return rv.done

    def _hop(self, a: str, b: str) -> float:
        """Path latency from ``a`` to ``b`` (cached: rings ask for every pair every call)."""
        latency = self._latency.get((a, b))
        if latency is None:
            latency = self._latency[a, b] = self.cluster.path_latency(a, b)
        return latency

    def _ring(self, members: list[str], nbytes: int, factor: float, done: simpy.Event) -> None:
        """A ring collective: every member sends ``factor``·nbytes to its successor at once.

        ``factor`` is 2(n−1)/n for all-reduce: S = 2(n−1) steps. The ring is a
        dataflow, as gloo's and NCCL's are: a member sends step s once its own
        step s−1 chunk is in, with no barrier between steps. Every step costs
        a chunk's transfer, so member j's last chunk is in after the
        bandwidth phase plus the latencies of the S links that chunk crossed,
        the S ring links ending at j: ``ring_chain``. ``done`` succeeds when
        the last member's is.
        """
        n = len(members)
        if n < 2 or nbytes == 0:
            done.succeed()
            return
        size = factor * nbytes
        pairs = [(members[j], members[(j + 1) % n]) for j in range(n)]
        latency = [self._hop(a, b) for a, b in pairs]
        chain = max(ring_chain(latency, round(factor * n)))
        bandwidth_end = 0.0

        def sent(flow: int) -> Callable[[simpy.Event], None]:
            def record(_event: simpy.Event) -> None:
                nonlocal bandwidth_end
                bandwidth_end = max(bandwidth_end, self.env.now - latency[flow])

            return record

        sends = [self.net.transfer(a, b, size, collective=True) for a, b in pairs]
        for j, send in enumerate(sends):
            send.callbacks.append(sent(j))
        self._when_all(
            sends, lambda: self._succeed_in(done, max(bandwidth_end + chain - self.env.now, 0.0))
        )

    def _ring_event(self, members: list[str], nbytes: int, factor: float) -> simpy.Event:
        done = self.env.event()
        self._ring(members, nbytes, factor, done)
        return done

    def _hierarchical_over(self, group: tuple[str, ...]) -> bool:
        algo = self.scenario.algorithm  # only the variants with allreduce_algo choose
        hierarchical = isinstance(algo, CollectiveAlgo) and algo.allreduce_algo == "hierarchical"
        return hierarchical and all(g.startswith("worker-") for g in group)

    def _allreduce_body(self, group: tuple[str, ...], nbytes: int, done: simpy.Event) -> None:
        n = len(group)
        if self._hierarchical_over(group):
            proc = self.env.process(self._hierarchical(group, nbytes))
            proc.callbacks.append(lambda _event: done.succeed())
            return
        self._ring([self.endpoint[g] for g in group], nbytes, 2 * (n - 1) / n, done)

    def _hierarchical(self, group: tuple[str, ...], nbytes: int) -> Proc:
        """Reduce-scatter inside each node, ring all-reduce across nodes, all-gather inside."""
        by_node: dict[int, list[str]] = defaultdict(list)
        for g in group:
            rank = int(g.split("-", 1)[1])
            by_node[self.cluster.node_of_worker[rank]].append(self.endpoint[g])
        local = [v for v in by_node.values()]
        g_size = max(len(v) for v in local)

        def intra() -> Proc:
            yield self.env.all_of(
                [self._ring_event(m, nbytes, (len(m) - 1) / len(m)) for m in local]
            )

        yield from intra()
        rings = [[m[j] for m in local if j < len(m)] for j in range(g_size)]
        nodes = len(local)
        yield self.env.all_of(
            [self._ring_event(r, nbytes // g_size, 2 * (nodes - 1) / nodes) for r in rings]
        )
        yield from intra()

    def _op_allreduce(self, role: Role, op: ops.AllReduce) -> Proc:
        nbytes = self._span_bytes(op.span)

        def body(done: simpy.Event) -> None:
            if self.numerics is not None:
                self.numerics.allreduce(op.group, op.buf, op.span, op.average)
            self._allreduce_body(op.group, nbytes, done)

        if self.net.rings_by_step and not self._hierarchical_over(op.group):
            yield self._ring_member(role, op, nbytes)
        else:
            yield self._collective(role, "allreduce", op.group, body)
        if op.average and len(op.group) > 1 and role.device is None:
            scale_s = self.costs.mean_scale(nbytes)
            if scale_s:
                yield self.platform.cpu_work(self.net, self.cpu_of[role.name], scale_s)
        return None, nbytes

    def _ring_member(self, role: Role, op: ops.AllReduce, nbytes: int) -> simpy.Event:
        """This role's part of an all-reduce run step by step (:mod:`sim.step_ring`): it
        starts now, whoever else is in, and the event is its own end. The values are reduced
        when the last member arrives, the first moment all of them are known."""
        call = self._meet(role, "allreduce", op.group)
        if call.ring is None:
            net = cast("LoopbackNetwork", self.net)  # the network that rings by step
            call.ring = StepRing(net, [self.endpoint[g] for g in op.group], nbytes)
        if call.arrived == len(op.group) and self.numerics is not None:
            self.numerics.allreduce(op.group, op.buf, op.span, op.average)
        return call.ring.arrive(op.group.index(role.name))

    def _rooted(self, role: Role, kind: Kind, group: tuple[str, ...], root: str) -> Rendezvous:
        """This role's next rooted call of (kind, group), matched as ``_meet`` matches; its
        ``done`` is the root's: every part in (reduce), the data offered (broadcast). No
        member waits for another to arrive."""
        call = self._meet(role, kind, group)
        if call.arrived == 1:  # the first to arrive: the parts the root waits for
            call.left = sum(1 for m in group if m != root)
        return call

    def _op_reduce(self, role: Role, op: ops.Reduce) -> Proc:
        """A member streams its part to the root now and is done when it is in (the
        communicator's Reduce returns once the part is summed: the first part in becomes
        the total, each later one is added to it in the root's process); the root is done
        when every part is, as its ``collect`` blocks until then, and copies the sum into
        its buffer."""
        nbytes = self._span_bytes(op.span)
        call = self._rooted(role, ("reduce", op.root), op.group, op.root)
        if role.name != op.root:
            yield self.net.transfer(self.endpoint[role.name], self.endpoint[op.root], nbytes)
            call.received += 1
            if call.received > 1 and (add_s := self.costs.slice_add(nbytes)):
                yield self.platform.cpu_work(self.net, self.cpu_of[op.root], add_s)
            call.left -= 1
            if not call.left:
                call.done.succeed()
            return None, nbytes
        if call.left:
            yield call.done
        if copy_s := self.costs.slice_copy(nbytes):
            yield self.platform.cpu_work(self.net, self.cpu_of[role.name], copy_s)
        if self.numerics is not None:  # the members' parts, unchanged since they were sent
            self.numerics.reduce(op.group, op.root, op.buf, op.span)
        return None, nbytes

    def _op_broadcast(self, role: Role, op: ops.Broadcast) -> Proc:
        """The root offers a copy of its data (the communicator's ``offer``: its buffer
        moves on while the broadcasts stream) and goes on; a member receives once it asks
        and the data are offered, as its Broadcast call blocks. Asking is the request leg of
        that RPC, served while the member waits (the communicator's work too); each leg
        carries half the RPC's fixed cost, as a fetch's do."""
        nbytes = self._span_bytes(op.span)
        call = self._rooted(role, ("broadcast", op.root), op.group, op.root)
        if role.name == op.root:
            if copy_s := self.costs.slice_copy(nbytes):
                yield self.platform.cpu_work(self.net, self.cpu_of[role.name], copy_s)
            if self.numerics is not None:  # what every member receives: the root's now
                self.numerics.broadcast(op.group, op.root, op.buf, op.span)
            call.done.succeed()
            return None, nbytes
        me, root = self.endpoint[role.name], self.endpoint[op.root]
        yield self.net.message(me, root)
        if not call.done.triggered:
            yield call.done
        yield self.net.transfer(root, me, nbytes, rpc_share=0.5)
        return None, nbytes
