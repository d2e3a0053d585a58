"""Solver iterations with their temporaries in a reused workspace against fresh ones each time, in one run.

The block-coordinate solver keeps the m x n temporaries of its sweeps (residuals, Gram matrices,
the float64 systems), and Adam those of its gradient, in an
:class:`abba_analysis.workspace.Workspace` that lives as long as the fit. The baseline gives every
iteration no workspace: each temporary is a new tensor, allocated when needed and freed when done
(the code path without a workspace, as plain tensor code allocates).
The two run in alternating blocks of ``--iterations`` iterations from the same factors (blocks, not
single iterations: the allocator's state after a run of fresh ones is what a fit without the
workspace meets; the reused workspace is dropped between its blocks), each case in a fresh
process (glibc adapts its thresholds to the sizes it has seen freed, so a case's baseline depends
on what ran before it in the process). We print the median time
of one iteration (an ALS sweep, or Adam's fused gradient) each way, fresh / reused (above 1: the
workspace is faster) and the median page faults per iteration (``ru_minflt``), which is where the
difference goes.

    python benchmarks/bench_workspace.py [--blocks 5] [--iterations 10]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import torch

from _timing import machine, median
from abba_analysis.parameterizations import get_method
from abba_analysis.solvers.als import _abba_sweep, _hira_sweep
from abba_analysis.workspace import Workspace

#: name -> (solver, targets, m, n, rank): batches as the runner makes them, and single fits.
CASES = {
    "abba adam gradient, batch 64 x 128x128, r=(4,4)": ("abba-adam", 64, 128, 128, 4),
    "abba adam gradient, 2048x2048, r=(16,16)": ("abba-adam", 1, 2048, 2048, 16),
    "hira batch 64 x 128x128, r=8": ("hira", 64, 128, 128, 8),
    "abba batch 64 x 128x128, r=(4,4)": ("abba", 64, 128, 128, 4),
    "hira 512x512, r=16": ("hira", 1, 512, 512, 16),
    "abba 512x512, r=(16,16)": ("abba", 1, 512, 512, 16),
    "abba 384x1536, r=(16,16)": ("abba", 1, 384, 1536, 16),
    "hira 4096x4096, r=16": ("hira", 1, 4096, 4096, 16),
    "abba 4096x4096, r=(8,8)": ("abba", 1, 4096, 4096, 8),
}


def make_iteration(method: str, k: int, m: int, n: int, r: int):
    """A function running one sweep (or Adam's gradient), in a given workspace or none, from fixed factors."""
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(k, m, n, generator=gen)
    ridge = torch.full((k,), 1e-6, dtype=torch.float64)
    if method == "hira":
        base = torch.randn(1, m, n, generator=gen)  # one W0 shared by the batch
        start = {"B": 0.1 * torch.randn(k, m, r, generator=gen), "A": torch.randn(k, r, n, generator=gen)}
        return lambda ws: _hira_sweep(target, base, {key: v.clone() for key, v in start.items()}, ridge, ws)
    start = {name: torch.randn(k, *shape, generator=gen) / r ** 0.5
             for name, shape in [("B1", (m, r)), ("A1", (r, n)), ("B2", (m, r)), ("A2", (r, n))]}
    if method == "abba-adam":
        return lambda ws: get_method("abba").gradients(start, target, None, ws)
    return lambda ws: _abba_sweep(target, {key: v.clone() for key, v in start.items()}, ridge, ws)


def timed(fn) -> tuple[float, int]:
    """Seconds and minor page faults of one call."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def block(fn, count: int) -> list[tuple[float, int]]:
    """Time ``count`` calls after an untimed one (the first after the other kind of block; for a
    reused workspace, the one that allocates its buffers)."""
    fn()
    return [timed(fn) for _ in range(count)]


def table_row(name: str, blocks: int, iterations: int) -> str:
    iteration = make_iteration(*CASES[name])
    fresh_runs, reused_runs = [], []
    for _ in range(blocks):
        fresh_runs += block(lambda: iteration(None), iterations)
        reused = Workspace()  # dropped after its block
        reused_runs += block(lambda ws=reused: iteration(ws), iterations)
    fresh_s, reused_s = (median(t for t, _ in runs) for runs in (fresh_runs, reused_runs))
    fresh_f, reused_f = (median(f for _, f in runs) for runs in (fresh_runs, reused_runs))
    return (f"| {name} | {fresh_s * 1e3:.2f} | {reused_s * 1e3:.2f} | {fresh_s / reused_s:.2f}x | "
            f"{fresh_f:.0f} | {reused_f:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10, help="per block")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--row", choices=list(CASES), help=argparse.SUPPRESS)  # a child process: one case
    args = parser.parse_args()
    if args.row:
        print(table_row(args.row, args.blocks, args.iterations))
        return
    print(f"# float32, CPU; {machine()}; medians of {args.blocks} x {args.iterations} iterations, in alternating "
          "blocks; each case in a fresh process")
    print("| case | fresh ms | reused ms | fresh / reused | page faults per iteration, fresh | reused |")
    print("|---|---|---|---|---|---|")
    for name in args.cases:
        child = [sys.executable, __file__, "--row", name, "--blocks", str(args.blocks), "--iterations", str(args.iterations)]
        print(subprocess.run(child, check=True, capture_output=True, text=True).stdout.strip(), flush=True)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
