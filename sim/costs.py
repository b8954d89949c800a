"""How long the non-network work takes in the simulator.

Durations come from the scenario's workload (numbers or distributions, for
stragglers). Each role draws from its own generator seeded by (run seed,
role name), so a role's draws do not depend on the order events happen in.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from pslab.scenario import Distribution, Scenario
from pslab.smoothing import fft_flops


def role_rng(seed: int, role: str) -> np.random.Generator:
    digest = hashlib.blake2b(f"{seed}:{role}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def draw(spec: float | Distribution, rng: np.random.Generator) -> float:
    """One sample of a duration; a plain number is constant."""
    if not isinstance(spec, Distribution):
        return float(spec)
    m, cv = spec.mean, spec.cv
    if spec.dist == "constant" or cv == 0 or m == 0:
        return m
    if spec.dist == "normal":
        return max(0.0, rng.normal(m, cv * m))
    if spec.dist == "lognormal":
        s2 = math.log1p(cv * cv)
        return float(rng.lognormal(math.log(m) - s2 / 2, math.sqrt(s2)))
    if spec.dist == "exponential":
        return float(rng.exponential(m))
    half = math.sqrt(3.0) * cv * m  # uniform with the given mean and standard deviation
    return float(rng.uniform(max(0.0, m - half), m + half))


class Costs:
    """Durations of compute, loading, updates and smoothing for one scenario."""

    def __init__(self, scenario: Scenario, layers: list[int], bytes_per_param: int) -> None:
        self.workload = scenario.workload
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
