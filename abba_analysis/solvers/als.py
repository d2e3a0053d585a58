"""Exact block-coordinate descent (alternating least squares) for ABBA and HiRA.

With every factor but one fixed, both models are a *Hadamard least-squares* problem: for ABBA's
``B1``, row i of the target is fitted by ``(B1[i] A1) ⊙ P2[i]`` with ``P2 = B2 A2`` fixed, an
ordinary least-squares problem with ``r1`` unknowns per row; HiRA is the same with ``P2 = W0``.
All rows share the normal-equation structure

    G_i = A diag(P[i]^2) A^T = (P^2 @ (A^T •r A^T))[i],      g_i = A (P[i] ⊙ T[i]),

so every Gram matrix comes out of one matrix product and is solved by one batched Cholesky.
Each solve is *proximal*: it minimises ``||residual||^2 + λ_i ||x - x_old||^2``. The old value is
feasible, so the error can never rise (up to rounding), while λ_i (a small multiple of the mean
diagonal of ``G_i``) keeps rank-deficient rows solvable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .base import Callback, Factors, Problem, SolveOutput, check_range, stalled


@dataclass(frozen=True)
class ALSOptions:
    """Options of the block-coordinate solver.

    Attributes
    ----------
    max_iter : int
        Maximum number of sweeps (one sweep updates every factor once).
    tol : float
        Stop once the relative error is at most ``tol``.
    rtol : float
        Stop once a sweep improves the error by less than ``rtol`` (relative).
    ridge : float
        Proximal weight relative to the mean diagonal of each Gram matrix (``None``: 1e-10 in
        float64, 1e-6 in float32). It damps, it does not bias: the fixed points are those of the
        unregularized problem.
    extrapolate : bool
        Extrapolate between sweeps, ``y = x_k + β (x_k - x_{k-1})``, with the safeguard of Ang &
        Gillis (2019): β grows by ``growth`` after a sweep that lowers the error; a sweep that
        raises it is discarded, β shrinks by ``shrink`` and its value caps later growth.
        Discarded sweeps are not in the history, which therefore never rises.
    beta : float
        Initial extrapolation weight β.
    growth, shrink : float
        Factors by which β grows after a success and shrinks after a failure.
    """

    max_iter: int = 500
    tol: float = 0.0
    rtol: float = 1e-7
    ridge: float | None = None
    extrapolate: bool = True
    beta: float = 0.5
    growth: float = 1.1
    shrink: float = 2.0

    def __post_init__(self) -> None:
        check_range("max_iter", self.max_iter, 1)
        check_range("tol", self.tol, 0.0)
        check_range("rtol", self.rtol, 0.0)
        if self.ridge is not None:
            check_range("ridge", self.ridge, 0.0, low_open=True)
        check_range("beta", self.beta, 0.0, 1.0)
        check_range("growth", self.growth, 1.0)
        check_range("shrink", self.shrink, 1.0)


def _gram_columns(factor_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Products of column pairs (upper triangle only, as the Gram is symmetric)."""
    r = factor_t.shape[1]
    i, j = torch.triu_indices(r, r, device=factor_t.device)
    return factor_t[:, i] * factor_t[:, j], i, j


def solve_rows(target: torch.Tensor, weight: torch.Tensor, right: torch.Tensor, old: torch.Tensor, ridge: float) -> torch.Tensor:
    """Exact proximal update of ``X`` in ``target ≈ (X @ right) ⊙ weight``, row by row.

    Parameters
    ----------
    target, weight : (m, n) tensors
    right : (r, n) tensor
    old : (m, r) tensor
        The current ``X``; the proximal centre.
    ridge : float
        Proximal weight relative to the mean Gram diagonal.

    Returns
    -------
    (m, r) tensor minimising ``||target[i] - (x right) ⊙ weight[i]||^2 + λ_i ||x - old[i]||^2`` per row.
    """
    m, r = old.shape
    pairs, i, j = _gram_columns(right.T)
    packed = (weight * weight) @ pairs  # (m, r(r+1)/2): one GEMM for all Gram matrices
    gram = torch.zeros(m, r, r, dtype=target.dtype, device=target.device)
    gram[:, i, j] = packed
    gram[:, j, i] = packed
    rhs = (target * weight) @ right.T
    diag_mean = gram.diagonal(dim1=1, dim2=2).mean(dim=1)
    scale = diag_mean.max().clamp_min(torch.finfo(target.dtype).tiny)
    lam = ridge * diag_mean + torch.finfo(target.dtype).eps * scale  # keeps all-zero rows solvable
    eye = torch.eye(r, dtype=target.dtype, device=target.device)
    chol, info = torch.linalg.cholesky_ex(gram + lam[:, None, None] * eye)
    new = torch.cholesky_solve((rhs + lam[:, None] * old)[..., None], chol)[..., 0]
    failed = info != 0
    if bool(failed.any()):  # numerically indefinite: keep the old rows, which cannot raise the error
        new[failed] = old[failed]
    return new


