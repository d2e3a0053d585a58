"""Plotting (matplotlib + seaborn): every function takes a tidy table and returns a Figure.

Plots never call solvers: they draw what :mod:`abba_analysis.experiments` and
:mod:`abba_analysis.init_study` computed.
"""

from __future__ import annotations

from .inits import gradient_flow, init_quality, scaling_moments
from .reconstruction import convergence, error_vs_params, error_vs_rank, layer_heatmap, spectra

__all__ = ["convergence", "error_vs_params", "error_vs_rank", "gradient_flow", "init_quality", "layer_heatmap",
           "scaling_moments", "spectra"]
