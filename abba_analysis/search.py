"""``effort="thorough"``: a search over local minima for one iterative fit.

A block-coordinate fit ends in the local minimum its start leads to, and different starts lead to
different minima. The thorough search begins with the default fit and :data:`RESTARTS` random
restarts, exactly as ``fit(restarts=RESTARTS)`` makes them (for ABBA with the default's second start,
the literature's solver, on a budget of the first start's sweeps), so it never ends above either. For
ABBA it then runs the Hadamard-decomposition literature's solver from the literature's ``sqrt-target``
start (:func:`~abba_analysis.solvers.literature.literature_bcd`) for its own 500 sweeps, unless the
default's run of it already stopped by its own rule, so it never ends above that either. It runs Adam
for :data:`ADAM_STEPS` steps from the start ``fit(solver="adam")`` takes with the same seed (the paper's
``abba-paper`` init for ABBA), then finishes that minimum with this package's solver, so it never ends
above that long Adam run: Adam's noisy path settles into basins the exact sweeps do not reach. Then a
portfolio of structurally
different starts runs as one batch (``sqrt-target`` for ABBA, ``divide-svd`` for HiRA, random draws)
under this package's solver, pruned by successive halving (every survivor runs a rung of sweeps, the
worse half stops, the next rung is twice as long), the last three run to convergence. Last it tries
to leave the best minimum found by anyone: it perturbs the best factors and refits (basin hopping),
keeping a refit only if it ends lower. Every start and hop is recorded (:class:`Start`), so the
distribution of the minima a problem has can be studied. ``benchmarks/bench_thorough.py`` and
``bench_thorough_grid.py`` measure what it finds and costs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from . import inits
from .solvers import SOLVERS, AdamOptions, Problem, Solver, SolveOutput
from .solvers.literature import literature_bcd

LITERATURE_SWEEPS = 500  # sweeps of the literature's solver (ABBA), its own setting
ADAM_STEPS = 20000  # steps of the Adam leg: Adam still descends from 3000 to 20,000 steps (bench_thorough_grid)
RESTARTS = 9  # random restarts of the default fit, run to convergence one after another, before the search
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
        ``"final"`` (run to convergence: the default fit, its restarts, the search's finalists),
        ``"literature"`` (the literature's solver,
        :func:`~abba_analysis.solvers.literature.literature_bcd`), ``"adam"`` (the Adam leg,
        :data:`ADAM_STEPS` steps), ``"polish"`` (this package's solver from the Adam leg's best iterate,
        init ``"adam"``), ``"pruned"`` (stopped by successive halving) or ``"hop"``.
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
           floor: float, incumbent: SolveOutput, incumbent_scheme: str | None,
           adam_start: tuple[str, np.random.Generator], stalled_literature: bool = False,
           ) -> tuple[SolveOutput, str | None, list[Start]]:
    """Search beyond ``incumbent`` (the restarted default fit's best output on ``problem``, a single
    target): for ABBA the literature's solver from its ``sqrt-target`` start (:func:`literature_bcd`)
    unless ``stalled_literature`` (the default fit ran it and it stopped by its own rule), then the
    Adam leg from ``adam_start`` (an init scheme and the generator that draws it and drives
    Adam, as ``fit(solver="adam")`` would use them) finished by ``solver``, then ``schemes`` pruned by
    successive halving, then hops from the best minimum. An incumbent already at ``floor`` is returned
    as it is, with no records.

    Returns the best output (its history is the winning path's: its rungs and accepted hops in
    turn), the init scheme that led there and the record of every start and hop of the search. It
    ends early once an error reaches ``floor`` (the rank-``r1 r2`` SVD error, which no ABBA fit can
    beat).
    """
    target, base = problem.target[0], None if problem.base is None else problem.base[0]
    if min(incumbent.history) <= floor:
        return incumbent, incumbent_scheme, []
    rngs = rng.spawn(len(schemes) + HOPS)
    records: list[Start] = []
    # (factors, history, scheme, status) of the lowest minimum so far, the default fit's first
    best = ({k: v.clone() for k, v in incumbent.factors.items()}, list(incumbent.history), incumbent_scheme,
            incumbent.status)
    if problem.method.name == "abba" and not stalled_literature:
        # The literature's own solver from its own start: it ends in other minima than this package's.
        start = inits.initialize("sqrt-target", "abba", problem.shape, problem.ranks, target=target,
                                 seed=rng, dtype=target.dtype, device=target.device)
        found, history, _ = literature_bcd(target, start, max_iter=LITERATURE_SWEEPS)
        path = history[: int(np.argmin(history)) + 1].tolist()
        records.append(Start("sqrt-target", path[-1], len(history) - 1, "literature"))
        if path[-1] < best[1][-1]:
            best = (found, path, "sqrt-target", "converged" if len(history) <= LITERATURE_SWEEPS else "max_iter")
    if best[1][-1] > floor:
        # Adam's long run, then exact sweeps from its best iterate to the bottom of its basin.
        scheme, adam_rng = adam_start
        start = inits.initialize(scheme, problem.method.name, problem.shape, problem.ranks, target=target, base=base,
                                 seed=adam_rng, dtype=target.dtype, device=target.device)
        (run,) = _solve(problem, SOLVERS["adam"], AdamOptions(steps=ADAM_STEPS), {k: v[None] for k, v in start.items()},
                        [adam_rng])
        records.append(Start(scheme, min(run.history), len(run.history) - 1, "adam"))
        (polished,) = _solve(problem, solver, options, {k: v[None] for k, v in run.factors.items()}, [adam_rng])
        records.append(Start("adam", min(polished.history), len(polished.history) - 1, "polish"))
        if min(polished.history) < best[1][-1]:
            path = run.history[: int(np.argmin(run.history)) + 1] + polished.history[1:]
            best = ({k: v.clone() for k, v in polished.factors.items()}, path, scheme, polished.status)
    starts = [inits.initialize(s, problem.method.name, problem.shape, problem.ranks, target=target, base=base,
                               seed=g, dtype=target.dtype, device=target.device) for s, g in zip(schemes, rngs, strict=False)]
    factors = {name: torch.stack([f[name] for f in starts]) for name in starts[0]}
    histories: list[list[float]] = [[] for _ in schemes]
    statuses = ["converged"] * len(schemes)  # each start's last solver status
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
    if histories[index][-1] < best[1][-1]:
        best = ({k: v[index].clone() for k, v in factors.items()}, histories[index], schemes[index], statuses[index])
    best_factors, best_history, best_scheme, status = best
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
                         f"the best of the default fit, its {RESTARTS} restarts and {len(records)} more starts and hops "
                         "(effort='thorough')")
    return output, best_scheme, records


def _solve(problem: Problem, solver: Solver, options, factors: dict[str, torch.Tensor],
           rngs: list[np.random.Generator]) -> list[SolveOutput]:
    """Solve one target from several starts at once, as a batch of copies of it."""
    count = next(iter(factors.values())).shape[0]
    copies = Problem(problem.method, problem.target.expand(count, -1, -1), problem.ranks,
                     None if problem.base is None else problem.base.expand(count, -1, -1))
    return solver.solve(copies, factors, options, None, rngs)
