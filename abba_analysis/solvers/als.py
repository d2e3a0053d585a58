"""Exact block-coordinate descent (alternating least squares) for ABBA and HiRA.

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

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..linalg import cholesky_solve_lanes
from ..workspace import Workspace, product, scratch
from .base import Callback, Factors, Problem, SolveOutput, check_range, stalled, unbatch


#: The values of :attr:`ALSOptions.momentum`.
MOMENTUM_SCHEMES = ("sweep", "block")


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
        Extrapolate, with the safeguard of Ang & Gillis (2019): β grows by ``growth`` after a sweep
        that lowers the error; a sweep that raises it is discarded and replaced by a plain one, β
        shrinks by ``shrink`` and its value caps later growth. Discarded sweeps are not in the
        history, which therefore never rises.
    momentum : {"sweep", "block"}
        Where to extrapolate. ``"block"`` (the default): each factor as soon as it is updated, ``x ←
        x⁺ + β (x⁺ - x)``, and the next factor is solved against it (the momentum of the
        Hadamard-decomposition literature, Wertz, Vandaele & Gillis, 2025; ABBA's pairs then update
        A before B), with β at most :data:`BLOCK_BETA_MAX`, from a target's first sweep that gains
        less than :data:`MOMENTUM_SWITCH` on: before that, plain sweeps shrink the error faster than
        momentum lets it (a fit that can reach zero error would fall by only about β per sweep).
        ``"sweep"``: all factors between sweeps, ``y = x_k + β (x_k - x_{k-1})``, then a sweep from
        y (Ang & Gillis, 2019). ``benchmarks/bench_momentum.py`` compares both with the
        literature's own scheme on the same solves.
    beta : float
        Initial extrapolation weight β.
    growth, shrink : float
        Factors by which β grows after a success and shrinks after a failure.
    relaxation : float
        Over-relaxation ω of the block updates, ``x + ω δ`` with δ the exact proximal step, used for
        a target once a sweep has lowered its error by less than :data:`SLOW_SWEEP` (relative); after
        faster sweeps, and with the default ω = 1, plain block-coordinate descent. Each block's
        objective is quadratic, so for ω in (0, 2) an update still lowers ``||residual||^2``, by at
        least ``(2ω - ω²) Σ_i δ_i^T G_i δ_i``. Over-relaxing damps the zig-zag between coupled blocks
        in a slow tail, which the default per-block momentum already does: at 512² and 384 x 1536,
        ω = 1.3 took a median 1.37 (ABBA) and 1.08 (HiRA) of the plain fit's time to come within
        0.1% of its final error (with ``momentum="sweep"``: 0.81 and 0.79;
        ``benchmarks/bench_relaxation.py``, 21 cases per method). It can also change which local
        minimum a fit ends in (small sparse ABBA targets at r = 16: +5% to +23%), and its per-sweep
        gains are less even: with a loose ``rtol`` a relaxed fit stops earlier (HiRA at 512², rank
        24-72, rtol = 1e-4: medians +0.03% to +0.27% against the plain fit). Relaxed from the first
        sweep, a fit that can reach zero error crawls instead (HiRA with W0 = T, 200 x 160, r = 8,
        without extrapolation: 7e-9 after 15 sweeps against 3e-13; tested), hence the switch.
    continuation : bool
        Rank continuation (off by default) for ABBA fits with ``min(r1, r2) >=
        CONTINUATION_MIN_RANK``: first fit at half the ranks, ``(ceil(r1/2), ceil(r2/2))``, from the
        leading half of the start, until a sweep gains less than :data:`CONTINUATION_RTOL`; then
        extend that fit to the full ranks (new columns of B zero, new rows of A the start's own, so
        the product is unchanged) and sweep on. The half-rank fit may itself continue from a
        quarter-rank one. The history and ``iterations`` include the half-rank sweeps (the product
        of a half-rank fit, padded with zeros, is a full-rank iterate). If the half-rank fit ends
        above the full-rank start's error, the fit resumes from the start instead (one more history
        entry), so a fit never ends above its start (with ``svd-ones``: LoRA's optimum at rank r1).
        The half-rank sweeps cost about a quarter of a full one (the Gram products scale with r^2)
        and do most of the descent: at r = 16 (512² and 384 x 1536) fits reached Adam's final error
        in a median 0.169 of Adam's time, against 0.205 without
        (``benchmarks/bench_abba_solvers.py``, same seeds). But the extended fit keeps the half-rank
        fit's structure, and where the full-rank optimum differs it ends in a worse minimum: Fig.
        2's sparse targets at r1 = r2 = 36 ended at 0.022 against 0.009 in its 200 sweeps
        (``reproduce`` at commit 0bf4ec8, where it was the default), hence off by default.
    """

    max_iter: int = 500
    tol: float = 0.0
    rtol: float = 1e-7
    ridge: float | None = None
    extrapolate: bool = True
    momentum: str = "block"
    beta: float = 0.5
    growth: float = 1.1
    shrink: float = 2.0
    relaxation: float = 1.0
    continuation: bool = False

    def __post_init__(self) -> None:
        check_range("max_iter", self.max_iter, 1)
        check_range("tol", self.tol, 0.0)
        check_range("rtol", self.rtol, 0.0)
        if self.ridge is not None:
            check_range("ridge", self.ridge, 0.0, low_open=True)
        if self.momentum not in MOMENTUM_SCHEMES:
            raise ValueError(f"momentum must be one of {MOMENTUM_SCHEMES}, got {self.momentum!r}")
        check_range("beta", self.beta, 0.0, 1.0)
        check_range("growth", self.growth, 1.0)
        check_range("shrink", self.shrink, 1.0)
        check_range("relaxation", self.relaxation, 0.0, 2.0, low_open=True, high_open=True)


