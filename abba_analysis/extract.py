"""Compress a fine-tune into an adapter: fit every selected layer's update, write a PEFT adapter.

:func:`extract` (CLI: ``abba-analysis extract``) streams a checkpoint pair, fits each selected
layer's ``ΔW`` with the experiment runner (batched by shape, on any executor, resumable, with
progress), keeps the factors, and writes the adapter (:func:`abba_analysis.export.peft_adapter`) and a
per-layer table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from . import experiments
from .deltas import Checkpoint
from .allocation import CURVE_COLUMNS, allocate
from .export import peft_adapter

RUN_DIR, ADAPTER_DIR, LAYERS_TABLE = "run", "adapter", "layers.csv"


@dataclass(frozen=True)
class FittedUpdate:
    """A fitted update as :func:`~abba_analysis.export.peft_adapter` needs it (a FitResult also serves)."""

    method: str
    ranks: tuple[int, ...]
    factors: dict[str, Any]


@dataclass
class Extraction:
    """What :func:`extract` wrote: the adapter directory and one row per layer (also ``layers.csv``)."""

    adapter: Path
    layers: pd.DataFrame


def extract(
    base: str | os.PathLike,
    finetuned: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    method: str = "abba",
    budget: int | None = 16,
    total_params: int | None = None,
    include: str | None = None,
    exclude: str | None = None,
    seed: int = 0,
    strip_prefix: str = "",
    options: dict[str, Any] | None = None,
    effort: str = "default",
    device: str = "cpu",
    executor: Any = None,
    progress: bool = True,
) -> Extraction:
    """Fit ``method`` at a LoRA-equivalent ``budget`` to every selected layer's update; write the adapter.

    Parameters
    ----------
    base, finetuned : path, hub id or ``"minilm"``
        The checkpoint pair (files or model directories); the targets are ``ΔW = W_finetuned - W_base``
        of the 2-D weights both hold.
    out_dir : path
        ``run/`` (the resumable run: journal, tables, factors), ``adapter/`` (the PEFT adapter) and
        ``layers.csv`` go here. Rerunning after an interruption fits only the layers not yet done.
    method : {"lora", "abba", "hira"}
        LoRA is written as a PEFT LoRA adapter, ABBA as LoHa, HiRA as PEFT's HiRA.
    budget : int, optional
        LoRA-equivalent rank: each layer gets ``budget * (m + n)`` parameters (ABBA: ``r1 + r2 = budget``).
    total_params : int, optional
        Instead of ``budget``: at most this many parameters over all layers, allocated to minimise the
        summed squared error of the updates (:func:`abba_analysis.allocation.allocate`, on each layer's
        error at a grid of budgets, :func:`budget_grid`). A layer may get budget 0 (left out). The
        table then also holds each layer's error at the uniform budget of the same total.
    include, exclude : str, optional
        Regular expressions on tensor names.
    seed : int
    strip_prefix : str
        Removed from module names in the adapter (see :func:`~abba_analysis.export.peft_adapter`).
    options : dict, optional
        Solver options of the iterative fits (e.g. ``{"max_iter": 300, "rtol": 1e-5}``).
    effort : {"default", "thorough"}
        Search effort of the iterative fits (see :func:`abba_analysis.fit`).
    device : str
    executor : optional
        As for :func:`abba_analysis.experiments.run` (in-process by default).
    progress : bool

    Returns
    -------
    Extraction
    """
    if (budget is None) == (total_params is None):
        raise ValueError("give exactly one of budget (every layer) or total_params (allocated over layers)")
    out = Path(out_dir)
    target: dict[str, Any] = {"kind": "checkpoint", "base": str(base), "finetuned": str(finetuned)}
    target.update({k: v for k, v in (("include", include), ("exclude", exclude)) if v is not None})
    uniform = None
    if total_params is not None:
        shapes = _shapes(base, finetuned, include, exclude)
        uniform = total_params // sum(m + n for m, n in shapes)
        budgets = budget_grid(method, uniform, min(min(shape) for shape in shapes))
    else:
        budgets = [budget]
    config = experiments.parse({
        "experiment": {"name": "extract", "seeds": [seed], "device": device},
        "targets": [target],
        "methods": [{"method": method, "budgets": budgets,
                     **({"options": dict(options)} if options and method != "lora" else {}),
                     **({"effort": effort} if method != "lora" else {})}],
    })
    run_dir = out / RUN_DIR
    rows = experiments.run(config, run_dir, executor=executor, progress=progress, keep_factors=True).results
    if total_params is not None:
        rows = _allocated(rows, total_params, uniform)
    adapter = write_adapter(rows, run_dir, out / ADAPTER_DIR, base, strip_prefix=strip_prefix)
    columns = ["target", "m", "n", "method", "budget", "r1", "r2", "params", "error", "lora_error", "target_norm",
               "status", "iterations"] + (["uniform_budget", "uniform_params", "uniform_error"] if uniform is not None else [])
    layers = rows[columns].rename(columns={"target": "layer"})
    layers.to_csv(out / LAYERS_TABLE, index=False)
    return Extraction(adapter, layers)


def write_adapter(rows: pd.DataFrame, run_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  base: str | os.PathLike, *, strip_prefix: str = "") -> Path:
    """Write the fits of ``rows`` (rows of a run's ``results.csv`` kept with factors; one per layer,
    budget 0 skipped) as a PEFT adapter for ``base``."""
    fits = {row.target: FittedUpdate(row.method, (row.r1, row.r2) if row.method == "abba" else (row.r1,),
                                     experiments.load_factors(run_dir, row.key))
            for row in rows.itertuples() if row.budget > 0}
    # "minilm" and hub ids resolved: PEFT loads the model from this directory.
    return peft_adapter(fits, out_dir, base_model=str(Checkpoint.open(base).directory), strip_prefix=strip_prefix)


def budget_grid(method: str, uniform: int, largest: int) -> list[int]:
    """Budgets fitted per layer for an allocation: steps of about √2 (1, 2, 3, 4, 6, 8, 12, 16, ...) from
    the method's least (ABBA 2, else 1) up to four times the uniform budget, plus the uniform budget
    itself, none above ``largest``.

    Examples
    --------
    >>> budget_grid("abba", 8, 1000)
    [2, 3, 4, 6, 8, 12, 16, 24, 32]
    """
    low = 2 if method == "abba" else 1
    if uniform < low:
        raise ValueError(f"total_params allows a uniform budget of {uniform} per layer; {method} needs at least {low}")
    grid, power = {uniform}, 1
    while power < 4 * uniform:
        grid.update(b for b in (power, 3 * power // 2) if low <= b <= 4 * uniform)
        power *= 2
    grid.add(min(power, 4 * uniform))
    return sorted(g for g in grid if g <= largest)


def _shapes(base, finetuned, include, exclude) -> list[tuple[int, int]]:
    from .deltas import from_checkpoints

    pairs = from_checkpoints(base, finetuned, include, exclude=exclude)
    return [pairs.base.infos[name].shape for name in pairs.names]


def _allocated(rows: pd.DataFrame, total_params: int, uniform: int) -> pd.DataFrame:
    """The row chosen per layer by :func:`~abba_analysis.allocation.allocate` (budget 0: a layer left
    out, error 1), with the layer's uniform-budget row beside it."""
    rows = rows.assign(squared_error=(rows["error"] * rows["target_norm"]) ** 2, layer=rows["target"])
    left_out = rows.drop_duplicates("target").assign(budget=0, params=0, squared_error=lambda f: f["target_norm"] ** 2)
    chosen = allocate(pd.concat([left_out, rows])[CURVE_COLUMNS], total_params)
    picked = []
    for layer in chosen.itertuples():
        if layer.budget == 0:
            row = left_out[left_out.target == layer.layer].iloc[0].copy()
            row[["r1", "r2", "error", "lora_error", "iterations", "status", "key"]] = [0, 0, 1.0, 1.0, 0, "left out", ""]
        else:
            row = rows[(rows.target == layer.layer) & (rows.budget == layer.budget)].iloc[0].copy()
        same = rows[(rows.target == layer.layer) & (rows.budget == uniform)].iloc[0]
        row["uniform_budget"], row["uniform_params"], row["uniform_error"] = uniform, same["params"], same["error"]
        picked.append(row)
    return pd.DataFrame(picked).reset_index(drop=True)


def total_error(layers: pd.DataFrame, error: str = "error") -> float:
    """Relative error of all layers' updates together: ``sqrt(Σ error² ||ΔW||²) / sqrt(Σ ||ΔW||²)``
    (``layers`` as :func:`extract` returns them, with ``target_norm``)."""
    norms = layers["target_norm"] ** 2
    return float(((layers[error] ** 2 * norms).sum() / norms.sum()) ** 0.5)
