"""Where a simulated run's roles live and what their work costs: a platform.

The executor asks a platform, never the scenario, where a role's bytes leave
from, what its compute holds, and how a transfer is priced. Two platforms:

- :class:`NominalPlatform`: the scenario's cluster (hosts, GPUs, switches,
  links), transfers through the flow-level network. What ``pslab sim`` predicts.
- :class:`LocalPlatform`: the machine the emulator actually runs on, from a
  calibration profile. Every role is a process on one host: its CPU work
  holds one of the machine's cores *and* its own interpreter lock, and a
  gRPC transfer is CPU work on both ends (serialisation, copies) plus a fixed
  cost per RPC, and an op its process has not run for a while costs its cold
  figure (see :class:`Warmth`). Emulated compute and loading are sleeps that
  hold nothing.
  What ``pslab compare`` predicts, so the comparison checks the model, not
  the difference between a cluster and a laptop.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import partial

import networkx as nx
import simpy

from pslab.algorithms.base import REGISTRY, Plan, Role, server_name
from pslab.distributions import role_rng
from pslab.profile import Profile
from pslab.size_curve import SizeCurve
from pslab.stream_costs import EndCost, StreamCosts, rpc_ramp_s
from sim.costs import MachineCosts, UpdateCost
from sim.network import FlowNetwork
from sim.topology import Cluster

MACHINE = "cpu:machine"
NATIVE = "native:"  # a process's work outside its interpreter lock (LoopbackNetwork.native_work)


class NominalPlatform:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.registry_host = cluster.registry_host
        self.machine_costs: MachineCosts | None = None  # the scenario's workload prices work

    def network(self, env: simpy.Environment, plan: Plan) -> FlowNetwork:
        net = FlowNetwork(env, self.cluster)
        for host, cores in self.cluster.hosts.items():
            net.add_resource(f"cpu:{host}", cores)
        users = Counter(self.cluster.workers[r.rank] for r in plan.workers if r.device is not None)
        for gpu, n in users.items():  # a worker's own GPU is a plain delay (private)
            net.add_resource(f"gpu:{gpu}", 1.0, private=n == 1)
        return net

    def endpoint(self, role: Role) -> str:
        if role.kind == "worker":
            return self.cluster.workers[role.rank]
        return self.cluster.node_hosts[role.node]

    def host(self, role: Role) -> str:
        if role.kind == "worker":
            return self.cluster.worker_host[role.rank]
        return self.cluster.node_hosts[role.node]

    def server_host(self, shard: int) -> str:
        return self.cluster.servers[shard]

    def cpu_of(self, role: Role) -> str:
        return self.host(role)

    def cpu_work(self, net: FlowNetwork, where: str, seconds: float) -> simpy.Event:
        return net.work(f"cpu:{where}", seconds)

    def update(self, net: FlowNetwork, role: Role, hot_s: float, cold_s: float) -> simpy.Event:
        """A local SGD step on the role's CPU: a cluster's figure has no warmth, the cold one."""
        return self.cpu_work(net, self.cpu_of(role), cold_s)

    def sleep_s(self, role: Role, seconds: float) -> float:
        """How long a sleep (a load) of ``seconds`` takes: as long as it says."""
        return seconds

    def compute(self, net: FlowNetwork, role: Role, seconds: float) -> simpy.Event:
        if role.device is not None:
            return net.work(f"gpu:{self.endpoint(role)}", seconds)
        return net.work(f"cpu:{self.host(role)}", seconds)

    def compute_delay(self, net: FlowNetwork, role: Role) -> Callable[[float, float], float] | None:
        """How the role's compute of ``seconds`` from ``start`` is booked where it is a pure
        delay (its own GPU): ``delay(seconds, start)``; None where it shares a resource."""
        if role.device is None:
            return None
        gpu = f"gpu:{self.endpoint(role)}"
        return partial(net.private_delay, gpu) if net.is_private(gpu) else None


class Warmth:
    """When each process last ran each kind of op, and what the next one costs for the gap.

    An op run back to back costs its hot figure; after an idle gap its caches are cold
    and it costs more, the extra growing linearly over the op's ramp (see the profile).
    Other processes' CPU work in the gap adds the profile's ``cold_by_others_share`` of
    the cold extra, built up over ``cold_by_others_cpu_s`` of it (``grpc_ps.cooling``):
    they evict what the op left in the caches. A parameter server that four workers keep
    busy stays warm; a worker's push after a 5 ms load, while the server and the other
    workers ran, does not.
    """

    def __init__(
        self,
        env: simpy.Environment,
        others_cpu: Callable[[str], float],
        share: float = 0.0,
        build_up_s: float = 0.0,
    ) -> None:
        """``others_cpu(who)``: the CPU-seconds every process but ``who`` has started so far."""
        self.env = env
        self.others_cpu = others_cpu
        self.share, self.build_up_s = share, build_up_s
        # (who, kind): when it last ran, and the others' CPU then
        self._last: dict[tuple[str, str], tuple[float, float]] = {}

    def extra(self, who: str, kind: str, cold_extra: float, ramp_s: float) -> float:
        """The extra ``who`` pays for a ``kind`` op now; a first one is fully cold."""
        if cold_extra <= 0 or ramp_s <= 0:
            return 0.0
        last = self._last.get((who, kind))
        if last is None:
            return cold_extra
        at, others = last
        cold = (self.env.now - at) / ramp_s
        if self.share > 0:
            busy = self.others_cpu(who) - others
            if busy > 0:
                built = busy / self.build_up_s if self.build_up_s > 0 else 1.0
                cold += self.share * min(built, 1.0)
        return cold_extra * min(cold, 1.0)

    def ran(self, who: str, kind: str, done: simpy.Event) -> simpy.Event:
        """Note that ``who`` runs a ``kind`` op from now until ``done``; returns ``done``.

        Warm from its start: an op that begins while another is running finds the
        caches as that one left them."""
        last, others_cpu, env = self._last, self.others_cpu, self.env
        last[who, kind] = (env.now, others_cpu(who))
        done.callbacks.append(lambda _e: last.__setitem__((who, kind), (env.now, others_cpu(who))))
        return done


@dataclass(frozen=True)
class GlooRing:
    """What a gloo ring costs a member here, per byte it sends, and each step's wait.

    ``handoff_cpu_s``: the same wait as a step-by-step ring (:mod:`sim.step_ring`) spends
    it, as a hand-off that takes a core: with every member in the ring, each gets
    ``min(n, cores) / n`` of one, so a hand-off of that many seconds of a core lasts one
    ``step_wait_s``.
    """

    send_cpu_s_per_byte: float
    recv_cpu_s_per_byte: float
    step_wait_s: float
    handoff_cpu_s: float


def gloo_ring(plan: Plan, profile: Profile) -> GlooRing:
    """The run's gloo ring, priced from the all-reduce calibration of its group at its
    model's size: each member's measured CPU (held on a core, so other work slows it),
    and a wait per step for what that CPU does not explain (the scheduler's hand-offs
    when members outnumber cores). Without that figure, two members' per-byte cost at
    each end and the two steps of a tiny all-reduce."""
    n, nbytes = len(plan.collective_world), plan.model.nbytes
    key = profile.allreduce_key(n, nbytes)
    wall, cpu = profile.allreduce_s.get(key), profile.allreduce_cpu_s.get(key)
    cores = profile.effective_cores or profile.machine.cores
    share = min(n, cores) / n if n else 1.0  # of a core, each member's while all are in
    if n < 2 or wall is None or cpu is None:
        per_byte, wait = profile.allreduce_s_per_byte, profile.allreduce_overhead_s / 2
        return GlooRing(per_byte, per_byte, wait, wait * share)
    steps = 2 * (n - 1)
    wait = max(wall - cpu / share, 0.0) / steps
    return GlooRing(cpu / (steps / n * nbytes), 0.0, wait, wait * share)


def _is_server(vertex: str) -> bool:
    """A gRPC server's end of a stream (shard, registry, communicator) costs its own."""
    return vertex.startswith(("ps-", "comm-")) or vertex == REGISTRY


