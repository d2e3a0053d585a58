"""Plots of the initialization studies (tables from :mod:`abba_analysis.init_study`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ._common import figure_and_axes, require_columns


def gradient_flow(table: pd.DataFrame, *, ax: plt.Axes | None = None) -> plt.Figure:
    """Step-0 gradient norm of each factor under each scheme (log scale; zero drawn as a cross)."""
    require_columns(table, ["scheme", "factor", "grad_norm"], "gradient_flow")
    fig, (axis,) = figure_and_axes(ax, width=6.5, height=3.6)
    schemes = list(dict.fromkeys(table["scheme"]))
    factors = list(dict.fromkeys(table["factor"]))
    positive = table[table.grad_norm > 0]["grad_norm"]
    floor = positive.min() / 10 if not positive.empty else 1e-3
    for j, factor in enumerate(factors):
        part = table[table.factor == factor].set_index("scheme").reindex(schemes)
        xs = np.arange(len(schemes)) + (j - (len(factors) - 1) / 2) * 0.2
        values = part["grad_norm"].to_numpy()
        axis.bar(xs[values > 0], values[values > 0], width=0.2, label=factor)
        axis.scatter(xs[values == 0], np.full((values == 0).sum(), floor), marker="x", color="k", s=12)
    axis.set_yscale("log")
    axis.set_xticks(np.arange(len(schemes)), schemes, rotation=60, ha="right", fontsize=7)
    axis.set_ylabel("‖∇‖_F at step 0 (× = exactly 0)")
    axis.legend(frameon=False, fontsize=7, ncol=4)
    axis.grid(alpha=0.3, axis="y")
    return fig


def scaling_moments(table: pd.DataFrame, *, ax: plt.Axes | None = None) -> plt.Figure:
    """Forward second moment against r1 r2 for each scale law: Monte Carlo (dots) and theory (lines)."""
    require_columns(table, ["r1r2", "scale", "forward", "forward_theory"], "scaling_moments")
    fig, (axis,) = figure_and_axes(ax, width=4.5)
    for (scale, part), color in zip(table.groupby("scale", sort=False), sns.color_palette("tab10"), strict=False):
        axis.plot(part["r1r2"], part["forward_theory"], "-", color=color, label=f"s = {scale}")
        axis.plot(part["r1r2"], part["forward"], "o", color=color, ms=4)
        if "backward" in part:
            axis.plot(part["r1r2"], part["backward"], "x", color=color, ms=4)
    axis.set_xscale("log", base=2)
    axis.set_yscale("log", base=2)
    axis.set_xlabel("r1 r2")
    axis.set_ylabel("E[y²] (o forward, × backward; lines: theory)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(frameon=False, fontsize=7)
    return fig


def init_quality(table: pd.DataFrame, *, value: str = "final_error", ax: plt.Axes | None = None) -> plt.Figure:
    """``value`` by scheme (points per seed, bars for the mean), one colour per target."""
    require_columns(table, ["scheme", "target", value], "init_quality")
    order = table.groupby("scheme")[value].mean().sort_values().index.tolist()
    fig, (axis,) = figure_and_axes(ax, width=6.5, height=3.6)
    sns.pointplot(data=table, x="scheme", y=value, hue="target", order=order, ax=axis,
                  dodge=0.4 if table["target"].nunique() > 1 else False,
                  linestyle="none", markersize=3, errorbar="sd")
    axis.tick_params(axis="x", rotation=60, labelsize=7)
    for label in axis.get_xticklabels():
        label.set_ha("right")
    axis.set_xlabel("init scheme (sorted by mean)")
    axis.set_ylabel(value.replace("_", " "))
    axis.grid(alpha=0.3, axis="y")
    axis.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside: covers no point
    return fig
