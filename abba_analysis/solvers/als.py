"""Exact block-coordinate descent (alternating least squares) for ABBA and HiRA.

With every factor but one fixed, both models are a *Hadamard least-squares* problem: for ABBA's
``B1``, row i of the target is fitted by ``(B1[i] A1) ⊙ P2[i]`` with ``P2 = B2 A2`` fixed, an
ordinary least-squares problem with ``r1`` unknowns per row; HiRA is the same with ``P2 = W0``.
All rows share the normal-equation structure

    G_i = A diag(P[i]^2) A^T = (P^2 @ (A^T •r A^T))[i],      g_i = A (P[i] ⊙ T[i]),

so every Gram matrix comes out of one matrix product and is solved by one batched Cholesky. For
ABBA the weight ``P`` is itself of rank r', and the Grams need no m x n product at all
(:func:`lowrank_weight_gram`).
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
        unregularized problem. Adaptive: in exact arithmetic a plain sweep cannot raise the error, so
        one that does (float32 rounding in nearly singular Gram matrices, which otherwise lets the
        unidentifiable directions of the factors blow up) is discarded and retried with ten times
        the ridge, which then decays back.
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


def _outer_rows(x: torch.Tensor) -> torch.Tensor:
    """``(p, r) -> (p, r*r)``: row i is ``kron(x[i], x[i])``."""
    return (x[:, :, None] * x[:, None, :]).reshape(x.shape[0], -1)


def dense_weight_gram(squared_weight: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``G[i] = basis diag(squared_weight[i]) basis^T`` for every row i: one GEMM, ``O(p n r^2)``.

    ``squared_weight: (p, n)`` (the weight squared element-wise, computed once by the caller and
    shared by the row and column updates), ``basis: (r, n)`` -> ``(p, r, r)``.
    """
    r = basis.shape[0]
    return (squared_weight @ _outer_rows(basis.T)).reshape(-1, r, r)


