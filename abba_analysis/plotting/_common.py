"""Shared plotting conventions: one colour per method, figure/axes handling."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd

METHOD_COLORS = {"lora": "#1f77b4", "abba": "#d62728", "hira": "#2ca02c"}
METHOD_LABELS = {"lora": "LoRA", "abba": "ABBA", "hira": "HiRA"}


def figure_and_axes(ax, ncols: int = 1, *, width: float = 4.0, height: float = 3.2):
    """``(figure, [axes])``: the given ``ax`` (one panel), or a new row of ``ncols`` panels."""
    if ax is not None:
        return ax.figure, [ax]
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False, constrained_layout=True)
    return fig, list(axes[0])


def require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise a clear error when a table lacks the columns a plot needs."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing}; got {list(table.columns)}")
    if table.empty:
        raise ValueError(f"{what}: the table is empty")
