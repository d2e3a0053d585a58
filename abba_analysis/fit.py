"""The one entry point for fitting a parameterization to a target: :func:`fit`."""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from . import inits
from .inits import EXACT_SVD_MAX
from ._validation import ArrayLike, SeedLike, as_generator, as_matrix, like_input
from .metrics import Bracket, abba_bracket
from .parameterizations import get_method
from .search import RESTARTS, Start, portfolio, search
from .solvers import Callback, Problem, Solver, SolveOutput, get_solver, make_options
from .solvers import literature
from .threads import fit_threads, iteration_work

EFFORTS = ("default", "thorough")


def check_effort(effort: object) -> None:
    """Raise ValueError unless ``effort`` is one of :data:`EFFORTS`."""
    if effort not in EFFORTS:
        raise ValueError(f"effort must be one of {list(EFFORTS)}, got {effort!r}")


# Default starting point per (method, solver); closed-form solvers take none.
DEFAULT_INIT = {
    ("lora", "adam"): "lora-style",
    ("hira", "adam"): "lora-style",
    ("hira", "als"): "lora-style",
    ("abba", "adam"): "abba-paper",
    ("abba", "als"): "svd-ones",
}


@dataclass
class FitResult:
    """The outcome of :func:`fit`.

    Attributes
    ----------
    method : str
        ``"lora"``, ``"hira"`` or ``"abba"``.
    ranks : tuple of int
        ``(r,)`` for LoRA and HiRA, ``(r1, r2)`` for ABBA.
    factors : dict
        The fitted factors by name (``B, A`` or ``B1, A1, B2, A2``), numpy if the target was numpy.
    error : float
        Relative Frobenius error ``||T - approx||_F / ||T||_F`` of the returned factors.
    history : numpy.ndarray
        Relative error at the start and after each iteration (one entry for closed forms).
    solver, init : str
        The solver that ran (``"auto"`` resolved) and the init scheme of the returned start (None
        for closed forms; ``"segre"``, ``"sqrt-target"`` (the literature's solver, below) or a
        restart's scheme when that start won).
    iterations : int
        Iterations (sweeps or steps) of the best start.
    status : str
        ``"exact"``, ``"converged"``, ``"max_iter"``, ``"diverged"`` or ``"stopped"``.
    message : str
        A human-readable reason for ``status``.
    seconds : float
        Wall time of the whole fit, all starts included.
    starts : list of :class:`~abba_analysis.search.Start`
        Every start run, with its init scheme, final error, iterations and stage: at most
        ``1 + restarts`` with the default effort, plus the literature's solver for a default ABBA fit
        (an ABBA start that reaches the rank-r1 r2 SVD error ends the starts), those of
        ``restarts=9`` then the whole portfolio and its hops with ``effort="thorough"``. The best is returned. ``sorted(s.error for s in result.starts)`` is
        the distribution of the minima found.
    num_params : int
        Trainable parameters.
    rank_bound : int
        Largest rank the method can reach at these ranks (computed on access: for HiRA it needs
        ``rank(W0)``, a full SVD that a fit itself does not need).
    bracket : Bracket or None
        For ABBA: the lower (truncated SVD at rank ``r1 r2``) and upper (LoRA at ``max(r1, r2)``)
        bounds of the best achievable error.
    device, dtype : str
        Where and in what precision the fit ran.
    threads : int or None
        The intra-op threads a CPU fit ran on (:mod:`abba_analysis.threads`); None on other devices.
    """

    method: str
    ranks: tuple[int, ...]
    factors: dict[str, ArrayLike]
    error: float
    history: np.ndarray
    solver: str
    init: str | None
    iterations: int
    status: str
    message: str
    seconds: float
    starts: list[Start]
    num_params: int
    bracket: Bracket | None
    device: str
    dtype: str
    threads: int | None = None
    base: ArrayLike | None = field(default=None, repr=False)

    @property
    def rank_bound(self) -> int:
        """Largest rank the method can reach at these ranks (HiRA: from ``rank(W0)``)."""
        param = get_method(self.method)
        m = np.shape(self.factors[param.factor_names[0]])[0]
        n = np.shape(self.factors[param.factor_names[1]])[1]
        base = None if self.base is None else as_matrix(self.base, "base")
        return param.rank_bound((m, n), self.ranks, base)

    @property
    def bracket_position(self) -> float | None:
        """Where ``error`` lies in the bracket: 0 at the lower bound, 1 at LoRA's error (ABBA only)."""
        return None if self.bracket is None else self.bracket.position(self.error)

    def approximation(self) -> ArrayLike:
        """The fitted update matrix, as numpy if the factors are numpy."""
        as_torch = {k: torch.as_tensor(v) for k, v in self.factors.items()}
        first = next(iter(self.factors.values()))
        base = None
        if self.base is not None:
            ref = as_torch[next(iter(as_torch))]
            base = torch.as_tensor(self.base).to(device=ref.device, dtype=ref.dtype)
        return like_input(get_method(self.method).materialize(as_torch, base), first)

    def __repr__(self) -> str:
        pos = "" if self.bracket is None else f", bracket=[{self.bracket.lower:.4g}, {self.bracket.upper:.4g}]"
        return (f"FitResult(method={self.method!r}, ranks={self.ranks}, error={self.error:.6g}, "
                f"solver={self.solver!r}, init={self.init!r}, iterations={self.iterations}, "
                f"status={self.status!r}, seconds={self.seconds:.3g}{pos})")


