"""benchmarks/small_push.py on a few cycles: both ways run for real and report every figure.

Only structure and signs are checked, never which way is faster: that depends on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_a_short_run_prints_one_json_line_with_both_ways(root: Path) -> None:
    cmd = [sys.executable, "benchmarks/small_push.py", "--kb", "4", "--workers", "2"]
    run = subprocess.run(
        [*cmd, "--iters", "5", "--rounds", "1"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert (report["kb"], report["gap_s"]) == (4, 0.005)
    for way in ("stream", "unary"):
        p50, p90 = report[f"push_p50_ms_2w_{way}"], report[f"push_p90_ms_2w_{way}"]
        assert 0 < p50 <= p90
        assert report[f"pull_p50_ms_2w_{way}"] > 0
        assert report[f"client_cpu_ms_2w_{way}"] > 0
    ratio = report["push_p50_ms_2w_stream"] / report["push_p50_ms_2w_unary"]
    assert report["stream_over_unary_p50_2w"] == pytest.approx(ratio, rel=0.01)
    ratio = report["pull_p50_ms_2w_stream"] / report["pull_p50_ms_2w_unary"]
    assert report["stream_over_unary_pull_p50_2w"] == pytest.approx(ratio, rel=0.01)
