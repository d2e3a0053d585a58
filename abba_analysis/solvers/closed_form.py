"""Closed-form fits: LoRA's truncated SVD (exact or randomized) and HiRA's divide-then-SVD."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..inits import divide_by_base
from ..linalg import randomized_svd, split_factors, truncated_svd
from .base import Callback, Factors, NoOptions, Problem, SolveOutput, check_range


def _svd_fit(problem: Problem, matrix) -> SolveOutput:
    """The rank-r truncated SVD of ``matrix`` as ``B = U sqrt(S)``, ``A = sqrt(S) V^T``."""
    b, a = split_factors(*truncated_svd(matrix, problem.ranks[0]))
    out = {"B": b, "A": a}
    return SolveOutput(out, [problem.relative_error(out)], 0, "exact")


class ExactSVD:
    """LoRA's optimum: the top-r truncated SVD (Eckart-Young-Mirsky), by a full SVD."""

    name = "svd"
    methods = ("lora",)
    iterative = False
    Options = NoOptions

    def solve(self, problem: Problem, factors: Factors | None, options: NoOptions,
              callback: Callback | None = None, rng: np.random.Generator | None = None) -> SolveOutput:
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
              callback: Callback | None = None, rng: np.random.Generator | None = None) -> SolveOutput:
        u, s, vh = randomized_svd(problem.target, problem.ranks[0], oversample=options.oversample,
                                  power_iters=options.power_iters, seed=rng)
        b, a = split_factors(u, s, vh)
        out = {"B": b, "A": a}
        return SolveOutput(out, [problem.relative_error(out)], 0, "exact")


class DivideSVD:
    """The HiRA paper's fit: top-r SVD of ``target ⊘ W0``. Optimal for ``||T ⊘ W0 - BA||``, not HiRA's error."""

    name = "divide-svd"
    methods = ("hira",)
    iterative = False
    Options = NoOptions

    def solve(self, problem: Problem, factors: Factors | None, options: NoOptions,
              callback: Callback | None = None, rng: np.random.Generator | None = None) -> SolveOutput:
        return _svd_fit(problem, divide_by_base(problem.target, problem.base))
