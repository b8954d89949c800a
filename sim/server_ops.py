"""The parameter server's side of the simulator: shards, their rounds, pushes and pulls.

Shards are separate servers, as ps-lite's, BytePS's and the gRPC emulator's
are: a worker's push to each shard is served when that part is in, and each
shard answers pulls as soon as its own round closes (its own n pushes, under
BSP), not when every shard's has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import simpy

from pslab import ops
from pslab.algorithms.base import Role
from pslab.policies import StalenessPolicy
from sim.flow_events import Flow

if TYPE_CHECKING:
    from pslab.trace import Trace
    from sim.costs import Costs
    from sim.executor import Proc
    from sim.network import FlowNetwork
    from sim.numerics import Numerics
    from sim.platform import LocalPlatform, NominalPlatform


@dataclass
class Shard:
    index: int
    host: str
    offset: int
    length: int
    policy: StalenessPolicy
    nbytes: int  # what a push or a pull of this shard moves
    apply_lane: int  # the trace lane of its apply spans (Trace.lane)
    # Pulls waiting for the policy: (worker rank, its name, its buffer, what it waits on).
    waiters: list[tuple[int, str, str, simpy.Event]] = field(default_factory=list)
    # True while a closed round's mean is being applied: the policy's version
    # has moved on, the parameters have not yet, so pulls wait (the gRPC
    # server does both under one lock, so no pull sees the gap there).
    applying: bool = False


class ServerOps:
    """``SimExecutor``'s push and pull ops (a mixin: it reads the executor's state)."""

    env: simpy.Environment
    net: FlowNetwork
    platform: NominalPlatform | LocalPlatform
    costs: Costs
    shards: list[Shard]
    numerics: Numerics | None
    endpoint: dict[str, str]
    bpp: int
    model_bytes: int
    trace: Trace

    def _op_push(self, role: Role, op: ops.Push) -> Proc:
        src = self.endpoint[role.name]
        if len(self.shards) == 1:  # the common case, one generator deep: no helper processes
            shard = self.shards[0]
            yield self.net.transfer(src, shard.host, shard.nbytes)
            yield from self._serve_push(shard, role, op)
        else:  # each shard serves its part when that part is in, as separate servers do
            yield self.env.all_of(
                [self.env.process(self._push_shard(src, s, role, op)) for s in self.shards]
            )
        return None, self.model_bytes

    def _push_shard(self, src: str, shard: Shard, role: Role, op: ops.Push) -> Proc:
        yield self.net.transfer(src, shard.host, shard.nbytes)
        yield from self._serve_push(shard, role, op)

    def _serve_push(self, shard: Shard, role: Role, op: ops.Push) -> Proc:
        start = self.env.now
        nbytes = shard.nbytes
        yield self.platform.cpu_work(self.net, shard.host, self.costs.update(nbytes))
        applied = shard.policy.on_push(role.rank, op.version)
        update = (
            self.numerics.pushed(shard.index, role.name, op.buf, op.mode, op.iteration, applied)
            if self.numerics is not None
            else None
        )
        if applied is None:
            return
        if shard.policy.aggregate:  # the round's mean is applied once all pushes are in
            shard.applying = True
            yield self.platform.cpu_work(self.net, shard.host, self.costs.update(nbytes))
            shard.applying = False
        if update is not None:
            assert self.numerics is not None
            self.numerics.apply(shard.index, update)
        args = {"staleness": applied.staleness, "version": applied.version}
        self.trace.record_in(shard.apply_lane, start, self.env.now, op.iteration, nbytes, args=args)
        if shard.waiters:
            self._release(shard)

    def _release(self, shard: Shard) -> None:
        """Answer the waiting pulls the policy now lets go: on a flow network the server
        starts their transfers itself (``_pull_shard``), in the order they came."""
        still, flows = [], []
        may_pull = shard.policy.may_pull
        for waiter in shard.waiters:
            rank, name, buf, event = waiter
            if not may_pull(rank):
                still.append(waiter)
            elif isinstance(event, Flow):
                if self.numerics is not None:  # the server streams the version it has now
                    self.numerics.pulled(shard.index, name, buf)
                event.tag = shard.policy.version  # what the pull gets: the version it streams
                flows.append(event)
            else:
                event.succeed(shard.policy.version)
        shard.waiters = still
        if flows:
            self.net.start(flows)

    def _op_pull(self, role: Role, op: ops.Pull) -> Proc:
        """Each shard answers as soon as it may (its own round closed), not when all have:
        ps-lite, BytePS and the gRPC emulator's shards are separate servers."""
        if len(self.shards) == 1:
            version = yield from self._pull_shard(self.shards[0], role, op)
            return version, self.model_bytes
        shards = [self.env.process(self._pull_shard(s, role, op)) for s in self.shards]
        yield self.env.all_of(shards)
        return min(p.value for p in shards), self.model_bytes

    def _pull_shard(self, shard: Shard, role: Role, op: ops.Pull) -> Proc:
        """The version the shard streams, read when it answers (as the gRPC shard reads its
        parameters and version together, then streams them): pushes applied while the
        bytes are under way are not in it, and count towards the worker's next staleness.

        A pull the policy holds back waits for the server's release. On a flow network
        it waits on its transfer, which the release starts (one event and one resume less
        than a gate: what a server that answers held pulls when its round closes does);
        elsewhere on a gate, its transfer started once the worker is back. There, where an
        RPC's CPU is priced, its request is a leg of its own, served while the pull is
        held (the server's work too, beside the round's last pushes), and each leg carries
        half the RPC's fixed cost, as a fetch's and a broadcast's do; not on a netns
        platform (``prices_held_requests``)."""
        net, me = self.net, self.endpoint[role.name]
        reply_share = 1.0  # answered at once: request and reply back to back, one transfer
        if shard.applying or not shard.policy.may_pull(role.rank):
            if net.transfers_are_flows:
                flow = net.transfer_later(shard.host, me, shard.nbytes)
                shard.waiters.append((role.rank, role.name, op.buf, flow))
                return (yield flow)
            gate = self.env.event()
            shard.waiters.append((role.rank, role.name, op.buf, gate))
            if net.prices_held_requests:  # the request, served while the pull is held
                yield net.message(me, shard.host)
                reply_share = 0.5
            version = yield gate
        else:
            version = shard.policy.version
        if self.numerics is not None:  # the server streams the version it has now
            self.numerics.pulled(shard.index, role.name, op.buf)
        yield net.transfer(shard.host, me, shard.nbytes, rpc_share=reply_share)
        return version
