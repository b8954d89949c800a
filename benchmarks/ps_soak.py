"""Soak: many workers on one parameter server for a bounded time, killed and restarted.

32 emulated-compute workers (one process each: sleep ``--compute-ms``, pull, push) run
against one ASP shard on 127.0.0.1 for ``--seconds``. Every ``--kill-every`` seconds a random
worker is killed with SIGKILL and started again (it re-registers, learns where its push ids
resume, pulls and goes on); at a third of the run the server itself is killed with SIGKILL
and restarted with its journal (``--checkpoint-every`` versions between checkpoints); the
workers retry through the gap.

How lost and duplicated updates are counted, without trusting the server's own books: the
model is a table of counters with a slot of its own for every push. Worker w's push with id
i is a delta of +1 on element ``w * slots + i`` (and zeros on ``--padding`` more elements,
to give pushes a size), so the final parameters say exactly how often each push was
applied; ``slots`` covers the most pushes a worker can make in the run (one per
``--compute-ms``, with margin), and a worker that used them all stops pushing. Each worker
logs the ids it attempted (before sending) and those acknowledged (after the reply). Then
per push: lost = acknowledged and never applied; duplicated = applied more than once (each
extra time counts); applied but never acknowledged (the worker died or gave up before the
reply) is fine and counted apart; applied and never even attempted is impossible and
counted too. The server's own count of applied pushes (its Stats, carried through the
restart by the checkpoint) is checked against the model's. The durability cost is the time
in journal writes and fsyncs per push (``journal_ms_per_push``) and per checkpoint over the
whole run: the server killed at a third of the run is asked for its Stats just before.

Server RSS is sampled after a warm-up (``--warmup`` seconds after the server's restart) and
at the end. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from grpc_ps.pb import ps_pb2 as pb

if TYPE_CHECKING:  # imported late, in the processes that use it, as the roles do
    from grpc_ps.client import PSClient


def slots_of(args: argparse.Namespace) -> int:
    """Pushes one worker may make: one per compute step for the whole run, plus margin."""
    return int(1.25 * args.seconds * 1e3 / max(args.compute_ms, 1.0)) + 16


def size_of(args: argparse.Namespace) -> int:
    return args.workers * slots_of(args) + args.padding


# -- the roles (each its own process) -------------------------------------------------------


def run_server(args: argparse.Namespace) -> None:
    from grpc_ps.checkpoint import Journal
    from grpc_ps.server import ParameterServerServicer, serve
    from pslab.policies import StalenessPolicy

    n = size_of(args)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    servicer = ParameterServerServicer(
        0,
        0,
        n,
        args.workers,
        StalenessPolicy(args.workers),
        1.0,
        initial=np.zeros(n, np.float32),
        journal=Journal(Path(args.dir) / "state", every_versions=args.checkpoint_every),
    )
    server, _ = serve(servicer, port=args.port)
    print("serving", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop(1.0).wait()


def run_worker(args: argparse.Namespace) -> None:
    """Pull, 'compute', push a counter delta; log attempts and acks (flushed: we get killed)."""
    from grpc_ps.client import PSClient

    n = size_of(args)
    w = args.worker
    log = open(Path(args.dir) / f"worker-{w}-{os.getpid()}.log", "w", buffering=1)  # noqa: SIM115
    client = PSClient([f"127.0.0.1:{args.port}"], w, args.workers, n, timeout=30.0)
    iteration = client.register()[0].next_iteration
    params, delta = np.empty(n, np.float32), np.zeros(n, np.float32)
    errors: Counter[str] = Counter()
    slots = slots_of(args)
    while iteration < slots:  # past them a push would have no slot of its own: stop
        time.sleep(args.compute_ms / 1e3)
        client.pull(params)
        slot = w * slots + iteration
        delta[slot] = 1.0
        log.write(f"try {iteration}\n")
        start = time.perf_counter()
        client.push(delta, iteration, mode=pb.PUSH_MODE_DELTA)
        log.write(f"ack {iteration} {(time.perf_counter() - start) * 1e3:.3f}\n")
        delta[slot] = 0.0
        iteration += 1
        if client.retry.errors != errors:
            errors = Counter(client.retry.errors)
            log.write(f"errors {json.dumps(errors)}\n")
    log.write("slots used up\n")
    time.sleep(3600)  # until the soak ends and kills us


# -- the orchestrator ------------------------------------------------------------------------


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.env = dict(os.environ, PSLAB_TOKEN=os.urandom(16).hex(), OMP_NUM_THREADS="1")
        self.workers: dict[int, subprocess.Popen] = {}
        self.server: subprocess.Popen | None = None

    def _spawn(self, *role: str) -> subprocess.Popen:
        a = self.args
        common = ["--dir", a.dir, "--port", str(a.port), "--workers", str(a.workers)]
        common += ["--padding", str(a.padding), "--compute-ms", str(a.compute_ms)]
        common += ["--checkpoint-every", str(a.checkpoint_every), "--seconds", str(a.seconds)]
        return subprocess.Popen(
            [sys.executable, __file__, *role, *common],
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )

    def start_server(self) -> None:
        self.server = self._spawn("--role", "server")
        assert self.server.stdout is not None
        if self.server.stdout.readline().strip() != "serving":
            raise RuntimeError("the server did not start")

    def start_worker(self, w: int) -> None:
        self.workers[w] = self._spawn("--role", "worker", "--worker", str(w))

    def kill(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def run(self) -> dict:
        a = self.args
        rng = random.Random(0)
        self.start_server()
        for w in range(a.workers):
            self.start_worker(w)
        t0 = time.monotonic()
        next_kill, server_restarts, worker_restarts = t0 + a.kill_every, 0, 0
        dead: pb.StatsReply | None = None
        rss_start = rss_pre = None
        restart_at = t0 + a.seconds / 3
        while (now := time.monotonic()) < t0 + a.seconds:
            if server_restarts == 0 and now >= restart_at:
                assert self.server is not None
                rss_pre = _rss_mb(self.server.pid)
                dead = self._stats()  # its journal's cost, which dies with it
                self.kill(self.server)
                self.start_server()
                server_restarts += 1
            if rss_start is None and server_restarts and now >= restart_at + a.warmup:
                assert self.server is not None
                rss_start = _rss_mb(self.server.pid)
            if now >= next_kill:
                w = rng.randrange(a.workers)
                self.kill(self.workers[w])
                self.start_worker(w)
                worker_restarts += 1
                next_kill += a.kill_every
            time.sleep(0.05)
        assert self.server is not None
        rss_end = _rss_mb(self.server.pid)
        for proc in self.workers.values():
            self.kill(proc)
        counts, stats = self._final_state()
        self.server.send_signal(signal.SIGTERM)
        self.server.wait()
        result = self._tally(counts, stats, dead if server_restarts else None)
        result.update(
            seconds=a.seconds,
            workers=a.workers,
            model_bytes=4 * size_of(a),
            server_restarts=server_restarts,
            worker_restarts=worker_restarts,
            server_rss_mb_before_restart=rss_pre,
            server_rss_mb_start=rss_start,
            server_rss_mb_end=rss_end,
            rss_growth_pct=None if rss_start is None else 100 * (rss_end / rss_start - 1),
        )
        return result

    def _client(self) -> PSClient:
        from grpc_ps.auth import Security
        from grpc_ps.client import PSClient

        address = f"127.0.0.1:{self.args.port}"
        security = Security(token=self.env["PSLAB_TOKEN"])
        n, workers = size_of(self.args), self.args.workers
        return PSClient([address], 0, workers, n, timeout=30.0, security=security)

    def _stats(self) -> pb.StatsReply:
        with self._client() as c:
            (stats,) = c.stats()
        return stats

    def _final_state(self) -> tuple[np.ndarray, pb.StatsReply]:
        """The model's counters, one row per worker and a column per push id; Stats."""
        with self._client() as c:
            c.register()
            params = np.empty(size_of(self.args), np.float32)
            c.pull(params)
            (stats,) = c.stats()
        slots, workers = slots_of(self.args), self.args.workers
        return params[: workers * slots].reshape(workers, slots), stats

    def _tally(self, counts: np.ndarray, stats: pb.StatsReply, dead: pb.StatsReply | None) -> dict:
        """Per push, from the workers' logs and the model; ``dead``: the killed server's Stats."""
        tried: dict[int, set[int]] = {w: set() for w in range(self.args.workers)}
        acked: dict[int, set[int]] = {w: set() for w in range(self.args.workers)}
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        for path in Path(self.args.dir).glob("worker-*.log"):
            w = int(path.name.split("-")[1])
            last_errors: dict[str, int] = {}
            for line in path.read_text().splitlines():
                kind, _, rest = line.partition(" ")
                if kind == "try":
                    tried[w].add(int(rest))
                elif kind == "ack" and len(rest.split()) == 2:
                    i, ms = rest.split()
                    acked[w].add(int(i))
                    latencies.append(float(ms))
                elif kind == "errors":
                    last_errors = json.loads(rest)
            errors.update(last_errors)
        lost = duplicated = unacked = untried = 0
        for w in range(self.args.workers):
            applied = counts[w].astype(np.int64)
            if not np.array_equal(applied, counts[w]) or applied.min() < 0:
                raise RuntimeError(f"worker {w}'s counters are not whole counts")
            done = set(np.flatnonzero(applied).tolist())
            lost += len(acked[w] - done)
            duplicated += int(np.maximum(applied - 1, 0).sum())
            unacked += len(done - acked[w])
            untried += len(done - tried[w])
        journal_s, checkpoints = stats.journal_seconds, stats.checkpoints
        checkpoint_s = stats.checkpoint_seconds
        if dead is not None:
            journal_s += dead.journal_seconds
            checkpoints += dead.checkpoints
            checkpoint_s += dead.checkpoint_seconds
        pushes = max(stats.pushes_received, 1)  # the whole run's: checkpointed across restart
        applied_total = int(counts.sum())
        return {
            "pushes_acknowledged": sum(len(s) for s in acked.values()),
            "updates_applied": applied_total,
            "server_pushes_applied": int(stats.pushes_applied),
            "server_count_matches_model": int(stats.pushes_applied) == applied_total,
            "server_duplicates_acked": int(stats.duplicates),
            "lost_updates": lost,
            "duplicate_updates": duplicated,
            "applied_unacknowledged": unacked,
            "applied_never_attempted": untried,
            "errors_by_code": dict(errors),
            "p50_push_ms": float(np.percentile(latencies, 50)),
            "p99_push_ms": float(np.percentile(latencies, 99)),
            "journal_ms_per_push": 1e3 * journal_s / pushes,
            "journal_seconds": journal_s,
            "checkpoints": int(checkpoints),
            "checkpoint_ms_mean": 1e3 * checkpoint_s / max(checkpoints, 1),
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--workers", type=int, default=32)
    p.add_argument("--compute-ms", type=float, default=20.0, help="emulated compute per step")
    p.add_argument("--padding", type=int, default=64 * 1024, help="extra elements per push")
    p.add_argument("--kill-every", type=float, default=3.0, help="seconds between worker kills")
    p.add_argument("--checkpoint-every", type=int, default=500, help="versions")
    p.add_argument("--warmup", type=float, default=5.0, help="s after the restart: RSS start")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--dir", default="")
    p.add_argument("--role", choices=["server", "worker"], help=argparse.SUPPRESS)
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "server":
        return run_server(args)
    if args.role == "worker":
        return run_worker(args)
    if not args.port:
        from grpc_ps.launch import free_port

        args.port = free_port()
    with tempfile.TemporaryDirectory(prefix="pslab-soak-") as tmp:
        args.dir = args.dir or tmp
        result = Soak(args).run()
    print(
        f"{result['pushes_acknowledged']} pushes acknowledged, {result['updates_applied']} "
        f"applied; lost {result['lost_updates']}, duplicated {result['duplicate_updates']}, "
        f"applied unacknowledged {result['applied_unacknowledged']}, never attempted "
        f"{result['applied_never_attempted']}"
    )
    print(
        f"server's applied count {result['server_pushes_applied']}: "
        f"{'matches' if result['server_count_matches_model'] else 'DOES NOT MATCH'} the model's"
    )
    print(f"errors by status code (retried or not): {result['errors_by_code']}")
    print(f"push latency p50 {result['p50_push_ms']:.1f} ms, p99 {result['p99_push_ms']:.1f} ms")
    print(
        f"durability (whole run, both servers): journal {result['journal_ms_per_push']:.2f} ms "
        "per push, "
        f"{result['checkpoints']} checkpoints of {result['checkpoint_ms_mean']:.1f} ms"
    )
    print(
        f"server RSS: {result['server_rss_mb_start']} MB after warm-up, "
        f"{result['server_rss_mb_end']:.1f} MB at the end ({result['rss_growth_pct']} %)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
