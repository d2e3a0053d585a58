"""What a solver receives and returns, and how solvers and their options are registered."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
import torch

from ..parameterizations import Parameterization

Factors = dict[str, torch.Tensor]
Callback = Callable[[int, Any, Factors], Any]
"""Called after every iteration as ``callback(iteration, error, factors)``; returning True stops.

Solvers call it with the errors (a numpy array) and batched factors of the targets still running;
:func:`abba_analysis.fit` hands a single fit's callback a float and unbatched factors.
"""


@dataclass
class Problem:
    """A batch of fitting problems on one device in one dtype: ``target[k] ≈ materialize(factors[k])``.

    Every solver works on a stack of ``K`` targets of one shape; a single fit is a batch of one.

    Attributes
    ----------
    method : Parameterization
    target : (K, m, n) tensor
    ranks : tuple of int
    base : (K, m, n) or (1, m, n) tensor, optional
        ``W0`` per target, or one ``W0`` shared by all (broadcast).
    """

    method: Parameterization
    target: torch.Tensor
    ranks: tuple[int, ...]
    base: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.target.ndim != 3:
            raise ValueError(f"Problem.target must be a (K, m, n) stack, got shape {tuple(self.target.shape)}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)`` of each target."""
        return tuple(self.target.shape[1:])  # type: ignore[return-value]

    @property
    def batch(self) -> int:
        """Number of targets ``K``."""
        return self.target.shape[0]

    def subset(self, index: torch.Tensor) -> "Problem":
        """The problems at ``index`` (a shared base stays shared; the whole batch is ``self``)."""
        if torch.equal(index, torch.arange(self.batch)):
            return self
        base = self.base if self.base is None or self.base.shape[0] == 1 else self.base[index]
        return Problem(self.method, self.target[index], self.ranks, base)

    def relative_errors(self, factors: Factors) -> torch.Tensor:
        """``||target[k] - materialize(factors)[k]||_F / ||target[k]||_F`` for every k, as a (K,) tensor."""
        with torch.no_grad():  # materialize returns a fresh tensor: subtract in place
            residual = self.method.materialize(factors, self.base).sub_(self.target)
        return torch.linalg.matrix_norm(residual) / torch.linalg.matrix_norm(self.target)


@dataclass
class SolveOutput:
    """A solver's answer for one target of the batch.

    ``factors`` are unbatched (views into the batch's tensors); ``history`` holds the relative error
    at the start and after each iteration; ``status`` is one of ``"exact"`` (closed form),
    ``"converged"`` (a stopping rule held), ``"max_iter"``, ``"diverged"`` (NaN/Inf met; the best
    iterate is returned) or ``"stopped"`` (by the callback).
    """

    factors: Factors
    history: list[float]
    iterations: int
    status: str
    message: str = ""


def unbatch(factors: Factors, histories: list[list[float]], statuses: list[str],
            messages: list[str]) -> list[SolveOutput]:
    """Split batched factors and per-target records into one :class:`SolveOutput` per target."""
    return [SolveOutput({name: v[k] for name, v in factors.items()}, history, len(history) - 1, status, message)
            for k, (history, status, message) in enumerate(zip(histories, statuses, messages, strict=True))]


class Solver(Protocol):
    """A registered solver: ``solve(problem, factors0, options, callback, rngs) -> list[SolveOutput]``."""

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
        rngs: list[np.random.Generator] | None = None,
    ) -> list[SolveOutput]:
        """Fit every target of ``problem`` from the batched ``factors`` (ignored by closed-form solvers).

        ``rngs`` (one generator per target) feed randomized solvers. Returns one output per target.
        """


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


def check_range(name: str, value: float, low: float, high: float = float("inf"), *, low_open: bool = False,
                high_open: bool = False) -> None:
    """Raise ValueError naming ``name`` unless ``low <(=) value <(=) high``."""
    ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(f"{name} must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}, "
                         f"got {value!r}")


def stalled(history: list[float], window: int, rtol: float) -> bool:
    """True when the error improved by less than ``rtol`` (relative) over the last ``window`` iterations."""
    if rtol <= 0 or len(history) <= window:
        return False
    before, now = history[-1 - window], history[-1]
    return before - now <= rtol * max(now, 1e-300)


class BestIterate:
    """Keeps, for every target of a batch, a copy of the factors with the lowest error seen so far."""

    def __init__(self, factors: Factors) -> None:
        self.factors = {k: v.clone() for k, v in factors.items()}
        batch = next(iter(factors.values())).shape[0]
        self.errors = torch.full((batch,), float("inf"), dtype=torch.float64)

    def offer(self, errors: torch.Tensor, factors: Factors, index: torch.Tensor) -> None:
        """Offer the factors of targets ``index`` (batched as ``factors``) with their ``errors``."""
        better = errors < self.errors[index]  # NaN never counts as better
        if bool(better.any()):
            self.errors[index[better]] = errors[better]
            for k, v in factors.items():
                self.factors[k][index[better]] = v[better]
