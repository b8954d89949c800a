"""Where a simulated run's roles live and what their work costs: a platform.

The executor asks a platform, never the scenario, where a role's bytes leave
from, what its compute holds, and how a transfer is priced. Two platforms:

- :class:`NominalPlatform`: the scenario's cluster (hosts, GPUs, switches,
  links), transfers through the flow-level network. What ``pslab sim`` predicts.
- :class:`LocalPlatform`: the machine the emulator actually runs on, from a
  calibration profile. Every role is a process on one host: its CPU work
  holds one of the machine's cores *and* its own interpreter lock, and a
  gRPC transfer is CPU work on both ends (serialisation, copies) plus a fixed
  cost per RPC. Emulated compute and loading are sleeps that hold nothing.
  What ``pslab compare`` predicts, so the comparison checks the model, not
  the difference between a cluster and a laptop.
"""

from __future__ import annotations

import math
from collections.abc import Generator

import networkx as nx
import simpy

from pslab.algorithms.base import REGISTRY, Plan, Role, server_name
from pslab.distributions import role_rng
from pslab.profile import Profile
from sim.network import FlowNetwork
from sim.topology import Cluster

MACHINE = "cpu:machine"


class NominalPlatform:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.registry_host = cluster.servers[0] if cluster.servers else cluster.node_hosts[0]
        self.worker_update_s_per_byte: float | None = None

    def network(self, env: simpy.Environment, plan: Plan) -> FlowNetwork:
        net = FlowNetwork(env, self.cluster)
        for host, cores in self.cluster.hosts.items():
            net.add_resource(f"cpu:{host}", cores)
        for gpu in {self.cluster.workers[r.rank] for r in plan.workers if r.device is not None}:
            net.add_resource(f"gpu:{gpu}", 1.0)
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

    def sleep(self, net: FlowNetwork, role: Role, seconds: float) -> simpy.Event:
        return net.env.timeout(seconds)

    def compute(self, net: FlowNetwork, role: Role, seconds: float) -> simpy.Event:
        if role.device is not None:
            return net.work(f"gpu:{self.endpoint(role)}", seconds)
        return net.work(f"cpu:{self.host(role)}", seconds)


class LoopbackNetwork(FlowNetwork):
    """Transfers between processes of one machine: CPU on both ends, then the RPC's fixed cost."""

    def __init__(self, env: simpy.Environment, cluster: Cluster, profile: Profile) -> None:
        super().__init__(env, cluster)
        self.profile = profile
        self.add_resource(MACHINE, profile.effective_cores or profile.machine.cores)
        for vertex in cluster.graph.nodes:
            if vertex != "localhost":
                self.add_resource(f"proc:{vertex}", 1.0)

    def transfer(
        self,
        src: str,
        dst: str,
        nbytes: float,
        tag: object = None,
        max_rate: float = math.inf,
        collective: bool = False,
    ) -> simpy.Event:
        """A gRPC stream, or (``collective``) a gloo ring step over TCP: each priced as measured."""
        p = self.profile
        if collective:  # one ring step; the executor adds the ring's other steps' latency
            send_b = recv_b = p.allreduce_s_per_byte
            fixed_cpu, wait = 0.0, self.cluster.path_latency(src, dst)
        else:
            send_b = self._server_or(src, p.server_send_cpu_s_per_byte, p.send_cpu_s_per_byte)
            recv_b = self._server_or(dst, p.server_recv_cpu_s_per_byte, p.recv_cpu_s_per_byte)
            fixed_cpu, wait = p.rpc_cpu_s / 2, p.rpc_overhead_s
        send = self.work_on([MACHINE, f"proc:{src}"], nbytes * send_b + fixed_cpu)
        recv = self.work_on([MACHINE, f"proc:{dst}"], nbytes * recv_b + fixed_cpu)
        return self.env.process(self._after(send, recv, wait, tag))

    @staticmethod
    def _server_or(vertex: str, server: float, client: float) -> float:
        """A gRPC server's end of a stream (shard, registry, communicator) costs its own."""
        is_server = vertex.startswith(("ps-", "comm-")) or vertex == REGISTRY
        return server if is_server and server > 0 else client

    def _after(
        self, send: simpy.Event, recv: simpy.Event, wait: float, tag: object
    ) -> Generator[simpy.Event, object, object]:
        yield send & recv
        yield self.env.timeout(wait)
        return tag


class LocalPlatform:
    def __init__(self, plan: Plan, profile: Profile, emulated_compute: bool) -> None:
        self.profile = profile
        self.emulated_compute = emulated_compute
        self.worker_update_s_per_byte = profile.worker_update_s_per_byte
        self._jitter = {
            r.name: role_rng(plan.scenario.run.seed, f"{r.name}:sleep") for r in plan.roles
        }
        names = [r.name for r in plan.roles]
        if plan.server is not None:
            names += [server_name(k) for k in range(plan.server.shards)]
        if plan.registry is not None:
            names.append(REGISTRY)
        g = nx.Graph()
        g.add_node("localhost", kind="host", cores=profile.machine.cores)
        # A ring step between two processes costs half a two-member gloo all-reduce (which
        # is two steps); each process's edge to the hub carries half of that.
        step = profile.allreduce_overhead_s / 2
        for name in names:
            g.add_node(name, kind="host", cores=1)
            g.add_edge(name, "localhost", bandwidth=math.inf, latency=step / 2, name=name)
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
        return LoopbackNetwork(env, self.cluster, self.profile)

    def endpoint(self, role: Role) -> str:
        return role.name

    def host(self, role: Role) -> str:
        return "localhost"

    def server_host(self, shard: int) -> str:
        return server_name(shard)

    def cpu_of(self, role: Role) -> str:
        return role.name

    def cpu_work(self, net: FlowNetwork, where: str, seconds: float) -> simpy.Event:
        return net.work_on([MACHINE, f"proc:{where}"], seconds)

    def sleep(self, net: FlowNetwork, role: Role, seconds: float) -> simpy.Event:
        """A real ``time.sleep``: it overshoots by a little, and by a different little each
        time. That jitter is what spreads asynchronous workers out of lock-step in real runs,
        so it is drawn (gamma, the measured mean and spread), not averaged away."""
        if seconds <= 0:
            return net.env.timeout(0.0)
        mean, std = self.profile.sleep_overshoot_s, self.profile.sleep_jitter_s
        extra = mean
        if std > 0 and mean > 0:
            shape = (mean / std) ** 2
            extra = float(self._jitter[role.name].gamma(shape, mean / shape))
        return net.env.timeout(seconds + extra)

    def compute(self, net: FlowNetwork, role: Role, seconds: float) -> simpy.Event:
        if self.emulated_compute:
            return self.sleep(net, role, seconds)
        return self.cpu_work(net, role.name, seconds)