def _outer_rows(x: torch.Tensor, workspace: Workspace | None, name: str = "outer") -> torch.Tensor:
    """``(..., p, r) -> (..., p, r*r)``: row i is ``kron(x[i], x[i])`` (in the workspace's ``name``)."""
    column, row = x[..., :, None], x[..., None, :]
    return torch.mul(column, row, out=scratch(workspace, name, column, row)).flatten(-2)


def dense_weight_gram(squared_weight: torch.Tensor, basis: torch.Tensor,
                      workspace: Workspace | None = None) -> torch.Tensor:
    """``G[i] = basis diag(squared_weight[i]) basis^T`` for every row i: one GEMM, ``O(p n r^2)``.

    ``squared_weight: (..., p, n)`` (the weight squared element-wise, computed once by the caller
    and shared by the row and column updates), ``basis: (..., r, n)`` -> ``(..., p, r, r)``, in the
    workspace's ``"gram"`` buffer when one is given.
    """
    r = basis.shape[-2]
    return product(squared_weight, _outer_rows(basis.mT, workspace), workspace, "gram").unflatten(-1, (r, r))


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


#: A target's updates are over-relaxed (:attr:`ALSOptions.relaxation`) after a sweep that lowered its
#: error by less than this fraction: in the slow tail, not while the fit is still converging fast.
SLOW_SWEEP = 1e-2

#: Per-block momentum (``momentum="block"``) starts after a target's first sweep that lowered its
#: error by less than this fraction. Plain sweeps that gain more are what a fit that can reach zero
#: error does (orders of magnitude per sweep), and momentum would hold it to a rate of about β.
MOMENTUM_SWITCH = 0.1

#: The largest β of per-block momentum (``momentum="block"``). Extrapolating a block after its update
#: leaves the fast modes of the iteration damped only by β per sweep (between sweeps, the next sweep
#: damps them), so at β = 1 the iterate oscillates and the error stalls.
BLOCK_BETA_MAX = 0.9

#: With :attr:`ALSOptions.continuation`, ABBA fits whose ranks are both at least this continue from a
#: half-rank fit. From (8, 8), continued from (4, 4), 512² fits reached Adam's error as often later as sooner.
CONTINUATION_MIN_RANK = 16

#: The half-rank fit of a rank continuation stops once a sweep lowers its error by less than this
#: (relative), or earlier with a larger ``rtol``.
CONTINUATION_RTOL = 1e-3

#: From this many systems on (per proximal step, all targets together) CPU fits solve them lane-wise
#: (:func:`~abba_analysis.linalg.cholesky_solve_lanes`); below it LAPACK's batched LU is faster.
LANE_SOLVE_MIN_SYSTEMS = 4096


