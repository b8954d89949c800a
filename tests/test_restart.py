"""A server that dies loses nothing it acknowledged: journal, checkpoints, resume, retries."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from grpc_ps.checkpoint import CHECKPOINT, Journal
from grpc_ps.client import PSClient
from grpc_ps.launch import Launcher
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.server import ParameterServerServicer, run_server, serve
from pslab.policies import StalenessPolicy
from pslab.scenario import scenario_from_dict

N = 1000
LR = 0.25
X0 = np.linspace(-1, 1, N, dtype=np.float32)


def shard(directory: Path, n: int, policy: StalenessPolicy, **kw) -> ParameterServerServicer:
    journal = Journal(directory, every_versions=3)
    return ParameterServerServicer(0, 0, N, n, policy, LR, initial=X0, journal=journal, **kw)


def grad(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(N).astype(np.float32)


def push_all(servicer: ParameterServerServicer, pushes: list[tuple[int, int]]) -> None:
    with run_server(servicer, grace=None) as (_, port):
        clients = [PSClient([f"127.0.0.1:{port}"], w, servicer.n_workers, N) for w in range(2)]
        for c in clients:
            c.register()
        for worker, iteration in pushes:
            clients[worker].push(grad(iteration * 2 + worker), iteration, computed_on=0)
        for c in clients:
            c.close()


def state(servicer: ParameterServerServicer) -> tuple[bytes, int, int, int]:
    assert servicer._params is not None
    stats = servicer.Stats(pb.StatsRequest(), None)
    return servicer._params.tobytes(), stats.version, stats.pushes_received, stats.pushes_applied


@pytest.mark.parametrize("aggregate", [False, True], ids=["asp", "bsp"])
def test_a_restarted_shard_holds_bitwise_what_was_acknowledged(tmp_path, aggregate) -> None:
    # 7 ASP pushes (2 checkpoints and a journal tail), or 3.5 BSP rounds (a round left open)
    pushes = [(i % 2, i // 2) for i in range(7)]
    policy = StalenessPolicy(2, aggregate=aggregate)
    live = shard(tmp_path, 2, policy, momentum=0.5)
    push_all(live, pushes)
    before = state(live)  # the dead server's memory; it never wrote a final checkpoint
    resumed = shard(tmp_path, 2, StalenessPolicy(2, aggregate=aggregate), momentum=0.5)
    assert state(resumed) == before
    assert resumed._velocity is not None and live._velocity is not None
    assert resumed._velocity.tobytes() == live._velocity.tobytes()
    assert resumed.policy.clock == live.policy.clock
    assert (resumed._round.count, resumed._round.mode) == (live._round.count, live._round.mode)


def test_a_retried_push_is_applied_once_even_across_a_restart(tmp_path) -> None:
    push_all(shard(tmp_path, 2, StalenessPolicy(2)), [(0, 0), (1, 0), (0, 1)])
    resumed = shard(tmp_path, 2, StalenessPolicy(2))
    with run_server(resumed, grace=None) as (_, port):
        c = PSClient([f"127.0.0.1:{port}"], 0, 2, N)
        assert c.register()[0].next_iteration == 2
        (reply,) = c.push(grad(99), 1, computed_on=0)  # a retry of iteration 1
        assert reply.duplicate and not reply.applied
        (reply,) = c.push(grad(99), 2, computed_on=0)
        assert reply.applied and not reply.duplicate
        c.close()
    stats = resumed.Stats(pb.StatsRequest(), None)
    assert (stats.version, stats.pushes_applied, stats.duplicates) == (4, 4, 1)


def test_a_torn_journal_tail_is_dropped(tmp_path) -> None:
    live = shard(tmp_path, 2, StalenessPolicy(2))
    push_all(live, [(0, 0), (1, 0)])  # no checkpoint due yet: both in the journal
    acked = state(live)
    journal = next(tmp_path.glob("journal-*.log"))
    with journal.open("ab") as f:
        f.write(b"\x01" + b"\x00" * 20)  # a record the crash cut short: never acknowledged
    assert state(shard(tmp_path, 2, StalenessPolicy(2))) == acked


def test_a_checkpoint_is_replaced_atomically(tmp_path) -> None:
    live = shard(tmp_path, 1, StalenessPolicy(1))
    assert (tmp_path / CHECKPOINT).exists() and not list(tmp_path.glob("*.tmp"))
    live.checkpoint()
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT, "journal-2.log"]


def test_a_client_rides_out_a_server_restart(tmp_path) -> None:
    """The server dies under a blocked pull and comes back on its port: the worker goes on."""
    first, port = serve(shard(tmp_path, 2, StalenessPolicy(2, aggregate=True)))
    c = PSClient([f"127.0.0.1:{port}"], 0, 2, N, timeout=20)
    c.register()
    c.push(grad(0), 0)  # the round waits for worker 1: the pull below blocks
    servers = [first]

    def crash_and_restart() -> None:
        first.stop(None).wait()  # in-flight calls fail
        time.sleep(0.3)
        servers.append(serve(shard(tmp_path, 2, StalenessPolicy(2, aggregate=True)), port=port)[0])
        with PSClient([f"127.0.0.1:{port}"], 1, 2, N, timeout=20) as other:
            other.register()
            other.push(grad(1), 0)  # closes the round

    t = threading.Timer(0.3, crash_and_restart)
    t.start()
    out = np.empty(N, np.float32)
    assert c.pull(out) == 1
    t.join()
    assert c.retry.errors["UNAVAILABLE"] >= 1
    assert np.array_equal(out, X0 - np.float32(LR) * (grad(0) + grad(1)) / np.float32(2))
    c.close()
    servers[-1].stop(None)


# -- kill -9 the server of a real run ------------------------------------------------------


def digits(algorithm: str, iterations: int = 150) -> dict:
    return {
        "name": f"restart-{algorithm}",
        "topology": {
            "preset": "single_node",
            "gpus_per_node": 0,
            "workers_per_node": 3,
            "cores_per_node": 2,
            "servers": 1,
        },
        "workload": {"model": "digits_mlp", "batch_size": 32, "compute_time": 0, "io_time": 0},
        "algorithm": {"name": algorithm, "lr": 0.3},
        "run": {"iterations": iterations, "seed": 0, "warmup": 2},
        "emulation": {"compute": "real", "model": "digits_mlp", "device": "cpu"},
    }


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["async_ps", "sync_ps"])
def test_kill_9_the_server_mid_training_and_resume(tmp_path, algorithm) -> None:
    iterations, n = 150, 3
    killed = threading.Event()

    def kill_server_once(rank: int, iteration: int) -> None:
        if iteration == iterations // 3 and not killed.is_set():
            killed.set()
            pid = json.loads((tmp_path / "ports" / "ps-0.json").read_text())["pid"]
            os.kill(pid, signal.SIGKILL)

    scenario = scenario_from_dict(digits(algorithm, iterations))
    launcher = Launcher(scenario, tmp_path, kill_server_once, restart_servers=True)
    result = launcher.run()  # workers' pulls check that versions never go backward
    assert killed.is_set() and launcher.restarted == ["ps-0"]
    assert result.metrics["test_accuracy"] >= 0.9, result.metrics
    # the final checkpoint: every push applied exactly once
    with np.load(tmp_path / "checkpoints" / "ps-0" / CHECKPOINT) as z:
        received, applied = (int(v) for v in z["counters"])
        version = int(z["version"])
        last = [int(v) for v in z["last_iteration"]]
    assert received == applied == n * iterations
    assert version == (n * iterations if algorithm == "async_ps" else iterations)
    assert last == [iterations - 1] * n
