"""HiRA: a Hadamard product with the frozen weight, ``dW = W0 * (B @ A)``."""

from __future__ import annotations

import torch

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
        self, factors: Factors, target: torch.Tensor, base: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if base is None:
            raise ValueError("base (the frozen weight W0) is required for HiRA gradients")
        B, A = factors["B"], factors["A"]
        residual = base * (B @ A) - target
        weighted = residual * base
        return residual.square().sum((-2, -1)), {"B": weighted @ A.mT, "A": B.mT @ weighted}
