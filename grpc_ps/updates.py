"""The shard's update, block by block, and the check that it stays finite.

An update is computed in blocks of :data:`BLOCK` elements on views, so its temporaries are
small and cache-resident and a result can land in another model-sized buffer without a
third one (copy-on-write, see :mod:`grpc_ps.shard`). Finite inputs can still overflow
(two DELTA pushes of 3e38), so an update is checked before it is accepted: bounds on the
magnitudes prove the usual case cheaply, the exact block-wise check decides otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from grpc_ps.pb import ps_pb2 as pb
from pslab import rules

DTYPE = np.dtype(np.float32)
MODES = {pb.PUSH_MODE_GRAD: "grad", pb.PUSH_MODE_DELTA: "delta"}  # by wire code
BLOCK = 1 << 18  # elements per update block: temporaries stay in cache, never model-sized


class NonFiniteResult(ValueError):
    """An update of finite pushes that would leave a parameter NaN or Inf (an overflow)."""


def finite(arr: np.ndarray) -> bool:
    """No NaN or Inf: one pass, no temporary (a float64 sum of float32 cannot overflow)."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, which is the answer
        return math.isfinite(arr.sum(dtype=np.float64))


def update(
    x: np.ndarray,
    total: np.ndarray,
    count: int,
    mode: str,
    lr: float,
    momentum: float,
    velocity: np.ndarray | None,
    out: np.ndarray,
) -> None:
    """``out`` ← x updated by ``count`` pushes summing to ``total``; ``out`` is x or total.

    Runs the shared rules block by block on views, so their temporaries are small and
    cache-resident, and so the result can land in ``total``'s buffer (copy-on-write) without
    a third model-sized array.
    """
    tmp = None if out is x else np.empty(min(BLOCK, len(x)), x.dtype)
    for a in range(0, len(x), BLOCK):
        b = min(a + BLOCK, len(x))
        dst = x[a:b]
        if tmp is not None:
            dst = tmp[: b - a]
            np.copyto(dst, x[a:b])
        block_velocity = None if velocity is None else velocity[a:b]
        rules.server_update(dst, total[a:b], count, mode, lr, momentum, block_velocity)
        if tmp is not None:
            out[a:b] = dst


_SAFE = float(np.finfo(DTYPE).max) / 4  # below this, a bound's rounding cannot reach inf


def _magnitude(a: np.ndarray) -> float:
    """The largest |element|: two reductions, no temporary."""
    return max(float(a.max()), -float(a.min())) if len(a) else 0.0


def _surely_finite(
    x: np.ndarray | None,
    parts: Sequence[np.ndarray],
    count: int,
    mode: str,
    lr: float,
    momentum: float,
    velocity: np.ndarray | None,
) -> bool:
    """True when bounds on the magnitudes already prove the update finite (the usual case,
    at a quarter of the exact check's cost); False means: check exactly."""
    total = sum(_magnitude(p) for p in parts)
    if total >= _SAFE:
        return False
    if x is None:
        return True
    if mode == "delta":
        return _magnitude(x) + total < _SAFE
    step = total / count
    if velocity is not None:
        step = abs(momentum) * _magnitude(velocity) + step
    return step < _SAFE and _magnitude(x) + abs(lr) * step < _SAFE


def result_finite(
    x: np.ndarray | None,
    parts: Sequence[np.ndarray],
    count: int,
    mode: str,
    lr: float,
    momentum: float,
    velocity: np.ndarray | None,
) -> bool:
    """Would the update of ``x`` by ``parts`` (summed) be finite? Nothing is written.

    The same block-wise operations as :func:`update` and the round sum, on block-sized
    copies, so the answer is the one the real update will give, bit for bit, and the check
    costs no model-sized memory. ``x`` None: only the sum is checked (a BSP round that
    stays open must not hold an overflowed sum either).
    """
    if _surely_finite(x, parts, count, mode, lr, momentum, velocity):
        return True
    n = len(parts[0])
    size = min(BLOCK, n)
    total, params = np.empty(size, DTYPE), np.empty(size, DTYPE)
    vel = None if velocity is None else np.empty(size, DTYPE)
    flags = np.empty(size, bool)

    def ok(block: np.ndarray) -> bool:  # in cache, isfinite beats finite()'s float64 sum 4x
        return bool(np.isfinite(block, out=flags[: len(block)]).all())

    with np.errstate(over="ignore", invalid="ignore"):
        for a in range(0, n, BLOCK):
            b = min(a + BLOCK, n)
            t = total[: b - a]
            np.copyto(t, parts[0][a:b])
            for part in parts[1:]:
                t += part[a:b]
            if x is None:
                if not ok(t):
                    return False
                continue
            p = params[: b - a]
            np.copyto(p, x[a:b])
            v = None
            if vel is not None and velocity is not None:
                v = vel[: b - a]
                np.copyto(v, velocity[a:b])
            rules.server_update(p, t, count, mode, lr, momentum, v)
            if not ok(p) or (v is not None and not ok(v)):
                return False
    return True
