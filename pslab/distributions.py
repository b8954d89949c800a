"""Random durations (stragglers), drawn the same way by the simulator and the emulator.

Each role draws from its own generator seeded by (run seed, role name), so a
role's draws do not depend on the order events happen in, and the emulator's
``compute: emulated`` sleeps are the very durations the simulator priced.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np

from pslab.scenario import Distribution


def role_rng(seed: int, role: str) -> np.random.Generator:
    digest = hashlib.blake2b(f"{seed}:{role}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def draw(spec: float | Distribution, rng: np.random.Generator) -> float:
    """One sample of a duration; a plain number is constant."""
    return sampler(spec)(rng)


def sampler(spec: float | Distribution) -> Callable[[np.random.Generator], float]:
    """``draw(spec, rng)`` as a function of the generator, with the distribution's
    parameters worked out once: the simulator draws a duration for every op of
    every worker, and the same arithmetic gives the same samples."""
    if not isinstance(spec, Distribution):
        value = float(spec)
        return lambda _rng: value
    m, cv = spec.mean, spec.cv
    if spec.dist == "constant" or cv == 0 or m == 0:
        return lambda _rng: m
    if spec.dist == "normal":
        std = cv * m
        return lambda rng: max(0.0, rng.normal(m, std))
    if spec.dist == "lognormal":
        s2 = math.log1p(cv * cv)
        mu, sigma = math.log(m) - s2 / 2, math.sqrt(s2)
        return lambda rng: float(rng.lognormal(mu, sigma))
    if spec.dist == "exponential":
        return lambda rng: float(rng.exponential(m))
    half = math.sqrt(3.0) * cv * m  # uniform with the given mean and standard deviation
    low, high = max(0.0, m - half), m + half
    return lambda rng: float(rng.uniform(low, high))
