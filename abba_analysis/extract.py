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
    budget: int = 16,
    include: str | None = None,
    exclude: str | None = None,
    seed: int = 0,
    strip_prefix: str = "",
    options: dict[str, Any] | None = None,
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
    budget : int
        LoRA-equivalent rank: each layer gets ``budget * (m + n)`` parameters (ABBA: ``r1 + r2 = budget``).
    include, exclude : str, optional
        Regular expressions on tensor names.
    seed : int
    strip_prefix : str
        Removed from module names in the adapter (see :func:`~abba_analysis.export.peft_adapter`).
    options : dict, optional
        Solver options of the iterative fits (e.g. ``{"max_iter": 300, "rtol": 1e-5}``).
    device : str
    executor : optional
        As for :func:`abba_analysis.experiments.run` (in-process by default).
    progress : bool

    Returns
    -------
    Extraction
    """
    out = Path(out_dir)
    target: dict[str, Any] = {"kind": "checkpoint", "base": str(base), "finetuned": str(finetuned)}
    target.update({k: v for k, v in (("include", include), ("exclude", exclude)) if v is not None})
    config = experiments.parse({
        "experiment": {"name": "extract", "seeds": [seed], "device": device},
        "targets": [target],
        "methods": [{"method": method, "budgets": [budget],
                     **({"options": dict(options)} if options and method != "lora" else {})}],
    })
    run_dir = out / RUN_DIR
    tables = experiments.run(config, run_dir, executor=executor, progress=progress, keep_factors=True)
    rows = tables.results
    fits = {row.target: FittedUpdate(row.method, (row.r1, row.r2) if row.method == "abba" else (row.r1,),
                                     experiments.load_factors(run_dir, row.key))
            for row in rows.itertuples()}
    opened = Checkpoint.open(base).path  # "minilm" and hub ids resolved: PEFT loads the model from here
    adapter = peft_adapter(fits, out / ADAPTER_DIR, base_model=str(opened.parent if opened.is_file() else opened),
                           strip_prefix=strip_prefix)
    layers = rows[["target", "m", "n", "method", "budget", "r1", "r2", "params", "error", "lora_error", "status",
                   "iterations"]].rename(columns={"target": "layer"})
    layers.to_csv(out / LAYERS_TABLE, index=False)
    return Extraction(adapter, layers)
