"""Algebraic factorization of exact ABBA products through the Segre variety.

A target ``T = (B1 A1) ⊙ (B2 A2)`` equals ``W H^T`` with ``W = B1 •r B2`` (``m x R``, ``R = r1 r2``):
row i of W is ``kron(b1_i, b2_i)``, an ``r1 x r2`` matrix of rank one. T's top-R left singular
vectors ``U`` span the same space, ``W = U G`` for an unknown invertible ``G``, so the rows ``u_i``
of U are points of the variety ``V = G^{-T}(Segre)``, the image of the rank-one matrices. The
variety is recovered from the data, and with it ``G``, by linear algebra only:

1. **Quadrics.** The 2 x 2 minors of rank-one matrices are ``C(r1, 2) C(r2, 2)`` quadrics; on V they
   become quadratic forms ``u^T S u = 0``. They are the null space of the design whose rows are the
   monomials ``u_i u_i^T`` (needs ``m >= R (R + 1) / 2`` minus their count).
2. **Tangent spaces.** At a point ``p ⊗ q`` of the Segre variety the tangent space is
   ``{p ⊗ q' + p' ⊗ q}``; in data coordinates it is the null space of ``[S_k u_i]_k``. Two tangent
   spaces, at ``p_a ⊗ q_a`` and ``p_b ⊗ q_b``, meet in exactly ``span{p_a ⊗ q_b, p_b ⊗ q_a}``, and
   the two points of V on that plane are the roots of one binary quadratic.
3. **A basis.** With anchor rows ``a = 0, 1, ...`` as coordinates (``p_a = e_a``, ``q_b = e_b``, the
   ``GL(r1) x GL(r2)`` freedom of the model), ``x_ab = p_a ⊗ q_b`` is the root shared with
   ``x_0b`` along a line of V (``x^T S y = 0``); the first pair's labelling is the model's swap
   symmetry, and both are tried. One more row fixes the scales of the ``x_ab``.
4. **Factors.** ``W`` in that basis has rank-one rows, split by an SVD into ``B1, B2``; then
   ``H = (W^T W)^{-1} W^T T`` has rank-one rows too, giving ``A1, A2``.

On an exact product this returns exact factors (relative error ~1e-13 in float64) for every
``(r1, r2)`` up to the design-size limit, with no iterations; on any other target it returns a start
inside T's rank-R subspace, which a solver then refines. The related (2, 2) case is the classical
fact that a 2 x 2 determinant is a quadric of signature (2, 2).
"""

from __future__ import annotations

import numpy as np
import torch

from .inits import top_singular_triplets


ANCHOR_TRIES = 3


