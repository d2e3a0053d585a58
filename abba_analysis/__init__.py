"""abba-analysis: how well can LoRA, HiRA and ABBA represent a weight update, and why.

Examples
--------
>>> import abba_analysis as aa
>>> T = aa.targets.gaussian(64, seed=0)
>>> lora = aa.fit(T, "lora", rank=8)
>>> abba = aa.fit(T, "abba", rank=aa.budget.abba_ranks_for_lora(8), seed=0)
>>> abba.error < lora.error
True
"""

from __future__ import annotations

from ._version import __version__
from . import (budget, deltas, experiments, export, extract, inits, linalg, metrics, parameterizations, solvers,
               targets, threads)
from .fit import FitResult, fit
from .parameterizations import abba_apply, abba_scale, khatri_rao_factors, lora_scale


__all__ = [
    "FitResult",
    "abba_apply",
    "abba_scale",
    "budget",
    "deltas",
    "experiments",
    "export",
    "extract",
    "fit",
    "inits",
    "khatri_rao_factors",
    "linalg",
    "lora_scale",
    "metrics",
    "parameterizations",
    "solvers",
    "targets",
    "threads",
    "__version__",
]
