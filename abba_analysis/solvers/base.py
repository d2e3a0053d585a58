"""What a solver receives and returns, and how solvers and their options are registered."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch

from ..parameterizations import Parameterization

Factors = dict[str, torch.Tensor]
Callback = Callable[[int, float, Factors], Any]
"""Called after every iteration as ``callback(iteration, error, factors)``; returning True stops."""


@dataclass
class Problem:
    """A fitting problem on one device in one dtype: ``target ≈ method.materialize(factors, base)``."""

    method: Parameterization
    target: torch.Tensor
    ranks: tuple[int, ...]
    base: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.target.shape)  # type: ignore[return-value]

    def relative_error(self, factors: Factors) -> float:
        """``||target - materialize(factors)||_F / ||target||_F``."""
        residual = self.method.materialize(factors, self.base) - self.target
        return float(torch.linalg.matrix_norm(residual) / torch.linalg.matrix_norm(self.target))


@dataclass
class SolveOutput:
    """A solver's answer.

    ``history`` holds the relative error at the start and after each iteration; ``status`` is one of
    ``"exact"`` (closed form), ``"converged"`` (a stopping rule held), ``"max_iter"``, ``"diverged"``
    (NaN/Inf met; the best iterate is returned) or ``"stopped"`` (by the callback).
    """

    factors: Factors
    history: list[float]
    iterations: int
    status: str
    message: str = ""


class Solver(Protocol):
    """A registered solver: ``solve(problem, factors0, options, callback, rng) -> SolveOutput``."""

    name: str
    methods: tuple[str, ...]
    iterative: bool
    Options: type

    def solve(
        self,
        problem: Problem,
        factors: Factors | None,
        options: Any,
        callback: Callback | None = None,
        rng: np.random.Generator | None = None,
    ) -> SolveOutput:
        """Fit ``problem`` from ``factors`` (ignored by closed-form solvers); ``rng`` feeds randomized ones."""


@dataclass(frozen=True)
class NoOptions:
    """Closed-form solvers without options."""


def make_options(solver: Solver, given: dict[str, Any]) -> Any:
    """Build ``solver.Options`` from keyword arguments, naming any unknown one and the valid ones."""
    valid = [f.name for f in dataclasses.fields(solver.Options)]
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise TypeError(f"solver {solver.name!r} has no option(s) {unknown}; valid options: {valid or 'none'}")
    return solver.Options(**given)


def check_range(name: str, value: float, low: float, high: float = float("inf"), *, low_open: bool = False) -> None:
    """Raise ValueError naming ``name`` unless ``low <(=) value <= high``."""
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")


def stalled(history: list[float], window: int, rtol: float) -> bool:
    """True when the error improved by less than ``rtol`` (relative) over the last ``window`` iterations."""
    if rtol <= 0 or len(history) <= window:
        return False
    before, now = history[-1 - window], history[-1]
    return before - now <= rtol * max(now, 1e-300)


@dataclass
class BestIterate:
    """Keeps a copy of the factors with the lowest error seen so far."""

    error: float = float("inf")
    factors: Factors = field(default_factory=dict)

    def offer(self, error: float, factors: Factors) -> None:
        if error < self.error:
            self.error = error
            self.factors = {k: v.clone() for k, v in factors.items()}
