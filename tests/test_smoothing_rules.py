from __future__ import annotations

import numpy as np
import pytest
import torch

from pslab import rules
from pslab.smoothing import dense_operator, smooth, smooth_segments


def test_sigma_zero_is_identity() -> None:
    g = np.random.default_rng(0).normal(size=50).astype(np.float32)
    assert np.array_equal(smooth(g, 0.0), g)


@pytest.mark.parametrize(("n", "sigma", "order"), [(16, 0.5, 1), (33, 2.0, 1), (20, 1.0, 2)])
def test_fft_matches_dense_solve(n: int, sigma: float, order: int) -> None:
    g = np.random.default_rng(1).normal(size=n)
    expected = np.linalg.solve(dense_operator(n, sigma, order), g)
    assert np.allclose(smooth(g, sigma, order), expected, atol=1e-10)
    t = torch.tensor(g, dtype=torch.float64)
    assert np.allclose(smooth(t, sigma, order).numpy(), expected, atol=1e-10)


def test_segments_are_smoothed_separately() -> None:
    g = np.random.default_rng(2).normal(size=30)
    flat = g.copy()
    smooth_segments(flat, [10, 20], 1.0)
    assert np.allclose(flat[:10], smooth(g[:10], 1.0))
    assert np.allclose(flat[10:], smooth(g[10:], 1.0))


def test_rules_match_their_formulas() -> None:
    x = np.array([1.0, 2.0])
    c = np.array([0.0, 4.0])
    bufs = {"params": x.copy(), "center": c}
    rules.apply_rule("elastic", bufs, alpha=0.25)
    assert np.allclose(bufs["delta"], 0.25 * (x - c))
    assert np.allclose(bufs["params"], x - 0.25 * (x - c))
    bufs = {"params": x.copy(), "leader_local": c}
    rules.apply_rule("leader_pull", bufs, buf="leader_local", strength=0.1)
    assert np.allclose(bufs["params"], 0.9 * x + 0.1 * c)
    bufs = {"params": x.copy(), "grad": np.array([1.0, -1.0])}
    rules.apply_rule("sgd", bufs, lr=0.5, momentum=0.9)
    rules.apply_rule("sgd", bufs, lr=0.5, momentum=0.9)
    assert np.allclose(bufs["params"], x - 0.5 * np.array([1.0, -1.0]) * (1 + 1.9))
    with pytest.raises(KeyError, match="unknown update rule"):
        rules.apply_rule("nope", bufs)