def _scale_back(factors: dict[str, torch.Tensor], scale: torch.Tensor) -> dict[str, torch.Tensor]:
    """Multiply every factor by ``scale ** (1/k)`` so that the k-linear product scales by ``scale``
    (one scale per target: ``(K, 1, 1)``)."""
    per_factor = scale ** (1.0 / len(factors))
    return {k: v * per_factor for k, v in factors.items()}


def _target_generators(seed: SeedLike | Sequence[SeedLike], count: int, stacked: bool) -> list[np.random.Generator]:
    """One generator per target: a stack draws independent children from ``seed``, or takes one
    seed per target, so that ``fit(stack, seed=seeds)[k]`` is ``fit(stack[k], seed=seeds[k])``."""
    if isinstance(seed, (list, tuple)):
        if not stacked or len(seed) != count:
            raise ValueError(f"a sequence of seeds needs a stack of as many targets; got {len(seed)} seeds "
                             f"for {count if stacked else 'a single'} target{'s' if stacked else ''}")
        return [as_generator(s) for s in seed]
    rng = as_generator(seed)
    return rng.spawn(count) if stacked else [rng]


def fit(
    target: ArrayLike,
    method: str,
    rank: int | tuple[int, int],
    *,
    base: ArrayLike | None = None,
    solver: str = "auto",
    init: str | None = None,
    seed: SeedLike | Sequence[SeedLike] = None,
    restarts: int = 0,
    restart_init: str = "random",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    bracket: bool = True,
    callback: Callback | None = None,
    threads: int | None = None,
    effort: str = "default",
    **solver_options: Any,
) -> FitResult | list[FitResult]:
    """Fit LoRA, HiRA or ABBA to a target matrix, or to each matrix of a stack in one batched call.

    Parameters
    ----------
    target : (m, n) or (K, m, n) numpy array or torch tensor
        The matrix to represent (out x in, as ``torch.nn.Linear.weight``), or a stack of K matrices
        of one shape (layers, seeds): they are fitted together, as batched products, each with its
        own factors, error, stopping rule and result.
    method : {"lora", "hira", "abba"}
        The parameterization.
    rank : int or (int, int)
        ``r`` for LoRA and HiRA, ``(r1, r2)`` for ABBA (see :func:`budget.abba_ranks_for_lora`).
    base : (m, n) or (K, m, n) array, optional
        The frozen pretrained weight ``W0`` (one per target of a stack, or one shared by all).
        Required by HiRA (it is part of the model); for ABBA and LoRA it only feeds init schemes
        that use it.
    solver : str
        ``"auto"`` (LoRA: ``"svd"``; HiRA and ABBA: ``"als"``), ``"svd"``, ``"rsvd"``,
        ``"divide-svd"`` (HiRA), ``"adam"`` or ``"als"``.
    init : str, optional
        An init scheme of :mod:`abba_analysis.inits` (default: ``"svd-ones"`` for ABBA with
        ``"als"``, ``"abba-paper"`` for ABBA with ``"adam"``, ``"lora-style"`` for LoRA and HiRA).
        With the default, an ABBA target of rank at most ``r1 r2`` (its bracket's lower bound below
        ``max(1e-6, 100 eps)``) first gets the algebraic ``"segre"`` start, which factors exact
        products exactly; the default start follows if it does not reach the bound. A default
        ABBA fit with the ``"als"`` solver then runs a second solver from a second start: the
        Hadamard-decomposition literature's block-coordinate descent (Wertz, Vandaele & Gillis,
        2025; :mod:`~abba_analysis.solvers.literature`) from its own ``"sqrt-target"`` start, on a
        budget of as many sweeps as the first start ran, abandoned once it could not reach the
        first start's error in that budget (so the fit costs up to about twice the first start),
        and returns the lower of the two (after any ``restarts``): their paths end in
        different minima, each lower on some targets (``benchmarks/bench_default_lanes.py``). An
        ``init`` given runs that start alone.
    seed : None, int, numpy Generator, or a sequence of them (stacks)
        Source of every random number; the same seed gives identical factors. A stack draws one
        independent generator per target from ``seed``, or takes a sequence of K seeds, in which
        case target k is fitted as ``fit(target[k], seed=seed[k])`` would fit it (up to the
        rounding of batched products).
    restarts : int
        Extra starts of an iterative solver, each from ``restart_init`` with fresh random draws; the
        fit with the lowest error is returned. The first start always uses ``init``, so guarantees
        of the default init (ABBA never above LoRA at rank r1) hold with restarts too.
    restart_init : str
        Init scheme of the extra starts (default ``"random"``: diverse basins; structured inits vary
        too little between draws to escape a bad one).
    device, dtype
        Where and in what precision to fit (default: the target's; float16/bfloat16 become float32).
    bracket : bool
        For ABBA, compute the error bracket (needs the target's singular values; estimated by a
        randomized SVD when ``min(m, n) > 2048``). It also ends restarts at the lower bound, picks
        the algebraic start for targets of rank at most ``r1 r2``, and lets a fit that ends far
        above the bound on such a target say so (in ``message``, and a warning).
    callback : callable, optional
        ``callback(iteration, error, factors)`` after each iteration; returning True stops. For a
        stack it receives the errors (numpy array) and batched factors of the targets still running,
        as the solver holds them: fitted to each target divided by its RMS value
        (``||T||_F / sqrt(m n)``), so their product times that RMS approximates the target (during
        a default ABBA fit's literature start, which runs last with its sweeps numbered on: fitted
        to the targets themselves).
    effort : {"default", "thorough"}
        How hard an iterative fit searches for a low minimum. ``"default"``: the starts above.
        ``"thorough"`` (:mod:`abba_analysis.search`): the fit ``restarts=9`` makes, then a
        portfolio of other starts (the literature's ``sqrt-target`` start for ABBA or ``divide-svd``
        for HiRA, random draws) pruned by successive halving, the last three run to convergence, then
        perturb-and-refit hops from the best minimum; ABBA's portfolio also runs the literature's
        own solver from its start (:func:`~abba_analysis.search.literature_bcd`). Before the
        portfolio it runs Adam for :data:`~abba_analysis.search.ADAM_STEPS` steps from the start
        ``fit(solver="adam")`` takes with the same seed and finishes that minimum with this package's
        solver. It never ends above the default fit, ``restarts=9`` (its first ten starts are
        theirs), that solver or that Adam run (equal to it to rounding: Adam's path amplifies
        rounding differences), and costs tens to hundreds of default fits (``bench_thorough``,
        ``bench_thorough_grid``). ``restarts`` and
        ``callback`` are for the default effort. Closed forms are exact either way.
    threads : int, optional
        torch intra-op threads of a CPU fit. Default: chosen from the fit's size and the machine's
        core count (one thread for all but large fits, never more than the cores but one), unless
        ``OMP_NUM_THREADS`` or a ``torch.set_num_threads`` call chose them; see
        :mod:`abba_analysis.threads`. The caller's setting is restored afterwards. The count changes
        the rounding of sums, so fits on different counts can take different paths.
    **solver_options
        Passed to the solver's options (e.g. ``steps``, ``lr`` for Adam; ``max_iter``, ``tol`` for ALS).

    Returns
    -------
    FitResult, or a list of K FitResults for a stack (each with ``seconds`` = the call's wall time / K)

    Examples
    --------
    >>> import abba_analysis as aa
    >>> T = aa.targets.orthogonal(64, seed=0)
    >>> round(aa.fit(T, "lora", rank=16).error, 6)  # sqrt(1 - 16/64)
    0.866025
    """
    start = time.perf_counter()
    param = get_method(method)
    chosen = get_solver(solver, method)
    options = make_options(chosen, solver_options)
    t = as_matrix(target, "target", dtype=dtype, device=device, allow_stack=True)
    stacked = t.ndim == 3
    targets = t if stacked else t[None]
    count, shape = targets.shape[0], tuple(targets.shape[1:])
    ranks = param.check_ranks(rank, shape)
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or restarts < 0:
        raise ValueError(f"restarts must be an int >= 0, got {restarts!r}")
    check_effort(effort)
    thorough = effort == "thorough" and chosen.iterative
    if thorough and (restarts or callback is not None):
        raise ValueError("effort='thorough' runs its own portfolio of starts: it takes no restarts= or callback=")
    w0 = None
    if base is not None:
        w0 = as_matrix(base, "base", dtype=t.dtype, device=t.device, allow_stack=stacked)
        w0 = w0 if w0.ndim == 3 else w0[None]
        if tuple(w0.shape[1:]) != shape or w0.shape[0] not in (1, count):
            expected = f"{shape}" + (f" or {(count, *shape)}" if stacked else "")
            raise ValueError(f"base must have the target's shape {expected}, got {tuple(base.shape)}")
    elif param.needs_base:
        raise ValueError(f"method {method!r} needs base=W0, the frozen weight the update multiplies")
    zero = (targets.abs().amax(dim=(-2, -1)) == 0).nonzero()[:, 0].tolist()
    if zero:
        which = f"target[{zero[0]}]" if stacked else "target"
        raise ValueError(f"{which} is all zeros: the relative error is undefined")
    generators = _target_generators(seed, count, stacked)

    rms = torch.linalg.matrix_norm(targets)[:, None, None] / float(np.sqrt(shape[0] * shape[1]))
    problem = Problem(param, targets / rms if chosen.iterative else targets, ranks, w0)
    init_name = None
    if chosen.iterative:
        init_name = init if init is not None else DEFAULT_INIT[(method, chosen.name)]
        inits.get(init_name)  # unknown names fail before any work
        if restarts:
            inits.get(restart_init)
    elif init is not None:
        raise ValueError(f"solver {chosen.name!r} is closed-form and takes no init, got init={init!r}")

    work = iteration_work(chosen.name, count, shape, ranks)
    with fit_threads(t.device, work, threads) as used_threads:
        # Beyond EXACT_SVD_MAX the bracket is estimated from a randomized top-k SVD (memory and time).
        brackets = ([abba_bracket(tk, *ranks, randomized=min(shape) > EXACT_SVD_MAX) for tk in targets]
                    if bracket and method == "abba" else [None] * count)
        # No ABBA fit can beat the rank-r1 r2 SVD error: once a start reaches it, further starts are moot.
        floors = [b.lower + 1e-10 if b is not None else -1.0 for b in brackets]
        # Numerically rank-deficient with rank <= r1 r2. Where r1 r2 >= min(m, n) the rank-r1 r2 bound is 0
        # for every target, which says nothing about whether ABBA can reach it.
        deficient = ranks[0] * ranks[1] < min(shape) if method == "abba" else False
        representable = [deficient and b is not None and b.lower <= _rank_tolerance(t.dtype) for b in brackets]
        # A thorough search begins with exactly the fit restarts=RESTARTS would make, so it ends at or below it.
        schedules, start_rngs = _start_schedules(generators, chosen.iterative, init_name, restart_init,
                                                 RESTARTS if thorough else restarts,
                                                 algebraic=[r and init is None for r in representable])
        # The Adam leg of a thorough search starts where fit(solver="adam") with this seed starts: a copy of the
        # generator of the first non-algebraic start, taken before that start draws from it.
        adam_starts = [(DEFAULT_INIT[(method, "adam")], copy.deepcopy(rngs[-1 - RESTARTS]))
                       for rngs in start_rngs] if thorough else []
        callback_ = _batch_callback(callback, stacked, rms if chosen.iterative else None)
        best, best_scheme, starts = _run_starts(problem, chosen, options, schedules, start_rngs, floors, callback_)
        stalled_literature = [False] * count
        if method == "abba" and chosen.name == "als" and init is None:
            # The literature's solver holds factors of the targets themselves: its callback scales nothing.
            stalled_literature = _literature_start(problem, targets, rms, best, best_scheme, starts, floors, init_name,
                                                   _batch_callback(callback, stacked, None))
        for k in range(count) if thorough else ():
            # The search starts after the restarted default fit and keeps its result unless it finds lower.
            best[k], best_scheme[k], more = search(problem.subset(torch.tensor([k])), chosen, options,
                                                   portfolio(method, init_name), generators[k], floors[k],
                                                   best[k], best_scheme[k], adam_starts[k], stalled_literature[k])
            starts[k] += more
        stacked_best = {name: torch.stack([b.factors[name] for b in best]) for name in param.factor_names}
        errors = problem.relative_errors(stacked_best).tolist()
        if chosen.iterative:
            stacked_best = _scale_back(stacked_best, rms)
        seconds = (time.perf_counter() - start) / count
        messages = [out.message for out in best]
        for k in range(count):
            if representable[k] and errors[k] > 100 * _rank_tolerance(t.dtype):
                untried = ([] if restarts or thorough else ["restarts="]) + ([] if init is None else ["the default init"])
                note = (f"ends at error {errors[k]:.3g}, far above the rank-{ranks[0] * ranks[1]} SVD bound "
                        f"{brackets[k].lower:.2g} although the target has rank <= r1 r2: a better start may exist"
                        + (f" (try {' or '.join(untried)})" if untried else ""))
                messages[k] += "; " + note
                warnings.warn(f"{f'target[{k}]' if stacked else 'target'}: the ABBA fit {note}", stacklevel=2)

    results = [
        FitResult(
            method=method,
            ranks=ranks,
            factors={name: like_input(v[k], target) for name, v in stacked_best.items()},
            error=errors[k],
            history=np.asarray(out.history, dtype=np.float64),
            solver=chosen.name,
            init=best_scheme[k],
            iterations=out.iterations,
            status=out.status,
            message=messages[k],
            seconds=seconds,
            starts=starts[k],
            num_params=param.num_params(shape, ranks),
            bracket=brackets[k],
            device=str(t.device),
            dtype=str(t.dtype).replace("torch.", ""),
            threads=used_threads if t.device.type == "cpu" else None,
            base=base[k] if stacked and base is not None and np.ndim(base) == 3 else base,
        )
        for k, out in enumerate(best)
    ]
    return results if stacked else results[0]


