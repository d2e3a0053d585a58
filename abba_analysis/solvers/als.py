"""Block-coordinate descent (alternating least squares) for ABBA and HiRA.

ABBA fits start with inexact sweeps (:func:`inexact_update`: a few preconditioned conjugate-gradient
steps per factor, heavy per-block momentum) and finish with exact ones; HiRA fits sweep exactly.

With every factor but one fixed, both models are a *Hadamard least-squares* problem: for ABBA's
``B1``, row i of the target is fitted by ``(B1[i] A1) ⊙ P2[i]`` with ``P2 = B2 A2`` fixed, an
ordinary least-squares problem with ``r1`` unknowns per row; HiRA is the same with ``P2 = W0``.
All rows share the normal-equation structure

    G_i = A diag(P[i]^2) A^T = (P^2 @ (A^T •r A^T))[i],      g_i = A (P[i] ⊙ R[i]),

with ``R = (B A) ⊙ P - T`` the current residual, so every Gram matrix comes out of one matrix
product, and the rows' corrections ``δ_i = -(G_i + λ_i I)^{-1} g_i`` out of one batched solve.
Solving for the correction from the residual's gradient, rather than for the new value from
``A (P[i] ⊙ T[i])``, keeps float32 fits descending near a minimum, where the new value's
right-hand side and ``G_i x_i`` nearly cancel. The r x r systems are solved in float64. For ABBA the
weight ``P`` is itself of rank r', and the Grams need no m x n product at all
(:func:`lowrank_weight_gram`) when that is cheaper.
Each solve is *proximal*: it minimises ``||residual||^2 + λ_i ||x - x_old||^2``. The old value is
feasible, so the error can never rise (up to rounding), while λ_i (a small multiple of the mean
diagonal of ``G_i``) keeps rank-deficient rows solvable.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..linalg import cholesky_solve_lanes
from ..workspace import Workspace, product, scratch
from .base import Callback, Factors, Problem, SolveOutput, check_range, stalled, unbatch


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
        Per-block momentum (the Hadamard-decomposition literature's, Wertz, Vandaele & Gillis, 2025):
        each factor is extrapolated as soon as it is updated, ``x ← x⁺ + β (x⁺ - x)`` with x its
        value at the sweep's start, and the next factor is solved against it (ABBA's pairs then
        update A before B), with β at most :data:`BLOCK_BETA_MAX`, from a target's first sweep that
        gains less than :data:`MOMENTUM_SWITCH` on: before that, plain sweeps shrink the error faster
        than momentum lets them (a fit that can reach zero error would fall by only about β per
        sweep). Safeguarded as Ang & Gillis (2019): β grows by ``growth`` after a sweep that gains
        more than ``rtol``; a sweep that does not is discarded and replaced by a plain one, β shrinks
        by ``shrink`` and its value caps later growth. Discarded sweeps are not in the history,
        which therefore never rises. ``benchmarks/bench_momentum.py`` compares it with the
        literature's own scheme on the same solves.
    beta : float
        Initial extrapolation weight β.
    growth, shrink : float
        Factors by which β grows after a success and shrinks after a failure.
    inexact : bool
        ABBA fits whose exact sweeps would need the dense Gram products (``min(r1, r2)`` at least
        about ``sqrt(min(m, n) / 2)``, :func:`lowrank_route_is_cheaper`) first sweep with *inexact*
        block updates (the default): each factor moves by :data:`INEXACT_CG_STEPS` steps of
        preconditioned conjugate gradients on its normal equations instead of the exact solve, and
        is extrapolated at once with per-block momentum of weight :data:`INEXACT_BETA`
        (:func:`inexact_update`). Such a sweep costs ``O(m n (r1 + r2))`` against the dense exact
        sweep's ``O(m n (r1² + r2²))``, and the heavy momentum it allows crosses the flat valleys of
        these fits in far fewer sweeps. Once an inexact sweep gains less than :data:`INEXACT_RTOL`
        (or none lowers the error), exact sweeps take over from there and finish the fit under the
        same stopping rule, so it ends where exact block updates gain less than ``rtol`` too. At
        smaller ranks the exact sweeps' low-rank Gram route is as cheap, and they run alone.
        ``benchmarks/bench_abba_solvers.py`` times both settings against Adam. False: exact sweeps
        only. HiRA fits always sweep exactly.
    """

    max_iter: int = 500
    tol: float = 0.0
    rtol: float = 1e-7
    ridge: float | None = None
    extrapolate: bool = True
    beta: float = 0.5
    growth: float = 1.1
    shrink: float = 2.0
    inexact: bool = True

    def __post_init__(self) -> None:
        check_range("max_iter", self.max_iter, 1)
        check_range("tol", self.tol, 0.0)
        check_range("rtol", self.rtol, 0.0)
        if self.ridge is not None:
            check_range("ridge", self.ridge, 0.0, low_open=True)
        check_range("beta", self.beta, 0.0, 1.0)
        check_range("growth", self.growth, 1.0)
        check_range("shrink", self.shrink, 1.0)


