"""Studies of ABBA's initialization schemes: step-0 gradient flow, the scaling law, fit quality.

Each function computes and returns a tidy :class:`pandas.DataFrame` (one row per measurement);
plotting lives in :mod:`abba_analysis.plotting`.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from . import inits
from ._progress import progress_bar
from ._validation import ArrayLike, SeedLike, as_generator, as_matrix
from .fit import fit
from .parameterizations import abba_apply, get_method

if TYPE_CHECKING:
    from .experiments.runner import Executor

SCALES: dict[str, float] = {"1": 0.0, "(r1 r2)^-1/6": 1 / 6, "(r1 r2)^-1/4": 1 / 4, "(r1 r2)^-1/2": 1 / 2}
"""Scale laws of the paper's Thm 2, as exponents e in ``s = (r1 r2)^-e``."""


def gradient_flow(
    target: ArrayLike,
    ranks: tuple[int, int],
    schemes: Iterable[str] | None = None,
    *,
    base: ArrayLike | None = None,
    alpha: float | None = None,
    seed: SeedLike = 0,
) -> pd.DataFrame:
    """Which factors get a gradient at step 0, and how much, under each scheme.

    For the loss ``L = ½ ||s ΔW - T||_F^2`` (``s = alpha^2/sqrt(r1 r2)``, 1 if ``alpha`` is None)
    evaluated at each scheme's starting factors.

    Returns
    -------
    DataFrame with one row per (scheme, factor): ``scheme``, ``factor``, ``grad_norm``,
    ``receives_gradient`` (norm > 0), ``delta_norm`` (``||s ΔW||_F / ||T||_F`` at the start) and
    ``trains`` (any factor of the scheme receives a gradient).
    """
    t = as_matrix(target, "target", dtype=torch.float64)
    w0 = None if base is None else as_matrix(base, "base", dtype=torch.float64)
    abba = get_method("abba")
    ranks = abba.check_ranks(ranks, tuple(t.shape))
    s = 1.0 if alpha is None else alpha**2 / math.sqrt(ranks[0] * ranks[1])
    rows = []
    for name in schemes if schemes is not None else inits.names("abba"):
        f = inits.initialize(name, "abba", tuple(t.shape), ranks, target=t, base=w0, alpha=alpha, seed=seed)
        # L = s^2 · ½||ΔW - T/s||^2, so its gradient is s^2 times the unscaled one.
        _, grads = abba.gradients(f, t / s)
        delta = float(torch.linalg.matrix_norm(s * abba.materialize(f))) / float(torch.linalg.matrix_norm(t))
        norms = {k: s * s * float(torch.linalg.matrix_norm(g)) for k, g in grads.items()}
        for k in abba.factor_names:
            rows.append({"scheme": name, "factor": k, "grad_norm": norms[k], "receives_gradient": norms[k] > 0,
                         "delta_norm": delta, "trains": any(v > 0 for v in norms.values())})
    return pd.DataFrame(rows)


def scaling_moments(
    products: Sequence[int] = (1, 4, 16, 64, 256, 1024),
    *,
    size: tuple[int, int] = (256, 256),
    draws: int = 8,
    batch: int = 64,
    std: float = 1.0,
    seed: SeedLike = 0,
) -> pd.DataFrame:
    """Monte Carlo forward and backward second moments of ``y = s ΔW x`` under each scale law.

    Factors have i.i.d. ``N(0, std^2)`` entries (zero mean, independent: the theorem's setting),
    ``x ~ N(0, I_n)`` and the backward signal ``δ ~ N(0, I_m)``. Theory (ABBA, Thm 2):
    ``E[y_i^2] = s^2 n r1 r2 std^8`` and ``E[(ΔW^T δ)_j^2] = s^2 m r1 r2 std^8``. Ranks are
    ``r1 = r2 = sqrt(r1 r2)`` (each product must be a perfect square). Both moments are computed with
    :func:`abba_apply`, never forming ΔW.

    Returns
    -------
    DataFrame with one row per (product, scale): ``r1r2``, ``scale``, ``s``, ``forward``,
    ``forward_theory``, ``backward``, ``backward_theory``.
    """
    m, n = size
    rng = as_generator(seed)
    rows = []
    for p in products:
        r = math.isqrt(p)
        if r * r != p:
            raise ValueError(f"products must be perfect squares (r1 = r2), got {p}")
        forward_raw, backward_raw = [], []
        for _ in range(draws):
            f = {k: torch.from_numpy(std * rng.standard_normal(s))
                 for k, s in get_method("abba").factor_shapes((m, n), (r, r)).items()}
            x = torch.from_numpy(rng.standard_normal((n, batch)))
            delta = torch.from_numpy(rng.standard_normal((m, batch)))
            forward_raw.append(float(abba_apply(f, x).square().mean()))
            transposed = {"B1": f["A1"].T, "A1": f["B1"].T, "B2": f["A2"].T, "A2": f["B2"].T}
            backward_raw.append(float(abba_apply(transposed, delta).square().mean()))
        for name, exponent in SCALES.items():
            s = p ** -exponent
            rows.append({"r1r2": p, "scale": name, "s": s,
                         "forward": s * s * float(np.mean(forward_raw)),
                         "forward_theory": s * s * n * p * std**8,
                         "backward": s * s * float(np.mean(backward_raw)),
                         "backward_theory": s * s * m * p * std**8})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class _QualityFit:
    """One fit of :func:`fit_quality`: plain data, so that an executor can send it to a worker."""

    key: int
    target_name: str
    target: np.ndarray
    base: np.ndarray | None
    scheme: str
    seed: int
    ranks: tuple[int, int]
    solver: str
    checkpoints: tuple[int, ...]
    level: float | None
    options: dict


