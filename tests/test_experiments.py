"""The experiments package's shared parts: the grid runner, the JSON last line, which_variant.

Each experiment has its own test module; these check what all of them rely on.
"""

from __future__ import annotations

import io
import json
import math

import pytest
from rich.console import Console

from experiments import which_variant
from experiments.grid import run_grid
from experiments.report import floats, ints, names, rounded


def test_costliest_tasks_run_first_and_results_keep_task_order() -> None:
    ran: list[int] = []

    def square(x: int) -> int:
        ran.append(x)
        return x * x

    tasks = [1, 5, 2, 5, 3]
    assert run_grid(square, tasks, cost=float) == [1, 25, 4, 25, 9]
    assert ran == [5, 5, 3, 2, 1]  # ties keep their order (stable sort)
    ran.clear()
    assert run_grid(square, tasks) == [1, 25, 4, 25, 9]
    assert ran == tasks


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_worker_processes_return_what_one_process_does(start_method: str) -> None:
    # rounded: a module-level function of an importable module, as a spawned child needs
    tasks = [math.pi * 10**k for k in range(5)]
    got = run_grid(rounded, tasks, jobs=2, cost=lambda x: x, start_method=start_method)
    assert got == [rounded(x) for x in tasks]


def test_progress_bar_counts_every_task() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=False)
    assert run_grid(abs, [-1, -2, -3], console=console, description="grid") == [1, 2, 3]
    assert "3/3" in buf.getvalue()


def test_rounded_keeps_the_json_line_valid() -> None:
    data = {"a": 1.23456789, "b": [float("nan"), float("inf")], "c": (2, "x")}
    assert rounded(data, 3) == {"a": 1.23, "b": [None, None], "c": [2, "x"]}
    json.dumps(rounded(data), allow_nan=False)  # no NaN or Infinity left


def test_flag_lists() -> None:
    assert floats("0, 50,,100") == [0.0, 50.0, 100.0]
    assert ints("1,2,4,") == [1, 2, 4]
    assert names(" csgd, sync_ps ,") == ["csgd", "sync_ps"]


def test_which_variant_prints_a_table_then_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--nodes", "2", "--gpus", "2", "--model", "resnet20", "--bandwidth", "10Gb/s"]
    assert which_variant.main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert [r["variant"] for r in summary["variants"]] == [
        name + (" (bucketed, overlapped)" if extra.get("overlap_backward") else "")
        for name, extra in which_variant.VARIANTS
    ]
    best = max(summary["variants"], key=lambda r: r["throughput_samples_per_s"])
    assert summary["fastest"] == best["variant"]
    assert all(r["iteration_time_s"] > 0 for r in summary["variants"])
    assert any("samples/s" in line for line in lines[:-1])  # the table came first
