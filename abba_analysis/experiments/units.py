"""Work units: one fit, described by plain data, that any worker can run on its own.

A unit carries a reference to its target (a random kind with shape and seed, or a checkpoint path and
tensor name), never the matrix itself, so units are cheap to ship to other processes or machines;
each worker builds or reads only the target it fits.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import re
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .. import metrics, targets
from .._version import __version__
from ..budget import abba_ranks_for_lora
from ..fit import FitResult, fit
from ..parameterizations import get_method
from ..search import ADAM_STEPS
from ..solvers import get_solver, make_options
from ..threads import iteration_work

HIRA_BASE_SEED_OFFSET = 10_000
# Sweeps a block-coordinate fit typically runs, for progress estimates only: medians over the Fig. 2
# grid at 0.5.0 were HiRA 13-33 (up to 60), ABBA 40-160 (up to the limit of 200).
TYPICAL_SWEEPS = {"hira": 35, "abba": 100}
THOROUGH_COST = 30  # a thorough fit's cost in default fits besides its Adam leg, about (bench_thorough_grid)
SPECTRUM_LENGTH = 256


@dataclass(frozen=True)
class TargetRef:
    """How to obtain a target (and the base weight HiRA needs)."""

    kind: str
    shape: tuple[int, int]
    seed: int | None = None
    options: tuple[tuple[str, Any], ...] = ()
    checkpoint: str | None = None
    finetuned: str | None = None
    tensor: str | None = None
    hira_base: str = "gaussian"

    @property
    def id(self) -> str:
        """A short readable identifier of the target."""
        if self.kind == "checkpoint":
            return self.tensor or ""
        return f"{self.kind}-{self.shape[0]}x{self.shape[1]}-s{self.seed}"


@dataclass(frozen=True)
class WorkUnit:
    """One fit: a target, a method at some ranks, a solver, an init and a seed."""

    experiment: str
    target: TargetRef
    method: str
    budget: int
    ranks: tuple[int, ...]
    solver: str
    init: str | None
    seed: int
    options: tuple[tuple[str, Any], ...] = ()
    dtype: str = "float32"
    device: str = "cpu"
    spectra: bool = False
    history: bool = False
    threads: int | None = None
    effort: str = "default"

    @property
    def key(self) -> str:
        """A stable hash of everything that determines the result, the package's version included
        (its solvers' defaults are not in the unit's options). The default effort is left out of it,
        so that journals written before efforts existed stay valid."""
        fields = asdict(self)
        if self.effort == "default":
            del fields["effort"]
        payload = json.dumps({**fields, "version": __version__}, sort_keys=True, default=str)
        return hashlib.sha1(payload.encode()).hexdigest()[:16]

    @property
    def estimated_cost(self) -> float:
        """Roughly the multiply-adds of this fit, to weight progress (not to schedule): one iteration's
        work (:func:`abba_analysis.threads.iteration_work`) times Adam's ``steps``, or
        the method's :data:`TYPICAL_SWEEPS` for the block-coordinate solver (it stops on its own), or once for a
        closed form; plus two SVDs' worth for what every fit does besides (the target's spectrum and
        bracket, the error, the fit's spectrum). On the Fig. 2 grid it tracks measured times within
        about 2x, where fits of one experiment differ by 100x."""
        solver = get_solver(self.solver, self.method)
        options = make_options(solver, dict(self.options))
        iterations = (options.steps if solver.name == "adam" else TYPICAL_SWEEPS[self.method] if solver.iterative
                      else 1)
        m, n = self.target.shape
        adam = 0.0
        if self.effort == "thorough" and solver.iterative:
            iterations *= THOROUGH_COST
            adam = iteration_work("adam", 1, (m, n), self.ranks) * ADAM_STEPS  # its Adam leg
        return float(iteration_work(solver.name, 1, (m, n), self.ranks) * iterations + adam
                     + 2 * m * n * min(m, n))


def ranks_for(method: str, budget: int) -> tuple[int, ...]:
    """Ranks of ``method`` at a LoRA-equivalent budget."""
    return abba_ranks_for_lora(budget) if method == "abba" else (budget,)


@lru_cache(maxsize=32)  # every target and W0 of a Fig. 2 run: batches come in shuffled order
def _random_target(kind: str, shape: tuple[int, int], seed: int, options: tuple, dtype: str) -> np.ndarray:
    return targets.make(kind, *shape, seed=seed, dtype=dtype, **dict(options))


@lru_cache(maxsize=4)
def _checkpoint(path: str):
    from ..deltas import Checkpoint

    return Checkpoint.open(path)


@lru_cache(maxsize=4)
def _pair(base: str, finetuned: str, tensor: str):
    """The checkpoint pair restricted to one tensor: name matching and shape/dtype checks of
    :func:`~abba_analysis.deltas.from_checkpoints`, reading headers only."""
    from ..deltas import from_checkpoints

    return from_checkpoints(_checkpoint(base), _checkpoint(finetuned), include=f"^{re.escape(tensor)}$")


def load_target(ref: TargetRef, dtype: str) -> tuple[np.ndarray | torch.Tensor, Any]:
    """The target matrix and the base weight W0 HiRA uses, for ``ref``.

    Random targets get a seeded random W0 of kind ``ref.hira_base`` (both cached: drawing them costs
    more than a fit of a small one, and units come target by target); a checkpoint pair gives
    ``(ΔW, W0)``; a single checkpoint gives ``(W, W)`` (HiRA on its own weight is trivial and is not a
    meaningful fit there). Checkpoint tensors are read afresh each time (from the page cache after the
    first), so that a sweep over a model holds no more than the layers it is fitting. Fits never modify
    their inputs, so the cached arrays are shared.
    """
    if ref.kind != "checkpoint":
        target = _random_target(ref.kind, ref.shape, ref.seed, ref.options, dtype)
        base = _random_target(ref.hira_base, ref.shape, ref.seed + HIRA_BASE_SEED_OFFSET, (), dtype)
        return target, base
    if ref.finetuned is None:
        w0 = _checkpoint(ref.checkpoint).load(ref.tensor).to(getattr(torch, dtype))
        return w0, w0
    layer = _pair(ref.checkpoint, ref.finetuned, ref.tensor).load(ref.tensor)
    return layer.delta.to(getattr(torch, dtype)), layer.base.to(getattr(torch, dtype))


_SPECTRA: OrderedDict[tuple[TargetRef, str], np.ndarray] = OrderedDict()
SPECTRA_CACHED = 64


def target_spectrum(ref: TargetRef, dtype: str, target: Any = None) -> np.ndarray:
    """Singular values of the target of ``ref``, cached for the last :data:`SPECTRA_CACHED` targets (every
    method and budget of a target needs them). ``target``, when the caller has just loaded it, spares
    reading the checkpoint pair a second time."""
    key = (ref, dtype)
    if key in _SPECTRA:
        _SPECTRA.move_to_end(key)
    else:
        _SPECTRA[key] = metrics.singular_values(target if target is not None else load_target(ref, dtype)[0])
        if len(_SPECTRA) > SPECTRA_CACHED:
            _SPECTRA.popitem(last=False)
    return _SPECTRA[key]


def versions() -> dict[str, str]:
    return {"abba_analysis": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


@dataclass(frozen=True)
class Batch:
    """Work units that differ only in their target (of one shape) and seed: one batched :func:`fit`."""

    units: tuple[WorkUnit, ...]

    @property
    def key(self) -> str:
        """A stable hash of the member units' keys."""
        return hashlib.sha1(" ".join(u.key for u in self.units).encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.units)


