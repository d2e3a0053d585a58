"""The contract every parameterization of a weight update follows."""

from __future__ import annotations

from typing import Mapping, Protocol

import torch

from ..workspace import Workspace

Factors = Mapping[str, torch.Tensor]


class Parameterization(Protocol):
    """A family of m x n update matrices given by a few small factors.

    Implementations are stateless: every method takes the matrix ``shape`` and the ``ranks`` tuple
    it needs, so one instance serves all sizes.

    Attributes
    ----------
    name : str
        The registry name (``"lora"``, ``"hira"``, ``"abba"``).
    factor_names : tuple of str
        Names of the factors, in the order solvers update them.
    needs_base : bool
        Whether the model itself contains the frozen weight ``W0`` (HiRA).
    """

    name: str
    factor_names: tuple[str, ...]
    needs_base: bool

    def check_ranks(self, rank: object, shape: tuple[int, int]) -> tuple[int, ...]:
        """Validate a user's ``rank`` argument and return it as a tuple of ints."""

    def factor_shapes(self, shape: tuple[int, int], ranks: tuple[int, ...]) -> dict[str, tuple[int, int]]:
        """Shape of each factor for an m x n update."""

    def num_params(self, shape: tuple[int, int], ranks: tuple[int, ...]) -> int:
        """Number of trainable parameters."""

    def rank_bound(self, shape: tuple[int, int], ranks: tuple[int, ...], base: torch.Tensor | None = None) -> int:
        """Largest rank an update of this family can have."""

    def materialize(self, factors: Factors, base: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        """The update matrix the factors represent (a stack of them for factors with a leading batch axis)."""

    def gradients(
        self, factors: Factors, target: torch.Tensor, base: torch.Tensor | None = None,
        workspace: Workspace | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Squared residual norm ``||materialize - target||_F^2`` and the gradient of half of it.

        Factors and target may carry a leading batch axis (``K x m x n`` targets); the norm is then
        one per target. With a ``workspace`` the m x n temporaries go into its buffers (reused
        from call to call); without one, they are new tensors (as under :func:`torch.autocast`).
        """


def hadamard(product: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``product ⊙ other``, written into ``product`` (which must be a fresh tensor, e.g. a matmul's
    result) when autograd needs neither: one m x n tensor less at the peak of big targets."""
    return product * other if product.requires_grad or other.requires_grad else product.mul_(other)


def factor_param_count(shapes: Mapping[str, tuple[int, int]]) -> int:
    """Total number of entries in factors of the given shapes."""
    return sum(a * b for a, b in shapes.values())
