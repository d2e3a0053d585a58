"""Pure functions on matrices and spectra: errors, ranks, energy and the ABBA error bracket.

Every function accepts numpy arrays or torch tensors and returns Python floats or numpy arrays.
Spectra are computed in float64 so that tail sums near zero stay accurate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._validation import ArrayLike, as_matrix, check_positive_int, row_blocks


def _pair(target: ArrayLike, approx: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    t = as_matrix(target, "target", dtype=torch.float64)
    a = as_matrix(approx, "approx", dtype=torch.float64, device=t.device)
    if t.shape != a.shape:
        raise ValueError(f"approx must have the target's shape {tuple(t.shape)}, got {tuple(a.shape)}")
    return t, a


def frobenius_error(target: ArrayLike, approx: ArrayLike) -> float:
    """Absolute Frobenius error ``||target - approx||_F``."""
    t, a = _pair(target, approx)
    return float(torch.linalg.matrix_norm(t - a))


def relative_error(target: ArrayLike, approx: ArrayLike, *, squared: bool = False) -> float:
    """Relative Frobenius error ``||target - approx||_F / ||target||_F`` (or its square).

    Examples
    --------
    >>> import numpy as np
    >>> relative_error(np.eye(2), np.zeros((2, 2)))
    1.0
    """
    t, a = _pair(target, approx)
    norm = float(torch.linalg.matrix_norm(t))
    if norm == 0.0:
        raise ValueError("relative_error is undefined for a zero target")
    err = float(torch.linalg.matrix_norm(t - a)) / norm
    return err**2 if squared else err


def spectral_error(target: ArrayLike, approx: ArrayLike, *, relative: bool = True) -> float:
    """Spectral-norm error ``||target - approx||_2``, divided by ``||target||_2`` if ``relative``."""
    t, a = _pair(target, approx)
    err = float(torch.linalg.matrix_norm(t - a, ord=2))
    return err / float(torch.linalg.matrix_norm(t, ord=2)) if relative else err


def singular_values(matrix: ArrayLike) -> np.ndarray:
    """Singular values in descending order, as a float64 numpy array."""
    m = as_matrix(matrix, "matrix", dtype=torch.float64)
    return torch.linalg.svdvals(m).cpu().numpy()


def _spectrum(matrix_or_spectrum: ArrayLike) -> np.ndarray:
    """Accept a matrix or an already computed 1-D spectrum."""
    if getattr(matrix_or_spectrum, "ndim", None) == 1:
        s = np.asarray(matrix_or_spectrum.cpu() if isinstance(matrix_or_spectrum, torch.Tensor) else matrix_or_spectrum,
                       dtype=np.float64)
        if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s < 0):
            raise ValueError("a spectrum must be a non-empty 1-D array of finite non-negative values")
        return np.sort(s)[::-1]
    return singular_values(matrix_or_spectrum)


def numerical_rank(matrix: ArrayLike, tol: float | None = None) -> int:
    """Number of singular values above ``tol``.

    The default ``tol = max(m, n) * eps * sigma_max`` follows ``numpy.linalg.matrix_rank``, with eps
    of the input's dtype (pass a spectrum and ``tol`` explicitly to choose another).
    """
    if tol is None:
        m = as_matrix(matrix, "matrix")
        eps = torch.finfo(m.dtype).eps
        s = singular_values(m)
        tol = max(m.shape) * eps * s[0]
    else:
        s = _spectrum(matrix)
    return int(np.sum(s > tol))


def effective_rank(matrix_or_spectrum: ArrayLike) -> float:
    """Entropy effective rank ``exp(H(p))``, ``p = sigma / sum(sigma)`` (Roy & Vetterli, 2007).

    Examples
    --------
    >>> import numpy as np
    >>> round(effective_rank(np.diag([1.0, 1.0, 0.0])), 6)
    2.0
    """
    s = _spectrum(matrix_or_spectrum)
    total = s.sum()
    if total == 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def stable_rank(matrix_or_spectrum: ArrayLike) -> float:
    """Stable rank ``||M||_F^2 / ||M||_2^2``, a continuous lower bound of the rank."""
    s = _spectrum(matrix_or_spectrum)
    return float(np.sum(s**2) / s[0] ** 2) if s[0] > 0 else 0.0


def energy_captured(matrix_or_spectrum: ArrayLike, rank: int) -> float:
    """Fraction ``sum_{i<=r} sigma_i^2 / sum sigma_i^2`` of the energy in the top ``rank`` directions."""
    s = _spectrum(matrix_or_spectrum)
    rank = check_positive_int(rank, "rank")
    total = np.sum(s**2)
    return float(np.sum(s[:rank] ** 2) / total) if total > 0 else 1.0


def truncated_svd_error(matrix_or_spectrum: ArrayLike, rank: int, *, relative: bool = True) -> float:
    """Error of the best rank-``rank`` approximation (Eckart-Young): ``sqrt(sum_{i>r} sigma_i^2)``.

    Divided by ``||M||_F`` when ``relative``. This is LoRA's optimal error at rank ``rank``.

    Examples
    --------
    >>> import numpy as np
    >>> round(truncated_svd_error(np.eye(4), 1), 6)  # sqrt(1 - 1/4)
    0.866025
    """
    s = _spectrum(matrix_or_spectrum)
    rank = check_positive_int(rank, "rank")
    tail = float(np.sum(s[rank:] ** 2))
    if not relative:
        return math.sqrt(tail)
    total = float(np.sum(s**2))
    if total == 0:
        raise ValueError("relative error is undefined for a zero matrix")
    return math.sqrt(tail / total)


@dataclass(frozen=True)
class Bracket:
    """Where the best ABBA error at ``(r1, r2)`` must lie, as relative Frobenius errors.

    Attributes
    ----------
    lower : float
        Truncated-SVD error at rank ``min(r1 r2, m, n)``: ABBA's rank cannot exceed it.
    upper : float
        LoRA's optimal error at rank ``max(r1, r2)``: setting one pair's product to all ones reduces
        ABBA to LoRA at the other pair's rank.
    """

    lower: float
    upper: float

    def position(self, error: float) -> float:
        """``(error - lower) / (upper - lower)``: 0 at the lower bound, 1 at LoRA's error.

        NaN when the bracket is empty (``upper == lower``).
        """
        width = self.upper - self.lower
        return float("nan") if width <= 0 else (error - self.lower) / width


def abba_bracket(matrix_or_spectrum: ArrayLike, r1: int, r2: int, *, randomized: bool = False) -> Bracket:
    """The computable bracket of the best ABBA error at ranks ``(r1, r2)``.

    A spectrum alone does not tell ``min(m, n)``; pass the matrix when ``r1 r2`` may exceed it.
    With ``randomized`` (a matrix only) just the top ``min(r1 r2, m, n)`` singular values are
    computed, by a seeded randomized SVD with 8 power iterations, and the tails come from
    ``||M||_F^2`` minus their energy: ``O(m n r1 r2)`` time and small memory for big matrices, but
    an *estimate* (randomized singular values err low, so the bounds err high, typically by < 1e-3).
    """
    r1 = check_positive_int(r1, "r1")
    r2 = check_positive_int(r2, "r2")
    if randomized:
        from .linalg import randomized_svd

        m = as_matrix(matrix_or_spectrum, "matrix")
        k = min(r1 * r2, *m.shape)
        top = randomized_svd(m, k, oversample=max(10, k // 4), power_iters=8, seed=0)[1].double().cpu().numpy()
        # Energy in float64, a block of rows at a time (a float64 copy would double the memory).
        total = sum(float(block.double().square().sum()) for block in row_blocks(m))

        def tail(r: int) -> float:
            return math.sqrt(max(total - float(np.sum(top[:r] ** 2)), 0.0) / total)

        return Bracket(lower=tail(k), upper=tail(min(max(r1, r2), k)))
    s = _spectrum(matrix_or_spectrum)
    lower = truncated_svd_error(s, min(r1 * r2, s.size))
    upper = truncated_svd_error(s, min(max(r1, r2), s.size))
    return Bracket(lower=lower, upper=upper)
