"""Run a configuration: expand it into work units, run the ones not yet done, keep every result.

Results go to ``<out>/journal.jsonl``, one complete JSON line per finished fit, written with a
single ``write`` and flushed to disk, so an interrupted run (Ctrl-C, kill) loses only fits in flight
and never leaves half a row. Rerunning the same configuration skips every unit whose key is in the
journal. After each run the tidy tables ``results.csv`` (one row per fit), ``spectra.csv`` and
``histories.csv`` are rewritten from the journal, atomically.

Units that differ only in target (of one shape) and seed run as one batched fit
(:func:`~abba_analysis.experiments.units.make_batches`): the same rows, fewer and larger products.

The executor is pluggable: anything with ``map_unordered(function, items)`` that yields results as
they finish (see :mod:`abba_analysis.experiments.executors`); the items are batches of units.
Results are journaled by this process as they arrive, whichever worker computed them.
"""

from __future__ import annotations

import functools
import json
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np
import pandas as pd

from .._progress import progress_bar
from .config import Config, ConfigError
from .executors import InProcess
from .units import TargetRef, WorkUnit, make_batches, ranks_for, run_batch

JOURNAL = "journal.jsonl"
RESULTS, SPECTRA, HISTORIES = "results.csv", "spectra.csv", "histories.csv"
FACTORS = "factors"


