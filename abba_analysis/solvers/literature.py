"""The Hadamard-decomposition literature's block-coordinate descent for ABBA (Wertz, Vandaele & Gillis, 2025).

Each factor's exact update ``X⁺`` is extrapolated at once, ``X ← X⁺ + β (X⁺ − X_prev)``, and the
next factor is solved against it (per pair the columns, then the rows; pair 2, then pair 1). A
sweep that raises the error is partly taken back (``X ← X − β (X − X_prev)``) and divides β by
1.5; one that lowers it grows β by 1.05 up to a cap that itself grows by 1.01 up to 1 and drops to
β after a failure (β starts at 0.5). No rebalancing. The block solves are this package's exact ones
(:func:`~abba_analysis.solvers.als._abba_sweep`), so only the acceleration and the path differ from
:class:`~abba_analysis.solvers.als.ALS`. From the literature's own ``sqrt-target`` start it ends in
other minima than the package's solver, sometimes lower: the default ABBA fit runs it as a second
start (:func:`abba_analysis.fit`), and ``benchmarks/bench_momentum.py`` compares the two solvers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from ..workspace import Workspace, product
from .als import _abba_sweep, default_ridge, residual
from .base import Callback, Factors

BETA, GROWTH, CAP_GROWTH, SHRINK = 0.5, 1.05, 1.01, 1.5  # the literature's settings
STALL, RTOL = 10, 1e-8  # its stopping rule: STALL sweeps in a row that each gain at most RTOL (relative)

#: A run given a goal is abandoned once, after this share of its budget, it could not reach the goal
#: even descending for the rest of its budget at :data:`PRUNE_SLACK` times its mean rate over its last
#: :data:`PRUNE_WINDOW` sweeps. Its error can plateau and then fall again (Les Misérables at r = 3
#: does, from sweep 15 to about 100 of 500), hence the slack and no verdict on the first quarter;
#: ``benchmarks/bench_default_lanes.py`` measures what the rule costs the default fit.
PRUNE_AFTER, PRUNE_WINDOW, PRUNE_SLACK = 0.25, 10, 4


def hopeless(history: Sequence[float], goal: float, budget: int) -> bool:
    """Whether a run with this error ``history`` (start, then each sweep) and sweep ``budget`` should be
    abandoned for not reaching ``goal`` (the rule of :data:`PRUNE_AFTER`)."""
    sweep = len(history) - 1
    if sweep < max(PRUNE_WINDOW, PRUNE_AFTER * budget) or sweep >= budget:
        return False
    now, then = min(history), min(history[:-PRUNE_WINDOW])
    return now - goal > PRUNE_SLACK * (then - now) / PRUNE_WINDOW * (budget - sweep)


def literature_sweeps(target: torch.Tensor, factors: Factors, max_iter: Sequence[int], *, ridge: float | None = None,
                      stall: int = STALL, rtol: float = RTOL, goals: Sequence[float] | None = None,
                      callback: Callback | None = None) -> list[tuple[Factors, np.ndarray, np.ndarray, str]]:
    """Run the literature's solver on a stack of targets, each with its own β and stopping rule.

    Parameters
    ----------
    target : (K, m, n) tensor
    factors : dict of (K, ...) tensors
        The starts ``B1, A1, B2, A2`` (not modified).
    max_iter : sequence of K ints
        Each target's sweep budget.
    ridge : float, optional
        Proximal weight of the block solves relative to each Gram matrix's mean diagonal (default:
        :func:`~abba_analysis.solvers.als.default_ridge`, as :class:`~abba_analysis.solvers.als.ALS`).
    stall, rtol
        A target stops after ``stall`` sweeps in a row that each gain at most ``rtol`` (relative),
        the literature's rule, or when its error is not finite.
    goals : sequence of K floats, optional
        Errors to beat: a target is abandoned once it could not reach its goal in its budget
        (:func:`hopeless`), as when it runs as a second start against another start's error.
    callback : callable, optional
        ``callback(sweep, errors, factors)`` after each sweep, with the errors (numpy) and factors
        of the targets still running; returning True stops them all.

    Returns
    -------
    list of ``(factors, history, seconds, status)``, one per target
        The iterate of lowest error (a failed sweep raises the error), the relative error at the start
        and after each sweep, the wall time to the start (0) and to each sweep's end, and
        ``"converged"`` (stalled), ``"max_iter"``, ``"abandoned"`` (above its goal for good: its error
        is then above the goal), ``"diverged"`` or ``"stopped"``.
    """
    begin = time.perf_counter()
    batch = target.shape[0]
    if ridge is None:
        ridge = default_ridge(target.dtype)
    f = {k: v.clone() for k, v in factors.items()}
    workspace, ridges = Workspace(), torch.full((batch,), ridge, dtype=torch.float64)
    norms = torch.linalg.matrix_norm(target).double().cpu()
    rows = torch.arange(batch)  # the targets still sweeping; f and running hold only theirs
    running = target

    def errors_of(local: torch.Tensor) -> torch.Tensor:
        """Relative errors of the running targets at positions ``local`` of ``rows``."""
        part = {k: v[local] for k, v in f.items()}
        weight = product(part["B2"], part["A2"], workspace, "weight")
        res = residual(part["B1"], part["A1"], weight, running[local], workspace)
        return torch.linalg.matrix_norm(res).double().cpu() / norms[rows[local]]

    first = errors_of(torch.arange(batch))
    histories = [[float(e)] for e in first]
    times = [[0.0] for _ in range(batch)]
    best = [({k: v[i].clone() for k, v in f.items()}, histories[i][0]) for i in range(batch)]
    beta = torch.full((batch,), BETA, dtype=torch.float64)
    cap = torch.ones(batch, dtype=torch.float64)
    slow, statuses = [0] * batch, ["max_iter"] * batch
    for sweep in range(1, max(max_iter, default=0) + 1):
        previous = {k: v.clone() for k, v in f.items()}
        res = _abba_sweep(running, f, ridges[rows], workspace, (beta[rows], previous))
        errors = torch.linalg.matrix_norm(res).double().cpu() / norms[rows]
        last = torch.tensor([histories[k][-1] for k in rows.tolist()], dtype=torch.float64)
        failed = ~(errors < last)
        if bool(failed.any()):
            local = failed.nonzero()[:, 0]
            step = beta[rows[local]]
            for k in f:  # take the failed sweep partly back
                f[k][local] -= step.to(f[k])[:, None, None] * (f[k][local] - previous[k][local])
            errors[local] = errors_of(local)
        won, lost = rows[~failed], rows[failed]
        beta[won], cap[won] = torch.minimum(cap[won], GROWTH * beta[won]), torch.clamp(CAP_GROWTH * cap[won], max=1.0)
        cap[lost], beta[lost] = beta[lost], beta[lost] / SHRINK
        now, done = time.perf_counter() - begin, torch.zeros(len(rows), dtype=torch.bool)
        for i, k in enumerate(rows.tolist()):
            error = float(errors[i])
            slow[k] = slow[k] + 1 if 1 - error / histories[k][-1] <= rtol else 0
            histories[k].append(error)
            times[k].append(now)
            if error < best[k][1]:
                best[k] = ({name: v[i].clone() for name, v in f.items()}, error)
            if not np.isfinite(error):
                statuses[k], done[i] = "diverged", True
            elif slow[k] > stall:
                statuses[k], done[i] = "converged", True
            elif goals is not None and hopeless(histories[k], goals[k], max_iter[k]):
                statuses[k], done[i] = "abandoned", True
            elif sweep >= max_iter[k]:
                done[i] = True
        if callback is not None and callback(sweep, errors.numpy(), dict(f)):
            for k in rows[~done].tolist():
                statuses[k] = "stopped"
            break
        if bool(done.all()):
            break
        keep = (~done).nonzero()[:, 0]
        rows, running, f = rows[keep], running[keep], {k: v[keep] for k, v in f.items()}
    return [(best[k][0], np.array(histories[k]), np.array(times[k]), statuses[k]) for k in range(batch)]


def literature_bcd(target: torch.Tensor, factors: Factors, *, max_iter: int = 500, ridge: float | None = None,
                   stall: int = STALL, rtol: float = RTOL) -> tuple[Factors, np.ndarray, np.ndarray]:
    """Fit one target ``≈ (B1 A1) ⊙ (B2 A2)`` from ``factors`` by the literature's solver
    (:func:`literature_sweeps`, whose options these are; ``max_iter`` is the sweep budget).

    Parameters
    ----------
    target : (m, n) tensor
    factors : dict of tensors
        The start: ``B1``, ``A1``, ``B2``, ``A2`` (not modified).

    Returns
    -------
    factors : dict of tensors
        The iterate of lowest error.
    history : numpy.ndarray
        Relative error at the start and after each sweep.
    seconds : numpy.ndarray
        Wall time to the start (0) and to each sweep's end.
    """
    ((found, history, seconds, _),) = literature_sweeps(target[None], {k: v[None] for k, v in factors.items()},
                                                        [max_iter], ridge=ridge, stall=stall, rtol=rtol)
    return found, history, seconds
