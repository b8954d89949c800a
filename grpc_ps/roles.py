"""One process per role: the entry points ``pslab launch`` starts (and ``pslab serve``/``worker``).

A run directory holds what every process needs: ``scenario.yaml`` (resolved),
``run.json`` (the shared clock origin), ``endpoints.json`` (written by the
launcher once servers are up) and, per process, the port it bound and the
trace it recorded. gRPC objects are created inside each process after it
started, never inherited across a fork.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from grpc_ps.checkpoint import CheckpointError, Journal
from grpc_ps.communicator import CommunicatorServicer
from grpc_ps.endpoints import Endpoints
from grpc_ps.lifeline import die_with_launcher
from grpc_ps.memory import keep_freed_pages
from grpc_ps.netns_launch import bind_kwargs, make_executor, trace_host
from grpc_ps.server import LeaderRegistryServicer, ParameterServerServicer, serve
from grpc_ps.start_gate import wait_at_gate
from pslab.algorithms import build_plan
from pslab.algorithms.base import REGISTRY, Plan, comm_name, server_name
from pslab.models import initial_params
from pslab.scenario import load_scenario
from pslab.trace import SpanRecord, Trace, write_json_atomic


def read_run(run_dir: Path) -> tuple[Plan, int]:
    """The plan and this host's clock origin. ``pslab prepare`` writes the origin as a
    wall-clock instant (``t0_unix_ns``), which each host turns into its own
    ``perf_counter_ns`` origin: hosts whose clocks agree (NTP) then share one time axis."""
    scenario = load_scenario(run_dir / "scenario.yaml")
    run = json.loads((run_dir / "run.json").read_text())
    t0 = run["t0_ns"]
    if "t0_unix_ns" in run:
        t0 = run["t0_unix_ns"] - (time.time_ns() - time.perf_counter_ns())
    return build_plan(scenario), t0


def write_port(run_dir: Path, name: str, port: int) -> None:
    write_json_atomic(run_dir / "ports" / f"{name}.json", {"port": port, "pid": os.getpid()})


def write_trace(run_dir: Path, name: str, trace: Trace) -> None:
    write_json_atomic(run_dir / "traces" / f"{name}.json", [asdict(s) for s in trace.spans])


def read_traces(run_dir: Path) -> Trace:
    trace = Trace("emu")
    for path in sorted((run_dir / "traces").glob("*.json")):
        for d in json.loads(path.read_text()):
            d["on_behalf"] = tuple(d["on_behalf"])
            trace.add(SpanRecord(**d))
    return trace


def _wait_for_stop() -> None:
    """Block until SIGTERM/SIGINT: a server serves until the launcher says the run is over."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # ignored stays ignored (test hook)
            signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


IGNORE_SIGTERM_ENV = "PSLAB_TEST_IGNORE_SIGTERM"