def quadric_count(r1: int, r2: int) -> int:
    """Number of independent quadrics vanishing on the ``r1 x r2`` Segre variety (2 x 2 minors)."""
    return (r1 * (r1 - 1) // 2) * (r2 * (r2 - 1) // 2)


def rows_needed(r1: int, r2: int) -> int:
    """Rows (points) the quadric fit needs: monomials of degree 2 in ``R`` variables, minus the quadrics."""
    r = r1 * r2
    return r * (r + 1) // 2 - quadric_count(r1, r2)


def applicable(shape: tuple[int, int], r1: int, r2: int) -> bool:
    """Whether :func:`segre_factors` can run on a target of ``shape`` (either side may carry the quadrics)."""
    return r1 * r2 <= min(shape) and max(shape) >= max(rows_needed(r1, r2), r1 * r2 + 2)


def _quadrics(u: np.ndarray, count: int) -> np.ndarray:
    """``(count, R, R)`` symmetric matrices ``S`` with ``u_i^T S u_i ≈ 0`` for every row: the null space
    (smallest right singular vectors) of the monomial design."""
    r = u.shape[1]
    iu = np.triu_indices(r)
    weight = np.where(iu[0] == iu[1], 1.0, 2.0)  # x^T S x counts each off-diagonal entry twice
    design = u[:, iu[0]] * u[:, iu[1]] * weight
    null = np.linalg.svd(design, full_matrices=True)[2][-count:]
    s = np.zeros((count, r, r))
    s[:, iu[0], iu[1]] = null
    return s + s.transpose(0, 2, 1) - s * np.eye(r)


def _line_residual(quadrics: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """``max_k |x^T S_k y|``: zero when the line through the points x and y of V lies in V."""
    return float(np.abs(np.einsum("r,krs,s->k", x, quadrics, y)).max())


def _plane_points(quadrics: np.ndarray, tangent_a: np.ndarray, tangent_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two points of V on the plane where two tangent spaces meet (unit vectors, unordered)."""
    plane = np.linalg.svd(np.vstack([tangent_a, tangent_b]))[2][-2:].T  # (R, 2)
    restricted = np.einsum("ra,krs,sb->kab", plane, quadrics, plane)
    coeffs = np.stack([restricted[:, 0, 0], 2 * restricted[:, 0, 1], restricted[:, 1, 1]], axis=1)
    a, b, c = np.linalg.svd(coeffs)[2][0]  # the one binary quadratic they all share
    if abs(a) >= abs(c):  # roots of a t^2 + b t + c with the point t e1 + e2
        points = [plane @ np.array([t, 1.0]) for t in np.roots([a, b, c]).real]
    else:
        points = [plane @ np.array([1.0, t]) for t in np.roots([c, b, a]).real]
    if len(points) < 2:  # degenerate quadratic: no usable pair
        points = [plane[:, 0], plane[:, 1]]
    return tuple(p / np.linalg.norm(p) for p in points)  # type: ignore[return-value]


def _basis(u: np.ndarray, quadrics: np.ndarray, r1: int, r2: int, anchors: np.ndarray, swap: bool) -> np.ndarray:
    """``(R, R)`` matrix whose column ``a r2 + b`` is the point ``p_a ⊗ q_b`` of V (up to scale)."""
    r = max(r1, r2)
    tangent = {a: np.einsum("krs,s->kr", quadrics, u[anchors[a]]) for a in range(r)}
    x = {(a, a): u[anchors[a]] / np.linalg.norm(u[anchors[a]]) for a in range(r)}

    def label(a: int, b: int, reference: np.ndarray) -> None:
        """Name the two plane points of anchors a, b: ``x_ab`` is the one on a line of V with ``reference``."""
        z1, z2 = _plane_points(quadrics, tangent[a], tangent[b])
        if _line_residual(quadrics, reference, z1) > _line_residual(quadrics, reference, z2):
            z1, z2 = z2, z1
        x[(a, b)], x[(b, a)] = z1, z2

    z1, z2 = _plane_points(quadrics, tangent[0], tangent[1])
    x[(0, 1)], x[(1, 0)] = (z2, z1) if swap else (z1, z2)
    for b in range(2, r):
        label(0, b, x[(0, 1)])  # x_0b shares p_0 with x_01
    for a in range(1, r):
        for b in range(1, r):
            if (a, b) not in x:
                label(a, b, x[(0, b)])  # x_ab shares q_b with x_0b
    return np.stack([x[(a, b)] for a in range(r1) for b in range(r2)], axis=1)


def _split_rank_one(rows: np.ndarray, r1: int, r2: int) -> tuple[np.ndarray, np.ndarray]:
    """Best rank-one split of each row reshaped to ``r1 x r2``: ``rows[i] ≈ kron(left[i], right[i])``."""
    u, s, vh = np.linalg.svd(rows.reshape(-1, r1, r2))
    return u[:, :, 0] * s[:, :1], vh[:, 0, :]


def segre_factors(target: torch.Tensor, r1: int, r2: int, *, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """ABBA factors of ``target`` found algebraically (see the module notes); exact on exact products.

    Parameters
    ----------
    target : (m, n) tensor
    r1, r2 : int
        The ranks; ``r1 r2 <= min(m, n)`` and ``max(m, n)`` large enough (:func:`applicable`).
    rng : numpy Generator
        Draws the anchor rows (a few draws are tried; the best reconstruction is kept).

    Returns
    -------
    dict of ``B1 (m, r1)``, ``A1 (r1, n)``, ``B2 (m, r2)``, ``A2 (r2, n)`` in float64 on the target's device.
    """
    m, n = target.shape
    if not applicable((m, n), r1, r2):
        raise ValueError(f"the algebraic ABBA factorization at ({r1}, {r2}) needs r1 r2 <= min(m, n) and "
                         f"max(m, n) >= {max(rows_needed(r1, r2), r1 * r2 + 2)}; got shape {(m, n)}")
    if m < rows_needed(r1, r2) or m < r1 * r2 + 2:  # the quadrics live on the rows: use the other side
        flipped = segre_factors(target.mT, r1, r2, rng=rng)
        return {"B1": flipped["A1"].mT, "A1": flipped["B1"].mT, "B2": flipped["A2"].mT, "A2": flipped["B2"].mT}
    r = r1 * r2
    # T's top singular vectors: exact up to EXACT_SVD_MAX, randomized beyond (as the other inits).
    u = top_singular_triplets(target, r)[0].to(torch.float64).cpu().numpy()
    work = target.to(torch.float64)
    norm = float(torch.linalg.matrix_norm(work))
    count = quadric_count(r1, r2)
    quadrics = _quadrics(u, count) if count else None
    # Anchors among the better-conditioned half of the rows (larger leverage).
    candidates = np.argsort(-np.linalg.norm(u, axis=1))[: max(m // 2, max(r1, r2) + 1)]
    best_error, best = np.inf, None
    for _ in range(ANCHOR_TRIES if count else 1):
        anchors = rng.choice(candidates, size=max(r1, r2) + 1, replace=False)
        for swap in (False, True) if count else (False,):
            basis = np.eye(r) if quadrics is None else _basis(u, quadrics, r1, r2, anchors, swap)
            if np.linalg.cond(basis) > 1e10:  # the labelling of the wrong symmetry class is singular
                continue
            scale = np.linalg.solve(basis, u[anchors[-1]]) if quadrics is not None else np.ones(r)
            if np.abs(scale).min() <= 1e-12 * np.abs(scale).max():
                continue
            w = np.linalg.solve(basis, u.T).T / scale
            b1, b2 = _split_rank_one(w, r1, r2)
            rows = torch.from_numpy((b1[:, :, None] * b2[:, None, :]).reshape(m, r)).to(work)
            gram = rows.mT @ rows
            h = torch.linalg.lstsq(gram, rows.mT @ work).solution.mT.cpu().numpy()  # (n, R)
            a1, a2 = _split_rank_one(h, r1, r2)
            factors = {"B1": b1, "A1": a1.T, "B2": b2, "A2": a2.T}
            factors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(work) for k, v in factors.items()}
            error = float(torch.linalg.matrix_norm(
                (factors["B1"] @ factors["A1"]) * (factors["B2"] @ factors["A2"]) - work)) / norm
            if error < best_error:
                best_error, best = error, factors
        if best_error < 1e-8:
            break
    if best is None:  # every labelling degenerate: fall back to a pair-1-only start in the subspace
        raise np.linalg.LinAlgError("the algebraic ABBA factorization found no well-conditioned basis")
    return best