def proximal_step(gram: torch.Tensor, gradient: torch.Tensor, ridge: torch.Tensor,
                  workspace: Workspace | None = None) -> torch.Tensor:
    """Solve ``(G_i + λ_i I) δ_i = -gradient_i`` for every row i of every target by one batched
    solve: the exact proximal update is ``x_i + δ_i``.

    ``gram: (K, p, r, r)``, ``gradient: (K, p, r)``, ``ridge: (K,)``. ``λ_i = ridge * mean(diag G_i)``
    plus a floor of machine epsilon times the target's largest such mean, which keeps all-zero rows
    solvable. The r x r systems are solved in float64 whatever the factors' dtype (they are small);
    rows whose system is singular do not move, which cannot raise the error.

    Batches of at least :data:`LANE_SOLVE_MIN_SYSTEMS` systems on CPU are solved by a lane-wise
    Cholesky; a system it finds not positive definite (possible only through rounding) falls back to
    LU, so both routes give the same steps up to rounding.
    """
    workspace = workspace or Workspace()  # without one, the float64 systems are new tensors
    k, p, r = gradient.shape
    lanes = gram.device.type == "cpu" and k * p >= LANE_SOLVE_MIN_SYSTEMS
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
    the diagonal); singular systems give x = 0. LU rather than LAPACK's Cholesky: the systems are
    positive definite, so pivoting is stable, and it is about twice as fast on CPU for batches of
    small matrices (measured)."""
    if shift is not None:
        system.diagonal(dim1=-2, dim2=-1).add_(shift[..., None])
    step, info = torch.linalg.solve_ex(system, rhs[..., None])
    step = step[..., 0]
    failed = info != 0
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
                gram: torch.Tensor, ridge: torch.Tensor, relaxation: float | torch.Tensor = 1.0,
                workspace: Workspace | None = None) -> torch.Tensor:
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
    relaxation : float or (K,) tensor
        ω, per target or for all: the update moves ``left`` by ω times the step to the minimiser
        (1: to the minimiser).
    workspace : Workspace, optional
        Scratch storage for the m x n residual and the float64 systems, reused across calls (its
        ``"residual"`` and ``"system"`` buffers are overwritten).

    Returns
    -------
    (K, m, r) tensor: with ω = 1, the minimiser of ``||target[i] - (x right) ⊙ weight[i]||^2 +
    λ_i ||x - left[i]||^2`` for each row i.

    Notes
    -----
    The normal equations are solved for the *correction*, from the gradient of the current residual,
    not for the new value from ``right (weight ⊙ target)``: near a minimum that right-hand side and
    ``G x`` nearly cancel, and in float32 their rounding (relative to the target, not to the
    gradient) would stall the descent well above the minimum.
    """
    gradient = weighted_residual(left, right, weight, target, workspace) @ right.mT
    return left + _relaxed(proximal_step(gram, gradient, ridge, workspace), relaxation)


def update_cols(target: torch.Tensor, weight: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
                gram: torch.Tensor, ridge: torch.Tensor, relaxation: float | torch.Tensor = 1.0,
                workspace: Workspace | None = None) -> torch.Tensor:
    """Exact proximal update of ``Y = right`` in ``target ≈ (left @ Y) ⊙ weight``, column by column.

    ``gram[j] = left^T diag(weight[:, j]^2) left``. The products are taken on the row-major
    ``(m, n)`` layout: element-wise work on transposed views would be strided and slow.
    """
    gradient = (left.mT @ weighted_residual(left, right, weight, target, workspace)).mT
    return right + _relaxed(proximal_step(gram, gradient, ridge, workspace), relaxation).mT


def _relaxed(step: torch.Tensor, relaxation: float | torch.Tensor) -> torch.Tensor:
    """``relaxation * step`` for a (K, p, r) step, ω per target (a (K,) tensor) or one float."""
    if isinstance(relaxation, torch.Tensor):
        return step.mul_(relaxation.to(step)[:, None, None])
    return step if relaxation == 1 else step.mul_(relaxation)


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


