"""``effort="thorough"``: a search over local minima for one iterative fit.

A block-coordinate fit ends in the local minimum its start leads to, and different starts lead to
different minima. The thorough search begins with the default fit and :data:`RESTARTS` random
restarts, exactly as ``fit(restarts=RESTARTS)`` makes them, so it never ends above either. For ABBA
it then runs the Hadamard-decomposition literature's solver from the literature's ``sqrt-target``
start (:func:`literature_bcd`), so it never ends above that either. It runs Adam for
:data:`ADAM_STEPS` steps from the start ``fit(solver="adam")`` takes with the same seed (the paper's
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
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import inits
from .solvers import SOLVERS, AdamOptions, Problem, Solver, SolveOutput
from .solvers.als import _abba_sweep, residual
from .workspace import Workspace, product

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
        ``"literature"`` (the literature's solver, :func:`literature_bcd`), ``"adam"`` (the Adam leg,
        :data:`ADAM_STEPS` steps), ``"polish"`` (this package's solver from the Adam leg's best iterate,
        init ``"adam"``), ``"pruned"`` (stopped by successive halving) or ``"hop"``.
    """

    init: str
    error: float
    iterations: int
    stage: str


def literature_bcd(target: torch.Tensor, factors: dict[str, torch.Tensor], *, max_iter: int = 500,
                   ridge: float | None = None, stall: int = 10, rtol: float = 1e-8,
                   ) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
    """Fit ``target ≈ (B1 A1) ⊙ (B2 A2)`` from ``factors`` by the Hadamard-decomposition literature's
    block-coordinate descent (Wertz, Vandaele & Gillis, 2025), on this package's exact block solves.

    Each factor's exact update ``X⁺`` is extrapolated at once, ``X ← X⁺ + β (X⁺ − X_prev)``, and the
    next factor is solved against it (per pair the columns, then the rows; pair 2, then pair 1). A
    sweep that raises the error is partly taken back (``X ← X − β (X − X_prev)``) and divides β by
    1.5; one that lowers it grows β by 1.05 up to a cap that itself grows by 1.01 up to 1 and drops to
    β after a failure (β starts at 0.5). No rebalancing. It stops after ``stall`` sweeps in a row that
    each gain at most ``rtol`` (relative), or after ``max_iter``. A thorough search runs it as one of
    its starts; ``benchmarks/bench_momentum.py`` compares the package's solver with it.

    Parameters
    ----------
    target : (m, n) tensor
        The matrix to fit.
    factors : dict of tensors
        The start: ``B1``, ``A1``, ``B2``, ``A2`` (not modified).
    max_iter, stall, rtol
        The stopping rule above.
    ridge : float, optional
        Proximal weight of the block solves relative to each Gram matrix's mean diagonal (default:
        1e-10 in float64, 1e-6 in float32, as the package's solver).

    Returns
    -------
    factors : dict of tensors
        The iterate of lowest error (the error may rise on a failed sweep).
    history : numpy.ndarray
        Relative error at the start and after each sweep.
    seconds : numpy.ndarray
        Wall time to the start (0) and to each sweep's end.
    """
    begin = time.perf_counter()
    if ridge is None:
        ridge = 1e-10 if target.dtype == torch.float64 else 1e-6
    target = target[None]
    f = {k: v[None].clone() for k, v in factors.items()}
    workspace, ridges = Workspace(), torch.full((1,), ridge, dtype=torch.float64)
    norm = float(torch.linalg.matrix_norm(target))

    def current_error() -> float:
        weight = product(f["B2"], f["A2"], workspace, "weight")
        return float(torch.linalg.matrix_norm(residual(f["B1"], f["A1"], weight, target, workspace))) / norm

    history, times, cap, beta, slow = [current_error()], [0.0], 1.0, 0.5, 0
    best = ({k: v[0].clone() for k, v in f.items()}, history[0])
    for _ in range(max_iter):
        previous = {k: v.clone() for k, v in f.items()}
        momentum = (torch.full((1,), beta, dtype=torch.float64), previous)
        err = float(torch.linalg.matrix_norm(_abba_sweep(target, f, ridges, workspace, momentum))) / norm
        if err < history[-1]:
            beta, cap = min(cap, 1.05 * beta), min(1.0, 1.01 * cap)
        else:
            for k in f:
                f[k] -= beta * (f[k] - previous[k])
            err = current_error()
            cap, beta = beta, beta / 1.5
        slow = slow + 1 if 1 - err / history[-1] <= rtol else 0
        history.append(err)
        times.append(time.perf_counter() - begin)
        if err < best[1]:
            best = ({k: v[0].clone() for k, v in f.items()}, err)
        if slow > stall or not np.isfinite(err):
            break
    return best[0], np.array(history), np.array(times)


def portfolio(method: str, tried: str) -> list[str]:
    """The init schemes a thorough search adds to the start ``tried`` by the default fit: the
    literature's structured start (ABBA) or HiRA's closed-form one, then :data:`RANDOM_STARTS`
    random draws."""
    structured = [s for s in (["sqrt-target"] if method == "abba" else ["divide-svd"]) if s != tried]
    return structured + ["random"] * RANDOM_STARTS


def search(problem: Problem, solver: Solver, options, schemes: list[str], rng: np.random.Generator,
           floor: float, incumbent: SolveOutput, incumbent_scheme: str | None,
           adam_start: tuple[str, np.random.Generator]) -> tuple[SolveOutput, str | None, list[Start]]:
    """Search beyond ``incumbent`` (the restarted default fit's best output on ``problem``, a single
    target): for ABBA the literature's solver from its ``sqrt-target`` start (:func:`literature_bcd`),
    then the Adam leg from ``adam_start`` (an init scheme and the generator that draws it and drives
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
    if problem.method.name == "abba":
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