def lowrank_weight_gram(left: torch.Tensor, right: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``dense_weight_gram(left @ right, basis)`` without forming the weight: ``O((p + n) q^2 r^2)``.

    With ``weight = left @ right`` of rank q, ``weight[i, j]^2 = sum_{c,d} left[i,c] left[i,d]
    right[c,j] right[d,j]``, so all Gram matrices are ``(left •r left) @ K`` with the small
    ``K = (right^T •r right^T)^T (basis^T •r basis^T)``. For ABBA, where the weight is the other
    pair's product, this replaces an ``m x n x r^2`` product by two of size ``(m + n) x q^2 x r^2``.
    """
    r = basis.shape[0]
    kernel = _outer_rows(right.T).T @ _outer_rows(basis.T)  # (q^2, r^2)
    return (_outer_rows(left) @ kernel).reshape(-1, r, r)


def lowrank_route_is_cheaper(p: int, q: int, n: int) -> bool:
    """Whether :func:`lowrank_weight_gram` (``(p + n) q^2 r^2``) beats the dense route (``p n r^2``)
    for a ``p x n`` weight of rank q: when q is below about ``sqrt(min(p, n))``. Symmetric in p and n,
    so one answer serves the row and the column updates."""
    return (p + n) * q * q < p * n


def proximal_solve(gram: torch.Tensor, rhs: torch.Tensor, old: torch.Tensor, ridge: float) -> torch.Tensor:
    """Solve ``(G_i + λ_i I) x_i = rhs_i + λ_i old_i`` for every i by one batched Cholesky.

    ``λ_i = ridge * mean(diag G_i)`` plus a floor of machine epsilon times the largest such mean,
    which keeps all-zero rows solvable. Rows whose factorization fails keep their old value, which
    cannot raise the error.
    """
    r = gram.shape[-1]
    diag_mean = gram.diagonal(dim1=1, dim2=2).mean(dim=1)
    floor = torch.finfo(gram.dtype).eps * diag_mean.max().clamp_min(torch.finfo(gram.dtype).tiny)
    lam = ridge * diag_mean + floor
    eye = torch.eye(r, dtype=gram.dtype, device=gram.device)
    chol, info = torch.linalg.cholesky_ex(gram + lam[:, None, None] * eye)
    new = torch.cholesky_solve((rhs + lam[:, None] * old)[..., None], chol)[..., 0]
    failed = info != 0
    if bool(failed.any()):
        new[failed] = old[failed]
    return new


def solve_rows(weighted_target: torch.Tensor, right: torch.Tensor, gram: torch.Tensor, old: torch.Tensor,
               ridge: float) -> torch.Tensor:
    """Exact proximal update of ``X`` in ``target ≈ (X @ right) ⊙ weight``, row by row.

    Parameters
    ----------
    weighted_target : (m, n) tensor
        ``target ⊙ weight``.
    right : (r, n) tensor
    gram : (m, r, r) tensor
        ``right diag(weight[i]^2) right^T`` for each row (:func:`dense_weight_gram` or
        :func:`lowrank_weight_gram`).
    old : (m, r) tensor
        The current ``X``; the proximal centre.
    ridge : float
        Proximal weight relative to the mean Gram diagonal.

    Returns
    -------
    (m, r) tensor minimising ``||target[i] - (x right) ⊙ weight[i]||^2 + λ_i ||x - old[i]||^2`` per row.
    """
    return proximal_solve(gram, weighted_target @ right.T, old, ridge)


def solve_cols(weighted_target: torch.Tensor, left: torch.Tensor, gram: torch.Tensor, old: torch.Tensor,
               ridge: float) -> torch.Tensor:
    """Exact proximal update of ``Y`` in ``target ≈ (left @ Y) ⊙ weight``, column by column.

    ``gram[j] = left^T diag(weight[:, j]^2) left``. The product is taken on the row-major
    ``(m, n)`` layout: element-wise work on transposed views would be strided and slow.
    """
    return proximal_solve(gram, (left.T @ weighted_target).T, old.T, ridge).T


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
    solve; starting with its A would find a zero design and keep A at zero. In-place products keep
    the working set at three m x n tensors besides the target.
    """
    m, n = target.shape
    for (b, a), (b_other, a_other) in ((("B2", "A2"), ("B1", "A1")), (("B1", "A1"), ("B2", "A2"))):
        bo, ao = f[b_other], f[a_other]
        weight = bo @ ao
        weighted = torch.mul(target, weight)
        if lowrank_route_is_cheaper(m, bo.shape[1], n):
            f[b] = solve_rows(weighted, f[a], lowrank_weight_gram(bo, ao, f[a]), f[b], ridge)
            f[a] = solve_cols(weighted, f[b], lowrank_weight_gram(ao.T, bo.T, f[b].T), f[a], ridge)
        else:
            squared = weight * weight
            f[b] = solve_rows(weighted, f[a], dense_weight_gram(squared, f[a]), f[b], ridge)
            f[a] = solve_cols(weighted, f[b], dense_weight_gram(squared.T, f[b].T), f[a], ridge)
            del squared
        del weighted
    residual = f["B1"] @ f["A1"]
    return residual.mul_(weight).sub_(target)


def _hira_sweep(target: torch.Tensor, base: torch.Tensor, f: Factors, ridge: float) -> torch.Tensor:
    """Update B, then A. The products with W0 are rebuilt each sweep rather than kept for the fit:
    they are cheap next to the Gram GEMMs, and keeping them would add two m x n tensors to the peak."""
    weighted, squared = target * base, base * base
    f["B"] = solve_rows(weighted, f["A"], dense_weight_gram(squared, f["A"]), f["B"], ridge)
    f["A"] = solve_cols(weighted, f["B"], dense_weight_gram(squared.T, f["B"].T), f["A"], ridge)
    del weighted, squared
    return (f["B"] @ f["A"]).mul_(base).sub_(target)


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
        base_ridge = ridge

        def sweep(f: Factors) -> float:
            if abba:
                residual = _abba_sweep(target, f, ridge)
                _balance(f["B1"], f["A1"]), _balance(f["B2"], f["A2"]), _balance_pairs(f)
            else:
                residual = _hira_sweep(target, problem.base, f, ridge)
                _balance(f["B"], f["A"])
            return float(torch.linalg.matrix_norm(residual)) / target_norm

        def plain_sweep() -> tuple[Factors, float]:
            candidate = {k: v.clone() for k, v in x.items()}
            return candidate, sweep(candidate)

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
                candidate, error = plain_sweep()
            retries = 0
            while error > history[-1] * (1 + 1e-6) and retries < 3:
                # A plain sweep can only rise by rounding: discard it and retry with a stronger ridge.
                ridge *= 10
                candidate, error = plain_sweep()
                retries += 1
            if error > history[-1] * (1 + 1e-6):
                status, message = "converged", f"no sweep lowers the error at this precision (sweep {it})"
                break
            ridge = max(base_ridge, ridge / 2)
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