class LoopbackNetwork(FlowNetwork):
    """Transfers between processes of one machine: CPU on both ends, then the RPC's fixed cost."""

    transfers_are_flows = False  # a gRPC stream: its ends' CPU work, then a wait
    prices_held_requests = True  # a held pull's request is a leg of its own (ServerOps)
    rings_by_step = True  # a gloo ring's members go step by step (sim.step_ring)

    def __init__(
        self,
        env: simpy.Environment,
        cluster: Cluster,
        profile: Profile,
        ring: GlooRing,
        processes: list[str],
    ) -> None:
        super().__init__(env, cluster)
        self.profile = profile
        self.ring = ring
        # CPU-seconds started so far, on the machine and by each process (or warmth group)
        self._cpu_total = 0.0
        self._cpu_started: Counter[str] = Counter()
        self.warmth = Warmth(
            env, self._others_cpu, profile.cold_by_others_share, profile.cold_by_others_cpu_s
        )
        self.rpc_ramp_s = rpc_ramp_s(profile)
        self.streams = StreamCosts(profile)
        self.add_resource(MACHINE, profile.effective_cores or profile.machine.cores)
        for name in processes:
            self.add_resource(f"proc:{name}", 1.0)
            self.add_resource(f"{NATIVE}{name}", 1.0)
        self._busy: dict[str, float] = {}  # each process's CPU-seconds of work in progress
        self._handovers: Counter[str] = Counter()  # each process's lock held without a core

    def transfer(
        self,
        src: str,
        dst: str,
        nbytes: float,
        tag: object = None,
        max_rate: float = math.inf,
        collective: bool = False,
        rpc_share: float = 1.0,
    ) -> simpy.Event:
        """A gRPC stream, or a member's share of a gloo ring over TCP: each priced as measured."""
        ends, wait = self.cpu_ends(src, dst, nbytes, collective, rpc_share)
        return self.env.process(self._after([ends], wait, tag))

    def cpu_ends(
        self, src: str, dst: str, nbytes: float, collective: bool, rpc_share: float = 1.0
    ) -> tuple[simpy.Event, float]:
        """A transfer's CPU work at its two ends, done when both are, and the wait after.

        ``rpc_share``: the part of an RPC's fixed CPU, cold extra and wait it carries. The
        profile measures them per round trip (a request and its reply), so a unary RPC
        priced as two transfers, its request and, once the server answers, its reply (a
        synchronous loss report, answered when the round's last is in), carries half on
        each leg; charged whole on both it counted the RPC twice."""
        p = self.profile
        if collective:  # the executor adds the ring's other steps' latency
            # a member sends once per ring: its cold CPU rides on its send
            ring = self.ring
            send_cpu = nbytes * ring.send_cpu_s_per_byte
            cold, ramp = p.allreduce_cold_cpu_s, p.cold_ramp_s
            recv_cpu = nbytes * ring.recv_cpu_s_per_byte
            send = self.cold_work(src, "allreduce", send_cpu, cold, ramp, native=True)
            recv = self.cold_work(dst, "allreduce", recv_cpu, 0.0, ramp, native=True)
            return self.env.all_of([send, recv]), self.cluster.path_latency(src, dst)
        send = self.streams.end(nbytes, True, _is_server(src), rpc_share)
        recv = self.streams.end(nbytes, False, _is_server(dst), rpc_share)
        stream = self.env.process(self._stream(src, dst, send, recv))
        return stream, p.rpc_overhead_s * rpc_share

    def ring_send(self, member: str, nbytes: float, first: bool) -> simpy.Event:
        """A ring member's step: reducing and sending its chunk, outside its interpreter lock.
        The ring's cold extra rides on the member's first step, as on ``cpu_ends``' one send."""
        p = self.profile
        cold = p.allreduce_cold_cpu_s if first else 0.0
        cpu = nbytes * self.ring.send_cpu_s_per_byte
        return self.cold_work(member, "allreduce", cpu, cold, p.cold_ramp_s, native=True)

    def ring_receive(self, member: str, nbytes: float) -> simpy.Event:
        """A chunk reaching a ring member: its threads take it up on a core (the step's
        hand-off, ``GlooRing.handoff_cpu_s``), with the receiving end's own CPU where the
        profile prices one apart."""
        cpu = self.ring.handoff_cpu_s + nbytes * self.ring.recv_cpu_s_per_byte
        return self.native_work(member, cpu)

    def _stream(
        self, src: str, dst: str, send: EndCost, recv: EndCost
    ) -> Generator[simpy.Event, object, None]:
        """A gRPC stream's two ends: side by side for the profile's ``stream_overlap`` of
        each end's work, then taking turns for the rest, the sender's before the receiver's.
        Alone, the stream takes the larger end plus (1 - overlap) of the smaller, as
        calibration reads the overlap (``grpc_ps.probes.stream_overlap``)."""
        warmth, ramp, overlap = self.warmth, self.rpc_ramp_s, self.profile.stream_overlap
        sending = send.hot_s + warmth.extra(src, "rpc", send.cold_extra_s, ramp)
        receiving = recv.hot_s + warmth.extra(dst, "rpc", recv.cold_extra_s, ramp)
        if overlap == 1:  # each end warm until its own work is done
            sent = warmth.ran(src, "rpc", self.process_work(src, sending))
            yield self.env.all_of([sent, warmth.ran(dst, "rpc", self.process_work(dst, receiving))])
            return
        if overlap > 0:
            both = [self.process_work(src, overlap * sending)]
            both.append(self.process_work(dst, overlap * receiving))
            yield self.env.all_of(both)
        yield warmth.ran(src, "rpc", self.process_work(src, (1 - overlap) * sending))
        yield warmth.ran(dst, "rpc", self.process_work(dst, (1 - overlap) * receiving))

    def cold_work(
        self,
        vertex: str,
        kind: str,
        cpu_s: float,
        cold_extra: float,
        ramp_s: float,
        warm_as: str | None = None,
        native: bool = False,
    ) -> simpy.Event:
        """CPU work of a ``kind`` op at ``vertex``, plus what an idle gap made cold.

        ``warm_as``: whose caches the op shares (default: its own process's).
        ``native``: the work runs outside the interpreter (:meth:`native_work`)."""
        who = warm_as or vertex
        extra = self.warmth.extra(who, kind, cold_extra, ramp_s)
        work = self.native_work if native else self.process_work
        if warm_as is not None:  # the group's own work does not cool its caches
            self._cpu_started[warm_as] += cpu_s + extra
        return self.warmth.ran(who, kind, work(vertex, cpu_s + extra))

    def _others_cpu(self, who: str) -> float:
        return self._cpu_total - self._cpu_started[who]

    def native_work(self, vertex: str, cpu_s: float) -> simpy.Event:
        """CPU work of the process at ``vertex`` that does not hold its interpreter lock: a
        gloo collective (torch's c10d bindings release it), so the process's gRPC threads
        serve meanwhile. A Python thread spinning beside back-to-back 8 MB all-reduces kept
        69 % of its rate here, where a held lock would have stopped it. The work holds a
        machine core and the process's one native lane."""
        self._cpu_total += cpu_s
        self._cpu_started[vertex] += cpu_s
        return self.work_on([MACHINE, f"{NATIVE}{vertex}"], cpu_s)

    def process_work(self, vertex: str, cpu_s: float) -> simpy.Event:
        """CPU work of the process at ``vertex``: a machine core and its interpreter lock.

        Work that finds its process already working first holds the lock without a core,
        for what handing the lock and the data between the process's threads costs, so that
        the lock of a process kept busy does work the profile's ``contended_lock_share`` of
        the time (a server four clients kept busy used 0.82-0.86 of a core here, where its
        lock alone would allow a whole one). The hand-overs last while the threads contend:
        for the lesser of the work and what the process already has in progress, so a
        64-byte request in flight does not cost an 8 MB push the hand-overs of a whole
        second push."""
        self._cpu_total += cpu_s
        self._cpu_started[vertex] += cpu_s
        share = self.profile.contended_lock_share
        if share >= 1 or cpu_s <= 0:
            return self.work_on([MACHINE, f"proc:{vertex}"], cpu_s)
        busy = self._busy
        contended = min(cpu_s, busy.get(vertex, 0.0))
        busy[vertex] = busy.get(vertex, 0.0) + cpu_s
        done = self.env.process(self._handed_over(vertex, contended * (1 / share - 1), cpu_s))
        done.callbacks.append(lambda _e: self._idle(vertex, cpu_s))
        return done

    def _idle(self, vertex: str, cpu_s: float) -> None:
        """A work of ``vertex`` is done: what its process still has in progress."""
        left = self._busy[vertex] - cpu_s
        if left > 1e-12 * cpu_s:
            self._busy[vertex] = left
        else:  # the last one: no rounding left behind to count as work
            del self._busy[vertex]

    def _handed_over(
        self, vertex: str, handover: float, cpu_s: float
    ) -> Generator[simpy.Event, object, None]:
        if handover > 0:
            yield self.work_on([f"proc:{vertex}"], handover)
            self._handovers[vertex] += handover
        yield self.work_on([MACHINE, f"proc:{vertex}"], cpu_s)

    def carried_each(self, prefix: str) -> dict[str, float]:
        """As the network's; a process's CPU (``proc:``) adds its native work and leaves out
        its lock's hand-overs, which are not CPU."""
        carried = super().carried_each(prefix)
        if prefix == "proc:":
            for vertex, native in super().carried_each(NATIVE).items():
                carried[vertex] += native
            for vertex, held in self._handovers.items():
                carried[vertex] -= held
        return carried

    def _after(
        self, events: list[simpy.Event], wait: float, tag: object
    ) -> Generator[simpy.Event, object, object]:
        yield self.env.all_of(events)
        yield self.env.timeout(wait)
        return tag


