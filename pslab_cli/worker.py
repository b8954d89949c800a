"""``pslab worker``: one worker of a run directory, started by torchrun, srun or mpirun.

The launcher's rank and world size (``RANK``/``WORLD_SIZE``, ``SLURM_PROCID``/
``SLURM_NTASKS``, ``OMPI_COMM_WORLD_RANK``/``OMPI_COMM_WORLD_SIZE``, ``PMI_RANK``/
``PMI_SIZE``) are checked against the scenario before anything connects, so a
launcher started with the wrong task count fails at once, naming both numbers,
instead of hanging at the first barrier.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

MASTER_ENV = "MASTER_ADDR"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run one worker of a run directory (multi-host runs)")
    p.add_argument("--run-dir", required=True, help="shared run directory (pslab prepare)")
    p.add_argument(
        "--rank", type=int, help="default: RANK, SLURM_PROCID, OMPI_COMM_WORLD_RANK or PMI_RANK"
    )
    p.set_defaults(fn=cmd_worker)


def dist_init(written: str, environ: Mapping[str, str] = os.environ) -> str:
    """Where the workers' torch.distributed world meets: ``env://`` when the launcher set
    ``MASTER_ADDR`` (torchrun does, and its store then serves the world), else what
    endpoints.json says."""
    return "env://" if environ.get(MASTER_ENV) else written


def check_rank(rank: int, workers: int, world: tuple[int, str] | None) -> None:
    from pslab_cli.main import UsageError

    if world is not None and world[0] != workers:
        raise UsageError(
            f"{world[1]}={world[0]}, but the scenario has {workers} workers: start one "
            f"task per worker ({workers})"
        )
    if not 0 <= rank < workers:
        raise UsageError(
            f"rank {rank} is outside this run's world of {workers} workers (0-{workers - 1})"
        )


def cmd_worker(args: argparse.Namespace) -> int:
    from grpc_ps.endpoints import Endpoints
    from grpc_ps.memory import keep_freed_pages
    from grpc_ps.roles import rank_from_env, run_worker, world_from_env
    from pslab.algorithms import build_plan
    from pslab.scenario import load_scenario
    from pslab_cli.main import UsageError

    run_dir = Path(args.run_dir)
    if not (run_dir / "scenario.yaml").exists():
        raise UsageError(
            f"{run_dir}: no scenario.yaml (a run directory that pslab prepare, launch or serve "
            "wrote)"
        )
    try:
        rank = args.rank if args.rank is not None else rank_from_env()
        world = None if args.rank is not None else world_from_env()
    except ValueError as e:
        raise UsageError(str(e)) from None
    plan = build_plan(load_scenario(run_dir / "scenario.yaml"))
    check_rank(rank, len(plan.workers), world)
    endpoints = run_dir / "endpoints.json"
    if not endpoints.exists():
        raise UsageError(f"{run_dir}: no endpoints.json (pslab prepare writes it)")
    dist = dist_init(Endpoints.load(endpoints).dist_workers)
    if not dist and any(r.kind == "worker" for r in plan.collective_world):
        raise UsageError(
            f"{endpoints}: dist_workers is empty and {MASTER_ENV} is not set: give "
            "dist_workers (tcp://HOST:PORT; pslab prepare writes one) or start the "
            "workers under torchrun"
        )
    keep_freed_pages()  # as calibration measured the transfers
    run_worker(run_dir, rank, dist)
    return 0
