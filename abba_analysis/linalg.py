"""Truncated SVDs, exact and randomized, with deterministic signs; a solver for many small
positive-definite systems."""

from __future__ import annotations

import torch

from ._validation import SeedLike, as_generator


def _flip_signs(u: torch.Tensor, vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the largest-magnitude entry of each left singular vector positive (as scikit-learn does).

    Works on stacks: ``u: (..., m, k)``, ``vh: (..., k, n)``.
    """
    idx = u.abs().argmax(dim=-2, keepdim=True)
    signs = torch.sign(u.gather(-2, idx))  # (..., 1, k)
    signs[signs == 0] = 1
    return u * signs, vh * signs.mT


def truncated_svd(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``rank`` singular triplets ``(U, S, Vh)`` of ``matrix`` (or of each matrix of a stack) by a
    full (exact) SVD."""
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    u, vh = _flip_signs(u[..., :rank], vh[..., :rank, :])
    return u, s[..., :rank], vh


def gram_truncated_svd(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``rank`` singular triplets ``(U, S, Vh)`` of one matrix from the eigendecomposition of the
    Gram matrix of its shorter side, with :func:`truncated_svd`'s signs.

    2-3.5x faster than a full SVD on CPU at 512² and 384 x 1536 (``benchmarks/bench_init_svd.py``).
    Squaring costs accuracy only for small singular values: the top right singular subspace is exact
    up to about ``eps sigma_1^2 / (sigma_rank^2 - sigma_{rank+1}^2)``, and ``U diag(S) Vh`` is the
    projection of ``matrix`` onto it. ``S`` is the norm of ``matrix V`` (accurate for that V, unlike
    the square root of a tiny eigenvalue), and ``U`` is orthonormalized, so that directions with
    singular values at rounding level (a rank-deficient matrix) still form an orthonormal basis, as
    an SVD's do.
    """
    wide = matrix.shape[-2] < matrix.shape[-1]
    tall = matrix.mT if wide else matrix  # (p, q) with q <= p: the Gram is q x q
    _, eigenvectors = torch.linalg.eigh(tall.mT @ tall)  # ascending eigenvalues
    v = eigenvectors[:, -rank:].flip(-1)
    projected = tall @ v
    s = torch.linalg.vector_norm(projected, dim=-2)
    order = torch.argsort(s, descending=True)
    projected, s, v = projected[:, order], s[order], v[:, order]
    q, r = torch.linalg.qr(projected)
    # QR may flip a column: keep its direction, so that U S = tall V up to rounding.
    u = q * torch.where(r.diagonal() < 0, -1.0, 1.0).to(q)
    u, vh = (v, u.mT) if wide else (u, v.mT)
    u, vh = _flip_signs(u, vh)
    return u, s, vh


def randomized_svd(
    matrix: torch.Tensor, rank: int, *, oversample: int = 10, power_iters: int = 4, seed: SeedLike = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``rank`` singular triplets by the randomized range finder (Halko, Martinsson & Tropp, 2011).

    The Gaussian test matrix is drawn on the host from ``seed``, so results do not depend on
    torch's global generator or on the device. Each power iteration is re-orthonormalized.
    """
    m, n = matrix.shape
    k = min(rank + oversample, m, n)
    omega = torch.from_numpy(as_generator(seed).standard_normal((n, k)))
    omega = omega.to(device=matrix.device, dtype=matrix.dtype)
    q, _ = torch.linalg.qr(matrix @ omega)
    for _ in range(power_iters):
        z, _ = torch.linalg.qr(matrix.T @ q)
        q, _ = torch.linalg.qr(matrix @ z)
    u_small, s, vh = torch.linalg.svd(q.T @ matrix, full_matrices=False)
    u, vh = _flip_signs((q @ u_small)[:, :rank], vh[:rank])
    return u, s[:rank], vh


def split_factors(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U sqrt(S), sqrt(S) Vh)``: the balanced factor pair of a truncated SVD (stacks too)."""
    root = s.sqrt()
    return u * root[..., None, :], root[..., :, None] * vh


def cholesky_solve_lanes(system: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve many small symmetric positive-definite systems stored *lane-wise*, in place.

    Parameters
    ----------
    system : (..., r, r, N) tensor
        ``system[..., :, :, j]`` is the j-th r x r matrix; overwritten by its Cholesky factor
        (lower triangle; the upper one holds scratch).
    rhs : (..., r, N) tensor
        Right-hand sides, overwritten by the solutions.

    Returns
    -------
    (..., r, N) tensor
        ``rhs``, now holding the solutions. A system that is not numerically positive definite gets a
        non-finite solution (its pivot's square root is NaN, or it divides by zero) and leaves the
        others untouched: the caller checks ``isfinite``.

    Notes
    -----
    Right-looking Cholesky and two triangular sweeps, written as ``O(r)`` element-wise operations each
    over all N systems at once, with the systems in the last (contiguous) dimension. LAPACK's batched
    solvers loop over the systems one call at a time (about 0.5 µs each for r = 8 on a CPU core), so
    for thousands of systems of up to r = 48 this layout is faster on CPU, from about N = 2048 on
    (``benchmarks/bench_small_solves.py``); for a few hundred the per-operation overhead makes it
    about 2x slower, and above r = 48 its r³ element-wise work loses to LAPACK's at any N measured.
    """
    r = system.shape[-2]
    for k in range(r):
        pivot = system[..., k, k, :].sqrt_()
        column = system[..., k + 1:, k, :].div_(pivot[..., None, :])
        system[..., k + 1:, k + 1:, :].addcmul_(column[..., :, None, :], column[..., None, :, :], value=-1)
    for k in range(r):  # L z = rhs
        rhs[..., k, :].div_(system[..., k, k, :])
        rhs[..., k + 1:, :].addcmul_(system[..., k + 1:, k, :], rhs[..., k:k + 1, :], value=-1)
    for k in range(r - 1, -1, -1):  # L^T x = z
        rhs[..., k, :].div_(system[..., k, k, :])
        rhs[..., :k, :].addcmul_(system[..., k, :k, :], rhs[..., k:k + 1, :], value=-1)
    return rhs
