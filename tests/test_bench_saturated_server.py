"""benchmarks/saturated_server.py's figures from its compares: each process's CPU growth is
over its own variant's one-worker case of the same round, so a moment shows as a round.

The compares themselves (a calibration and real launches) are the benchmark's to run.
"""

from __future__ import annotations

import io

import pytest
from conftest import load_benchmark
from rich.console import Console


def _compare(iteration: tuple[float, float], server: tuple[float, float], workers: tuple) -> dict:
    """What a compare.json holds of the figures the benchmark reads: (predicted, measured)."""

    def pair(p: tuple[float, float]) -> dict[str, float]:
        return {"predicted": p[0], "measured": p[1]}

    error = (iteration[0] / iteration[1] - 1) * 100
    return {
        "metrics": {"iteration_time_s": {**pair(iteration), "error_pct": error}},
        "cpu_s_per_worker_iteration": {"by_role": {"ps-0": pair(server), "workers": pair(workers)}},
    }


def test_growth_is_over_the_same_variant_and_round() -> None:
    bench = load_benchmark("saturated_server")
    rows = [
        bench.row("async_ps", 1, 1, _compare((0.018, 0.016), (0.014, 0.012), (0.012, 0.010))),
        bench.row("async_ps", 1, 2, _compare((0.032, 0.036), (0.0145, 0.015), (0.012, 0.0135))),
        bench.row("sync_ps", 1, 1, _compare((0.018, 0.017), (0.014, 0.013), (0.012, 0.011))),
        bench.row("sync_ps", 1, 2, _compare((0.034, 0.033), (0.0154, 0.0143), (0.012, 0.0132))),
        bench.row("async_ps", 2, 1, _compare((0.018, 0.019), (0.014, 0.016), (0.012, 0.012))),
        bench.row("async_ps", 2, 2, _compare((0.032, 0.037), (0.0145, 0.016), (0.012, 0.0144))),
        bench.row("sync_ps", 3, 2, _compare((0.034, 0.033), (0.0154, 0.0143), (0.012, 0.0132))),
    ]
    bench.add_growth(rows)
    async1, sync1, async2 = rows[1], rows[3], rows[5]
    assert async1["workers_growth_measured"] == pytest.approx(1.35)
    assert async1["server_growth_measured"] == pytest.approx(1.25)
    assert async1["server_growth_predicted"] == pytest.approx(0.0145 / 0.014)
    assert sync1["workers_growth_measured"] == pytest.approx(1.2)
    assert sync1["server_growth_measured"] == pytest.approx(1.1)
    assert async2["workers_growth_measured"] == pytest.approx(1.2)  # round 2's own lone worker
    assert async2["server_growth_measured"] == pytest.approx(1.0)
    assert rows[0]["workers_growth_measured"] == pytest.approx(1.0)
    assert "workers_growth_measured" not in rows[6]  # no lone worker in round 3
    # the server's cores: its CPU per worker-iteration times the worker-iterations per second
    assert async1["server_cores_measured"] == pytest.approx(0.015 * 2 / 0.036)
    assert async1["error_pct"] == pytest.approx((0.032 / 0.036 - 1) * 100)
    console = Console(width=300, record=True, file=io.StringIO())
    console.print(bench.table(rows))
    text = console.export_text()
    assert "1.00 / 1.35" in text  # async_ps round 1, 2 workers: the workers' growth
    assert text.count(" - ") >= 2  # round 3 has no growth to show
