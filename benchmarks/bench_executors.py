"""Throughput of a sweep in-process against local worker processes and a Dask LocalCluster, and
simulated scaling with workers.

1. A 200-fit sweep of mixed shapes (LoRA, HiRA and ABBA fits of random targets) run in this process
   (torch with 2 threads), on ``LocalProcesses(2)`` (2 spawned single-threaded processes, their
   start-up included) and on a ``LocalCluster`` of 2 single-threaded workers, each into a fresh
   journal: fits per second and the Dask orchestration overhead per fit.
2. Simulated scaling: work units that sleep 0.2 s (no CPU), so that more workers than cores can be
   measured on a small machine; throughput with 1, 2, 4 and 8 workers against the ideal.

    python benchmarks/bench_executors.py [--fits 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import abba_analysis as aa
from abba_analysis import experiments

SHAPES = [(192, 192), (256, 192), (192, 320), (256, 256), (320, 256)]


def sweep_config(fits: int) -> experiments.Config:
    # Each (target, seed) gives 1 LoRA + 2 HiRA + 2 ABBA fits = 5 fits; 10 targets x 4 seeds = 200.
    targets = "\n".join(f"""
[[targets]]
kind = "{kind}"
shape = [{m}, {n}]
""" for m, n in SHAPES for kind in ("gaussian", "orthogonal"))
    seeds = max(1, round(fits / (5 * 2 * len(SHAPES))))
    return experiments.load(f"""
[experiment]
name = "bench-executors"
seeds = {list(range(seeds))}
{targets}
[[methods]]
method = "lora"
budgets = [16]

[[methods]]
method = "hira"
budgets = [8, 16]
options = {{ max_iter = 100, rtol = 1e-5 }}

[[methods]]
method = "abba"
budgets = [8, 16]
options = {{ max_iter = 100, rtol = 1e-5 }}
""")


def sleeper(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=200)
    args = parser.parse_args()
    from dask.distributed import Client, LocalCluster

    config = sweep_config(args.fits)
    n = len(experiments.expand(config))
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, tempfile.TemporaryDirectory() as c:
        start = time.perf_counter()
        local = experiments.run(config, a, progress=False)
        t_local = time.perf_counter() - start
        start = time.perf_counter()
        experiments.run(config, c, executor=experiments.LocalProcesses(2, threads=1), progress=False)
        t_processes = time.perf_counter() - start
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
            client.run(lambda: aa.fit(aa.targets.gaussian(16, seed=0), "abba", (2, 2)))  # warm the workers
            start = time.perf_counter()
            remote = experiments.run(config, b, executor=experiments.Dask(client), progress=False)
            t_dask = time.perf_counter() - start
    fit_seconds = local.results["seconds"]
    print(f"# {n} fits of mixed shapes, median fit {statistics.median(fit_seconds):.3f} s "
          f"({(fit_seconds >= 0.2).mean():.0%} of fits >= 0.2 s); {aa.__version__}")
    print("| executor | wall s | fits/s | vs in-process |")
    print("|---|---|---|---|")
    print(f"| in-process (2 torch threads) | {t_local:.1f} | {n / t_local:.2f} | 1.00 |")
    print(f"| LocalProcesses, 2 processes x 1 thread | {t_processes:.1f} | {n / t_processes:.2f} | "
          f"{t_local / t_processes:.2f} |")
    print(f"| Dask LocalCluster, 2 workers x 1 thread | {t_dask:.1f} | {n / t_dask:.2f} | {t_local / t_dask:.2f} |")
    busy = remote.results["seconds"].sum() / 2
    print(f"Dask overhead per fit: {(t_dask - busy) / n * 1e3:.1f} ms (wall time minus the fits' own time "
          "spread over 2 workers, per fit)")

    print("\n# simulated scaling: 48 units of 0.2 s sleep each")
    print("| workers | wall s | speed-up | ideal |")
    print("|---|---|---|---|")
    base = None
    for workers in (1, 2, 4, 8):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
            start = time.perf_counter()
            client.gather(client.map(sleeper, [0.2] * 48, pure=False))
            wall = time.perf_counter() - start
        base = base or wall
        print(f"| {workers} | {wall:.2f} | {base / wall:.2f} | {workers} |")


if __name__ == "__main__":
    main()