def _ignore_sigterm_hook(role: str) -> None:
    """Test-only: ``PSLAB_TEST_IGNORE_SIGTERM=ps-0`` (a role name, or ``all``) makes that role
    ignore SIGTERM, as a process stuck in a C call or with a careless handler would; the chaos
    test (tests/test_chaos.py) checks that such a role still ends with its launcher."""
    if os.environ.get(IGNORE_SIGTERM_ENV) in (role, "all"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def ps_servicer(
    plan: Plan, shard: int, t0: int, journal: Journal | None = None
) -> ParameterServerServicer:
    """Shard ``shard`` of the plan's parameter server (resumed if ``journal`` holds state)."""
    assert plan.server is not None
    n = len(plan.workers)
    offset, length = plan.shard_ranges[shard]
    algo = plan.scenario.algorithm
    return ParameterServerServicer(
        shard,
        offset,
        length,
        n,
        plan.server.policy(n),
        algo.lr,
        algo.momentum if plan.server.mode == "grad" else 0.0,
        n_shards=plan.server.shards,
        total=plan.model.params,
        initial=initial_params(
            plan.scenario.emulation.model, plan.model.params, plan.scenario.run.seed
        )[offset : offset + length].numpy(),
        clock=lambda: (time.perf_counter_ns() - t0) / 1e9,
        journal=journal,
    )


def run_server(run_dir: Path, shard: int, journal: Journal | None = None, port: int = 0) -> None:
    plan, t0 = read_run(run_dir)
    servicer = ps_servicer(plan, shard, t0, journal)
    server, port = serve(servicer, port=port, **bind_kwargs())
    write_port(run_dir, server_name(shard), port)
    _wait_for_stop()
    server.stop(1.0).wait()
    servicer.checkpoint()
    write_server_trace(run_dir, servicer)


def write_server_trace(run_dir: Path, servicer: ParameterServerServicer) -> None:
    """A shard's applies (with their staleness) as its trace in the run directory."""
    name = server_name(servicer.shard_id)
    trace = Trace("emu")
    for start, end, staleness, version, iteration in servicer.applies:
        trace.add(
            SpanRecord(
                name,
                trace_host(),
                "apply",
                "server",
                start,
                end,
                iteration,
                servicer.length * 4,
                args={"staleness": staleness, "version": version},
            )
        )
    write_trace(run_dir, name, trace)


def run_registry(run_dir: Path) -> None:
    plan, _ = read_run(run_dir)
    assert plan.registry is not None
    servicer = LeaderRegistryServicer(
        [list(g) for g in plan.registry.groups], plan.model.params, sync=plan.registry.sync
    )
    server, port = serve(servicer, **bind_kwargs())
    write_port(run_dir, REGISTRY, port)
    _wait_for_stop()
    server.stop(1.0).wait()


def run_comm(run_dir: Path, group: int) -> None:
    plan, t0 = read_run(run_dir)
    role = plan.comms[group]
    timeout = plan.scenario.emulation.rpc_timeout
    servicer = CommunicatorServicer(plan.groups[group], plan.model.params, timeout)
    server, port = serve(servicer, **bind_kwargs())
    write_port(run_dir, comm_name(group), port)
    endpoints = _await_endpoints(run_dir, timeout)
    executor = make_executor(plan, role, endpoints, t0, comm_servicer=servicer)
    try:
        write_trace(run_dir, role.name, executor.run())
        servicer.drain()
    finally:
        executor.close()
        server.stop(1.0).wait()


def run_worker(run_dir: Path, rank: int, dist_workers: str | None = None) -> None:
    """``dist_workers``: where the workers' torch.distributed world meets, instead of what
    endpoints.json says (``env://`` under torchrun)."""
    plan, t0 = read_run(run_dir)
    role = plan.workers[rank]
    endpoints = _await_endpoints(run_dir, plan.scenario.emulation.rpc_timeout)
    if dist_workers is not None:
        endpoints.dist_workers = dist_workers
    executor = make_executor(plan, role, endpoints, t0)
    kill_at = _kill_at(role.name)

    def progress(i: int) -> None:
        if i == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        print(f"progress {rank} {i}", flush=True)

    executor.on_iteration = progress
    # SIGTERM (the launcher stopping an interrupted run) unwinds as SystemExit(143), so the
    # spans measured so far are written for the launcher's incomplete result.
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    time.sleep(_slow_start(role.name))
    if kill_at == -1:
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        wait_at_gate()  # set up like the others: all begin together
        trace = executor.run()
        write_trace(run_dir, role.name, trace)
        np.save(run_dir / f"params-{rank}.npy", executor.bufs["params"].detach().cpu().numpy())
    except SystemExit:
        write_trace(run_dir, role.name, executor.trace)
        raise
    finally:
        executor.close()


# (rank, world size) as torchrun, SLURM, Open MPI and MPICH/Intel MPI (PMI) set them
LAUNCHER_VARIABLES = (
    ("RANK", "WORLD_SIZE"),
    ("SLURM_PROCID", "SLURM_NTASKS"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("PMI_RANK", "PMI_SIZE"),
)


def _launcher_variables() -> tuple[str, str]:
    for rank, world in LAUNCHER_VARIABLES:
        if os.environ.get(rank, "").isdigit():
            return rank, world
    names = ", ".join(r for r, _ in LAUNCHER_VARIABLES)
    raise ValueError(f"no rank given and none of {names} is set")


def rank_from_env() -> int:
    """This process's rank as torchrun, SLURM, Open MPI or MPICH/Intel MPI set it."""
    return int(os.environ[_launcher_variables()[0]])


def world_from_env() -> tuple[int, str] | None:
    """The world size the same launcher set, and its variable's name (None if unset)."""
    _, name = _launcher_variables()
    value = os.environ.get(name, "")
    return (int(value), name) if value.isdigit() else None


def _kill_at(role: str) -> int | None:
    """Fault injection for tests and soak runs: ``PSLAB_KILL_AT=worker-2:5`` makes worker 2
    die by SIGKILL when it reaches iteration 5, as a crashed or OOM-killed process would;
    ``worker-2:start``, once set up, before the start gate (-1)."""
    iteration = _fault("PSLAB_KILL_AT", role)
    if iteration is None:
        return None
    return -1 if iteration == "start" else int(iteration) if iteration.isdigit() else None


def _slow_start(role: str) -> float:
    """Fault injection: ``PSLAB_SLOW_START=worker-1:0.8`` keeps worker 1 0.8 s longer in
    its set-up, as a slow import on a loaded machine does."""
    seconds = _fault("PSLAB_SLOW_START", role)
    return float(seconds) if seconds is not None else 0.0


def _fault(variable: str, role: str) -> str | None:
    """The value of a ``ROLE:VALUE`` fault-injection variable, if it names ``role``."""
    name, _, value = os.environ.get(variable, "").partition(":")
    return value if name == role else None


def _await_endpoints(run_dir: Path, timeout: float) -> Endpoints:
    path = run_dir / "endpoints.json"
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)
    return Endpoints.load(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grpc_ps.roles")
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--role", required=True, help="ps-K, registry, comm-G or worker-R")
    p.add_argument("--port", type=int, default=0, help="ps-K: port to bind (0: any free one)")
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="ps-K: make state durable here, resuming from what it holds",
    )
    p.add_argument("--checkpoint-every", type=int, default=100, help="versions between them")
    args = p.parse_args(argv)
    die_with_launcher()  # armed already under grpc_ps.lifeline; this covers a direct start
    keep_freed_pages()  # as calibration measured the transfers (grpc_ps.memory)
    _ignore_sigterm_hook(args.role)
    kind, _, index = args.role.rpartition("-") if "-" in args.role else (args.role, "", "")
    if args.role == REGISTRY:
        run_registry(args.run_dir)
    elif kind == "ps":
        journal = args.checkpoint_dir and Journal(args.checkpoint_dir, args.checkpoint_every)
        try:
            run_server(args.run_dir, int(index), journal or None, args.port)
        except CheckpointError as e:  # state that cannot be trusted: the operator decides
            print(f"{args.role}: {e}", file=sys.stderr)
            return 2
    elif kind == "comm":
        run_comm(args.run_dir, int(index))
    elif kind == "worker":
        run_worker(args.run_dir, int(index))
    else:
        print(f"unknown role {args.role!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