def _quality_row(job: _QualityFit) -> tuple[int, dict]:
    stamps = []
    start = time.perf_counter()
    result = fit(job.target, "abba", job.ranks, base=job.base, solver=job.solver, init=job.scheme, seed=job.seed,
                 bracket=False, callback=lambda *_: stamps.append(time.perf_counter() - start), **job.options)
    h = result.history
    row = {"target": job.target_name, "scheme": job.scheme, "seed": job.seed, "start_error": float(h[0])}
    for k in job.checkpoints:
        row[f"error_at_{k}"] = float(h[min(k, len(h) - 1)])
    row["final_error"] = result.error
    row["seconds"] = result.seconds
    if job.level is not None:
        hit = np.nonzero(h[1:] <= job.level)[0]
        row["seconds_to_threshold"] = float(stamps[hit[0]]) if hit.size else float("inf")
    return job.key, row


def fit_quality(
    targets: Mapping[str, tuple[ArrayLike, ArrayLike | None]],
    ranks: tuple[int, int],
    schemes: Iterable[str],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    checkpoints: Sequence[int] = (50, 200),
    threshold: float | Mapping[str, float] | None = None,
    solver: str = "adam",
    executor: Executor | None = None,
    progress: bool = False,
    **solver_options,
) -> pd.DataFrame:
    """Fit every target from every scheme and seed; record how fast and how far each gets.

    Parameters
    ----------
    targets : mapping name -> (target, base)
        ``base`` (W0, may be None) feeds the schemes that use the pretrained weight.
    ranks : (r1, r2)
    schemes : iterable of str
    seeds : sequence of int
    checkpoints : sequence of int
        Iterations at which the error is also reported (``error_at_<k>``).
    threshold : float or mapping name -> float, optional
        Report ``seconds_to_threshold``, the time until the error first reaches it (inf if never);
        a mapping gives one threshold per target.
    solver : str
        Default ``"adam"`` (initialization matters most to gradient training).
    executor : optional
        Where the fits run (:mod:`abba_analysis.experiments.executors`); default this process.
        Every fit is independent and seeded, so the errors do not depend on it.
    progress : bool
        Show a progress bar over the fits.
    **solver_options
        Passed to :func:`abba_analysis.fit` (e.g. ``steps``, ``lr``).

    Returns
    -------
    DataFrame with one row per (target, scheme, seed), in that order: ``target``, ``scheme``, ``seed``,
    ``start_error``, ``error_at_<k>``, ``final_error``, ``seconds``, ``seconds_to_threshold``.
    """
    from .experiments.executors import InProcess

    # Each target once as a numpy array (what a job ships to a worker), shared by its schemes and seeds.
    arrays = {name: (as_matrix(target, "target").cpu().numpy(),
                     None if base is None else as_matrix(base, "base").cpu().numpy())
              for name, (target, base) in targets.items()}
    jobs = []
    for (name, (target, base)), scheme, seed in itertools.product(arrays.items(), list(schemes), seeds):
        level = threshold[name] if isinstance(threshold, Mapping) else threshold
        jobs.append(_QualityFit(len(jobs), name, target, base, scheme, seed, tuple(ranks), solver,
                                tuple(checkpoints), None if level is None else float(level), dict(solver_options)))
    rows = {}
    with progress_bar(total=len(jobs), desc="init schemes", unit="fit", disable=not progress) as bar:
        # Largest targets first, so that workers do not end waiting on one costly fit.
        by_size = sorted(jobs, key=lambda job: -job.target.size)
        for key, row in (executor or InProcess()).map_unordered(_quality_row, by_size):
            rows[key] = row
            bar.update(1)
    return pd.DataFrame([rows[k] for k in sorted(rows)])
