"""The launcher's start gate: every worker begins its first iteration with the others."""

from __future__ import annotations

import io
import os

import pytest

from grpc_ps.launch import launch
from grpc_ps.start_gate import GATE_ENV, READY, StartGate, wait_at_gate
from pslab.scenario import scenario_from_dict


def _pipe() -> tuple[io.TextIOWrapper, io.TextIOWrapper]:
    r, w = os.pipe()
    return os.fdopen(r, "r"), os.fdopen(w, "w")


def test_the_gate_opens_once_every_worker_is_ready_or_gone() -> None:
    gate = StartGate(["worker-0", "worker-1", "worker-2"])
    ends = {name: _pipe() for name in ("worker-0", "worker-1", "worker-2")}
    for name, (_, write) in ends.items():
        gate.add(name, write)
    gate.ready("worker-0")
    gate.gone("worker-1")
    assert not gate.is_open
    gate.ready("worker-0")  # said twice: still one worker
    assert not gate.is_open
    gate.ready("worker-2")
    assert gate.is_open
    assert [read.readline() for read, _ in ends.values()] == ["go\n"] * 3
    gate.gone("worker-2")  # a worker lost after the start changes nothing


def test_a_worker_that_died_before_the_opening_costs_the_others_nothing() -> None:
    gate = StartGate(["worker-0", "worker-1"])
    read0, write0 = _pipe()
    read1, write1 = _pipe()
    gate.add("worker-0", write0)
    gate.add("worker-1", write1)
    read1.close()  # worker-1's process is gone: its stdin has no reader
    gate.gone("worker-1")
    gate.ready("worker-0")
    assert read0.readline() == "go\n"


def test_a_worker_waits_at_the_gate_only_where_a_launcher_set_one(monkeypatch, capsys) -> None:
    monkeypatch.delenv(GATE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    wait_at_gate()  # no gate: no line printed, stdin untouched
    assert capsys.readouterr().out == ""
    monkeypatch.setenv(GATE_ENV, "1")
    monkeypatch.setattr("sys.stdin", io.StringIO("go\n"))
    wait_at_gate()
    assert capsys.readouterr().out == f"{READY}\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # the launcher went away
    with pytest.raises(SystemExit, match="closed the start gate"):
        wait_at_gate()


def _async(workers: int, iterations: int) -> dict:
    return {
        "name": "gate",
        "topology": {"preset": "single_node", "gpus_per_node": 0, "workers_per_node": workers},
        "workload": {"model": {"params": 20_000}, "compute_time": "2ms"},
        "algorithm": {"name": "async_ps"},
        "run": {"iterations": iterations, "seed": 0, "warmup": 1},
        "emulation": {"compute": "emulated", "model": "synthetic"},
    }


def _first_iterations(result) -> dict[str, float]:
    starts: dict[str, float] = {}
    for span in result.trace.spans:
        if span.name == "iteration":
            starts[span.role] = min(starts.get(span.role, span.start), span.start)
    return starts


@pytest.mark.slow
def test_a_worker_slow_to_set_up_holds_the_others_start(monkeypatch) -> None:
    monkeypatch.setenv("PSLAB_SLOW_START", "worker-1:1.5")
    starts = _first_iterations(launch(scenario_from_dict(_async(3, 6))))
    assert sorted(starts) == ["worker-0", "worker-1", "worker-2"]
    # without the gate worker-1 began 1.5 s after the others
    assert max(starts.values()) - min(starts.values()) < 0.5, starts


@pytest.mark.slow
def test_an_async_run_starts_without_a_worker_lost_before_the_gate(monkeypatch) -> None:
    monkeypatch.setenv("PSLAB_KILL_AT", "worker-1:start")
    result = launch(scenario_from_dict(_async(3, 6)))
    assert result.metrics["lost_workers"] == ["worker-1"]
    assert sorted(_first_iterations(result)) == ["worker-0", "worker-2"]