def _hot_update(profile: Profile) -> UpdateCost | None:
    fixed, per_byte = profile.worker_update_hot_s, profile.worker_update_hot_s_per_byte
    return None if fixed is None or per_byte is None else UpdateCost(fixed, per_byte)


def _curve(per_byte_at: dict[int, float]) -> SizeCurve | None:
    return SizeCurve(per_byte_at) if per_byte_at else None


TORCH = "torch"  # a process's warmth for its tensor work: a real compute, an SGD step


class LocalPlatform:
    def __init__(self, plan: Plan, profile: Profile, emulated_compute: bool) -> None:
        self.profile = profile
        self.emulated_compute = emulated_compute
        emu = plan.scenario.emulation
        key = profile.compute_key(emu.model, plan.scenario.workload.batch_size)
        hot, cold = profile.compute_s.get(key, 0.0), profile.compute_cold_s.get(key, 0.0)
        self.compute_cold_extra = max(cold - hot, 0.0) if hot and cold else 0.0
        self.compute_ramp_s = profile.compute_cold_ramp_s.get(key, profile.cold_ramp_s)
        self.machine_costs = MachineCosts(
            compute_s=None if emulated_compute else profile.compute_s[key],
            server_update_s_per_byte=profile.update_s_per_byte,
            worker_update=UpdateCost(profile.worker_update_s, profile.worker_update_s_per_byte),
            worker_update_hot=_hot_update(profile),
            mean_scale_s_per_byte=profile.mean_scale_s_per_byte,
            slice_add=_curve(profile.slice_add_s_per_byte_at),
            slice_copy=_curve(profile.slice_copy_s_per_byte_at),
        )
        self._jitter = {
            r.name: role_rng(plan.scenario.run.seed, f"{r.name}:sleep") for r in plan.roles
        }
        self.processes = names = plan.processes()
        g = nx.Graph()
        g.add_node("localhost", kind="host", cores=profile.machine.cores)
        self.ring = gloo_ring(plan, profile)
        for name in names:  # two processes' path: one ring step's wait
            g.add_node(name, kind="host", cores=1)
            latency = self.ring.step_wait_s / 2
            g.add_edge(name, "localhost", bandwidth=math.inf, latency=latency, name=name)
        n = len(plan.workers)
        self.cluster = Cluster(
            graph=g,
            workers=[f"worker-{r}" for r in range(n)],
            worker_host=["localhost"] * n,
            node_of_worker=[0] * n,
            node_hosts=["localhost"],
            servers=[server_name(k) for k in range(plan.server.shards if plan.server else 0)],
            hosts={"localhost": profile.machine.cores},
        )
        self.registry_host = REGISTRY

    def network(self, env: simpy.Environment, plan: Plan) -> FlowNetwork:
        return LoopbackNetwork(env, self.cluster, self.profile, self.ring, self.processes)

    def endpoint(self, role: Role) -> str:
        return role.name

    def host(self, role: Role) -> str:
        return "localhost"

    def server_host(self, shard: int) -> str:
        return server_name(shard)

    def cpu_of(self, role: Role) -> str:
        return role.name

    def cpu_work(self, net: FlowNetwork, where: str, seconds: float) -> simpy.Event:
        assert isinstance(net, LoopbackNetwork)
        return net.process_work(where, seconds)

    def update(self, net: FlowNetwork, role: Role, hot_s: float, cold_s: float) -> simpy.Event:
        """A local SGD step: its back-to-back cost plus what the process's idle gap from
        tensor work made cold (the calibration's cold figure after the profile's ramp). A
        step right after a real compute meets the caches warm; after a sleep (emulated
        compute) or a transfer, cold."""
        assert isinstance(net, LoopbackNetwork)
        extra = max(cold_s - hot_s, 0.0)
        return net.cold_work(role.name, TORCH, hot_s, extra, self.profile.cold_ramp_s)

    def sleep_s(self, role: Role, seconds: float) -> float:
        """A real ``time.sleep``: it overshoots by a little, and by a different little each
        time. That jitter is what spreads asynchronous workers out of lock-step in real runs,
        so it is drawn (gamma, the measured mean and spread), not averaged away."""
        if seconds <= 0:
            return 0.0
        mean, std = self.profile.sleep_overshoot_s, self.profile.sleep_jitter_s
        extra = mean
        if std > 0 and mean > 0:
            shape = (mean / std) ** 2
            extra = float(self._jitter[role.name].gamma(shape, mean / shape))
        return seconds + extra

    def compute(self, net: FlowNetwork, role: Role, seconds: float) -> simpy.Event:
        if self.emulated_compute:
            return net.env.timeout(self.sleep_s(role, seconds))
        assert isinstance(net, LoopbackNetwork)
        # Workers run one torch build and one model shape: a compute on any of them warms the
        # caches for the others (four computing at once took 0.58 ms each on two cores where a
        # lone cold one takes 0.83 ms), so its warmth is the machine's, not the process's.
        cold, ramp = self.compute_cold_extra, self.compute_ramp_s
        done = net.cold_work(role.name, "compute", seconds, cold, ramp, warm_as=MACHINE)
        return net.warmth.ran(role.name, TORCH, done)

    def compute_delay(self, net: FlowNetwork, role: Role) -> Callable[[float, float], float] | None:
        """Emulated compute is a sleep, a pure delay; real compute shares the cores."""
        if not self.emulated_compute:
            return None
        return lambda seconds, _start: self.sleep_s(role, seconds)
