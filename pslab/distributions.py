"""Random durations (stragglers), drawn the same way by the simulator and the emulator.

Each role draws from its own generator seeded by (run seed, role name), so a
role's draws do not depend on the order events happen in, and the emulator's
``compute: emulated`` sleeps are the very durations the simulator priced.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from pslab.scenario import Distribution


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
