"""Laplacian smoothing of gradients (Osher, Wang, Yin et al. 2018).

g ← A_σ⁻¹ g with A_σ = I + (−1)ᵖ σ Lᵖ, L the 1-D periodic discrete Laplacian.
A_σ is circulant, so the solve is a division in Fourier space: the
eigenvalue of −L at frequency k is 4 sin²(πk/n), giving the denominator
1 + σ (4 sin²(πk/n))ᵖ. The authors smooth each parameter tensor separately
(flattened), so :func:`smooth_segments` does the same over a flat buffer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def denominator(n: int, sigma: float, order: int = 1) -> np.ndarray:
    k = np.arange(n)
    return 1.0 + sigma * (4.0 * np.sin(np.pi * k / n) ** 2) ** order


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def smooth(g: Any, sigma: float, order: int = 1) -> Any:
    """Return A_σ⁻¹ g for a 1-D numpy array or torch tensor (σ = 0: g itself)."""
    n = g.shape[0]
    if sigma == 0 or n < 3:
        return g
    denom = denominator(n, sigma, order)
    if _is_torch(g):
        import torch

        d = torch.as_tensor(denom, dtype=torch.float64, device=g.device)
        out = torch.fft.ifft(torch.fft.fft(g.to(torch.float64)) / d).real
        return out.to(g.dtype)
    out = np.fft.ifft(np.fft.fft(g.astype(np.float64)) / denom).real
    return out.astype(g.dtype, copy=False)


def smooth_segments(flat: Any, sizes: Sequence[int], sigma: float, order: int = 1) -> None:
    """Smooth each contiguous segment (one parameter tensor) of ``flat`` in place."""
    if sigma == 0:
        return
    start = 0
    for size in sizes:
        seg = flat[start : start + size]
        seg[:] = smooth(seg, sigma, order)
        start += size


def dense_operator(n: int, sigma: float, order: int = 1) -> np.ndarray:
    """A_σ as a dense matrix: the reference the FFT path is tested against."""
    lap = -2.0 * np.eye(n) + np.roll(np.eye(n), 1, axis=1) + np.roll(np.eye(n), -1, axis=1)
    return np.eye(n) + (-1) ** order * sigma * np.linalg.matrix_power(lap, order)


def fft_flops(n: int) -> float:
    """Rough FFT work, 5 n log2 n, used to scale smoothing cost with tensor size."""
    return 5.0 * n * math.log2(max(n, 2))
