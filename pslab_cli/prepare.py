"""``pslab prepare``: the run directory of a multi-host run, and the commands that use it.

A run directory on a shared file system is all the roles of a run share: the
resolved scenario, the clock origin, where every service listens and, when
asked, the token and the certificates. Writing it by hand is where runs went
wrong (a missing port, a rendezvous address of ``""``), so ``prepare`` derives
it from the scenario and the host list, and prints the commands to run on each
host: ``pslab serve`` for the servers, torchrun (two or more agents, one per
node, ``--node-rank`` each) or srun or mpirun for the workers, then ``pslab
collect``. Ports: shard k at PORT+k, the leader registry at PORT+shards, the
workers' torch.distributed rendezvous at PORT+shards+1 and torchrun's own
store at PORT+shards+2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grpc_ps.auth import is_loopback

if TYPE_CHECKING:  # the heavy modules load only when the command runs
    from grpc_ps.endpoints import Endpoints
    from pslab.algorithms.base import Plan
    from pslab.scenario import Scenario


def add_parser(
    sub: argparse._SubParsersAction, scenario_args: Callable[[argparse.ArgumentParser], None]
) -> None:
    p = sub.add_parser("prepare", help="write a multi-host run directory and its commands")
    scenario_args(p)
    p.add_argument("--run-dir", required=True, type=Path, help="on a file system every host sees")
    p.add_argument("--hosts", required=True, help="the worker hosts, one per node, in order")
    p.add_argument("--servers", help="hosts of the server shards (default: the first host)")
    p.add_argument("--port", type=int, default=7000, help="first port (default 7000)")
    p.add_argument("--token", action="store_true", help="write a fresh token (RUN/token)")
    p.add_argument("--tls", action="store_true", help="write a CA and host certs (RUN/certs)")
    p.set_defaults(fn=cmd_prepare)


@dataclass
class Layout:
    """Which host runs what, and on which port."""

    hosts: list[str]  # node i's host
    servers: list[str]  # shard k's host
    port: int
    shards: int

    @property
    def registry_port(self) -> int:
        return self.port + self.shards

    @property
    def rendezvous_port(self) -> int:
        return self.port + self.shards + 1

    @property
    def torchrun_port(self) -> int:
        return self.port + self.shards + 2

    def endpoints(self, plan: Plan) -> Endpoints:
        from grpc_ps.endpoints import Endpoints

        return Endpoints(
            servers=[f"{self.servers[k]}:{self.port + k}" for k in range(self.shards)],
            registry=f"{self.servers[0]}:{self.registry_port}" if plan.registry else None,
            dist_workers=f"tcp://{self.hosts[0]}:{self.rendezvous_port}",
        )


def _names(text: str, flag: str) -> list[str]:
    names = [h.strip() for h in text.split(",") if h.strip()]
    if not names:
        raise ValueError(f"{flag}: give at least one host")
    return names


def layout(scenario: Scenario, hosts: str, servers: str | None, port: int) -> Layout:
    """Where the scenario's roles go; anything that cannot run across hosts is an error."""
    from pslab.algorithms import build_plan

    plan = build_plan(scenario)
    if plan.comms:
        raise ValueError(
            f"{scenario.algorithm.name.value}: its communicators cannot be placed across hosts "
            "yet; pslab launch runs it on one machine"
        )
    if scenario.emulation.network != "loopback":
        raise ValueError("emulation.network: a multi-host run uses the hosts' own network")
    nodes = _names(hosts, "--hosts")
    if len(nodes) != scenario.topology.nodes:
        raise ValueError(
            f"--hosts names {len(nodes)} hosts, but topology.nodes is "
            f"{scenario.topology.nodes}: one host per node"
        )
    shards = plan.server.shards if plan.server else 0
    server_hosts = _names(servers, "--servers") if servers else [nodes[0]]
    if not 1 <= port <= 65535 - shards - 2:
        raise ValueError(f"--port {port}: needs {shards + 3} ports from it, below 65536")
    return Layout(nodes, [server_hosts[k % len(server_hosts)] for k in range(shards)], port, shards)


