"""``pslab serve`` and ``pslab certs``: one server of a multi-host run, and its certificates.

A server that other hosts can reach must not take orders from anyone on the network, so
``serve`` refuses a non-loopback address without TLS and a token (or an explicit
``--insecure``) before it reads a file or binds a port.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:  # the heavy modules load only when a command runs
    from grpc_ps.auth import Security
    from grpc_ps.server import LeaderRegistryServicer, ParameterServerServicer
    from pslab.scenario import Scenario

    Servicer = ParameterServerServicer | LeaderRegistryServicer

err = Console(stderr=True)


def add_parsers(
    sub: argparse._SubParsersAction, scenario_args: Callable[[argparse.ArgumentParser], None]
) -> None:
    p = sub.add_parser("serve", help="run one parameter-server shard or the leader registry")
    scenario_args(p)
    p.add_argument("--role", choices=["ps", "registry"], required=True)
    p.add_argument("--shard", type=int, default=0, help="ps: which shard (default 0)")
    p.add_argument(
        "--bind",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1, any free port); another host than "
        "loopback needs --tls-cert/--tls-key and a token, or --insecure",
    )
    p.add_argument("--tls-cert", type=Path, help="this host's certificate (pslab certs)")
    p.add_argument("--tls-key", type=Path, help="its private key")
    p.add_argument("--tls-ca", type=Path, help="the run's CA: require client certificates")
    p.add_argument("--token-file", type=Path, help="the shared token (or set PSLAB_TOKEN)")
    p.add_argument("--insecure", action="store_true", help="allow plaintext without a token")
    p.add_argument(
        "--run-dir",
        type=Path,
        help="a run directory (pslab prepare): its scenario and clock; the shard's applies "
        "are written there when it stops, for pslab collect",
    )
    state = p.add_mutually_exclusive_group()
    state.add_argument("--checkpoint-dir", type=Path, help="ps: keep durable state here")
    state.add_argument("--resume", type=Path, metavar="DIR", help="ps: resume from DIR")
    p.add_argument("--checkpoint-every", type=int, default=100, help="versions (default 100)")
    p.add_argument("--checkpoint-seconds", type=float, default=30.0, help="or seconds (30)")
    p.add_argument(
        "--discard-after",
        type=int,
        metavar="N",
        help="with --resume: replay journal records 0..N only and set the rest aside "
        "(for a journal that does not prove itself; -1: the checkpoint alone)",
    )
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("certs", help="write a CA and per-host certificates for mutual TLS")
    p.add_argument("dir", type=Path, help="where to write ca.pem and HOST.pem/HOST.key")
    p.add_argument("--hosts", required=True, help="comma-separated host names or addresses")
    p.add_argument(
        "--force",
        action="store_true",
        help="make a new CA even if DIR holds one (by default it signs the new hosts)",
    )
    p.set_defaults(fn=cmd_certs)


def _bind(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--bind {value!r}: expected HOST:PORT, e.g. 0.0.0.0:7000")
    return host, int(port)


def cmd_serve(args: argparse.Namespace) -> int:
    from grpc_ps import auth
    from grpc_ps.memory import keep_freed_pages
    from pslab_cli.main import UsageError, _load

    try:
        host, port = _bind(args.bind)
        tls = args.tls_cert is not None and args.tls_key is not None
        token_given = args.token_file is not None or bool(os.environ.get(auth.TOKEN_ENV))
        auth.check_bind(host, tls, token_given, args.insecure)  # before anything is read
        token = auth.read_token(args.token_file) if args.token_file else None
        token = token or os.environ.get(auth.TOKEN_ENV) or None
        security = auth.Security(token, args.tls_cert, args.tls_key, args.tls_ca)
        security.check_files()
    except (ValueError, auth.AuthError) as e:
        raise UsageError(str(e)) from None
    if args.insecure and not auth.is_loopback(host) and not (tls and token_given):
        err.print(
            f"warning: serving {host} --insecure: anyone who reaches this port can read and "
            "change the model",
            style="yellow",
        )
    if args.run_dir is not None:
        if args.scenario:
            raise UsageError("--run-dir holds the scenario: drop the scenario argument")
        from grpc_ps.roles import read_run

        try:
            plan, t0 = read_run(args.run_dir)
        except FileNotFoundError as e:
            raise UsageError(f"--run-dir {args.run_dir}: {e.filename} is missing") from None
        scenario = plan.scenario
    else:
        scenario, t0 = _load(args)[0], time.perf_counter_ns()
    servicer, name = _servicer(args, scenario, t0)
    keep_freed_pages()  # as calibration measured the transfers
    code = _serve_until_stopped(servicer, name, host, port, security, args.insecure)
    if args.run_dir is not None and args.role == "ps":
        from grpc_ps.roles import write_server_trace

        write_server_trace(args.run_dir, servicer)
    return code


def _servicer(args: argparse.Namespace, scenario: Scenario, t0: int) -> tuple[Servicer, str]:
    from grpc_ps.checkpoint import Journal
    from grpc_ps.roles import ps_servicer
    from grpc_ps.server import LeaderRegistryServicer
    from pslab.algorithms import build_plan
    from pslab_cli.main import UsageError

    plan = build_plan(scenario)
    if args.role == "registry":
        if plan.registry is None:
            raise UsageError(f"{plan.scenario.algorithm.name.value} has no leader registry")
        groups = [list(g) for g in plan.registry.groups]
        return LeaderRegistryServicer(groups, plan.model.params, plan.registry.sync), "registry"
    if plan.server is None:
        raise UsageError(f"{plan.scenario.algorithm.name.value} has no parameter server")
    if not 0 <= args.shard < plan.server.shards:
        raise UsageError(f"--shard {args.shard}: the scenario has {plan.server.shards} shards")
    if args.discard_after is not None and not args.resume:
        raise UsageError("--discard-after goes with --resume")
    directory = args.resume or args.checkpoint_dir
    journal = directory and Journal(
        directory, args.checkpoint_every, args.checkpoint_seconds, args.discard_after
    )
    if args.resume and not journal.exists():
        raise UsageError(f"--resume {args.resume}: no checkpoint there")
    if args.checkpoint_dir and journal.exists():
        raise UsageError(
            f"{args.checkpoint_dir} holds a checkpoint: --resume {args.checkpoint_dir} continues it"
        )
    try:
        servicer = ps_servicer(plan, args.shard, t0, journal or None)
    except ValueError as e:  # a checkpoint of another shape
        raise UsageError(str(e)) from None
    return servicer, f"ps-{args.shard}"


def _serve_until_stopped(
    servicer: Servicer, name: str, host: str, port: int, security: Security, insecure: bool
) -> int:
    from grpc_ps.auth import AuthError
    from grpc_ps.server import ParameterServerServicer, serve
    from pslab_cli.main import UsageError

    # A handler, not a blocked mask and sigwait: a thread started before the mask keeps
    # these signals unblocked (a running server had one), and a signal delivered there
    # took the default action and killed the server before its final checkpoint (one
    # .ci/run in four, with the second of two SIGTERMs). A handler runs on the main
    # thread whichever thread took the signal, and a second one while stopping changes
    # nothing. A signal ignored where the server was started stays ignored.
    stopping: list[int] = []  # a flag, not an Event: set() could wait on the lock its wait holds
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, lambda signum, _frame: stopping.append(signum))
    try:  # the files were read before, but may have changed; the port may be taken
        server, bound = serve(servicer, host=host, port=port, security=security, insecure=insecure)
    except (AuthError, RuntimeError) as e:
        raise UsageError(str(e)) from None
    print(f"serving {name} on {host}:{bound}", flush=True)
    while not stopping:  # the main thread runs the handler, whichever thread took the signal
        time.sleep(0.2)
    server.stop(1.0).wait()
    if isinstance(servicer, ParameterServerServicer):
        servicer.checkpoint()  # a clean stop leaves nothing to replay
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    from grpc_ps.certs import write_certs
    from pslab_cli.main import UsageError

    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    try:
        written = write_certs(args.dir, hosts, force=args.force)
    except (ValueError, OSError) as e:
        raise UsageError(f"pslab certs: {e}") from None
    for path in written:
        print(path)
    return 0
