"""Multi-host runs as documented: pslab prepare, pslab serve, torchrun agents, pslab collect.

The recipe test takes the ``pslab prepare`` command from the README's "Running across
hosts" section, runs it with both hosts on 127.0.0.1 (and a smaller run), then runs the
commands it prints, as printed, through bash: the server, two torchrun agents with
``--nnodes 2 --node-rank``, TLS and a token, and ``pslab collect``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pslab.algorithm_config import switch_variant
from pslab_cli.main import main
from pslab_cli.worker import dist_init

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # pslab and torchrun, as installed beside this python
LAUNCHER_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_RANK",
    "PMI_SIZE",
    "MASTER_ADDR",
)
SMALL = [
    "--set",
    "run.iterations=6",
    "--set",
    "run.warmup=1",
    "--set",
    "topology.workers_per_node=1",
]


def readme_prepare() -> list[str]:
    """The README's ``pslab prepare`` command, as argv."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Running across hosts", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's Running across hosts section lost its command"
    return shlex.split(block.group(1).replace("\\\n", " "))


def free_base(count: int) -> int:
    """A port with ``count`` free ports from it (prepare's layout: shards, rendezvous, store)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + count):
                    probe = stack.enter_context(socket.socket())
                    probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no run of free ports")


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    return {**clean, "PATH": f"{BIN}{os.pathsep}{clean.get('PATH', '')}", "OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def started(command: str) -> Iterator[subprocess.Popen[str]]:
    """A printed command, run by bash in a session of its own; ended with it."""
    proc = subprocess.Popen(
        ["bash", "-c", command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_the_readme_recipe_runs_as_two_torchrun_agents_with_tls_and_a_token(tmp_path) -> None:
    run = tmp_path / "run1"
    argv = readme_prepare()
    assert argv[:2] == ["pslab", "prepare"] and "--token" in argv and "--tls" in argv
    argv = [a.replace("node1,node2", "127.0.0.1,127.0.0.1") for a in argv]
    argv = [str(run) if a == "/shared/run1" else a for a in argv]
    argv += [*SMALL, "--port", str(free_base(3))]
    printed = _recipe(argv)
    servers = [c for h, c in printed if "pslab serve" in c]
    agents = [c for h, c in printed if "torchrun" in c or c.startswith("export ")]
    collect = [c for h, c in printed if "pslab collect" in c]
    assert len(servers) == 1 and "--tls-ca" in servers[0] and "--token-file" in servers[0]
    assert len(collect) == 1 and sum("--node-rank" in c for c in agents) == 2
    with started(f"exec {servers[0]}") as server:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("serving ps-0")
        # each agent: its host's export line, then its torchrun line
        scripts = ["; ".join(agents[i : i + 2]) for i in range(0, len(agents), 2)]
        with started(scripts[0]) as a0, started(scripts[1]) as a1:
            outs = [a.communicate(timeout=240)[0] for a in (a0, a1)]
            assert [a0.returncode, a1.returncode] == [0, 0], outs
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    done = subprocess.run(["bash", "-c", collect[0]], env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = json.loads((run / "results" / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["source"] == "emu"
    assert metrics["iteration_time_s"] > 0 and metrics["throughput_samples_per_s"] > 0
    assert metrics["compute_time_s"] >= 0.036  # the quickstart's 40 ms, slept
    assert metrics["comm_time_s"] > 0 and metrics["exposed_comm_time_s"] > 0
    assert metrics["staleness"]["max"] == 0  # sync_ps, counted from the server's applies
    trace = json.loads((run / "results" / "trace.json").read_text())
    lanes = {e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "thread_name"}
    assert {"worker-0", "worker-1", "ps-0"} <= lanes


def _recipe(argv: list[str]) -> list[tuple[str, str]]:
    """(host, command) of what ``pslab prepare`` prints, by running it as a user would."""
    done = subprocess.run(
        ["bash", "-c", shlex.join(argv)], capture_output=True, text=True, env=env(), check=False
    )
    assert done.returncode == 0, done.stderr
    lines = [re.fullmatch(r"\[(\S+)\] (.*)", line) for line in done.stdout.splitlines()[1:]]
    assert all(lines), done.stdout
    return [(m.group(1), m.group(2)) for m in lines if m]


@pytest.fixture
def prepared(tmp_path, capsys) -> Path:
    run = tmp_path / "run"
    args = ["prepare", str(ROOT / "scenarios" / "quickstart.yaml"), "--run-dir", str(run)]
    args += ["--hosts", "127.0.0.1", "--set", "topology.workers_per_node=2"]
    assert main(args) == 0
    capsys.readouterr()
    return run


def _launcher(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    ("rank", "world"),
    [
        ("RANK", "WORLD_SIZE"),
        ("SLURM_PROCID", "SLURM_NTASKS"),
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("PMI_RANK", "PMI_SIZE"),
    ],
)
def test_a_worker_checks_its_launchers_rank_and_world(
    prepared, capsys, monkeypatch, rank, world
) -> None:
    _launcher(monkeypatch, **{rank: "0", world: "3"})
    assert main(["worker", "--run-dir", str(prepared)]) == 2
    assert f"{world}=3, but the scenario has 2 workers" in capsys.readouterr().err
    _launcher(monkeypatch, **{rank: "2", world: "2"})
    assert main(["worker", "--run-dir", str(prepared)]) == 2
    err = capsys.readouterr().err
    assert "rank 2 is outside this run's world of 2 workers (0-1)" in err
    assert "Traceback" not in err


def test_env_rendezvous_when_master_addr_is_set(prepared, capsys, monkeypatch) -> None:
    assert dist_init("tcp://h:1", {"MASTER_ADDR": "node1"}) == "env://"
    assert dist_init("tcp://h:1", {}) == "tcp://h:1"
    # an allreduce run whose endpoints name no rendezvous, started without torchrun
    scenario = prepared / "scenario.yaml"
    data = yaml.safe_load(scenario.read_text())
    data["algorithm"] = switch_variant(data["algorithm"], "allreduce")
    scenario.write_text(yaml.safe_dump(data, sort_keys=False))
    endpoints = json.loads((prepared / "endpoints.json").read_text())
    (prepared / "endpoints.json").write_text(json.dumps({**endpoints, "dist_workers": ""}))
    _launcher(monkeypatch, RANK="0", WORLD_SIZE="2")
    assert main(["worker", "--run-dir", str(prepared)]) == 2
    assert "dist_workers is empty and MASTER_ADDR is not set" in capsys.readouterr().err


def test_prepare_writes_the_run_directory(prepared) -> None:
    endpoints = json.loads((prepared / "endpoints.json").read_text())
    assert endpoints["servers"] == ["127.0.0.1:7000"]
    assert endpoints["dist_workers"] == "tcp://127.0.0.1:7002"
    assert "t0_unix_ns" in json.loads((prepared / "run.json").read_text())
    assert not (prepared / "token").exists() and not (prepared / "certs").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--hosts", "a,b"], "--hosts names 2 hosts, but topology.nodes is 1"),
        (["--hosts", "psnode"], "servers on psnode are reachable from the network"),
        (
            ["--hosts", "127.0.0.1", "--set", "algorithm.name=layered_sgd"],
            "communicators cannot be placed across hosts",
        ),
    ],
)
def test_prepare_refuses_what_cannot_run(tmp_path, capsys, extra, message) -> None:
    args = ["prepare", str(ROOT / "scenarios" / "quickstart.yaml"), "--run-dir", str(tmp_path)]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_collect_names_the_workers_that_left_no_trace(prepared, capsys) -> None:
    assert main(["collect", str(prepared)]) == 2
    assert "no trace from worker-0, worker-1" in capsys.readouterr().err