def prepare(scenario: Scenario, run_dir: Path, where: Layout, token: bool, tls: bool) -> list[str]:
    """Write the run directory; return the commands to run, host by host.

    A server another host can reach takes orders from anyone who reaches its port, so one
    on an address other than loopback needs both ``tls`` and ``token``, as ``pslab
    serve`` does."""
    exposed = [h for h in where.servers if not is_loopback(h)]
    if exposed and not (token and tls):
        raise ValueError(
            f"servers on {exposed[0]} are reachable from the network: add --tls and --token"
        )
    from grpc_ps.auth import new_token
    from pslab.algorithms import build_plan
    from pslab.results import write_text_atomic
    from pslab.scenario import dump_scenario
    from pslab.trace import write_json_atomic

    if (run_dir / "traces").exists():
        raise ValueError(f"{run_dir} holds a run's results already; prepare another directory")
    plan = build_plan(scenario)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "scenario.yaml", dump_scenario(scenario))
    # a wall-clock origin: each host turns it into its own monotonic one (grpc_ps.roles)
    write_json_atomic(run_dir / "run.json", {"t0_ns": 0, "t0_unix_ns": time.time_ns()})
    where.endpoints(plan).save(run_dir / "endpoints.json")
    if token:
        path = run_dir / "token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new_token() + "\n")
    if tls:
        from grpc_ps.certs import write_certs

        write_certs(run_dir / "certs", list(dict.fromkeys(where.hosts + where.servers)))
    return recipe(plan, run_dir, where, token, tls)


def _security(run_dir: Path, host: str, token: bool, tls: bool, serve: bool) -> str:
    """A server's TLS and token flags, or a worker host's environment."""
    certs = run_dir / "certs"
    if serve:
        flags = [f"--token-file {run_dir / 'token'}"] if token else []
        if tls:
            flags.append(f"--tls-cert {certs / host}.pem --tls-key {certs / host}.key")
            flags.append(f"--tls-ca {certs / 'ca.pem'}")
        return " ".join(flags)
    env = [f'PSLAB_TOKEN="$(cat {run_dir / "token"})"'] if token else []
    if tls:
        env.append(f"PSLAB_TLS_CERT={certs / host}.pem PSLAB_TLS_KEY={certs / host}.key")
        env.append(f"PSLAB_TLS_CA={certs / 'ca.pem'}")
    return f"export {' '.join(env)}" if env else ""


def recipe(plan: Plan, run_dir: Path, where: Layout, token: bool, tls: bool) -> list[str]:
    run = shlex.quote(str(run_dir))
    lines = []
    roles = [("ps", k, where.servers[k], where.port + k) for k in range(where.shards)]
    if plan.registry is not None:
        roles.append(("registry", 0, where.servers[0], where.registry_port))
    for role, shard, host, port in roles:
        bind = f"{host if is_loopback(host) else '0.0.0.0'}:{port}"
        shard_flag = f" --shard {shard}" if role == "ps" else ""
        flags = _security(run_dir, host, token, tls, serve=True)
        lines.append(
            f"[{host}] pslab serve --run-dir {run} --role {role}{shard_flag} --bind {bind} "
            f"{flags}".rstrip()
        )
    per_node = [sum(1 for w in plan.workers if w.node == i) for i in range(len(where.hosts))]
    for i, host in enumerate(where.hosts):
        env = _security(run_dir, host, token, tls, serve=False)
        if env:
            lines.append(f"[{host}] {env}")
        lines.append(
            f"[{host}] torchrun --nnodes {len(where.hosts)} --node-rank {i} "
            f"--nproc-per-node {per_node[i]} --master-addr {where.hosts[0]} "
            f"--master-port {where.torchrun_port} --no-python pslab worker --run-dir {run}"
        )
    lines.append(f"[any] pslab collect {run}   # once the workers are done and the servers stopped")
    return lines


def cmd_prepare(args: argparse.Namespace) -> int:
    from pslab.topology import lay_out
    from pslab_cli.main import UsageError, _load

    scenario, base = _load(args)
    scenario, _ = lay_out(scenario, base)  # a graph's worker hosts are its nodes
    try:
        where = layout(scenario, args.hosts, args.servers, args.port)
        lines = prepare(scenario, args.run_dir, where, args.token, args.tls)
    except ValueError as e:
        raise UsageError(f"pslab prepare: {e}") from None
    wrote = ["scenario.yaml", "run.json", "endpoints.json"]
    wrote += (["token"] if args.token else []) + (["certs/"] if args.tls else [])
    print(f"wrote {args.run_dir}: {', '.join(wrote)}")
    for line in lines:
        print(line)
    return 0
