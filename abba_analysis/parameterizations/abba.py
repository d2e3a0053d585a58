"""ABBA: a Hadamard product of two learnable low-rank pairs, ``dW = s (B1 A1) ⊙ (B2 A2)``.

The Khatri-Rao identity ``(B1 A1) ⊙ (B2 A2) = (B1 •r B2)(A1ᵀ •r A2ᵀ)ᵀ`` (•r: row-wise Kronecker,
the face-splitting product) makes the update a rank ``<= r1 r2`` product of structured factors, so
``dW @ x`` costs ``O((m + n) r1 r2)`` per column of ``x`` and never forms ``dW``.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_positive_int
from ..workspace import Workspace, product, scratch
from .base import Factors, factor_param_count, hadamard


def abba_scale(alpha: float, r1: int, r2: int) -> float:
    """The paper's scale ``alpha**2 / sqrt(r1 r2)`` (keeps forward and backward moments Θ(1)).

    Examples
    --------
    >>> abba_scale(4.0, 4, 4)
    4.0
    """
    r1 = check_positive_int(r1, "r1")
    r2 = check_positive_int(r2, "r2")
    return alpha**2 / math.sqrt(r1 * r2)


def row_kronecker(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Face-splitting product: row i of the result is ``kron(left[i], right[i])``.

    ``left: p x a`` and ``right: p x b`` give ``p x (a b)``.
    """
    if left.shape[0] != right.shape[0]:
        raise ValueError(f"row_kronecker needs equal row counts, got {left.shape[0]} and {right.shape[0]}")
    return (left[:, :, None] * right[:, None, :]).reshape(left.shape[0], -1)


def khatri_rao_factors(factors: Factors) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(W, H)`` with ``(B1 A1) ⊙ (B2 A2) = W @ H.T``.

    ``W = B1 •r B2`` is ``m x r1 r2`` and ``H = A1ᵀ •r A2ᵀ`` is ``n x r1 r2``.
    """
    W = row_kronecker(factors["B1"], factors["B2"])
    H = row_kronecker(factors["A1"].T, factors["A2"].T)
    return W, H


def abba_apply(factors: Factors, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Compute ``dW @ x`` for ``x`` of shape ``(n,)`` or ``(n, k)`` without forming ``dW``.

    Cost ``O((m + n) r1 r2 k)`` instead of ``O(m n (r1 + r2 + k))``.
    """
    A1, A2, B1, B2 = factors["A1"], factors["A2"], factors["B1"], factors["B2"]
    vector = x.ndim == 1
    xm = x[:, None] if vector else x
    # (A1ᵀ •r A2ᵀ)ᵀ x, held as r1 x r2 x k, then contracted with the rows of B1 •r B2.
    inner = torch.einsum("aj,bj,jk->abk", A1, A2, xm)
    out = scale * torch.einsum("ia,ib,abk->ik", B1, B2, inner)
    return out[:, 0] if vector else out


class ABBA:
    """``dW = (B1 A1) ⊙ (B2 A2)``; ``(r1 + r2)(m + n)`` parameters, rank at most ``r1 r2``."""

    name = "abba"
    factor_names = ("B1", "A1", "B2", "A2")
    needs_base = False

    def check_ranks(self, rank: object, shape: tuple[int, int]) -> tuple[int, int]:
        if not isinstance(rank, (tuple, list)) or len(rank) != 2:
            raise TypeError(
                f"rank for abba must be a pair (r1, r2), got {rank!r}; for the budget of LoRA at rank r "
                "use aa.budget.abba_ranks_for_lora(r)"
            )
        upper = min(shape)
        return (check_positive_int(rank[0], "r1", upper=upper), check_positive_int(rank[1], "r2", upper=upper))

    def factor_shapes(self, shape: tuple[int, int], ranks: tuple[int, ...]) -> dict[str, tuple[int, int]]:
        m, n = shape
        r1, r2 = ranks
        return {"B1": (m, r1), "A1": (r1, n), "B2": (m, r2), "A2": (r2, n)}

    def num_params(self, shape: tuple[int, int], ranks: tuple[int, ...]) -> int:
        return factor_param_count(self.factor_shapes(shape, ranks))

    def rank_bound(self, shape: tuple[int, int], ranks: tuple[int, ...], base: torch.Tensor | None = None) -> int:
        return min(ranks[0] * ranks[1], *shape)

    def materialize(self, factors: Factors, base: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        product = hadamard(factors["B1"] @ factors["A1"], factors["B2"] @ factors["A2"])
        return product if scale == 1 else product * scale

    def gradients(
        self, factors: Factors, target: torch.Tensor, base: torch.Tensor | None = None,
        workspace: Workspace | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        B1, A1, B2, A2 = (factors[k] for k in self.factor_names)
        P1, P2 = product(B1, A1, workspace, "P1"), product(B2, A2, workspace, "P2")
        residual = torch.mul(P1, P2, out=scratch(workspace, "residual", P1, P2)).sub_(target)
        residual2 = torch.linalg.matrix_norm(residual).square()
        # In place from here: three m x n tensors in all (P1, P2, residual), whatever the ranks.
        G1 = P2.mul_(residual)  # dL/dP1 = R ⊙ P2
        grads = {"B1": G1 @ A1.mT, "A1": B1.mT @ G1}
        G2 = P1.mul_(residual)  # dL/dP2 = R ⊙ P1
        grads.update({"B2": G2 @ A2.mT, "A2": B2.mT @ G2})
        return residual2, {k: grads[k] for k in self.factor_names}
