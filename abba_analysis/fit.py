"""The one entry point for fitting a parameterization to a target: :func:`fit`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import inits
from .inits import EXACT_SVD_MAX
from ._validation import ArrayLike, SeedLike, as_generator, as_matrix, like_input
from .metrics import Bracket, abba_bracket
from .parameterizations import get_method
from .solvers import Callback, Problem, get_solver, make_options

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
        The solver that ran (``"auto"`` resolved) and the init scheme (None for closed forms).
    iterations : int
        Iterations (sweeps or steps) of the best start.
    status : str
        ``"exact"``, ``"converged"``, ``"max_iter"``, ``"diverged"`` or ``"stopped"``.
    message : str
        A human-readable reason for ``status``.
    seconds : float
        Wall time of the whole fit, all starts included.
    starts : int
        Number of starts run (at most 1 + restarts: an ABBA start that reaches the rank-r1 r2 SVD
        error ends the restarts); the best is returned.
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
    starts: int
    num_params: int
    bracket: Bracket | None
    device: str
    dtype: str
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


def _scale_back(factors: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """Multiply every factor by ``scale ** (1/k)`` so that the k-linear product scales by ``scale``."""
    per_factor = scale ** (1.0 / len(factors))
    return {k: v * per_factor for k, v in factors.items()}


def fit(
    target: ArrayLike,
    method: str,
    rank: int | tuple[int, int],
    *,
    base: ArrayLike | None = None,
    solver: str = "auto",
    init: str | None = None,
    seed: SeedLike = None,
    restarts: int = 0,
    restart_init: str = "random",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    bracket: bool = True,
    callback: Callback | None = None,
    **solver_options: Any,
) -> FitResult:
    """Fit LoRA, HiRA or ABBA to a target matrix.

    Parameters
    ----------
    target : (m, n) numpy array or torch tensor
        The matrix to represent (out x in, as ``torch.nn.Linear.weight``).
    method : {"lora", "hira", "abba"}
        The parameterization.
    rank : int or (int, int)
        ``r`` for LoRA and HiRA, ``(r1, r2)`` for ABBA (see :func:`budget.abba_ranks_for_lora`).
    base : (m, n) array, optional
        The frozen pretrained weight ``W0``. Required by HiRA (it is part of the model); for ABBA and
        LoRA it only feeds init schemes that use it.
    solver : str
        ``"auto"`` (LoRA: ``"svd"``; HiRA and ABBA: ``"als"``), ``"svd"``, ``"rsvd"``,
        ``"divide-svd"`` (HiRA), ``"adam"`` or ``"als"``.
    init : str, optional
        An init scheme of :mod:`abba_analysis.inits` (default: ``"svd-ones"`` for ABBA with
        ``"als"``, ``"abba-paper"`` for ABBA with ``"adam"``, ``"lora-style"`` for LoRA and HiRA).
    seed : None, int or numpy Generator
        Source of every random number; the same seed gives identical factors.
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
        randomized SVD when ``min(m, n) > 2048``).
    callback : callable, optional
        ``callback(iteration, error, factors)`` after each iteration; returning True stops.
    **solver_options
        Passed to the solver's options (e.g. ``steps``, ``lr`` for Adam; ``max_iter``, ``tol`` for ALS).

    Returns
    -------
    FitResult

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
    t = as_matrix(target, "target", dtype=dtype, device=device)
    shape = tuple(t.shape)
    ranks = param.check_ranks(rank, shape)
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or restarts < 0:
        raise ValueError(f"restarts must be an int >= 0, got {restarts!r}")
    w0 = None
    if base is not None:
        w0 = as_matrix(base, "base", dtype=t.dtype, device=t.device)
        if tuple(w0.shape) != shape:
            raise ValueError(f"base must have the target's shape {shape}, got {tuple(w0.shape)}")
    elif param.needs_base:
        raise ValueError(f"method {method!r} needs base=W0, the frozen weight the update multiplies")
    if float(t.abs().max()) == 0.0:
        raise ValueError("target is all zeros: the relative error is undefined")

    rms = float(torch.linalg.matrix_norm(t)) / float(np.sqrt(t.numel()))
    problem = Problem(param, t / rms if chosen.iterative else t, ranks, w0)
    init_name = None
    if chosen.iterative:
        init_name = init if init is not None else DEFAULT_INIT[(method, chosen.name)]
        inits.get(init_name)  # unknown names fail before any work
        if restarts:
            inits.get(restart_init)
    elif init is not None:
        raise ValueError(f"solver {chosen.name!r} is closed-form and takes no init, got init={init!r}")

    # Beyond EXACT_SVD_MAX the bracket is estimated from a randomized top-k SVD (memory and time).
    fit_bracket = (abba_bracket(t, *ranks, randomized=min(shape) > EXACT_SVD_MAX)
                   if bracket and method == "abba" else None)
    # No ABBA fit can beat the rank-r1 r2 SVD error: once a start reaches it, further starts are moot.
    floor = fit_bracket.lower + 1e-10 if fit_bracket is not None else -1.0
    rng = as_generator(seed)
    best, starts = None, 0
    for attempt, child in enumerate(rng.spawn(restarts + 1) if chosen.iterative else [rng]):
        factors0 = None
        if chosen.iterative:
            scheme = init_name if attempt == 0 else restart_init
            factors0 = inits.initialize(scheme, method, shape, ranks, target=problem.target, base=w0,
                                        seed=child, dtype=t.dtype, device=t.device)
        out = chosen.solve(problem, factors0, options, callback, child)
        starts += 1
        if best is None or min(out.history) < min(best.history):
            best = out
        if min(best.history) <= floor:
            break
    factors = _scale_back(best.factors, rms) if chosen.iterative else best.factors
    error = problem.relative_error(best.factors)

    return FitResult(
        method=method,
        ranks=ranks,
        factors={k: like_input(v, target) for k, v in factors.items()},
        error=error,
        history=np.asarray(best.history, dtype=np.float64),
        solver=chosen.name,
        init=init_name,
        iterations=best.iterations,
        status=best.status,
        message=best.message,
        seconds=time.perf_counter() - start,
        starts=starts,
        num_params=param.num_params(shape, ranks),
        bracket=fit_bracket,
        device=str(t.device),
        dtype=str(t.dtype).replace("torch.", ""),
        base=base,
    )
