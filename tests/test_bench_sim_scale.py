"""benchmarks/sim_scale.py on a tiny grid: its JSON line has every figure, and they make sense.

Only structure and signs are checked, never times: those depend on the machine.
"""

from __future__ import annotations

import json

import pytest
import simpy
from conftest import load_benchmark

from sim.environment import CountingEnvironment


def test_tiny_grid_prints_one_json_line_with_every_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = load_benchmark("sim_scale")
    returned = bench.main(
        [
            "--workers",
            "4,16",
            "--iterations",
            "10",
            "--bare-timeouts",
            "50",
            "--straggler-workers",
            "",
        ]
    )
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)
    assert report == json.loads(json.dumps(returned))

    cases = report["cases"]
    assert [(c["algo"], c["workers"]) for c in cases] == [
        ("sync_ps", 4),
        ("sync_ps", 16),
        ("allreduce", 4),
        ("allreduce", 16),
    ]
    for c in cases:
        assert c["iterations"] == 10
        assert c["events"] > 0 and c["wall_s"] > 0 and c["simulated_time_s"] > 0
        assert c["events_per_s"] > 0 and c["bare_simpy_events_per_s"] > 0
        assert c["events_per_s"] == pytest.approx(c["events"] / c["wall_s"])
        assert c["ratio_to_bare"] == pytest.approx(c["events_per_s"] / c["bare_simpy_events_per_s"])
        assert c["wall_per_worker_iteration_us"] == pytest.approx(
            c["wall_s"] / (c["workers"] * 10) * 1e6
        )
    # more workers, more events: the simulator does work per worker, not per run
    assert cases[1]["events"] > cases[0]["events"] and cases[3]["events"] > cases[2]["events"]
    assert report["bare_simpy_events_per_s"] > 0
    assert set(report["loglog_slope"]) == {"sync_ps", "allreduce"}
    assert all(isinstance(s, float) for s in report["loglog_slope"].values())
    assert report["wall_1024_sync_ps_s"] is None  # 1,024 workers were not in this grid
    assert report["straggler_cases"] == [] and report["targets"] == {}


@pytest.mark.slow
def test_straggler_cases_run_one_process_each_beside_simgrid(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Straggler cases run in child processes (their own peak RSS), and in SimGrid where
    /usr/bin/python3 has it."""
    bench = load_benchmark("sim_scale")
    report = bench.main(
        [
            *("--workers", "", "--bare-timeouts", "20", "--straggler-workers", "6"),
            *("--straggler-iterations", "4", "--straggler-algos", "sync_ps,async_ps"),
        ]
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(
        json.dumps(report)
    )
    stragglers = report["straggler_cases"]
    assert [(c["algo"], c["workers"], c["iterations"]) for c in stragglers] == [
        ("sync_ps", 6, 4),
        ("async_ps", 6, 4),
    ]
    for c in stragglers:
        assert c["stragglers"] and c["events"] > 0 and c["peak_rss_mb"] > 0
        assert c["cpu_s"] > 0
        assert c["iteration_time_s"] > 0.05  # compute alone averages 50 ms
        simgrid = c["simgrid"]
        if "skipped" not in simgrid:  # python3-simgrid is installed here
            assert simgrid["wall_s"] > 0 and simgrid["cpu_s"] > 0
            assert simgrid["pslab_over_simgrid"] == pytest.approx(c["wall_s"] / simgrid["wall_s"])
            # the same case in another simulator: iteration times close, not equal
            # (other random draws, no GPU hop in SimGrid's star)
            assert simgrid["iteration_time_s"] == pytest.approx(c["iteration_time_s"], rel=0.15)
    for slopes in (report["straggler_loglog_slope"], report["straggler_loglog_slope_cpu"]):
        assert slopes == {"sync_ps": None, "async_ps": None}  # one size: no slope
    targets = report["targets"]
    assert targets["peak_rss_mb"]["case"] == "sync_ps 6x4"  # the first of the biggest
    assert targets["peak_rss_mb"]["met"] == (targets["peak_rss_mb"]["measured"] < 2048)
    assert "sync_ps_10240x100_wall_s" not in targets  # not in this grid


def test_repeated_runs_report_the_fastest_with_every_wall_and_the_largest_rss() -> None:
    bench = load_benchmark("sim_scale")
    runs = [
        {"wall_s": 3.0, "events": 10, "peak_rss_mb": 100.0},
        {"wall_s": 2.0, "events": 10, "peak_rss_mb": 90.0},
        {"wall_s": 2.5, "events": 10, "peak_rss_mb": 120.0},
    ]
    best = bench.fastest_of(runs)
    assert best == {"wall_s": 2.0, "events": 10, "peak_rss_mb": 120.0, "walls_s": [3.0, 2.0, 2.5]}
    assert runs[1] == {"wall_s": 2.0, "events": 10, "peak_rss_mb": 90.0}  # not changed


def test_straggler_scenarios_draw_lognormal_compute() -> None:
    bench = load_benchmark("sim_scale")
    compute = bench.scenario_for("async_ps", 16, 5, stragglers=True).workload.compute_time
    assert (compute.dist, compute.mean, compute.cv) == ("lognormal", 0.05, 0.2)
    assert bench.scenario_for("sync_ps", 16, 5).workload.compute_time == 0.05


def test_bare_simpy_event_count_is_what_simpy_processes() -> None:
    """The bare loop's analytic event count matches a counting environment's."""
    bench = load_benchmark("sim_scale")
    rate, events = bench.bare_simpy_rate(processes=7, timeouts=11)
    assert rate > 0 and events == 7 * (11 + 2)

    env = CountingEnvironment()

    def proc() -> simpy.events.ProcessGenerator:
        for _ in range(11):
            yield env.timeout(1.0)

    for _ in range(7):
        env.process(proc())
    env.run()
    assert env.events_processed == events


def test_loglog_slope_reads_linear_and_quadratic() -> None:
    bench = load_benchmark("sim_scale")
    sizes = [10.0, 100.0, 1000.0]
    assert bench.loglog_slope(sizes, [2 * s for s in sizes]) == pytest.approx(1.0)
    assert bench.loglog_slope(sizes, [s * s for s in sizes]) == pytest.approx(2.0)
    assert bench.loglog_slope([10.0], [1.0]) is None


def test_scenarios_follow_scale_1024() -> None:
    bench = load_benchmark("sim_scale")
    ps = bench.scenario_for("sync_ps", 1024, 100)
    assert ps.topology.n_workers == 1024 and ps.topology.servers == 1
    assert ps.run.iterations == 100 and ps.run.warmup == 5
    ring = bench.scenario_for("allreduce", 8, 3)
    assert ring.topology.servers == 0 and ring.run.warmup == 1
