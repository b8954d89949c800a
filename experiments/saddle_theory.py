"""The saddle experiment's mathematics: the quadratic, its stable subspaces, GD and LSGD.

f = ½xᵀHx with H = diag(1, …, 1, −1). Smoothing itself is
:func:`pslab.smoothing.smooth` (FFT solve of A_σ = I − σL); the dense
:func:`pslab.smoothing.dense_operator` is used only for eigen-analysis.
:mod:`experiments.saddle` runs these over the grid and reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pslab.smoothing import dense_operator, smooth

ETA = 0.7
SIGMA_FIXED = 1.0
SIGMA_RANGE = (0.5, 3.0)
TOL = 1e-6  # "reached the saddle": ‖x_k‖ ≤ TOL·‖x_0‖ at some step k
ESCAPE = 1e6  # "escaped": ‖x_k‖ ≥ ESCAPE·‖x_0‖ (the unstable mode dominates; it only grows)
DEPTH_FLOOR = 1e-12  # runs stop this deep: far past TOL, only the depth statistic needs it
STEPS = 2000
METHODS = ("gd", "lsgd_fixed", "lsgd_random")
START_SETS = ("hyperplane", "antisymmetric", "lsgd_fixed_hyperplane", "generic")
START_SET_HELP = {
    "hyperplane": "x_n = 0: GD's stable subspace (dim n-1)",
    "antisymmetric": "x_n = 0, x_j = -x_{n-j}: kept and contracted by every A_σ (dim ⌊(n-1)/2⌋)",
    "lsgd_fixed_hyperplane": "stable subspace of LSGD at σ = σ_fixed (dim n-1)",
    "generic": "Gaussian points (full dimension)",
}


# ---------------------------------------------------------------- the problem


def saddle_diagonal(n: int) -> np.ndarray:
    """Diagonal of H = diag(1, …, 1, −1): one descent-escaping direction, saddle at 0."""
    h = np.ones(n)
    h[-1] = -1.0
    return h


def reflection(n: int) -> np.ndarray:
    """Index map of the grid reflection j ↦ n − j (1-based) that fixes the saddle coordinate.

    0-based this is i ↦ (n − 2 − i) mod n. Every symmetric circulant (hence every
    A_σ) commutes with it, and so does H because it fixes index n − 1.
    """
    return (n - 2 - np.arange(n)) % n


def antisymmetric_dimension(n: int) -> int:
    """⌊(n−1)/2⌋: the reflection has 1 fixed index (n odd) or 2 (n even)."""
    return (n - 1) // 2


def antisymmetric_basis(n: int) -> np.ndarray:
    """Orthonormal basis (n × ⌊(n−1)/2⌋) of {x : x_{R(i)} = −x_i} (which forces x_n = 0)."""
    r = reflection(n)
    cols = []
    for i in range(n):
        j = int(r[i])
        if i < j:
            v = np.zeros(n)
            v[i], v[j] = 1.0, -1.0
            cols.append(v / math.sqrt(2.0))
    basis = np.array(cols).T.reshape(n, len(cols))
    assert basis.shape[1] == antisymmetric_dimension(n)
    return basis


def _inverse_sqrt(a: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(a)
    return (vecs * vals**-0.5) @ vecs.T


def hessian_times(h: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Hx for H given as its diagonal (1-D) or as a symmetric matrix (2-D)."""
    return h * x if h.ndim == 1 else h @ x


