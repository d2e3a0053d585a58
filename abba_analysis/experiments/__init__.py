"""Experiments as data: a TOML configuration, a resumable runner and tidy result tables.

Columns of ``results.csv`` (one row per fit):

========================  =================================================================
experiment                the configuration's name
key                       hash of the work unit and the package version (what makes a rerun skip it)
target, target_kind       target id (``kind-mxn-s<seed>`` or tensor name) and kind
source                    checkpoint of a real-weight target ("" for random ones)
m, n                      target shape
seed                      seed of the fit (and of a random target)
method                    lora, hira or abba
budget                    LoRA-equivalent rank: parameters = budget * (m + n)
r1, r2                    ranks (r2 = 0 for LoRA and HiRA)
params                    trainable parameters
solver, init              what ran ("auto" resolved; init "" for closed forms)
error, error_squared      relative Frobenius error and its square
lower_bound               truncated-SVD error at the method's rank bound
upper_bound               ABBA: LoRA error at max(r1, r2); LoRA: its own optimum; HiRA: NaN
bracket_position          (error - lower) / (upper - lower)
lora_error                LoRA's optimal error at the same budget
target_norm               ||T||_F (errors are relative to it)
iterations, status        of the solver
effort, starts            the search effort ("default" or "thorough") and the number of starts run
seconds, device, dtype    wall time of the fit, where and in what precision it ran
abba_analysis, torch,     package versions
numpy, python
========================  =================================================================

``spectra.csv``: experiment, target, source ("target" or the method), budget, seed, key, index,
singular_value (top 256). ``histories.csv``: key, experiment, target, method, solver, init, budget,
seed, iteration, seconds, error.
"""

from __future__ import annotations

from .config import Config, ConfigError, MethodSpec, TargetSpec, builtin, load, parse
from .executors import Dask, InProcess, LocalProcesses
from .runner import Results, expand, load_factors, load_results, run, tables
from .units import Batch, TargetRef, WorkUnit, make_batches, run_batch, run_unit

__all__ = [
    "Batch", "Config", "ConfigError", "Dask", "InProcess", "LocalProcesses", "MethodSpec", "Results", "TargetRef", "TargetSpec", "WorkUnit",
    "builtin", "expand", "load", "load_factors", "load_results", "make_batches", "parse", "run", "run_batch", "run_unit", "tables",
]
