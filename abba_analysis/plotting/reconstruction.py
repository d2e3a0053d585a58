"""Plots of fit results: error against rank or parameters, spectra, per-layer heatmaps, convergence.

Every function takes a tidy table written by :mod:`abba_analysis.experiments` and returns a
matplotlib Figure; pass ``ax=`` to draw into an existing axes. No function fits anything.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import EngFormatter, ScalarFormatter
import numpy as np
import pandas as pd
import seaborn as sns

from ._common import METHOD_COLORS, METHOD_LABELS, figure_and_axes, require_columns


def _mean_sd(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    return frame.groupby(x)[y].agg(["mean", "std", "count"]).reset_index().fillna({"std": 0.0})


def _hidden_lines(lines: dict[str, pd.Series], tolerance: float = 0.005) -> str:
    """A title note naming lines drawn within ``tolerance`` of a later one at every point (hidden under it)."""
    names = list(lines)
    hidden = []
    for i, below in enumerate(names):
        for above in names[i + 1:]:
            gap = (lines[below] - lines[above]).abs().dropna()
            if not gap.empty and gap.max() < tolerance:
                hidden.append(f"{METHOD_LABELS.get(below, below)} under {METHOD_LABELS.get(above, above)}")
                break
    return f"\n({'; '.join(hidden)})" if hidden else ""


def error_vs_rank(
    results: pd.DataFrame,
    kinds: Sequence[str] | None = None,
    *,
    ax: plt.Axes | None = None,
    methods: Sequence[str] = ("lora", "hira", "abba"),
    band: bool = True,
    squared: bool = False,
) -> plt.Figure:
    """Error against the LoRA-equivalent budget, one panel per target kind (the paper's Fig. 2).

    Lines are the mean over seeds with a ±1 s.d. band; with ``band`` the ABBA bracket (truncated SVD
    at rank r1 r2 below, LoRA at rank max(r1, r2) above) is shaded in grey. A panel's title names a
    line that lies under another at every budget (within 0.005).
    """
    require_columns(results, ["target_kind", "method", "budget", "error", "lower_bound", "upper_bound"], "error_vs_rank")
    kinds = list(kinds) if kinds is not None else list(dict.fromkeys(results["target_kind"]))
    if ax is not None and len(kinds) != 1:
        raise ValueError(f"with ax=, choose one target kind (kinds=[...]); the table has {kinds}")
    fig, axes = figure_and_axes(ax, len(kinds), width=3.6)
    column = "error_squared" if squared else "error"
    for axis, kind in zip(axes, kinds, strict=True):
        sub = results[results.target_kind == kind]
        if band:
            abba = sub[sub.method == "abba"]
            if not abba.empty:
                lo, hi = _mean_sd(abba, "budget", "lower_bound"), _mean_sd(abba, "budget", "upper_bound")
                power = 2 if squared else 1
                axis.fill_between(lo["budget"], lo["mean"] ** power, hi["mean"] ** power, color="0.85",
                                  label="ABBA bracket")
        drawn: dict[str, pd.Series] = {}
        for method in methods:
            part = sub[sub.method == method]
            if part.empty:
                continue
            stats = _mean_sd(part, "budget", column)
            color = METHOD_COLORS.get(method)
            axis.plot(stats["budget"], stats["mean"], "o-", ms=3, color=color, label=METHOD_LABELS.get(method, method))
            axis.fill_between(stats["budget"], stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                              color=color, alpha=0.25, lw=0)
            drawn[method] = stats.set_index("budget")["mean"]
        axis.set_title(kind.replace("_", "-") + _hidden_lines(drawn), fontsize=10)
        axis.set_xlabel("rank r (ABBA: r1 = r2 = r/2)")
        axis.set_ylabel("relative error" + (" squared" if squared else ""))
        axis.grid(alpha=0.3)
    axes[-1].legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside: covers no line
    return fig


def error_vs_params(results: pd.DataFrame, *, ax: plt.Axes | None = None) -> plt.Figure:
    """Error against trainable parameters, per method and target kind (mean over seeds)."""
    require_columns(results, ["target_kind", "method", "params", "error"], "error_vs_params")
    fig, (axis,) = figure_and_axes(ax, width=5.0)
    styles = dict(zip(dict.fromkeys(results["target_kind"]), ["-", "--", ":", "-.", (0, (3, 1, 1, 1))] * 4, strict=False))
    for (kind, method), part in results.groupby(["target_kind", "method"], sort=False):
        stats = _mean_sd(part, "params", "error")
        axis.plot(stats["params"], stats["mean"], marker="o", ms=3, ls=styles[kind],
                  color=METHOD_COLORS.get(method), label=f"{METHOD_LABELS.get(method, method)}, {kind}")
    span = results["params"].max() / results["params"].min()
    axis.set_xscale("log" if span > 20 else "linear")  # a log axis shorter than ~1 decade has no useful ticks
    axis.xaxis.set_major_formatter(EngFormatter(sep=""))
    axis.set_xlabel("trainable parameters")
    axis.set_ylabel("relative error")
    axis.grid(alpha=0.3, which="both")
    axis.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside: covers no line
    return fig


def spectra(
    spectra_table: pd.DataFrame,
    target: str | None = None,
    *,
    budget: int | None = None,
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """Singular values of a target and of its fits (at ``budget``; default the largest), log scale."""
    require_columns(spectra_table, ["target", "source", "budget", "index", "singular_value"], "spectra")
    target = target if target is not None else spectra_table["target"].iloc[0]
    sub = spectra_table[spectra_table.target == target]
    fits = sub[sub.source != "target"]
    budget = budget if budget is not None else (int(fits["budget"].max()) if not fits.empty else 0)
    fig, (axis,) = figure_and_axes(ax, width=4.5)
    own = sub[sub.source == "target"]
    axis.plot(own["index"], own["singular_value"], color="k", lw=1.5, label="target")
    for method, part in fits[fits.budget == budget].groupby("source"):
        first = part[part.key == part.key.iloc[0]]
        axis.plot(first["index"], first["singular_value"], color=METHOD_COLORS.get(method), lw=1,
                  label=f"{METHOD_LABELS.get(method, method)} (r = {budget})")
    axis.set_yscale("log")
    # Below 1e-4 sigma_max the values are rounding noise of rank-deficient fits; keep them off the scale.
    top = float(sub["singular_value"].max())
    axis.set_ylim(bottom=1e-4 * top, top=2 * top)
    axis.set_xlabel("index i")
    axis.set_ylabel("singular value σ_i")
    axis.set_title(target, fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(frameon=False, fontsize=8)
    return fig


def layer_heatmap(
    results: pd.DataFrame,
    *,
    value: str = "error",
    ax: plt.Axes | None = None,
    relative_to_lora: bool = False,
) -> plt.Figure:
    """A layer × (method, budget) heatmap of ``value`` (mean over seeds), for real-weight targets.

    With ``relative_to_lora`` the cells show ``error / lora_error`` (below 1: better than LoRA), and
    LoRA's own columns, 1 by construction, are left out.
    """
    require_columns(results, ["target", "method", "budget", value], "layer_heatmap")
    frame = results.copy()
    if relative_to_lora:
        frame = frame[frame["method"] != "lora"].copy()
        if frame.empty:
            raise ValueError("layer_heatmap: relative_to_lora needs HiRA or ABBA rows; the table has LoRA only")
        frame[value] = frame[value] / frame["lora_error"]
    frame["column"] = frame["method"].map(lambda m: METHOD_LABELS.get(m, m)) + " r=" + frame["budget"].astype(str)
    table = frame.pivot_table(index="target", columns="column", values=value, aggfunc="mean")
    order = sorted(table.columns, key=lambda c: (c.split(" r=")[0], int(c.split(" r=")[1])))
    table = table[order]
    table.index = [name.removesuffix(".weight").replace("encoder.", "") for name in table.index]
    # Room for the layer names (about 0.055 in per character at 7 pt), the colour bar and a title: a figure
    # sized to the cells alone collapses under constrained layout when there are few of them.
    label_width = 0.055 * max(len(name) for name in table.index)
    fig, (axis,) = figure_and_axes(ax, width=label_width + 1.8 + 0.55 * len(order), height=1.6 + 0.28 * len(table))
    # Relative to LoRA: a diverging map centred on 1, so better (blue) and worse (red) than LoRA read at a glance.
    sns.heatmap(table, ax=axis, annot=len(table) * len(order) <= 400, fmt=".3f" if relative_to_lora else ".2f",
                cmap="RdBu_r" if relative_to_lora else "viridis_r", center=1.0 if relative_to_lora else None,
                cbar_kws={"label": "error / LoRA error" if relative_to_lora else value, "format": ScalarFormatter(useOffset=False)},
                annot_kws={"fontsize": 6})
    axis.set_xlabel("")
    axis.set_ylabel("")
    axis.tick_params(labelsize=7)
    return fig


def convergence(
    histories: pd.DataFrame,
    *,
    x: str = "iteration",
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """Error against iterations or seconds (``x="seconds"``), one line per fit, coloured by solver."""
    if x not in ("iteration", "seconds"):
        raise ValueError(f"x must be 'iteration' or 'seconds', got {x!r}")
    require_columns(histories, ["key", "solver", x, "error"], "convergence")
    fig, (axis,) = figure_and_axes(ax, width=4.5)
    palette = dict(zip(sorted(histories["solver"].unique()), sns.color_palette("tab10"), strict=False))
    labelled = set()
    for key, part in histories.groupby("key", sort=False):
        solver = part["solver"].iloc[0]
        axis.plot(part[x], part["error"], color=palette[solver], lw=1, alpha=0.8,
                  label=None if solver in labelled else solver)
        labelled.add(solver)
    axis.set_xscale("log" if x == "iteration" else "linear")
    axis.set_xlabel("iteration (sweep or step)" if x == "iteration" else "seconds")
    axis.set_ylabel("relative error")
    axis.grid(alpha=0.3, which="both")
    axis.legend(frameon=False, fontsize=8)
    lo, hi = np.nanmin(histories["error"]), np.nanpercentile(histories["error"], 99)
    axis.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    return fig
