"""``effort="thorough"``: a search over local minima for one iterative fit.

A block-coordinate fit ends in the local minimum its start leads to, and different starts lead to
different minima. After the default fit (whose result the search can only improve on), the thorough
search runs a portfolio of structurally different starts as one batch (the Hadamard-decomposition
literature's ``sqrt-target`` start for ABBA, ``divide-svd`` for HiRA, random draws), prunes them by
successive halving (every survivor runs a rung of sweeps, the worse half stops, the next rung is twice
as long), runs the last three to convergence, then tries to leave the best minimum found by anyone:
it perturbs the best factors and refits (basin hopping), keeping a refit only if it ends lower. Every
start and hop is recorded (:class:`Start`), so the distribution of the minima a problem has can be
studied.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from . import inits
from .solvers import Problem, Solver, SolveOutput

RANDOM_STARTS = 12  # random draws in the portfolio, beside the structured starts
FIRST_RUNG = 32  # sweeps of the first successive-halving rung; each later rung doubles it
FINALISTS = 3  # starts run to convergence
HOPS = 5  # perturb-and-refit attempts from the best minimum
HOP_SCALE = 0.1  # relative size of a hop's perturbation of each factor entry


@dataclass(frozen=True)
class Start:
    """One start of a search: where it began and where it ended.

    Attributes
    ----------
    init : str
        The init scheme (``"hop"`` for a perturbation of the best minimum found before it).
    error : float
        Relative error at which it stopped.
    iterations : int
        Sweeps it ran.
    stage : str
        ``"pruned"`` (stopped by successive halving), ``"final"`` (run to convergence) or ``"hop"``.
    """

    init: str
    error: float
    iterations: int
    stage: str


def portfolio(method: str, tried: str) -> list[str]:
    """The init schemes a thorough search adds to the start ``tried`` by the default fit: the
    literature's structured start (ABBA) or HiRA's closed-form one, then :data:`RANDOM_STARTS`
    random draws."""
    structured = [s for s in (["sqrt-target"] if method == "abba" else ["divide-svd"]) if s != tried]
    return structured + ["random"] * RANDOM_STARTS


def search(problem: Problem, solver: Solver, options, schemes: list[str], rng: np.random.Generator,
           floor: float, incumbent: SolveOutput, incumbent_scheme: str | None) -> tuple[SolveOutput, str | None, list[Start]]:
    """Search beyond ``incumbent`` (the default fit's best output on ``problem``, a single target) from
    ``schemes``, then hop from the best minimum.

    Returns the best output (its history is the winning path's: its rungs and accepted hops in
    turn), the init scheme that led there and the record of every start and hop of the search. It
    ends early once an error reaches ``floor`` (the rank-``r1 r2`` SVD error, which no ABBA fit can
    beat).
    """
    target, base = problem.target[0], None if problem.base is None else problem.base[0]
    rngs = rng.spawn(len(schemes) + HOPS)
    starts = [inits.initialize(s, problem.method.name, problem.shape, problem.ranks, target=target, base=base,
                               seed=g, dtype=target.dtype, device=target.device) for s, g in zip(schemes, rngs, strict=False)]
    factors = {name: torch.stack([f[name] for f in starts]) for name in starts[0]}
    histories: list[list[float]] = [[] for _ in schemes]
    statuses = ["converged"] * len(schemes)  # each start's last solver status
    records: list[Start] = []
    alive, sweeps = list(range(len(schemes))), FIRST_RUNG
    while True:
        final = len(alive) <= FINALISTS
        rung = options if final else dataclasses.replace(options, max_iter=sweeps)
        outs = _solve(problem, solver, rung, {k: v[alive] for k, v in factors.items()}, [rngs[i] for i in alive])
        for i, out in zip(alive, outs, strict=True):
            histories[i] += out.history if not histories[i] else out.history[1:]
            statuses[i] = out.status
            for name, value in out.factors.items():
                factors[name][i] = value
        errors = {i: histories[i][-1] for i in alive}
        if final or min(errors.values()) <= floor:
            for i in alive:
                records.append(Start(schemes[i], errors[i], len(histories[i]) - 1, "final"))
            break
        ranked = sorted(alive, key=errors.__getitem__)
        survivors = ranked[: max(FINALISTS, len(ranked) // 2)]
        for i in ranked[len(survivors):]:
            records.append(Start(schemes[i], errors[i], len(histories[i]) - 1, "pruned"))
        alive, sweeps = sorted(survivors), 2 * sweeps
    index = min(range(len(schemes)), key=lambda i: histories[i][-1])  # every start ran the first rung
    best_factors = {k: v[index].clone() for k, v in factors.items()}
    best_history, best_scheme, status = histories[index], schemes[index], statuses[index]
    if min(incumbent.history) <= best_history[-1]:
        best_factors = {k: v.clone() for k, v in incumbent.factors.items()}
        best_history, best_scheme, status = list(incumbent.history), incumbent_scheme, incumbent.status
    for hop in range(HOPS):
        if best_history[-1] <= floor:
            break
        g = torch.Generator(device="cpu").manual_seed(int(rngs[len(schemes) + hop].integers(2**62)))
        moved = {k: v * (1 + HOP_SCALE * torch.randn(v.shape, generator=g, dtype=v.dtype).to(v.device))
                 for k, v in best_factors.items()}
        (out,) = _solve(problem, solver, options, {k: v[None] for k, v in moved.items()}, [rngs[len(schemes) + hop]])
        end = min(out.history)
        records.append(Start("hop", end, len(out.history) - 1, "hop"))
        if end < best_history[-1]:
            best_factors = {k: v.clone() for k, v in out.factors.items()}
            best_history, status = best_history + out.history[1:], out.status
    output = SolveOutput(best_factors, best_history, len(best_history) - 1, status,
                         f"the best of the default fit and {len(records)} more starts and hops (effort='thorough')")
    return output, best_scheme, records


def _solve(problem: Problem, solver: Solver, options, factors: dict[str, torch.Tensor],
           rngs: list[np.random.Generator]) -> list[SolveOutput]:
    """Solve one target from several starts at once, as a batch of copies of it."""
    count = next(iter(factors.values())).shape[0]
    copies = Problem(problem.method, problem.target.expand(count, -1, -1), problem.ranks,
                     None if problem.base is None else problem.base.expand(count, -1, -1))
    return solver.solve(copies, factors, options, None, rngs)