def preconditioned_spectrum(h: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues μ (ascending) and eigenvectors V of A_σ⁻¹H, via A^{-1/2}HA^{-1/2}.

    ``h`` is H's diagonal or H itself (symmetric).

    A_σ⁻¹H is self-adjoint in the A_σ inner product, so its spectrum is real and
    computing it through the congruent symmetric matrix is stable (no complex
    eigenvectors, Sylvester's inertia visible directly).
    """
    n = h.shape[0]
    a_is = _inverse_sqrt(dense_operator(n, sigma)) if sigma != 0 else np.eye(n)
    hmat = np.diag(h) if h.ndim == 1 else h
    mu, w = np.linalg.eigh(a_is @ hmat @ a_is)
    return mu, a_is @ w


def stable_basis(h: np.ndarray, sigma: float, eta: float = ETA) -> np.ndarray:
    """Orthonormal basis of the stable subspace of M = I − ηA_σ⁻¹H (eigenvalues |λ| < 1)."""
    mu, v = preconditioned_spectrum(h, sigma)
    q, _ = np.linalg.qr(v[:, np.abs(1.0 - eta * mu) < 1.0])
    return q


def stable_dimension(h: np.ndarray, sigma: float, eta: float = ETA) -> int:
    """Count eigenvalues of the iteration matrix M = I − ηA_σ⁻¹H inside the unit circle."""
    mu, _ = preconditioned_spectrum(h, sigma)
    return int(np.sum(np.abs(1.0 - eta * mu) < 1.0))


def stability_margin(h: np.ndarray, sigma: float, eta: float = ETA) -> float:
    """η·max μ(A_σ⁻¹H): must be < 2 or the positive-curvature directions blow up."""
    mu, _ = preconditioned_spectrum(h, sigma)
    return float(eta * mu.max())


def unstable_normal(h: np.ndarray, sigma: float) -> np.ndarray:
    """Normal w of LSGD's stable hyperplane {x : wᵀx = 0} at fixed σ.

    The stable eigenvectors are A_σ-orthogonal to the unstable one u, so the
    hyperplane is {x : (A_σ u)ᵀx = 0}.
    """
    mu, v = preconditioned_spectrum(h, sigma)
    u = v[:, int(np.argmin(mu))]
    w = dense_operator(h.shape[0], sigma) @ u
    return w / np.linalg.norm(w)


@dataclass
class Intersection:
    """Numerical intersection of several σ's stable subspaces (float64, SVD)."""

    n: int
    sigmas: list[float]
    dimension: int  # null-space size, cut at the largest gap in the singular values
    gap: float  # that gap as a ratio (≫ 1: trustworthy; ≈ 1: lost in round-off)
    antisymmetric_residual: float  # how far the antisymmetric basis is from lying inside


def intersect_stable_subspaces(n: int, sigmas: Sequence[float], eta: float = ETA) -> Intersection:
    """x lies in every S_σ iff (I − Q_σQ_σᵀ)x = 0 for all σ: the null space of the stack.

    Each S_σ is a hyperplane whose normal varies smoothly with σ, so the stacked
    normals are nearly dependent: the smallest non-zero singular value falls about
    100× per extra pair of dimensions and reaches round-off (1e-15) near n ≈ 18,
    which is why this is only used for small n (DESIGN.md: ill-conditioned past
    n ≈ 15 in float64) and the symmetry argument gives the dimension beyond.
    """
    h = saddle_diagonal(n)
    blocks = []
    for s in sigmas:
        q = stable_basis(h, s, eta)
        blocks.append(np.eye(n) - q @ q.T)
    sv = np.linalg.svd(np.vstack(blocks), compute_uv=False)
    logs = np.log10(np.maximum(sv, 1e-300))
    cut = int(np.argmax(logs[:-1] - logs[1:]))  # sv[cut] / sv[cut+1] is the largest gap
    dim = n - (cut + 1)
    gap = float(sv[cut] / max(sv[cut + 1], 1e-300))
    basis = antisymmetric_basis(n)
    resid = max(float(np.linalg.norm(blk @ basis)) if basis.size else 0.0 for blk in blocks)
    return Intersection(n, [float(s) for s in sigmas], dim, gap, resid)


# ---------------------------------------------------------------- the methods


SigmaDraw = Callable[[np.random.Generator], float]


def sigma_schedule(method: str, sigma_fixed: float, sigma_range: tuple[float, float]) -> SigmaDraw:
    """σ for the next step: 0 for GD, constant for LSGD, a fresh uniform draw for mLSGD."""
    if method == "gd":
        return lambda rng: 0.0
    if method == "lsgd_fixed":
        return lambda rng: sigma_fixed
    if method == "lsgd_random":
        lo, hi = sigma_range
        return lambda rng: float(rng.uniform(lo, hi))
    raise ValueError(f"unknown method {method!r}")


@dataclass
class Trajectory:
    """What one start did: the smallest ‖x_k‖/‖x_0‖, and when it reached or escaped."""

    min_ratio: float
    reached_at: int | None
    escaped_at: int | None
    steps: int
    norms: list[float] = field(default_factory=list)


def descend(
    x0: np.ndarray,
    h: np.ndarray,
    draw: SigmaDraw,
    rng: np.random.Generator,
    *,
    eta: float = ETA,
    steps: int = STEPS,
    tol: float = TOL,
    escape: float = ESCAPE,
    record: bool = False,
    stop_on_reach: bool = True,
    floor: float = 0.0,
) -> Trajectory:
    """x ← x − η A_σ⁻¹ H x until ‖x‖ ≤ tol·‖x0‖ (reached), ≥ escape·‖x0‖ (escaped) or budget.

    Having been within tol of the saddle at *some* step is the criterion because
    in floating point round-off seeds the unstable direction, so a start on the
    stable set still turns round eventually. With ``stop_on_reach=False`` the run
    goes on to the turning point (or down to ``floor``), so ``min_ratio`` says how
    deep it went: the margin of the criterion.
    """
    x = np.array(x0, dtype=np.float64)
    n0 = float(np.linalg.norm(x))
    min_ratio, reached, escaped = 1.0, None, None
    norms = [1.0] if record else []
    k = 0
    for k in range(1, steps + 1):
        x = x - eta * smooth(hessian_times(h, x), draw(rng))
        ratio = float(np.linalg.norm(x)) / n0
        if record:
            norms.append(ratio)
        min_ratio = min(min_ratio, ratio)
        if reached is None and ratio <= tol:
            reached = k
            if stop_on_reach:
                break
        if ratio >= escape:
            escaped = k
            break
        if ratio <= floor:
            break
    return Trajectory(min_ratio, reached, escaped, k, norms)


def start_points(kind: str, n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random starts (rows) from one of :data:`START_SETS`."""
    z = rng.standard_normal((count, n))
    if kind == "generic":
        return z
    if kind == "hyperplane":
        z[:, -1] = 0.0
        return z
    if kind == "antisymmetric":
        return (z - z[:, reflection(n)]) / 2.0
    if kind == "lsgd_fixed_hyperplane":
        w = unstable_normal(saddle_diagonal(n), SIGMA_FIXED)
        return z - np.outer(z @ w, w)
    raise ValueError(f"unknown start set {kind!r}")


# ---------------------------------------------------------------- experiments


@dataclass
class Attraction:
    """Per (n, start set, method): how many starts reached the saddle."""

    reached: int
    escaped: int
    undecided: int
    total: int
    worst_min_ratio: float  # largest min‖x_k‖/‖x_0‖ among starts that reached (margin to tol)
    best_min_ratio: float  # smallest min ratio among starts that did not reach
    median_min_ratio: float  # over all starts (floored at DEPTH_FLOOR)

    @property
    def fraction(self) -> float:
        return self.reached / self.total if self.total else float("nan")


def attraction(
    n: int,
    kind: str,
    method: str,
    starts: int,
    seed: int,
    *,
    steps: int = STEPS,
    sigma_fixed: float = SIGMA_FIXED,
    sigma_range: tuple[float, float] = SIGMA_RANGE,
    eta: float = ETA,
) -> Attraction:
    """Run every start of one set with one method; each start gets its own σ stream."""
    set_id = START_SETS.index(kind)
    xs = start_points(kind, n, starts, np.random.default_rng([seed, n, set_id]))
    h = saddle_diagonal(n)
    draw = sigma_schedule(method, sigma_fixed, sigma_range)
    reached = escaped = 0
    worst, best = 0.0, math.inf
    depths = []
    for i, x0 in enumerate(xs):
        rng = np.random.default_rng([seed, n, set_id, METHODS.index(method), i])
        t = descend(x0, h, draw, rng, eta=eta, steps=steps, stop_on_reach=False, floor=DEPTH_FLOOR)
        depths.append(max(t.min_ratio, DEPTH_FLOOR))
        if t.reached_at is not None:
            reached += 1
            worst = max(worst, t.min_ratio)
        else:
            best = min(best, t.min_ratio)
            escaped += t.escaped_at is not None
    undecided = starts - reached - escaped
    return Attraction(reached, escaped, undecided, starts, worst, best, float(np.median(depths)))


@dataclass
class Rate:
    """Convergence on a convex quadratic: iterations to tol and fitted linear rate."""

    iterations_median: float
    iterations_max: int
    fitted_rate: float  # exp(slope of log‖x_k‖), tail of the run, median over starts
    spectral_rate: float | None  # max|1 − ημ(A_σ⁻¹H)| (None for random σ)


def convex_rate(
    h: np.ndarray,
    method: str,
    starts: int,
    seed: int,
    *,
    eta: float = ETA,
    tol: float = TOL,
    steps: int = 50_000,
    sigma_fixed: float = SIGMA_FIXED,
    sigma_range: tuple[float, float] = SIGMA_RANGE,
) -> Rate:
    """Iterations for ‖x‖ to fall by ``tol`` from Gaussian starts, and the fitted rate."""
    n = h.shape[0]
    draw = sigma_schedule(method, sigma_fixed, sigma_range)
    xs = np.random.default_rng([seed, n, 99]).standard_normal((starts, n))
    its, rates = [], []
    for i, x0 in enumerate(xs):
        rng = np.random.default_rng([seed, n, 99, METHODS.index(method), i])
        t = descend(x0, h, draw, rng, eta=eta, steps=steps, tol=tol, record=True)
        k = t.reached_at if t.reached_at is not None else t.steps
        its.append(k)
        tail = np.log(np.array(t.norms[k // 2 : k + 1]))
        slope = np.polyfit(np.arange(tail.size), tail, 1)[0] if tail.size > 2 else math.nan
        rates.append(math.exp(slope))
    spectral = None
    if method != "lsgd_random":
        sigma = 0.0 if method == "gd" else sigma_fixed
        mu, _ = preconditioned_spectrum(h, sigma)
        spectral = float(np.max(np.abs(1.0 - eta * mu)))
    return Rate(float(np.median(its)), int(max(its)), float(np.median(rates)), spectral)


def convex_spectra(n: int, seed: int) -> dict[str, np.ndarray]:
    """Convex Hessians with spectrum in (0, 1], so one η = 0.7 is stable for every method.

    ``linspace`` / ``shuffled``: diag(linspace(0.1, 1, n)), in grid order and randomly
    permuted (the order matters to A_σ⁻¹, which mixes neighbours, not to GD).
    ``laplacian``: (0.1·I − L)/4.1, a circulant whose slowest mode is the constant
    vector, which A_σ⁻¹ leaves alone: the case smoothing is designed for.
    """
    lin = np.linspace(0.1, 1.0, n)
    lap = (0.1 * np.eye(n) + dense_operator(n, 1.0) - np.eye(n)) / 4.1  # −L = A_1 − I
    return {
        "linspace": np.diag(lin),
        "shuffled": np.diag(np.random.default_rng([seed, n, 7]).permutation(lin)),
        "laplacian": lap,
    }


def condition_number(hmat: np.ndarray, sigma: float) -> float:
    """κ(A_σ⁻¹H) = μ_max/μ_min: the rate a tuned step size could reach, η aside."""
    mu, _ = preconditioned_spectrum(hmat, sigma)
    return float(mu.max() / mu.min())
