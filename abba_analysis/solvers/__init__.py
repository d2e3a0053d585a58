"""Solvers, registered by name. ``solver="auto"`` in :func:`abba_analysis.fit` resolves through :data:`AUTO`."""

from __future__ import annotations

from .adam import Adam, AdamOptions
from .als import ALS, ALSOptions
from .base import Callback, Problem, Solver, SolveOutput, make_options
from .closed_form import DivideSVD, ExactSVD, RandomizedSVD

SOLVERS: dict[str, Solver] = {s.name: s for s in (ExactSVD(), RandomizedSVD(), DivideSVD(), Adam(), ALS())}

# The fastest reliable solver per method: LoRA's optimum is closed form; for ABBA the exact
# block-coordinate solver reaches Adam's 3000-step error in 0.024-0.27 of Adam's time in 18 of 21
# benchmark cases and ends level with it (+0.00%) in the others (benchmarks/RESULTS.md); being
# monotone from a LoRA(r1) start, it never ends above LoRA at rank r1. HiRA's fit has the same block
# structure.
AUTO = {"lora": "svd", "hira": "als", "abba": "als"}


def names(method: str | None = None) -> list[str]:
    """Names of the registered solvers, all or those that fit ``method``."""
    return sorted(n for n, s in SOLVERS.items() if method is None or method in s.methods)


def get_solver(name: str, method: str) -> Solver:
    """The solver called ``name`` (``"auto"`` resolved for ``method``), checked to support ``method``."""
    if name == "auto":
        name = AUTO[method]
    if name not in SOLVERS:
        raise ValueError(f"solver must be 'auto' or one of {names()}, got {name!r}")
    solver = SOLVERS[name]
    if method not in solver.methods:
        raise ValueError(f"solver {name!r} does not fit {method!r}; for {method} use one of {names(method)}")
    return solver


__all__ = [
    "ALS", "ALSOptions", "AUTO", "Adam", "AdamOptions", "Callback", "DivideSVD", "ExactSVD", "Problem",
    "RandomizedSVD", "SOLVERS", "SolveOutput", "Solver", "get_solver", "make_options", "names",
]