def batch_key(unit: WorkUnit) -> tuple:
    """Units with equal batch keys can be fitted in one batched call."""
    return (unit.experiment, unit.target.shape, unit.method, unit.budget, unit.ranks, unit.solver, unit.init,
            unit.options, unit.dtype, unit.device, unit.spectra, unit.history, unit.threads, unit.effort)


def make_batches(units: list[WorkUnit], *, max_size: int = 64, max_elements: int = 2**22,
                 parallelism: int = 1) -> list[Batch]:
    """Group units for batched fits, in order of first appearance, at most ``max_size`` units and
    ``max_elements`` target entries per batch (beyond that batching gains nothing and costs memory: a
    2048 x 2048 layer is fitted alone, so that a sweep over a model holds one layer's working set,
    ``bench_extract_memory``).

    A group is split into at least ``parallelism`` batches where it can be, so that every worker of
    an executor gets work. Units that record convergence histories stay alone: their per-iteration
    timings must be their own.
    """
    groups: dict[tuple, list[WorkUnit]] = {}
    for unit in units:
        groups.setdefault(batch_key(unit) if not unit.history else ("alone", unit.key), []).append(unit)
    out = []
    for members in groups.values():
        m, n = members[0].target.shape
        size = max(1, min(max_size, max_elements // (m * n), -(-len(members) // parallelism)))
        out.extend(Batch(tuple(members[i:i + size])) for i in range(0, len(members), size))
    return out


def run_unit(unit: WorkUnit) -> dict[str, Any]:
    """Run one fit; return ``{"row": ..., "spectra": [...], "history": [...]}`` (plain data)."""
    return run_batch(Batch((unit,)))[0]


def run_batch(batch: Batch, keep_factors: bool = False) -> list[dict[str, Any]]:
    """Run the fits of ``batch`` in one batched call (a lone unit: one plain fit); one record per unit,
    as :func:`run_unit` returns it. ``seconds`` is the batch's wall time divided by its size. With
    ``keep_factors`` each record also carries the fitted factors (``"factors"``: name -> float32 array)."""
    unit = batch.units[0]
    # W0 is kept for HiRA only, and a stack's targets only in the stack: a sweep over a model's layers
    # holds the layers it is fitting and little else (bench_extract_memory).
    if len(batch) == 1:
        target, base = load_target(unit.target, unit.dtype)
        spectra = [target_spectrum(unit.target, unit.dtype, target)]
    else:
        pairs = [load_target(u.target, u.dtype) for u in batch.units]
        spectra = [target_spectrum(u.target, u.dtype, t) for u, (t, _) in zip(batch.units, pairs, strict=True)]
        target = torch.stack([torch.as_tensor(t) for t, _ in pairs])
        base = torch.stack([torch.as_tensor(b) for _, b in pairs]) if unit.method == "hira" else None
        del pairs
    stamps: list[float] = []
    start = time.perf_counter()
    results = fit(target, unit.method, unit.ranks if unit.method == "abba" else unit.ranks[0],
                  base=base if unit.method == "hira" else None, solver=unit.solver, init=unit.init,
                  seed=unit.seed if len(batch) == 1 else [u.seed for u in batch.units],
                  device=unit.device, dtype=unit.dtype, bracket=False, threads=unit.threads,
                  callback=(lambda *_: stamps.append(time.perf_counter() - start)) if unit.history else None,
                  effort=unit.effort, **dict(unit.options))
    results = [results] if len(batch) == 1 else results
    records = [_record(u, result, spectrum, stamps)
               for u, result, spectrum in zip(batch.units, results, spectra, strict=True)]
    if keep_factors:
        for record, result in zip(records, results, strict=True):
            record["factors"] = {name: np.asarray(torch.as_tensor(f).detach().cpu(), dtype=np.float32)
                                 for name, f in result.factors.items()}
    del target, base, results
    _return_freed_memory()
    return records


@lru_cache(maxsize=1)
def _libc():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _return_freed_memory() -> None:
    """Hand freed heap memory back to the operating system (glibc's ``malloc_trim``; elsewhere nothing).

    Each fit of a sweep over a model allocates and frees a layer's worth of temporaries; glibc raises its
    mmap threshold as large blocks are freed and then keeps such blocks on its heaps, so without a trim
    a long sweep's resident memory creeps up by several layers (``bench_extract_memory``).
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _record(unit: WorkUnit, result: FitResult, spectrum: np.ndarray, stamps: list[float]) -> dict[str, Any]:
    """The journal record of one finished fit."""
    ref = unit.target
    param = get_method(unit.method)
    m, n = ref.shape
    k = min(m, n)
    rank_bound = param.rank_bound((m, n), unit.ranks, None)
    lower = metrics.truncated_svd_error(spectrum, min(rank_bound, k))
    upper = {"abba": metrics.truncated_svd_error(spectrum, min(max(unit.ranks), k)),
             "lora": lower, "hira": float("nan")}[unit.method]
    width = upper - lower
    row = {
        "experiment": unit.experiment, "key": unit.key, "target": ref.id, "target_kind": ref.kind,
        "source": ref.checkpoint or "", "m": m, "n": n, "seed": unit.seed, "method": unit.method,
        "budget": unit.budget, "r1": unit.ranks[0], "r2": unit.ranks[1] if len(unit.ranks) > 1 else 0,
        "params": param.num_params((m, n), unit.ranks), "solver": result.solver, "init": result.init or "",
        "error": result.error, "error_squared": result.error**2, "lower_bound": lower, "upper_bound": upper,
        "bracket_position": (result.error - lower) / width if width > 0 else float("nan"),
        "lora_error": metrics.truncated_svd_error(spectrum, min(unit.budget, k)),
        "target_norm": float(np.sqrt(np.sum(np.square(spectrum)))),
        "iterations": result.iterations, "status": result.status, "effort": unit.effort,
        "starts": len(result.starts), "seconds": result.seconds,
        "device": result.device, "dtype": result.dtype, **versions(),
    }
    spectra = []
    if unit.spectra:
        fitted = metrics.singular_values(result.approximation())[:SPECTRUM_LENGTH]
        spectra = [float(v) for v in fitted]
    history = []
    if unit.history:
        times = [0.0] + stamps[: len(result.history) - 1]
        history = [[i, float(t), float(e)] for i, (t, e) in enumerate(zip(times, result.history, strict=False)) if math.isfinite(e)]
    return {"row": row, "spectrum": spectra, "target_spectrum": [float(v) for v in spectrum[:SPECTRUM_LENGTH]],
            "history": history}
