"""Fits on an idle machine and beside busy processes: the thread policy against torch's default.

Each case is one whole fit, as a user runs it, with a fixed number of iterations (``rtol = 0``), so
that every condition does the same work. It runs three times per condition, the median is printed:

- *policy*: ``aa.fit`` choosing its threads (``abba_analysis.threads``);
- *torch default*: ``threads=`` torch's own count at start (one per core), what fits ran on before.

Conditions: idle, and beside 1 and 2 busy processes (pure-Python loops, one core each). The ratios
are each mode's time beside the busy processes over its own idle time; the last column is the
policy's idle time over torch's default's.

    python benchmarks/bench_threads.py
    python benchmarks/bench_threads.py --quick
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import torch

import abba_analysis as aa
from _timing import machine, median, real_layers

BUSY = "while True:\n    pass\n"


def cases(quick: bool):
    """``(label, fit keyword arguments)`` per case."""
    if quick:
        yield "orthogonal 128², ABBA (4, 4), 50 sweeps", dict(
            target=aa.targets.orthogonal(128, seed=0), method="abba", rank=(4, 4), max_iter=50)
        yield "Gaussian 512², ABBA (8, 8), 10 sweeps", dict(
            target=aa.targets.gaussian(512, seed=0), method="abba", rank=(8, 8), max_iter=10)
        return
    yield "orthogonal 256², ABBA (12, 12), 200 sweeps", dict(
        target=aa.targets.orthogonal(256, seed=0), method="abba", rank=(12, 12), max_iter=200)
    yield "Gaussian 512 x 100, ABBA (6, 6), 200 sweeps", dict(
        target=aa.targets.gaussian(512, 100, seed=0), method="abba", rank=(6, 6), max_iter=200)
    yield "64 x Gaussian 128², ABBA (4, 4), 50 sweeps", dict(
        target=np.stack([aa.targets.gaussian(128, seed=s) for s in range(64)]), method="abba", rank=(4, 4),
        max_iter=50)
    yield "Gaussian 512², ABBA (16, 16), 50 sweeps", dict(
        target=aa.targets.gaussian(512, seed=0), method="abba", rank=(16, 16), max_iter=50)
    yield "Gaussian 512², HiRA r = 32, 50 sweeps", dict(
        target=aa.targets.gaussian(512, seed=0), method="hira", rank=32, base=aa.targets.gaussian(512, seed=1),
        max_iter=50)
    layer = real_layers(1)[0]
    yield "real ΔW 384 x 1536, ABBA (32, 32), 20 sweeps", dict(
        target=layer.delta, method="abba", rank=(32, 32), max_iter=20)
    yield "Gaussian 1024², ABBA (8, 8), 30 sweeps", dict(
        target=aa.targets.gaussian(1024, seed=0), method="abba", rank=(8, 8), max_iter=30)
    yield "Gaussian 512², ABBA (16, 16), Adam 300 steps", dict(
        target=aa.targets.gaussian(512, seed=0), method="abba", rank=(16, 16), solver="adam", steps=300)


def run(kwargs: dict, threads: int | None, repeats: int) -> tuple[float, int]:
    """Median seconds of ``repeats`` fits, and the threads the fit ran on."""
    kwargs = dict(kwargs)
    target, method, rank = kwargs.pop("target"), kwargs.pop("method"), kwargs.pop("rank")
    if kwargs.get("solver") != "adam":
        kwargs["rtol"] = 0.0
    times, used = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = aa.fit(target, method, rank, seed=0, bracket=False, threads=threads, **kwargs)
        times.append(time.perf_counter() - start)
        results = result if isinstance(result, list) else [result]
        used = results[0].threads
    return median(times), used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small cases, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    default = torch.get_num_threads()
    print(f"# {machine()}; {aa.threads.usable_cores()} usable cores; medians of {repeats}; "
          f"busy processes: pure-Python loops")
    print(f"| case | policy threads | policy idle s | beside 1 busy | beside 2 busy | {default} threads idle s "
          f"| beside 1 busy | beside 2 busy | policy idle / {default} threads idle |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, kwargs in cases(args.quick):
        run(kwargs | ({"max_iter": 2} if "max_iter" in kwargs else {"steps": 2}), None, 1)  # first-call costs
        row = {}
        for busy in (0, 1, 2):
            hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
            try:
                time.sleep(0.2)
                row[busy] = (run(kwargs, None, repeats), run(kwargs, default, repeats))
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
        (policy_idle, used), (default_idle, _) = row[0]
        print(f"| {label} | {used} | {policy_idle:.2f} | {row[1][0][0] / policy_idle:.2f}x "
              f"| {row[2][0][0] / policy_idle:.2f}x | {default_idle:.2f} | {row[1][1][0] / default_idle:.2f}x "
              f"| {row[2][1][0] / default_idle:.2f}x | {policy_idle / default_idle:.2f} |", flush=True)


if __name__ == "__main__":
    main()
