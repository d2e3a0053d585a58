"""LoRA: the update is a plain low-rank product, ``dW = s * B @ A``."""

from __future__ import annotations

import math

import torch

from .._validation import check_positive_int
from ..workspace import Workspace, product, scratch
from .base import Factors, factor_param_count


def lora_scale(alpha: float, rank: int, *, rslora: bool = False) -> float:
    """LoRA's scale ``alpha / r``, or rsLoRA's ``alpha / sqrt(r)``.

    Examples
    --------
    >>> lora_scale(16, 8)
    2.0
    >>> lora_scale(16, 16, rslora=True)
    4.0
    """
    rank = check_positive_int(rank, "rank")
    return alpha / math.sqrt(rank) if rslora else alpha / rank


def check_single_rank(rank: object, shape: tuple[int, int], method: str) -> tuple[int]:
    """Validate the one rank of LoRA and HiRA (an int, or a 1-tuple)."""
    if isinstance(rank, (tuple, list)):
        if len(rank) != 1:
            raise ValueError(f"rank for {method} must be one int, got {rank!r}")
        rank = rank[0]
    return (check_positive_int(rank, "rank", upper=min(shape)),)


class SinglePairShapes:
    """Rank checks and shapes shared by the one-pair methods (LoRA, HiRA): ``B: m x r``, ``A: r x n``."""

    name: str
    factor_names = ("B", "A")

    def check_ranks(self, rank: object, shape: tuple[int, int]) -> tuple[int]:
        return check_single_rank(rank, shape, self.name)

    def factor_shapes(self, shape: tuple[int, int], ranks: tuple[int, ...]) -> dict[str, tuple[int, int]]:
        (r,) = ranks
        return {"B": (shape[0], r), "A": (r, shape[1])}

    def num_params(self, shape: tuple[int, int], ranks: tuple[int, ...]) -> int:
        return factor_param_count(self.factor_shapes(shape, ranks))


class LoRA(SinglePairShapes):
    """``dW = B @ A`` with ``B: m x r`` and ``A: r x n``; ``r (m + n)`` parameters, rank at most r."""

    name = "lora"
    needs_base = False

    def rank_bound(self, shape: tuple[int, int], ranks: tuple[int, ...], base: torch.Tensor | None = None) -> int:
        return min(ranks[0], *shape)

    def materialize(self, factors: Factors, base: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        product = factors["B"] @ factors["A"]
        return product if scale == 1 else product * scale

    def gradients(
        self, factors: Factors, target: torch.Tensor, base: torch.Tensor | None = None,
        workspace: Workspace | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        B, A = factors["B"], factors["A"]
        # Not in place on B @ A: under bf16 autocast it is bf16, and the residual must stay float32.
        BA = product(B, A, workspace, "product")
        residual = torch.sub(BA, target, out=scratch(workspace, "residual", target, BA))
        residual2 = torch.linalg.matrix_norm(residual).square()
        return residual2, {"B": residual @ A.mT, "A": B.mT @ residual}
