"""How long the non-network work takes in the simulator.

Durations come from the scenario's workload (numbers or distributions, for
stragglers), drawn per role as :mod:`pslab.distributions` explains.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pslab.distributions import sampler
from pslab.scenario import Scenario
from pslab.size_curve import SizeCurve
from pslab.smoothing import fft_flops


class UpdateCost(NamedTuple):
    """A worker's local update as measured on a machine: fixed seconds plus per byte."""

    fixed_s: float
    per_byte_s: float

    def seconds(self, nbytes: int) -> float:
        return self.fixed_s + nbytes * self.per_byte_s


class MachineCosts(NamedTuple):
    """What a measured machine's work takes, where it replaces the scenario's nominal
    figures: the one way a calibration's numbers reach the simulator's durations.

    ``compute_s``: a real (torch) step as measured, or None where compute is the
    scenario's (emulated compute sleeps exactly that). ``worker_update`` is a worker's
    step with its caches cold, ``worker_update_hot`` back to back (None: not measured).
    ``mean_scale_s_per_byte``: an all-reduce's mean, its sum divided in place.
    ``slice_add``, ``slice_copy``: a communicator's sum of a part into its total and its
    copies of a slice, by the slice's bytes (None: not measured)."""

    compute_s: float | None
    server_update_s_per_byte: float
    worker_update: UpdateCost
    worker_update_hot: UpdateCost | None = None
    mean_scale_s_per_byte: float = 0.0
    slice_add: SizeCurve | None = None
    slice_copy: SizeCurve | None = None


class Costs:
    """Durations of compute, loading, updates and smoothing for one scenario."""

    def __init__(
        self,
        scenario: Scenario,
        layers: list[int],
        bytes_per_param: int,
        machine: MachineCosts | None = None,
    ) -> None:
        """``machine``: the figures of the machine a run is predicted on (the emulator's);
        without it, the scenario's nominal cluster, where a worker's update runs at
        the server's rate."""
        self.workload = scenario.workload
        self.machine = machine
        self.layers = layers
        self.bytes_per_param = bytes_per_param
        self.smooth_s = (
            sum(fft_flops(n) for n in layers) / self.workload.smoothing_flops
            if scenario.algorithm.smoothing.sigma > 0
            else 0.0
        )
        # drawn for every op: the samplers settle the distribution's parameters once
        measured = machine.compute_s if machine is not None else None
        self._compute = (
            sampler(self.workload.compute_time) if measured is None else sampler(measured)
        )
        self._io = sampler(self.workload.io_time)

    def compute(self, rng: np.random.Generator, fraction: float) -> float:
        return self._compute(rng) * fraction

    def io(self, rng: np.random.Generator) -> float:
        return self._io(rng)

    def update(self, nbytes: int) -> float:
        """CPU time to apply an update of ``nbytes`` (a few passes over memory)."""
        if self.machine is not None:
            return nbytes * self.machine.server_update_s_per_byte
        return nbytes / self.workload.server_update_bandwidth

    def worker_update(self, nbytes: int) -> float:
        if self.machine is not None:
            return self.machine.worker_update.seconds(nbytes)
        return self.update(nbytes)

    def mean_scale(self, nbytes: int) -> float:
        """A worker's division of an all-reduced sum into its mean: priced where measured
        (the emulator's torch does it on the CPU); a nominal cluster's collective library
        folds it into its reduction, so there it costs nothing of its own."""
        return nbytes * self.machine.mean_scale_s_per_byte if self.machine is not None else 0.0

    def slice_add(self, nbytes: int) -> float:
        """A communicator adding a received part into its total: numpy on the CPU in the
        emulator; a nominal cluster's reduction is folded into its transfers."""
        curve = self.machine.slice_add if self.machine is not None else None
        return curve(nbytes) if curve is not None else 0.0

    def slice_copy(self, nbytes: int) -> float:
        """A communicator copying a slice: its sum into its buffer, its offer into a fresh
        array that the broadcasts stream while it goes on (priced as ``slice_add``)."""
        curve = self.machine.slice_copy if self.machine is not None else None
        return curve(nbytes) if curve is not None else 0.0

    def worker_update_hot(self, nbytes: int) -> float:
        """The step back to back; where that was not measured, the one figure there is."""
        if self.machine is not None and self.machine.worker_update_hot is not None:
            return self.machine.worker_update_hot.seconds(nbytes)
        return self.worker_update(nbytes)