def solve_cols(target: torch.Tensor, weight: torch.Tensor, left: torch.Tensor, old: torch.Tensor, ridge: float) -> torch.Tensor:
    """Exact proximal update of ``Y`` in ``target ≈ (left @ Y) ⊙ weight``, column by column."""
    return solve_rows(target.T, weight.T, left.T, old.T, ridge).T


def _balance(b: torch.Tensor, a: torch.Tensor) -> None:
    """Rescale each rank-one term ``b[:, k] a[k]`` so both parts have equal norm (product unchanged)."""
    nb, na = torch.linalg.vector_norm(b, dim=0), torch.linalg.vector_norm(a, dim=1)
    ok = (nb > 0) & (na > 0)
    c = torch.where(ok, (na / torch.where(ok, nb, 1)).sqrt(), torch.ones_like(nb))
    b.mul_(c)
    a.div_(c[:, None])


def _balance_pairs(f: Factors) -> None:
    """Give the two ABBA pairs equal norm (the Hadamard product is unchanged)."""
    n1 = torch.linalg.matrix_norm(f["B1"]) * torch.linalg.matrix_norm(f["A1"])
    n2 = torch.linalg.matrix_norm(f["B2"]) * torch.linalg.matrix_norm(f["A2"])
    if n1 > 0 and n2 > 0:
        c = (n2 / n1) ** 0.25
        f["B1"].mul_(c), f["A1"].mul_(c), f["B2"].div_(c), f["A2"].div_(c)


def _abba_sweep(target: torch.Tensor, f: Factors, ridge: float) -> torch.Tensor:
    """Update B2, A2, B1, A1 in turn; return the new residual ``P1 ⊙ P2 - target``.

    B is updated before A in each pair, so a LoRA-style pair (B = 0, A random) gets a useful first
    solve; starting with its A would find a zero design and keep A at zero.
    """
    p1 = f["B1"] @ f["A1"]
    f["B2"] = solve_rows(target, p1, f["A2"], f["B2"], ridge)
    f["A2"] = solve_cols(target, p1, f["B2"], f["A2"], ridge)
    p2 = f["B2"] @ f["A2"]
    f["B1"] = solve_rows(target, p2, f["A1"], f["B1"], ridge)
    f["A1"] = solve_cols(target, p2, f["B1"], f["A1"], ridge)
    return (f["B1"] @ f["A1"]) * p2 - target


def _hira_sweep(target: torch.Tensor, base: torch.Tensor, f: Factors, ridge: float) -> torch.Tensor:
    f["B"] = solve_rows(target, base, f["A"], f["B"], ridge)
    f["A"] = solve_cols(target, base, f["B"], f["A"], ridge)
    return base * (f["B"] @ f["A"]) - target


class ALS:
    """Exact block-coordinate descent: every factor update solves its least-squares problem exactly."""

    name = "als"
    methods = ("hira", "abba")
    iterative = True
    Options = ALSOptions

    def solve(
        self,
        problem: Problem,
        factors: Factors | None,
        options: ALSOptions,
        callback: Callback | None = None,
        rng: np.random.Generator | None = None,
    ) -> SolveOutput:
        if factors is None:
            raise ValueError("the als solver needs starting factors")
        target = problem.target
        ridge = options.ridge if options.ridge is not None else (1e-10 if target.dtype == torch.float64 else 1e-6)
        target_norm = float(torch.linalg.matrix_norm(target))
        abba = problem.method.name == "abba"

        def sweep(f: Factors) -> float:
            if abba:
                residual = _abba_sweep(target, f, ridge)
                _balance(f["B1"], f["A1"]), _balance(f["B2"], f["A2"]), _balance_pairs(f)
            else:
                residual = _hira_sweep(target, problem.base, f, ridge)
                _balance(f["B"], f["A"])
            return float(torch.linalg.matrix_norm(residual)) / target_norm

        x = {k: v.detach().clone() for k, v in factors.items()}
        history = [problem.relative_error(x)]
        y, beta, beta_cap = x, options.beta, 1.0
        status, message = "max_iter", f"ran all {options.max_iter} sweeps"
        for it in range(1, options.max_iter + 1):
            candidate = {k: v.clone() for k, v in y.items()}
            error = sweep(candidate)
            if options.extrapolate and y is not x and not error < history[-1]:
                # The extrapolated sweep lost ground: discard it, damp β, redo a plain sweep.
                beta_cap, beta = beta, beta / options.shrink
                candidate = {k: v.clone() for k, v in x.items()}
                error = sweep(candidate)
            if not math.isfinite(error):
                status, message = "diverged", f"NaN/Inf at sweep {it}; returned the best iterate"
                break
            previous, x = x, candidate
            history.append(error)
            if options.extrapolate:
                y = {k: x[k] + beta * (x[k] - previous[k]) for k in x}
                beta = min(beta_cap, beta * options.growth)
            else:
                y = x
            if callback is not None and callback(it, error, x):
                status, message = "stopped", f"stopped by the callback at sweep {it}"
                break
            if error <= options.tol:
                status, message = "converged", f"error {error:.3g} <= tol after {it} sweeps"
                break
            if stalled(history, 1, options.rtol):
                status, message = "converged", f"improvement below rtol after {it} sweeps"
                break
        return SolveOutput(x, history, len(history) - 1, status, message)
