"""Closed-form fits: LoRA's truncated SVD (exact or randomized) and HiRA's divide-then-SVD."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..inits import divide_by_base
from ..linalg import randomized_svd, split_factors, truncated_svd
from .base import Callback, Factors, NoOptions, Problem, SolveOutput, check_range, unbatch


def exact_outputs(problem: Problem, factors: Factors) -> list[SolveOutput]:
    """One ``"exact"`` output per target of a closed-form fit (no iterations)."""
    errors = problem.relative_errors(factors).tolist()
    return unbatch(factors, [[e] for e in errors], ["exact"] * len(errors), [""] * len(errors))


def _svd_fit(problem: Problem, matrices: torch.Tensor) -> list[SolveOutput]:
    """The rank-r truncated SVD of each matrix as ``B = U sqrt(S)``, ``A = sqrt(S) V^T``."""
    b, a = split_factors(*truncated_svd(matrices, problem.ranks[0]))
    return exact_outputs(problem, {"B": b, "A": a})


class ExactSVD:
    """LoRA's optimum: the top-r truncated SVD (Eckart-Young-Mirsky), by a full SVD."""

    name = "svd"
    methods = ("lora",)
    iterative = False
    Options = NoOptions

    def solve(self, problem: Problem, factors: Factors | None, options: NoOptions,
              callback: Callback | None = None, rngs: list[np.random.Generator] | None = None
              ) -> list[SolveOutput]:
        return _svd_fit(problem, problem.target)


@dataclass(frozen=True)
class RandomizedSVDOptions:
    """``oversample`` extra test vectors and ``power_iters`` subspace iterations (Halko et al.)."""

    oversample: int = 10
    power_iters: int = 4

    def __post_init__(self) -> None:
        check_range("oversample", self.oversample, 0)
        check_range("power_iters", self.power_iters, 0)


class RandomizedSVD:
    """LoRA by randomized SVD: ``O(m n r)`` instead of ``O(m n min(m, n))``, for large targets."""

    name = "rsvd"
    methods = ("lora",)
    iterative = False
    Options = RandomizedSVDOptions

    def solve(self, problem: Problem, factors: Factors | None, options: RandomizedSVDOptions,
              callback: Callback | None = None, rngs: list[np.random.Generator] | None = None
              ) -> list[SolveOutput]:
        # One target at a time: each has its own generator, and at the sizes this solver is for a
        # batch would not fit in memory anyway.
        rngs = rngs if rngs is not None else [np.random.default_rng() for _ in range(problem.batch)]
        pairs = [split_factors(*randomized_svd(t, problem.ranks[0], oversample=options.oversample,
                                               power_iters=options.power_iters, seed=rng))
                 for t, rng in zip(problem.target, rngs, strict=True)]
        return exact_outputs(problem, {"B": torch.stack([b for b, _ in pairs]), "A": torch.stack([a for _, a in pairs])})


class DivideSVD:
    """The HiRA paper's fit: top-r SVD of ``target ⊘ W0``. Optimal for ``||T ⊘ W0 - BA||``, not HiRA's error."""

    name = "divide-svd"
    methods = ("hira",)
    iterative = False
    Options = NoOptions

    def solve(self, problem: Problem, factors: Factors | None, options: NoOptions,
              callback: Callback | None = None, rngs: list[np.random.Generator] | None = None
              ) -> list[SolveOutput]:
        return _svd_fit(problem, divide_by_base(problem.target, problem.base))