def _start_schedules(generators: list[np.random.Generator], iterative: bool, init: str | None, restart_init: str,
                     restarts: int, algebraic: list[bool]) -> tuple[list[list[str | None]], list[list[np.random.Generator]]]:
    """Each target's starts, ``[segre] + [init] + [restart_init] * restarts``, and one generator per start.

    Closed forms take the target's generator itself; iterative starts each a child of it, the
    algebraic start's drawn last, so the other starts' streams do not depend on whether it runs.
    """
    schedules, start_rngs = [], []
    for g, first_algebraic in zip(generators, algebraic, strict=True):
        if not iterative:
            schedules.append([None]), start_rngs.append([g])
            continue
        schemes, children = [init] + [restart_init] * restarts, g.spawn(restarts + 1)
        if first_algebraic:  # rank(T) <= r1 r2: T may be an exact product, which this start finds
            schemes, children = ["segre"] + schemes, g.spawn(1) + children
        schedules.append(schemes), start_rngs.append(children)
    return schedules, start_rngs


def _run_starts(problem: Problem, chosen: Solver, options: Any, schedules: list[list[str | None]],
                start_rngs: list[list[np.random.Generator]], floors: list[float], callback: Callback | None,
                ) -> tuple[list[SolveOutput], list[str | None], list[list[Start]]]:
    """Run every target's starts in turn, batching the targets whose current start uses the same scheme;
    a target stops once a start reaches its floor. Returns the best output, its scheme and the record
    of every start run, per target."""
    count = problem.batch
    shape, method = problem.shape, problem.method.name
    best: list[SolveOutput | None] = [None] * count
    best_scheme: list[str | None] = [None] * count
    starts: list[list[Start]] = [[] for _ in range(count)]
    pending, attempt = list(range(count)), 0
    while pending:
        by_scheme: dict[str | None, list[int]] = {}
        for k in pending:
            by_scheme.setdefault(schedules[k][attempt], []).append(k)
        for scheme, group in by_scheme.items():
            part = problem.subset(torch.tensor(group))
            factors0 = None
            if chosen.iterative:
                shared = part.base is not None and part.base.shape[0] == 1
                per_target = [inits.initialize(scheme, method, shape, problem.ranks, target=part.target[i],
                                               base=None if part.base is None else part.base[0 if shared else i],
                                               seed=start_rngs[k][attempt], dtype=part.target.dtype,
                                               device=part.target.device)
                              for i, k in enumerate(group)]
                factors0 = {name: torch.stack([f[name] for f in per_target]) for name in per_target[0]}
            outs = chosen.solve(part, factors0, options, callback, [start_rngs[k][attempt] for k in group])
            for k, out in zip(group, outs, strict=True):
                starts[k].append(Start(scheme or chosen.name, min(out.history), out.iterations, "final"))
                if best[k] is None or min(out.history) < min(best[k].history):
                    best[k], best_scheme[k] = out, scheme
        attempt += 1
        pending = [k for k in pending if min(best[k].history) > floors[k] and attempt < len(schedules[k])]
    return best, best_scheme, starts  # type: ignore[return-value]


