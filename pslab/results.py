"""A run's outputs on disk: metrics.json, trace.json and the resolved scenario beside them.

The resolved scenario is written with every result so that a result always
says what produced it. Every file is replaced atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pslab.scenario import Scenario, dump_scenario
from pslab.trace import Trace, write_json_atomic


def write_results(out_dir: Path, scenario: Scenario, metrics: dict[str, Any], trace: Trace) -> None:
    out_dir = Path(out_dir)
    sample = scenario.run.trace_sample
    n_workers = metrics.get("workers", 0)
    big = n_workers > sample.workers or scenario.run.iterations > sample.iterations
    chrome = (
        trace.to_chrome(workers=sample.workers, iterations=sample.iterations)
        if big
        else trace.to_chrome()
    )
    write_json_atomic(out_dir / "trace.json", chrome)
    write_json_atomic(out_dir / "metrics.json", metrics)
    write_text_atomic(out_dir / "scenario.yaml", dump_scenario(scenario))


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_metrics(out_dir: Path) -> dict[str, Any]:
    return json.loads((Path(out_dir) / "metrics.json").read_text())