class Executor(Protocol):
    """Runs work units and yields their results in any order, as they finish (see :mod:`.executors`).

    An optional ``parallelism`` attribute (how many items run at once) lets the runner cut batches
    so that every worker gets some.
    """

    def map_unordered(self, function: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        ...


def _target_refs(config: Config) -> Iterator[tuple[TargetRef, bool]]:
    """Every target of the config, with whether it carries a fine-tuning delta."""
    for spec in config.targets:
        if spec.kind == "checkpoint":
            from ..deltas import CheckpointError, from_checkpoints
            from .units import _checkpoint

            try:
                checkpoint = _checkpoint(spec.base)
                if spec.finetuned is None:
                    names = checkpoint.matrices(spec.include, spec.exclude, required=True)
                else:  # only tensors present, and of one shape, on both sides
                    names = from_checkpoints(checkpoint, _checkpoint(spec.finetuned), spec.include,
                                             exclude=spec.exclude).names
            except (CheckpointError, ImportError, ValueError) as error:
                raise ConfigError(f"target checkpoint: {error}") from None
            for name in names:
                shape = checkpoint.infos[name].shape
                yield TargetRef("checkpoint", (shape[0], shape[1]), checkpoint=spec.base, finetuned=spec.finetuned,
                                tensor=name), spec.finetuned is not None
        else:
            for seed in config.seeds:
                yield TargetRef(spec.kind, spec.shape, seed=seed, options=tuple(sorted(spec.options.items())),
                                hira_base=config.hira_base), True


def expand(config: Config) -> list[WorkUnit]:
    """All work units of ``config``, in a deterministic order; raises ConfigError on impossible ones."""
    units = []
    for ref, has_base in _target_refs(config):
        seeds = config.seeds if ref.kind == "checkpoint" else (ref.seed,)
        for spec in config.methods:
            if spec.method == "hira" and not has_base:
                raise ConfigError(f"HiRA needs a fine-tuned checkpoint to fit a delta; target {ref.tensor!r} "
                                  "is a plain weight (give a fine-tuned checkpoint, or leave HiRA out)")
            rank_list = [(b, ranks_for(spec.method, b)) for b in spec.budgets] + [(sum(r), r) for r in spec.ranks]
            for budget, ranks in rank_list:
                if max(ranks) > min(ref.shape):
                    raise ConfigError(f"{spec.method} ranks {ranks} exceed min(m, n) = {min(ref.shape)} of {ref.id}")
                for solver in spec.solvers:
                    for init in spec.inits:
                        for seed in seeds:
                            units.append(WorkUnit(
                                config.name, ref, spec.method, budget, tuple(ranks), solver, init, seed,
                                tuple(sorted(spec.options.items())), config.dtype, config.device,
                                config.spectra, config.history, config.threads, spec.effort))
    return units


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Completed records of a journal; an incomplete last line (a crash mid-write) is dropped."""
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                warnings.warn(f"{path}:{number}: dropped an incomplete record (interrupted write)", stacklevel=2)
    return records


def _end_with_newline(path: Path) -> None:
    """Terminate a torn last line (a crash mid-write) so that new records start on a line of their own."""
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


def _append(path: Path, record: dict[str, Any]) -> None:
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write of the whole line: no reader ever sees half of it
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


@dataclass
class Results:
    """The tidy tables of a run: ``results`` (one row per fit), ``spectra`` and ``histories``."""

    results: pd.DataFrame
    spectra: pd.DataFrame
    histories: pd.DataFrame


def tables(records: Iterable[dict[str, Any]]) -> Results:
    """Build the tidy tables from journal records."""
    rows, spectra, histories = [], [], []
    seen_targets = set()
    for rec in records:
        row = rec["row"]
        rows.append(row)
        if rec.get("spectrum"):
            spectra += [{"experiment": row["experiment"], "target": row["target"], "source": row["method"],
                         "budget": row["budget"], "seed": row["seed"], "key": row["key"], "index": i + 1,
                         "singular_value": v} for i, v in enumerate(rec["spectrum"])]
            tkey = (row["experiment"], row["target"])
            if tkey not in seen_targets:
                seen_targets.add(tkey)
                spectra += [{"experiment": row["experiment"], "target": row["target"], "source": "target",
                             "budget": 0, "seed": row["seed"], "key": "", "index": i + 1, "singular_value": v}
                            for i, v in enumerate(rec["target_spectrum"])]
        for it, seconds, error in rec.get("history", []):
            histories.append({"key": row["key"], "experiment": row["experiment"], "target": row["target"],
                              "method": row["method"], "solver": row["solver"], "init": row["init"],
                              "budget": row["budget"], "seed": row["seed"], "iteration": it, "seconds": seconds,
                              "error": error})
    return Results(pd.DataFrame(rows), pd.DataFrame(spectra), pd.DataFrame(histories))


def _time_left(elapsed: float, done: float, todo: float) -> str:
    """``"about N min left"`` from the average rate so far, once 5% of this session's work is done."""
    if done < 0.05 * todo:
        return "estimating the time left"
    seconds = max(0.0, elapsed * (todo - done) / done)  # summed shares can overshoot: no "-0 s"
    return f"about {seconds / 60:.0f} min left" if seconds >= 90 else f"about {seconds:.0f} s left"


def run(
    config: Config,
    out_dir: str | os.PathLike,
    *,
    executor: Executor | None = None,
    progress: bool = True,
    batch: bool = True,
    keep_factors: bool = False,
) -> Results:
    """Run every unit of ``config`` not already in ``out_dir``'s journal; return the full tables.

    Parameters
    ----------
    config : Config
        A validated configuration (:func:`abba_analysis.experiments.load`).
    out_dir : path
        Where the journal and the CSV tables live; created if needed.
    executor : optional
        Default :class:`~.executors.InProcess`; also :class:`~.executors.LocalProcesses` and
        :class:`~.executors.Dask`.
    progress : bool
        Show a progress bar over fits (``tqdm``).
    batch : bool
        Fit units that differ only in target and seed together (batched products; same rows).
        Without it every unit is its own fit, and an interruption loses at most one fit per worker.
    keep_factors : bool
        Also keep every fit's factors, one ``factors/<key>.safetensors`` per fit (written before its
        journal line); read them with :func:`load_factors`. A journaled fit without its file is rerun.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / JOURNAL
    units = expand(config)
    _end_with_newline(journal)
    done = {rec["row"]["key"] for rec in read_journal(journal)}
    if keep_factors:
        done = {key for key in done if _factors_path(out, key).exists()}
    todo = [u for u in units if u.key not in done]
    # The bar advances by each fit's estimated cost, not by fits: fits of one experiment differ in cost
    # by 100x, and a bar over fits let its time estimate swing by as much. The estimate is the average
    # rate since the start, over batches in a fixed shuffled order (below), shown from 5% on: before,
    # start-up costs outside the model (building targets, first calls) dominate it.
    cost = {u.key: u.estimated_cost for u in units}
    total = sum(cost.values())
    finished = len(units) - len(todo)
    already = sum(cost[k] for k in done if k in cost) / total
    bar = progress_bar(total=100.0, initial=100.0 * already,
               desc=f"{config.name} ({finished}/{len(units)} fits)", disable=not progress,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}",
               postfix="estimating the time left" if todo else "all fits already in the journal")
    started, share = time.perf_counter(), 0.0
    try:
        executor = executor or InProcess()
        parallelism = getattr(executor, "parallelism", 1)
        work = make_batches(todo, max_size=64 if batch else 1, parallelism=parallelism)
        # Results do not depend on the order. In one process a fixed shuffle spreads cheap and costly fits
        # over the run, so the errors of the cost estimates average out from the start; with workers the
        # costliest batches go first, so that none starts late and keeps the others waiting at the end.
        if parallelism > 1:
            work.sort(key=lambda b: -sum(cost[u.key] for u in b.units))
        else:
            random.Random(0).shuffle(work)
        task = functools.partial(run_batch, keep_factors=True) if keep_factors else run_batch
        for records in executor.map_unordered(task, work):
            for record in records:
                key = record["row"]["key"]
                if key in done:  # a retried unit whose first result also arrived: keep one
                    continue
                factors = record.pop("factors", None)
                if factors is not None:
                    _save_factors(_factors_path(out, key), factors)
                _append(journal, record)
                done.add(key)
                finished += 1
                share += cost[key] / total
                bar.set_description_str(f"{config.name} ({finished}/{len(units)} fits)", refresh=False)
                bar.set_postfix_str(_time_left(time.perf_counter() - started, share, 1.0 - already),
                                    refresh=False)
                bar.update(min(100.0 * cost[key] / total, 100.0 - bar.n))  # sums of floats overshoot
    finally:
        bar.close()
        # Rows in the configuration's order, whatever order the fits finished in; one per fit (the last,
        # where a fit was rerun because its factors file was missing).
        order = {u.key: i for i, u in enumerate(units)}
        latest = {r["row"]["key"]: r for r in read_journal(journal) if r["row"]["key"] in order}
        records = sorted(latest.values(), key=lambda r: order[r["row"]["key"]])
        result = tables(records)
        _write_atomic(result.results, out / RESULTS)
        _write_atomic(result.spectra, out / SPECTRA)
        _write_atomic(result.histories, out / HISTORIES)
    return result


def _factors_path(out: Path, key: str) -> Path:
    return out / FACTORS / f"{key}.safetensors"


def _save_factors(path: Path, factors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({name: np.ascontiguousarray(f) for name, f in factors.items()}, str(tmp))
    os.replace(tmp, path)


def load_factors(out_dir: str | os.PathLike, key: str) -> dict[str, np.ndarray]:
    """The factors a run with ``keep_factors=True`` kept for the fit whose ``results.csv`` key is ``key``."""
    from safetensors.numpy import load_file

    path = _factors_path(Path(out_dir), key)
    if not path.is_file():
        raise FileNotFoundError(f"no factors for fit {key} in {Path(out_dir) / FACTORS} (run with keep_factors=True)")
    return load_file(str(path))


def load_results(out_dir: str | os.PathLike) -> Results:
    """Read the tables a run wrote (from its journal, so a run in progress can be inspected too)."""
    return tables(read_journal(Path(out_dir) / JOURNAL))
