"""HiRA: a Hadamard product with the frozen weight, ``dW = W0 * (B @ A)``."""

from __future__ import annotations

import torch

from ..workspace import Workspace, product, scratch
from .base import Factors, hadamard
from .lora import SinglePairShapes


class HiRA(SinglePairShapes):
    """``dW = W0 ⊙ (B @ A)``; ``r (m + n)`` parameters, rank at most ``rank(W0) * r``.

    HiRA has no scale; its merged weight is ``W0 ⊙ (1 + B A)``.
    """

    name = "hira"
    needs_base = True

    def rank_bound(self, shape: tuple[int, int], ranks: tuple[int, ...], base: torch.Tensor | None = None) -> int:
        base_rank = min(shape) if base is None else int(torch.linalg.matrix_rank(base))
        return min(base_rank * ranks[0], *shape)

    def materialize(self, factors: Factors, base: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        if base is None:
            raise ValueError("base (the frozen weight W0) is required to materialize a HiRA update")
        product = hadamard(factors["B"] @ factors["A"], base)
        return product if scale == 1 else product * scale

    def gradients(
        self, factors: Factors, target: torch.Tensor, base: torch.Tensor | None = None,
        workspace: Workspace | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if base is None:
            raise ValueError("base (the frozen weight W0) is required for HiRA gradients")
        B, A = factors["B"], factors["A"]
        # Not in place on B @ A: under bf16 autocast it is bf16, and the residual must stay float32.
        BA = product(B, A, workspace, "product")
        residual = torch.mul(base, BA, out=scratch(workspace, "residual", base, BA, target)).sub_(target)
        residual2 = torch.linalg.matrix_norm(residual).square()
        weighted = torch.mul(residual, base, out=scratch(workspace, "weighted", residual))
        return residual2, {"B": weighted @ A.mT, "A": B.mT @ weighted}