def _abba_sweep(target: torch.Tensor, f: Factors, ridge: torch.Tensor, relaxation: float | torch.Tensor,
                workspace: Workspace | None = None, momentum: BlockMomentum | None = None) -> torch.Tensor:
    """Update B2, A2, B1, A1 in turn (with ``momentum``: A2, B2, A1, B1, each extrapolated at once);
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
        lowrank = lowrank_route_is_cheaper(m, bo.shape[-1], n, target.dtype)
        squared = None if lowrank else torch.mul(weight, weight, out=scratch(workspace, "squared", weight))
        for block in ((a, b) if momentum is not None else (b, a)):
            if block == b:
                gram = (lowrank_weight_gram(bo, ao, f[a], workspace) if lowrank
                        else dense_weight_gram(squared, f[a], workspace))
                f[b] = update_rows(target, weight, f[b], f[a], gram, ridge, relaxation, workspace)
            else:
                gram = (lowrank_weight_gram(ao.mT, bo.mT, f[b].mT, workspace) if lowrank
                        else dense_weight_gram(squared.mT, f[b].mT, workspace))
                f[a] = update_cols(target, weight, f[b], f[a], gram, ridge, relaxation, workspace)
            _extrapolated(f, block, momentum)
    return residual(f["B1"], f["A1"], weight, target, workspace)


def _hira_sweep(target: torch.Tensor, base: torch.Tensor, f: Factors, ridge: torch.Tensor,
                relaxation: float | torch.Tensor, workspace: Workspace | None = None,
                momentum: BlockMomentum | None = None) -> torch.Tensor:
    """Update B, then A (with ``momentum``, each extrapolated at once). W0's square is recomputed each
    sweep (into the workspace's buffer when one is given): one element-wise pass, cheap next to the
    Gram GEMMs, and right for whichever targets the sweep covers (retried sweeps and a shrinking
    batch take subsets of a per-target W0)."""
    # A shared W0 stays one matrix.
    squared = torch.mul(base, base, out=scratch(workspace, "squared", base)).expand_as(target)
    gram = dense_weight_gram(squared, f["A"], workspace)
    f["B"] = update_rows(target, base, f["B"], f["A"], gram, ridge, relaxation, workspace)
    _extrapolated(f, "B", momentum)
    gram = dense_weight_gram(squared.mT, f["B"].mT, workspace)
    f["A"] = update_cols(target, base, f["B"], f["A"], gram, ridge, relaxation, workspace)
    _extrapolated(f, "A", momentum)
    return residual(f["B"], f["A"], base, target, workspace)


def _select(f: Factors, rows: torch.Tensor) -> Factors:
    return {k: v[rows] for k, v in f.items()}


def _abba_widths(ranks: tuple[int, ...]) -> dict[str, int]:
    """Each ABBA factor's rank dimension: B's columns, A's rows."""
    return {"B1": ranks[0], "A1": ranks[0], "B2": ranks[1], "A2": ranks[1]}


def _padded(f: Factors, ranks: tuple[int, ...]) -> Factors:
    """Batched half-rank factors padded with zeros to ``ranks`` (the same product), for callbacks."""
    width = _abba_widths(ranks)
    return {k: (torch.nn.functional.pad(v, (0, width[k] - v.shape[-1])) if k.startswith("B")
                else torch.nn.functional.pad(v, (0, 0, 0, width[k] - v.shape[-2]))) for k, v in f.items()}


class ALS:
    """Exact block-coordinate descent: every factor update solves its least-squares problem exactly.

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
        if problem.method.name == "abba" and options.continuation and min(problem.ranks) >= CONTINUATION_MIN_RANK:
            return self._continued(problem, factors, options, callback)
        return self._sweeps(problem, factors, options, callback)

    def _continued(self, problem: Problem, factors: Factors, options: ALSOptions,
                   callback: Callback | None) -> list[SolveOutput]:
        """Rank continuation (:attr:`ALSOptions.continuation`): a half-rank fit, extended, then swept on."""
        half = tuple((r + 1) // 2 for r in problem.ranks)
        width = _abba_widths(half)
        leading = {k: (v[..., :width[k]] if k.startswith("B") else v[:, :width[k]]).contiguous()
                   for k, v in factors.items()}
        clock = [0]  # sweeps of the half-rank stage (the batch's clock)

        def lower_callback(it: int, errors: np.ndarray, f: Factors) -> bool:
            clock[0] = it
            return callback is not None and bool(callback(it, errors, _padded(f, problem.ranks)))

        lower = self.solve(Problem(problem.method, problem.target, half, problem.base), leading,
                           replace(options, rtol=max(options.rtol, CONTINUATION_RTOL)), lower_callback)
        # At full rank B gains zero columns and A the start's rows past the half rank: the product
        # is unchanged, and the new terms can grow in the next solve of B.
        extended = _padded({k: torch.stack([out.factors[k] for out in lower]) for k in factors}, problem.ranks)
        for k in ("A1", "A2"):
            extended[k][:, width[k]:] = factors[k][:, width[k]:]
        if any(out.status == "stopped" for out in lower):
            return unbatch(extended, [out.history for out in lower], ["stopped"] * problem.batch,
                           [f"stopped by the callback at sweep {clock[0]}"] * problem.batch)
        if clock[0] >= options.max_iter:
            return unbatch(extended, [out.history for out in lower], ["max_iter"] * problem.batch,
                           [f"ran all {options.max_iter} sweeps"] * problem.batch)
        # A target whose half-rank fit ended above its full-rank start resumes from that start.
        start_errors = problem.relative_errors(factors).double().cpu()
        resumed = torch.tensor([not (out.history[-1] <= float(e)) for out, e in zip(lower, start_errors, strict=True)])
        histories = [out.history + ([float(start_errors[i])] if resumed[i] else []) for i, out in enumerate(lower)]
        if bool(resumed.any()):
            for k in extended:
                extended[k][resumed] = factors[k][resumed]
            clock[0] += 1  # the resumed entry is an iteration, as every history entry is
            if callback is not None and callback(clock[0], start_errors[resumed].numpy(),
                                                 _select(extended, resumed.nonzero()[:, 0])):
                return unbatch(extended, histories, ["stopped"] * problem.batch,
                               [f"stopped by the callback at sweep {clock[0]}"] * problem.batch)
        upper = self._sweeps(problem, extended, options, callback, sweeps_run=clock[0])
        return [SolveOutput(out.factors, histories[i] + out.history[1:], len(histories[i]) + len(out.history) - 2,
                            out.status, out.message) for i, out in enumerate(upper)]

    def _sweeps(self, problem: Problem, factors: Factors, options: ALSOptions, callback: Callback | None,
                sweeps_run: int = 0) -> list[SolveOutput]:
        """Block-coordinate sweeps from ``factors`` at the problem's ranks, numbered on from ``sweeps_run``
        sweeps already run (by a rank continuation's half-rank fit) up to ``options.max_iter``."""
        batch, abba = problem.batch, problem.method.name == "abba"
        base_ridge = options.ridge if options.ridge is not None else (
            1e-10 if problem.target.dtype == torch.float64 else 1e-6)
        target_norms = torch.linalg.matrix_norm(problem.target).double().cpu()

        workspace = Workspace()  # the sweeps' m x n temporaries, allocated once for the fit

        def sweep(part: Problem, f: Factors, ridge: torch.Tensor, relaxation: float | torch.Tensor,
                  momentum: BlockMomentum | None = None) -> torch.Tensor:
            """One sweep of every factor of the targets in ``part``, in place; their new errors."""
            if options.relaxation == 1:  # every ω is 1: no per-target multiply (nor copy to the device)
                relaxation = 1.0
            if abba:
                residuals = _abba_sweep(part.target, f, ridge, relaxation, workspace, momentum)
                _balance(f["B1"], f["A1"]), _balance(f["B2"], f["A2"]), _balance_pairs(f)
            else:
                residuals = _hira_sweep(part.target, part.base, f, ridge, relaxation, workspace, momentum)
                _balance(f["B"], f["A"])
            return torch.linalg.matrix_norm(residuals).double().cpu()

        by_block = options.momentum == "block"
        x = {k: v.detach().clone() for k, v in factors.items()}  # every target's accepted iterate
        # and the one before, which extrapolation between sweeps starts from
        previous = None if by_block else {k: v.clone() for k, v in x.items()}
        histories = [[e] for e in problem.relative_errors(x).double().cpu().tolist()]
        statuses, messages = ["max_iter"] * batch, [f"ran all {options.max_iter} sweeps"] * batch
        beta = torch.full((batch,), options.beta, dtype=torch.float64)
        beta_cap = torch.ones(batch, dtype=torch.float64)
        ridge = torch.full((batch,), base_ridge, dtype=torch.float64)
        omega = torch.ones(batch, dtype=torch.float64)  # each target's current relaxation
        block_momentum_on = torch.zeros(batch, dtype=torch.bool)  # per target, once MOMENTUM_SWITCH is met
        rows, part = torch.arange(batch), problem  # the targets still sweeping, and their problems

        def sweep_from(mask: torch.Tensor, start: Factors, candidate: Factors, errors: torch.Tensor,
                       beta: torch.Tensor | None = None) -> None:
            """Sweep the targets at ``mask`` (positions in ``rows``) from ``start`` (factors in ``rows``
            order) into ``candidate`` and ``errors``; with ``beta``, with per-block momentum."""
            local = mask.nonzero()[:, 0]
            swept = _select(start, local)
            momentum = None if beta is None else (beta[local], _select(start, local))
            errors[local] = sweep(part.subset(local), swept, ridge[rows[local]], omega[rows[local]],
                                  momentum) / target_norms[rows[local]]
            for k in candidate:
                candidate[k][local] = swept[k]

        for it in range(sweeps_run + 1, options.max_iter + 1):
            last = torch.tensor([histories[k][-1] for k in rows.tolist()], dtype=torch.float64)
            xa = _select(x, rows)
            # The targets extrapolated in this sweep. By block, those past their first sweep gaining
            # less than MOMENTUM_SWITCH: while plain sweeps still shrink the error fast, per-block
            # momentum would hold it to a rate of β.
            if by_block:
                active = block_momentum_on[rows] & options.extrapolate
            else:
                active = torch.full((len(rows),), options.extrapolate and it > sweeps_run + 1)
            extrapolated = bool(active.any())
            if extrapolated and by_block:
                # Targets with and without momentum sweep apart: the block order differs (as a lone fit's).
                candidate, errors = {k: v.clone() for k, v in xa.items()}, torch.empty(len(rows), dtype=torch.float64)
                sweep_from(active, xa, candidate, errors, beta[rows].clamp(max=BLOCK_BETA_MAX))
                if not bool(active.all()):
                    sweep_from(~active, xa, candidate, errors)
            else:
                if extrapolated:
                    step = beta[rows].to(problem.target)[:, None, None]
                    candidate = {k: v + step * (v - previous[k][rows]) for k, v in xa.items()}
                else:
                    candidate = {k: v.clone() for k, v in xa.items()}
                errors = sweep(part, candidate, ridge[rows], omega[rows]) / target_norms[rows]
            if extrapolated:
                grown = torch.minimum(beta_cap[rows], beta[rows] * options.growth)
                if by_block:
                    grown = grown.clamp(max=BLOCK_BETA_MAX)
                beta[rows] = torch.where(active, grown, beta[rows])
                # By block, an extrapolated sweep must gain more than rtol to count: its overshoot can
                # nearly cancel its gain by chance, which would trip the rtol stop. A plain sweep decides.
                lost = active & ~(errors < last * (1 - options.rtol) if by_block else errors < last)
                if bool(lost.any()):
                    # The extrapolated sweep lost ground: discard it, damp β, redo a plain sweep.
                    beta_cap[rows[lost]] = beta[rows[lost]]
                    beta[rows[lost]] /= options.shrink
                    sweep_from(lost, xa, candidate, errors)
            for _ in range(3):
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
                error = float(errors[i])
                if stuck[i]:
                    statuses[k], messages[k] = "converged", f"no sweep lowers the error at this precision (sweep {it})"
                    continue
                if not accepted[i]:
                    statuses[k], messages[k] = "diverged", f"NaN/Inf at sweep {it}; returned the best iterate"
                    continue
                histories[k].append(error)
                gain = histories[k][-2] - error
                omega[k] = options.relaxation if gain < SLOW_SWEEP * histories[k][-2] else 1.0
                block_momentum_on[k] |= gain < MOMENTUM_SWITCH * histories[k][-2]
                if error <= options.tol:
                    statuses[k], messages[k], done[i] = "converged", f"error {error:.3g} <= tol after {it} sweeps", True
                elif stalled(histories[k], 1, options.rtol):
                    statuses[k], messages[k], done[i] = "converged", f"improvement below rtol after {it} sweeps", True
            keep = accepted.nonzero()[:, 0]
            for k in x:
                if previous is not None:
                    previous[k][rows[keep]] = x[k][rows[keep]]
                x[k][rows[keep]] = candidate[k][keep]
            if callback is not None and bool(accepted.any()) and callback(
                    it, errors[accepted].numpy(), _select(x, rows[accepted])):
                for k in rows[~done].tolist():
                    statuses[k], messages[k] = "stopped", f"stopped by the callback at sweep {it}"
                break
            if bool(done.all()):
                break
            if bool(done.any()):
                rows, part = rows[~done], part.subset((~done).nonzero()[:, 0])
        return unbatch(x, histories, statuses, messages)
