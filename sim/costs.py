"""How long the non-network work takes in the simulator.

Durations come from the scenario's workload (numbers or distributions, for
stragglers), drawn per role as :mod:`pslab.distributions` explains.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pslab.distributions import draw
from pslab.scenario import Scenario
from pslab.smoothing import fft_flops


class UpdateCost(NamedTuple):
    """A worker's local update as measured on a machine: fixed seconds plus per byte."""

    fixed_s: float
    per_byte_s: float


class Costs:
    """Durations of compute, loading, updates and smoothing for one scenario."""

    def __init__(
        self,
        scenario: Scenario,
        layers: list[int],
        bytes_per_param: int,
        worker_update: UpdateCost | None = None,
    ) -> None:
        """``worker_update``: a worker's local update cost where it was measured (the
        emulator's torch update); otherwise the server's rate is used for both."""
        self.workload = scenario.workload
        self.worker_update_cost = worker_update
        self.layers = layers
        self.bytes_per_param = bytes_per_param
        self.smooth_s = (
            sum(fft_flops(n) for n in layers) / self.workload.smoothing_flops
            if scenario.algorithm.smoothing.sigma > 0
            else 0.0
        )

    def compute(self, rng: np.random.Generator, fraction: float) -> float:
        return draw(self.workload.compute_time, rng) * fraction

    def io(self, rng: np.random.Generator) -> float:
        return draw(self.workload.io_time, rng)

    def update(self, nbytes: int) -> float:
        """CPU time to apply an update of ``nbytes`` (a few passes over memory)."""
        return nbytes / self.workload.server_update_bandwidth

    def worker_update(self, nbytes: int) -> float:
        cost = self.worker_update_cost
        if cost is not None:
            return cost.fixed_s + nbytes * cost.per_byte_s
        return self.update(nbytes)
