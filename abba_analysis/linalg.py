"""Truncated SVDs, exact and randomized, with deterministic signs."""

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
