"""What an emulated run measured, from its run directory: metrics, final model, accuracy.

``pslab launch`` calls this once its roles have stopped; ``pslab collect`` calls it
on the run directory of a multi-host run that other launchers (torchrun, srun,
mpirun) started. One function for both, so the two write the same metrics.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pslab.data import load
from pslab.metrics import compute_metrics
from pslab.models import FlatModel
from pslab.scenario import Scenario
from pslab.trace import Trace


def final_params(run_dir: Path) -> np.ndarray | None:
    """The workers' average model: what Leader SGD evaluates, and for synchronous
    variants simply the shared model."""
    params = [np.load(p) for p in sorted(run_dir.glob("params-*.npy"))]
    return np.mean(params, axis=0, dtype=np.float64).astype(np.float32) if params else None


def evaluate(scenario: Scenario, params: np.ndarray | None) -> dict[str, Any]:
    """Test loss and accuracy (a fraction) on the held-out digits."""
    emu = scenario.emulation
    if emu.compute != "real" or params is None:
        return {}
    model = FlatModel(emu.model, scenario.run.seed, torch.device("cpu"))
    data = load(scenario.run.seed, torch.device("cpu"))
    loss, acc = model.evaluate(torch.from_numpy(params), data.x_test, data.y_test)
    return {"final_loss": loss, "test_accuracy": acc}


def run_metrics(
    scenario: Scenario,
    run_dir: Path,
    trace: Trace,
    extra: dict[str, Any],
    links: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """The run's metrics (``extra`` merged in, with the test figures) and final model."""
    params = final_params(run_dir)
    metrics = compute_metrics(
        trace,
        scenario.topology.n_workers,
        scenario.workload.batch_size,
        scenario.run.warmup,
        scenario.run.iterations,
        links=links,
        extra={**extra, **evaluate(scenario, params)},
    )
    return metrics, params