def _literature_start(problem: Problem, targets: torch.Tensor, rms: torch.Tensor, best: list[SolveOutput],
                      best_scheme: list[str | None], starts: list[list[Start]], floors: list[float], first_scheme: str,
                      callback: Callback | None) -> list[bool]:
    """The default ABBA fit's second start: the literature's solver (:mod:`~abba_analysis.solvers.literature`)
    from its own ``sqrt-target`` start, on a budget of as many sweeps as the ``first_scheme`` start ran
    (a sweep of either costs about the same, ``benchmarks/bench_default_lanes.py``), for every target
    above its floor, abandoned once it could not reach the first start's error in that budget
    (:func:`~abba_analysis.solvers.literature.hopeless`). Its path leads to other minima, sometimes
    lower; ``best``, ``best_scheme`` and
    ``starts`` take its outcome in place. It runs on the targets as given (``targets``, not the
    problem's, divided by ``rms``), as :func:`~abba_analysis.solvers.literature.literature_bcd` would:
    its path is chaotic, and at another scale rounding can end it in another minimum. Returns, per
    target, whether it stopped by its own rule (so a thorough search need not run it again with more
    sweeps)."""
    lane = [k for k in range(problem.batch) if min(best[k].history) > floors[k] and best[k].status != "stopped"]
    stalled = [False] * problem.batch
    if not lane:
        return stalled
    budgets = [next(s.iterations for s in starts[k] if s.init == first_scheme) for k in lane]
    target = targets[lane]
    begun = [inits.initialize("sqrt-target", "abba", problem.shape, problem.ranks, target=t, seed=0, dtype=t.dtype,
                              device=t.device) for t in target]
    offset = max(budgets)  # a callback's sweeps count on from the first start's

    def numbered(sweep: int, errors: np.ndarray, factors: dict[str, torch.Tensor]) -> Any:
        return callback(offset + sweep, errors, factors)

    stacked_start = {name: torch.stack([f[name] for f in begun]) for name in begun[0]}
    goals = [min(best[k].history) for k in lane]  # each target's first start (and restarts): to beat
    runs = literature.literature_sweeps(target, stacked_start, budgets, goals=goals,
                                        callback=None if callback is None else numbered)
    for k, budget, goal, (found, history, _, status) in zip(lane, budgets, goals, runs, strict=True):
        path = history[: int(np.argmin(history)) + 1].tolist()  # a failed sweep can raise the error
        starts[k].append(Start("sqrt-target", path[-1], len(history) - 1, "literature"))
        stalled[k] = status == "converged"
        if path[-1] < goal:
            reason = {"converged": f"stalled ({literature.STALL} sweeps each gaining at most {literature.RTOL:g})",
                      "max_iter": f"ran its budget of {budget} sweeps (the first start's)",
                      "diverged": "met NaN/Inf; returned its best iterate",
                      "stopped": "was stopped by the callback"}[status]
            found = _scale_back({name: v[None] for name, v in found.items()}, 1 / rms[k : k + 1])
            best[k] = SolveOutput({name: v[0] for name, v in found.items()}, path, len(path) - 1, status,
                                  f"the literature's solver from its sqrt-target start {reason}")
            best_scheme[k] = "sqrt-target"
    return stalled


def _rank_tolerance(dtype: torch.dtype) -> float:
    """Relative rank-``r1 r2`` SVD error below which a target counts as of rank at most ``r1 r2``."""
    return max(1e-6, 100 * torch.finfo(dtype).eps)


def _batch_callback(callback: Callback | None, stacked: bool, rms: torch.Tensor | None) -> Callback | None:
    """A single fit's callback sees a float error and unbatched factors of the target itself (scaled
    back by ``rms``, the scale the solver divided it by); a stack's sees the batch as solved."""
    if callback is None or stacked:
        return callback

    def single(iteration: int, errors: np.ndarray, factors: dict[str, torch.Tensor]) -> Any:
        if rms is not None:
            factors = _scale_back(factors, rms)
        return callback(iteration, float(errors[0]), {k: v[0] for k, v in factors.items()})

    return single