def _outer_rows(x: torch.Tensor, workspace: Workspace | None, name: str) -> torch.Tensor:
    """``(..., p, r) -> (..., p, r*r)``: row i is ``kron(x[i], x[i])`` (in the workspace's ``name``)."""
    column, row = x[..., :, None], x[..., None, :]
    return torch.mul(column, row, out=scratch(workspace, name, column, row)).flatten(-2)


@functools.lru_cache(maxsize=64)
def _symmetric_layout(r: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(rows, cols, position)``: the r(r+1)/2 entries of an r x r upper triangle, and for each of the
    r² entries of a symmetric matrix (row-major) its place among them."""
    rows, cols = torch.triu_indices(r, r)
    position = torch.empty(r, r, dtype=torch.long)
    position[rows, cols] = position[cols, rows] = torch.arange(len(rows))
    return rows.to(device), cols.to(device), position.flatten().to(device)


#: Entries added to each row of the Gram matrices' ``(r², p)`` storage (:func:`dense_weight_gram`). With p a
#: multiple of a large power of two (512, 1024, ...) the solver's copy of the systems out of that layout,
#: which reads one entry every p, maps its reads to a few cache sets; 8 more entries per row spread
#: them, and cost nothing where p is not such a multiple (``benchmarks/bench_gram.py``).
GRAM_ROW_PADDING = 8


def dense_weight_gram(squared_weight: torch.Tensor, basis: torch.Tensor,
                      workspace: Workspace | None = None) -> torch.Tensor:
    """``G[i] = basis diag(squared_weight[i]) basis^T`` for every row i: one GEMM, ``O(p n r(r+1)/2)``.

    ``squared_weight: (..., p, n)`` (the weight squared element-wise, computed once by the caller
    and shared by the row and column updates), ``basis: (..., r, n)`` -> ``(..., p, r, r)``.
    The Grams are symmetric, so the GEMM computes each distinct entry once (half of the r² products
    a full one would) and copies it to both places: bit-identical to the full product and faster
    from r = 8 on (``benchmarks/bench_gram.py``). The result is a view of storage laid out
    ``(..., r, r, p + GRAM_ROW_PADDING)`` (the workspace's ``"gram"`` buffer when one is given): the
    systems of each entry side by side, as :func:`proximal_step`'s lane-wise solver takes them.
    """
    r = basis.shape[-2]
    rows, cols, position = _symmetric_layout(r, basis.device)
    pair_shape = (*basis.shape[:-2], len(rows), basis.shape[-1])

    def picked(index: torch.Tensor, name: str) -> torch.Tensor:
        return torch.index_select(basis, -2, index, out=None if workspace is None else workspace.like(name, pair_shape, basis))

    pairs = picked(rows, "pairs").mul_(picked(cols, "pairs_other"))  # (..., r(r+1)/2, n)
    packed = product(pairs, squared_weight.mT, workspace, "packed_gram")  # (..., r(r+1)/2, p)
    p = packed.shape[-1]
    shape = (*packed.shape[:-2], r * r, p + GRAM_ROW_PADDING)
    storage = (packed.new_empty(shape) if workspace is None else workspace.like("gram", shape, packed))[..., :p]
    full = torch.index_select(packed, -2, position, out=storage)
    return full.unflatten(-2, (r, r)).movedim(-1, -3)


def lowrank_weight_gram(left: torch.Tensor, right: torch.Tensor, basis: torch.Tensor,
                        workspace: Workspace | None = None) -> torch.Tensor:
    """``dense_weight_gram(left @ right, basis)`` without forming the weight: ``O((p + n) q^2 r^2)``.

    With ``weight = left @ right`` of rank q, ``weight[i, j]^2 = sum_{c,d} left[i,c] left[i,d]
    right[c,j] right[d,j]``, so all Gram matrices are ``(left •r left) @ K`` with the small
    ``K = (right^T •r right^T)^T (basis^T •r basis^T)``. For ABBA, where the weight is the other
    pair's product, this replaces an ``m x n x r^2`` product by two of size ``(m + n) x q^2 x r^2``.
    """
    r = basis.shape[-2]
    left, right, basis = left.double(), right.double(), basis.double()  # small: float64 costs little
    # Buffers of their own: the dense route's "outer" is in the fit's dtype, and an ABBA fit can take
    # both routes (one per pair).
    kernel = (_outer_rows(right.mT, workspace, "outer_weight").mT
              @ _outer_rows(basis.mT, workspace, "outer_basis"))  # (..., q^2, r^2)
    return product(_outer_rows(left, workspace, "outer_left"), kernel, workspace, "lowrank_gram").unflatten(-1, (r, r))


def default_ridge(dtype: torch.dtype) -> float:
    """The proximal weight of exact block solves, relative to each Gram matrix's mean diagonal, when
    none is given (:attr:`ALSOptions.ridge`): 1e-10 in float64, 1e-6 in lower precisions."""
    return 1e-10 if dtype == torch.float64 else 1e-6


def lowrank_route_is_cheaper(p: int, q: int, n: int, dtype: torch.dtype) -> bool:
    """Whether :func:`lowrank_weight_gram` (``(p + n) q^2 r^2``, in float64) beats the dense route
    (``p n r^2``, in the fit's dtype) for a ``p x n`` weight of rank q: when q is below about
    ``sqrt(min(p, n))``, or ``sqrt(min(p, n) / 2)`` for a float32 fit, whose float64 products cost
    about twice as much. Symmetric in p and n, so one answer serves the row and the column updates.

    The low-rank route sums signed products of the factors, and in float32 that cancellation costs
    the Grams enough accuracy to stall fits on real weight deltas; the dense route squares the weight
    entry-wise first, so it stays in the fit's dtype."""
    penalty = 1 if dtype == torch.float64 else 2
    return penalty * (p + n) * q * q < p * n


#: Per-block momentum starts after a target's first sweep that lowered its
#: error by less than this fraction. Plain sweeps that gain more are what a fit that can reach zero
#: error does (orders of magnitude per sweep), and momentum would hold it to a rate of about β.
MOMENTUM_SWITCH = 0.1

#: The largest β of per-block momentum in exact sweeps. Extrapolating a block after its update
#: leaves the fast modes of the iteration damped only by β per sweep (between sweeps, the next sweep
#: damps them), so at β = 1 the iterate oscillates and the error stalls.
BLOCK_BETA_MAX = 0.9

#: Conjugate-gradient steps per factor of an inexact sweep (:attr:`ALSOptions.inexact`): one step needs more
#: sweeps, three cost more per sweep than they save (benchmarks/RESULTS.md, "The default ABBA solver").
INEXACT_CG_STEPS = 2

#: Inexact sweeps hand over to exact ones once a sweep gains less than this (relative), or ``rtol`` if larger.
INEXACT_RTOL = 1e-4

#: Inexact sweeps take at most this share of ``max_iter``; exact sweeps get the rest. Where exact sweeps
#: converge much faster (very sparse targets near exact representation) the inexact ones crawl, and a fit
#: that spent its budget on them ended far above exact sweeps alone (benchmarks/RESULTS.md).
INEXACT_SHARE = 0.25

#: The per-block momentum weight of inexact sweeps (from the sweep :data:`MOMENTUM_SWITCH` names) and its cap.
#: Inexact updates overshoot less than exact ones, which bear at most :data:`BLOCK_BETA_MAX`; a momentum
#: grown from 0.5 instead was about 3x slower to Adam's error (benchmarks/RESULTS.md).
INEXACT_BETA = 0.95

#: From this many systems on (per proximal step, all targets together) CPU fits solve r x r systems up to
#: :data:`LANE_SOLVE_MAX_RANK` lane-wise (:func:`~abba_analysis.linalg.cholesky_solve_lanes`); below it
#: LAPACK's batched LU is faster (``benchmarks/bench_small_solves.py``).
LANE_SOLVE_MIN_SYSTEMS = 2048

#: Above this r, LAPACK's batched LU is as fast as the lane-wise solve or faster at every batch measured
#: (``benchmarks/bench_small_solves.py``): the lane-wise solve's work grows as r³ element-wise passes.
LANE_SOLVE_MAX_RANK = 48


def proximal_step(gram: torch.Tensor, gradient: torch.Tensor, ridge: torch.Tensor,
                  workspace: Workspace | None = None) -> torch.Tensor:
    """Solve ``(G_i + λ_i I) δ_i = -gradient_i`` for every row i of every target by one batched
    solve: the exact proximal update is ``x_i + δ_i``.

    ``gram: (K, p, r, r)``, ``gradient: (K, p, r)``, ``ridge: (K,)``. ``λ_i = ridge * mean(diag G_i)``
    plus a floor of machine epsilon times the target's largest such mean, which keeps all-zero rows
    solvable. The r x r systems are solved in float64 whatever the factors' dtype (they are small);
    rows whose system is singular do not move, which cannot raise the error.

    Batches of at least :data:`LANE_SOLVE_MIN_SYSTEMS` systems of at most :data:`LANE_SOLVE_MAX_RANK`
    unknowns on CPU are solved by a lane-wise Cholesky; a system it finds not positive definite
    (possible only through rounding) falls back to LU, so both routes give the same steps up to
    rounding.
    """
    workspace = workspace or Workspace()  # without one, the float64 systems are new tensors
    k, p, r = gradient.shape
    lanes = gram.device.type == "cpu" and k * p >= LANE_SOLVE_MIN_SYSTEMS and r <= LANE_SOLVE_MAX_RANK
    if lanes:
        system = workspace.get("system", (k, r, r, p), torch.float64, gram.device)
        system.copy_(gram.permute(0, 2, 3, 1))
        diagonal = system.diagonal(dim1=1, dim2=2)  # (K, p, r), like the row-major route's
    else:  # a float64 copy: the ridge goes on its diagonal in place
        system = workspace.get("system", (k, p, r, r), torch.float64, gram.device).copy_(gram)
        diagonal = system.diagonal(dim1=-2, dim2=-1)
    diag_mean = diagonal.mean(dim=-1)  # (K, p)
    floor = torch.finfo(torch.float64).eps * diag_mean.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    shift = ridge.to(system)[:, None] * diag_mean + floor  # (K, p)
    diagonal.add_(shift[..., None])
    rhs = gradient.double().neg()  # not neg_: a float64 gradient would be negated for the caller
    if lanes:
        step = cholesky_solve_lanes(system, rhs.mT.contiguous()).mT
        failed = ~torch.isfinite(step).all(dim=-1)
        if bool(failed.any()):
            step[failed] = _lu_step(gram[failed].double(), shift[failed], rhs[failed])
        return step.to(gradient.dtype)
    return _lu_step(system, None, rhs).to(gradient.dtype)


def _lu_step(system: torch.Tensor, shift: torch.Tensor | None, rhs: torch.Tensor) -> torch.Tensor:
    """LU solve of ``(system + shift I) x = rhs`` for a stack of systems (``shift`` None: already on
    the diagonal); singular systems, and any whose solution is not finite, give x = 0. LU rather than LAPACK's Cholesky: the systems are
    positive definite, so pivoting is stable, and it is about twice as fast on CPU for batches of
    small matrices (measured)."""
    if shift is not None:
        system.diagonal(dim1=-2, dim2=-1).add_(shift[..., None])
    # The systems are symmetric: their transposed view is the column-major layout LAPACK factors in
    # place, where the row-major one would be copied first (``benchmarks/bench_small_solves.py``).
    step, info = torch.linalg.solve_ex(system.mT, rhs[..., None])
    step = step[..., 0]
    # LAPACK can also return NaN with info 0, for a system that float32 rounding of its Gram matrix
    # left indefinite despite the ridge (seen on a 0.2%-sparse 768 x 768 target at r = 36).
    failed = (info != 0) | ~torch.isfinite(step).all(dim=-1)
    if bool(failed.any()):
        step[failed] = 0
    return step


def residual(left: torch.Tensor, right: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
             workspace: Workspace | None = None) -> torch.Tensor:
    """``(left @ right) ⊙ weight - target``, in place on one m x n tensor (the workspace's
    ``"residual"`` buffer when one is given)."""
    return product(left, right, workspace, "residual").mul_(weight).sub_(target)


def weighted_residual(left: torch.Tensor, right: torch.Tensor, weight: torch.Tensor,
                      target: torch.Tensor, workspace: Workspace | None = None) -> torch.Tensor:
    """:func:`residual` ``⊙ weight``: the factor gradients of ``½||(left @ right) ⊙ weight - target||^2``
    are its products with the factors."""
    return residual(left, right, weight, target, workspace).mul_(weight)


def update_rows(target: torch.Tensor, weight: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
                gram: torch.Tensor, ridge: torch.Tensor, workspace: Workspace | None = None) -> torch.Tensor:
    """Exact proximal update of ``X = left`` in ``target ≈ (X @ right) ⊙ weight``, row by row, per target.

    Parameters
    ----------
    target : (K, m, n) tensor
    weight : (K, m, n) tensor, or (1, m, n) shared by the targets
    left : (K, m, r) tensor
        The current ``X``; the proximal centre.
    right : (K, r, n) tensor
    gram : (K, m, r, r) tensor
        ``right diag(weight[i]^2) right^T`` for each row (:func:`dense_weight_gram` or
        :func:`lowrank_weight_gram`).
    ridge : (K,) tensor
        Proximal weight per target, relative to the mean Gram diagonal.
    workspace : Workspace, optional
        Scratch storage for the m x n residual and the float64 systems, reused across calls (its
        ``"residual"`` and ``"system"`` buffers are overwritten).

    Returns
    -------
    (K, m, r) tensor: the minimiser of ``||target[i] - (x right) ⊙ weight[i]||^2 +
    λ_i ||x - left[i]||^2`` for each row i.

    Notes
    -----
    The normal equations are solved for the *correction*, from the gradient of the current residual,
    not for the new value from ``right (weight ⊙ target)``: near a minimum that right-hand side and
    ``G x`` nearly cancel, and in float32 their rounding (relative to the target, not to the
    gradient) would stall the descent well above the minimum.
    """
    gradient = weighted_residual(left, right, weight, target, workspace) @ right.mT
    return left + proximal_step(gram, gradient, ridge, workspace)


def update_cols(target: torch.Tensor, weight: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
                gram: torch.Tensor, ridge: torch.Tensor, workspace: Workspace | None = None) -> torch.Tensor:
    """Exact proximal update of ``Y = right`` in ``target ≈ (left @ Y) ⊙ weight``, column by column.

    ``gram[j] = left^T diag(weight[:, j]^2) left``. The products are taken on the row-major
    ``(m, n)`` layout: element-wise work on transposed views would be strided and slow.
    """
    gradient = (left.mT @ weighted_residual(left, right, weight, target, workspace)).mT
    return right + proximal_step(gram, gradient, ridge, workspace).mT


def inexact_update(target: torch.Tensor, weight: torch.Tensor, squared: torch.Tensor, left: torch.Tensor,
                   right: torch.Tensor, rows: bool, steps: int = INEXACT_CG_STEPS,
                   workspace: Workspace | None = None) -> torch.Tensor:
    """An inexact update of ``left`` (``rows``) or ``right`` in ``target ≈ (left @ right) ⊙ weight``:
    ``steps`` steps of preconditioned conjugate gradients on each row's (column's) normal equations,
    from the current value.

    Parameters
    ----------
    target, weight, squared : (K, m, n) tensors (``weight`` and ``squared = weight ** 2`` may be (1, m, n))
    left : (K, m, r) tensor
    right : (K, r, n) tensor
    rows : bool
        Update ``left`` row by row (True) or ``right`` column by column (False).
    steps : int
        Conjugate-gradient steps; each costs two products of ``O(m n r)`` and one element-wise pass.
    workspace : Workspace, optional
        Scratch storage for the m x n temporaries.

    Returns
    -------
    The updated factor. Row i's system is ``G_i δ = -g_i`` with ``G_i = right diag(weight[i]^2)
    right^T``, never formed: its products with a direction ``V`` are ``((V @ right) ⊙ squared) @
    right^T`` for all rows at once. Each row (column) runs its own conjugate-gradient recurrence, so
    every step lowers each row's quadratic model and the error never rises (in exact arithmetic).
    The preconditioner replaces ``squared`` by the outer product of its row and column means,
    ``a_i b_j``: row i's system becomes ``a_i M`` with one ``M = right diag(b) right^T`` per
    target, so one r x r Cholesky factor (float64) serves every row.
    """
    # Rows: the rank dimension of (K, m, r) and the dimension a row's weights run along are both -1.
    along, across = (-1, -2) if rows else (-2, -1)
    tiny = torch.finfo(squared.dtype).tiny
    weighted = weighted_residual(left, right, weight, target, workspace)
    scale = squared.mean(dim=along, keepdim=True)  # a: (K, m, 1) or (K, 1, n)
    spread = squared.mean(dim=across, keepdim=True) / scale.mean(dim=across, keepdim=True).clamp_min(tiny)
    scale = scale.clamp_min(tiny)
    if rows:
        gradient, metric = weighted @ right.mT, (right * spread) @ right.mT
    else:
        gradient, metric = left.mT @ weighted, left.mT @ (left * spread)
    metric = metric.double()
    diagonal_mean = metric.diagonal(dim1=-2, dim2=-1).mean(dim=-1)
    shift = 1e-6 * diagonal_mean + torch.finfo(torch.float64).tiny
    metric.diagonal(dim1=-2, dim2=-1).add_(shift[:, None])
    cholesky, info = torch.linalg.cholesky_ex(metric)
    if bool((info != 0).any()):  # only through rounding: those targets go unpreconditioned
        cholesky[info != 0] = torch.eye(metric.shape[-1], dtype=torch.float64, device=metric.device)

    def precondition(v: torch.Tensor) -> torch.Tensor:
        z = torch.cholesky_solve(v.double().mT, cholesky).mT if rows else torch.cholesky_solve(v.double(), cholesky)
        return z.to(v.dtype).div_(scale)

    def hessian(v: torch.Tensor) -> torch.Tensor:
        if rows:
            return product(v, right, workspace, "direction").mul_(squared) @ right.mT
        return left.mT @ product(left, v, workspace, "direction").mul_(squared)

    def dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x * y).sum(dim=along, keepdim=True)

    step = torch.zeros_like(gradient)
    remainder = gradient.neg()
    z = precondition(remainder)
    direction, rz = z, dot(remainder, z)
    for k in range(steps):
        curved = hessian(direction)
        curvature = dot(direction, curved)
        alpha = torch.where(curvature > 0, rz / torch.where(curvature > 0, curvature, 1), 0)
        step.add_(alpha * direction)
        if k == steps - 1:
            break
        remainder.sub_(alpha * curved)
        z = precondition(remainder)
        rz_next = dot(remainder, z)
        direction = z + torch.where(rz > 0, rz_next / torch.where(rz > 0, rz, 1), 0) * direction
        rz = rz_next
    return (left if rows else right) + step


def _balance(b: torch.Tensor, a: torch.Tensor) -> None:
    """Rescale each rank-one term ``b[:, k] a[k]`` so both parts have equal norm (product unchanged)."""
    nb, na = torch.linalg.vector_norm(b, dim=-2), torch.linalg.vector_norm(a, dim=-1)  # (K, r)
    ok = (nb > 0) & (na > 0)
    c = torch.where(ok, (na / torch.where(ok, nb, 1)).sqrt(), torch.ones_like(nb))
    b.mul_(c[..., None, :])
    a.div_(c[..., :, None])


def _balance_pairs(f: Factors) -> None:
    """Give the two ABBA pairs equal norm (the Hadamard product is unchanged)."""
    n1 = torch.linalg.matrix_norm(f["B1"]) * torch.linalg.matrix_norm(f["A1"])
    n2 = torch.linalg.matrix_norm(f["B2"]) * torch.linalg.matrix_norm(f["A2"])
    ok = (n1 > 0) & (n2 > 0)
    c = torch.where(ok, (n2 / torch.where(ok, n1, 1)) ** 0.25, torch.ones_like(n1))[:, None, None]
    f["B1"].mul_(c), f["A1"].mul_(c), f["B2"].div_(c), f["A2"].div_(c)


#: Per-block momentum for a sweep: each target's β, shape (K,), and the factors the sweep started
#: from, each block's ``x`` in ``x ← x⁺ + β (x⁺ - x)``.
BlockMomentum = tuple[torch.Tensor, Factors]


def _extrapolated(f: Factors, name: str, momentum: BlockMomentum | None) -> None:
    """Apply per-block momentum to the factor just updated (nothing without it)."""
    if momentum is not None:
        beta, start = momentum
        f[name] = f[name] + beta.to(f[name])[:, None, None] * (f[name] - start[name])


def _abba_sweep(target: torch.Tensor, f: Factors, ridge: torch.Tensor, workspace: Workspace | None = None,
                momentum: BlockMomentum | None = None, inexact: bool = False) -> torch.Tensor:
    """Update B2, A2, B1, A1 in turn (with ``momentum``: A2, B2, A1, B1, each extrapolated at once),
    exactly, or with ``inexact`` by :func:`inexact_update` (``ridge`` unused);
    return the new residuals ``P1 ⊙ P2 - target``.

    B is updated before A in each pair, so a LoRA-style pair (B = 0, A random) gets a useful first
    solve; starting with its A would find a zero design and keep A at zero. Per-block momentum
    keeps the Hadamard-decomposition literature's order, A first (in a trial of that literature's
    scheme, B first ended above the best error more often). In-place products keep the working set
    at three m x n tensors per target besides the target (the other pair's product, its square,
    the residual), all in ``workspace`` if given (else new tensors, as they are needed).
    """
    m, n = target.shape[-2:]
    for (b, a), (b_other, a_other) in ((("B2", "A2"), ("B1", "A1")), (("B1", "A1"), ("B2", "A2"))):
        bo, ao = f[b_other], f[a_other]
        weight = product(bo, ao, workspace, "weight")
        lowrank = not inexact and lowrank_route_is_cheaper(m, bo.shape[-1], n, target.dtype)
        squared = None if lowrank else torch.mul(weight, weight, out=scratch(workspace, "squared", weight))
        for block in ((a, b) if momentum is not None else (b, a)):
            if inexact:
                f[block] = inexact_update(target, weight, squared, f[b], f[a], block == b, workspace=workspace)
            elif block == b:
                gram = (lowrank_weight_gram(bo, ao, f[a], workspace) if lowrank
                        else dense_weight_gram(squared, f[a], workspace))
                f[b] = update_rows(target, weight, f[b], f[a], gram, ridge, workspace)
            else:
                gram = (lowrank_weight_gram(ao.mT, bo.mT, f[b].mT, workspace) if lowrank
                        else dense_weight_gram(squared.mT, f[b].mT, workspace))
                f[a] = update_cols(target, weight, f[b], f[a], gram, ridge, workspace)
            _extrapolated(f, block, momentum)
    return residual(f["B1"], f["A1"], weight, target, workspace)


def _hira_sweep(target: torch.Tensor, base: torch.Tensor, f: Factors, ridge: torch.Tensor,
                workspace: Workspace | None = None, momentum: BlockMomentum | None = None) -> torch.Tensor:
    """Update B, then A (with ``momentum``, each extrapolated at once). W0's square is recomputed each
    sweep (into the workspace's buffer when one is given): one element-wise pass, cheap next to the
    Gram GEMMs, and right for whichever targets the sweep covers (retried sweeps and a shrinking
    batch take subsets of a per-target W0)."""
    # A shared W0 stays one matrix.
    squared = torch.mul(base, base, out=scratch(workspace, "squared", base)).expand_as(target)
    gram = dense_weight_gram(squared, f["A"], workspace)
    f["B"] = update_rows(target, base, f["B"], f["A"], gram, ridge, workspace)
    _extrapolated(f, "B", momentum)
    gram = dense_weight_gram(squared.mT, f["B"].mT, workspace)
    f["A"] = update_cols(target, base, f["B"], f["A"], gram, ridge, workspace)
    _extrapolated(f, "A", momentum)
    return residual(f["B"], f["A"], base, target, workspace)


def _select(f: Factors, rows: torch.Tensor) -> Factors:
    return {k: v[rows] for k, v in f.items()}


class ALS:
    """Block-coordinate descent: ABBA's inexact sweeps until they stall (:attr:`ALSOptions.inexact`),
    then sweeps whose every factor update solves its least-squares problem exactly.

    A batch of targets is swept together; each target keeps its own extrapolation weight, ridge and
    stopping rule, and leaves the batch when it stops.
    """

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
        rngs: list[np.random.Generator] | None = None,
    ) -> list[SolveOutput]:
        if factors is None:
            raise ValueError("the als solver needs starting factors")
        m, n = problem.shape
        if (problem.method.name != "abba" or not options.inexact
                or lowrank_route_is_cheaper(m, min(problem.ranks), n, problem.target.dtype)):
            return self._sweeps(problem, factors, options, callback)
        return self._inexact_then_exact(problem, factors, options, callback)

    def _inexact_then_exact(self, problem: Problem, factors: Factors, options: ALSOptions,
                            callback: Callback | None) -> list[SolveOutput]:
        """Inexact sweeps (:attr:`ALSOptions.inexact`) until they stall, then exact ones from there,
        each target on its own budget of ``max_iter`` sweeps (so a stack's fits equal lone ones)."""
        share = max(1, int(INEXACT_SHARE * options.max_iter))
        first = self._sweeps(problem, factors, replace(options, rtol=max(options.rtol, INEXACT_RTOL), max_iter=share),
                             callback, inexact=True)
        if any(out.status == "stopped" for out in first):
            return first
        going = [k for k, out in enumerate(first) if out.iterations < options.max_iter and out.history[-1] > options.tol]
        if not going:
            return first
        index = torch.tensor(going)
        reached = {name: torch.stack([first[k].factors[name] for k in going]) for name in factors}
        second = self._sweeps(problem.subset(index), reached, options, callback,
                              sweeps_run=[first[k].iterations for k in going])
        outputs = list(first)
        for k, out in zip(going, second, strict=True):
            before = first[k]
            outputs[k] = SolveOutput(out.factors, before.history + out.history[1:], before.iterations + out.iterations,
                                     out.status, out.message)
        return outputs

    def _sweeps(self, problem: Problem, factors: Factors, options: ALSOptions, callback: Callback | None,
                sweeps_run: list[int] | None = None, inexact: bool = False) -> list[SolveOutput]:
        """Block-coordinate sweeps from ``factors``, each target numbered on from its ``sweeps_run``
        sweeps already run (inexact ones, before exact ones take over) up to ``options.max_iter``;
        ``inexact``: ABBA's inexact sweeps, with their own momentum (:data:`INEXACT_BETA`). A stack's
        callback is called with the latest target's sweep number."""
        batch, abba = problem.batch, problem.method.name == "abba"
        offset = torch.tensor(sweeps_run if sweeps_run is not None else [0] * batch)
        base_ridge = options.ridge if options.ridge is not None else default_ridge(problem.target.dtype)
        target_norms = torch.linalg.matrix_norm(problem.target).double().cpu()

        workspace = Workspace()  # the sweeps' m x n temporaries, allocated once for the fit

        def sweep(part: Problem, f: Factors, ridge: torch.Tensor, momentum: BlockMomentum | None = None) -> torch.Tensor:
            """One sweep of every factor of the targets in ``part``, in place; their new errors."""
            if abba:
                residuals = _abba_sweep(part.target, f, ridge, workspace, momentum, inexact)
                _balance(f["B1"], f["A1"]), _balance(f["B2"], f["A2"]), _balance_pairs(f)
            else:
                residuals = _hira_sweep(part.target, part.base, f, ridge, workspace, momentum)
                _balance(f["B"], f["A"])
            return torch.linalg.matrix_norm(residuals).double().cpu()

        x = {k: v.detach().clone() for k, v in factors.items()}  # every target's accepted iterate
        histories = [[e] for e in problem.relative_errors(x).double().cpu().tolist()]
        statuses, messages = ["max_iter"] * batch, [f"ran all {options.max_iter} sweeps"] * batch
        beta_max = INEXACT_BETA if inexact else BLOCK_BETA_MAX
        beta = torch.full((batch,), INEXACT_BETA if inexact else options.beta, dtype=torch.float64)
        beta_cap = torch.ones(batch, dtype=torch.float64)
        ridge = torch.full((batch,), base_ridge, dtype=torch.float64)
        block_momentum_on = torch.zeros(batch, dtype=torch.bool)  # per target, once MOMENTUM_SWITCH is met
        rows, part = torch.arange(batch), problem  # the targets still sweeping, and their problems

        def sweep_from(mask: torch.Tensor, start: Factors, candidate: Factors, errors: torch.Tensor,
                       beta: torch.Tensor | None = None) -> None:
            """Sweep the targets at ``mask`` (positions in ``rows``) from ``start`` (factors in ``rows``
            order) into ``candidate`` and ``errors``; with ``beta``, with per-block momentum."""
            local = mask.nonzero()[:, 0]
            swept = _select(start, local)
            momentum = None if beta is None else (beta[local], _select(start, local))
            errors[local] = sweep(part.subset(local), swept, ridge[rows[local]], momentum) / target_norms[rows[local]]
            for k in candidate:
                candidate[k][local] = swept[k]

        for it in range(1, options.max_iter - int(offset.min()) + 1):
            last = torch.tensor([histories[k][-1] for k in rows.tolist()], dtype=torch.float64)
            xa = _select(x, rows)
            # The targets extrapolated in this sweep: those past their first sweep gaining less than
            # MOMENTUM_SWITCH (while plain sweeps still shrink the error fast, momentum would hold it
            # to a rate of β).
            active = block_momentum_on[rows] & options.extrapolate
            extrapolated = bool(active.any())
            if extrapolated:
                # Targets with and without momentum sweep apart: the block order differs (as a lone fit's).
                candidate, errors = {k: v.clone() for k, v in xa.items()}, torch.empty(len(rows), dtype=torch.float64)
                sweep_from(active, xa, candidate, errors, beta[rows].clamp(max=beta_max))
                if not bool(active.all()):
                    sweep_from(~active, xa, candidate, errors)
            else:
                candidate = {k: v.clone() for k, v in xa.items()}
                errors = sweep(part, candidate, ridge[rows]) / target_norms[rows]
            if extrapolated:
                grown = torch.minimum(beta_cap[rows], beta[rows] * options.growth).clamp(max=beta_max)
                beta[rows] = torch.where(active, grown, beta[rows])
                # An extrapolated sweep must gain more than rtol to count: its overshoot can nearly
                # cancel its gain by chance, which would trip the rtol stop. A plain sweep decides.
                lost = active & ~(errors < last * (1 - options.rtol))
                if bool(lost.any()):
                    # The extrapolated sweep lost ground: discard it, damp β, redo a plain sweep.
                    beta_cap[rows[lost]] = beta[rows[lost]]
                    beta[rows[lost]] /= options.shrink
                    sweep_from(lost, xa, candidate, errors)
            for _ in range(0 if inexact else 3):  # inexact sweeps use no ridge
                rising = errors > last * (1 + 1e-6)
                if not bool(rising.any()):
                    break
                # A plain sweep can only rise by rounding: discard it and retry with a stronger ridge.
                ridge[rows[rising]] *= 10
                sweep_from(rising, xa, candidate, errors)
            stuck = errors > last * (1 + 1e-6)
            ridge[rows] = torch.clamp(ridge[rows] / 2, min=base_ridge)
            accepted = ~stuck & torch.isfinite(errors)
            done = ~accepted
            for i, k in enumerate(rows.tolist()):
                error, own = float(errors[i]), int(offset[k]) + it  # the target's own sweep number
                if stuck[i]:
                    statuses[k], messages[k] = "converged", f"no sweep lowers the error at this precision (sweep {own})"
                    continue
                if not accepted[i]:
                    statuses[k], messages[k] = "diverged", f"NaN/Inf at sweep {own}; returned the best iterate"
                    continue
                histories[k].append(error)
                gain = histories[k][-2] - error
                block_momentum_on[k] |= gain < MOMENTUM_SWITCH * histories[k][-2]
                if error <= options.tol:
                    statuses[k], messages[k], done[i] = "converged", f"error {error:.3g} <= tol after {own} sweeps", True
                elif stalled(histories[k], 1, options.rtol):
                    statuses[k], messages[k], done[i] = "converged", f"improvement below rtol after {own} sweeps", True
                elif own >= options.max_iter:
                    done[i] = True
            keep = accepted.nonzero()[:, 0]
            for k in x:
                x[k][rows[keep]] = candidate[k][keep]
            clock = int(offset[rows].max()) + it
            if callback is not None and bool(accepted.any()) and callback(
                    clock, errors[accepted].numpy(), _select(x, rows[accepted])):
                for k in rows[~done].tolist():
                    statuses[k], messages[k] = "stopped", f"stopped by the callback at sweep {clock}"
                break
            if bool(done.all()):
                break
            if bool(done.any()):
                rows, part = rows[~done], part.subset((~done).nonzero()[:, 0])
        return unbatch(x, histories, statuses, messages)
