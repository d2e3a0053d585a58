"""Run every benchmark, one after another, each in its own process; print their tables.

Each benchmark measures its baseline in the same run and prints ratios against it:

- ``bench_abba_solvers``: the default ABBA solver (inexact, then exact sweeps) vs Adam and vs exact sweeps
  alone, time to Adam's and to the exact sweeps' final errors;
- ``bench_momentum``: the ABBA solver, default and exact-only, vs block-coordinate descent with
  per-block momentum (the Hadamard-decomposition literature's scheme), time to the better final error;
- ``bench_batched``: one batched fit of a stack vs a Python loop of single fits;
- ``bench_init_svd``: the SVD-based inits' top singular triplets, from the Gram matrix vs a full SVD;
- ``bench_small_solves``: the ALS solver's r x r solves, LAPACK's batched LU vs the lane-wise Cholesky;
- ``bench_workspace``: one ALS sweep with its temporaries in a reused workspace vs allocated afresh;
- ``bench_adam``: fused analytic-gradient Adam vs autograd Adam, time per step and peak memory;
- ``bench_big``: 4096 x 4096 and 4096 x 11008 fits (time, memory), randomized vs exact SVD;
- ``bench_streaming``: streaming a checkpoint pair vs loading both state dicts (memory);
- ``bench_executors``: a sweep in-process vs on local processes and on a Dask cluster;
- ``bench_threads``: fits idle and beside busy processes, the thread policy vs torch's default threads;
- ``bench_sweep_floor``: one ABBA sweep against the summed time of its products and passes done bare;
- ``bench_extract_memory``: peak memory of ``extract`` on a checkpoint pair vs its largest layer pair and one fit;
- ``bench_default_lanes``: the default ABBA fit's two starts vs its first start alone and the literature's solver;
- ``bench_thorough``: ``effort="thorough"`` vs the default fit, restarts, the literature's solver and long Adam;
- ``bench_thorough_grid``: the same on every ABBA fit of the main job (Fig. 2 grid, real panel; hours);
- ``bench_main_job``: ``abba-analysis reproduce`` as users run it, median of several runs (and in one process);
- ``bench_gram``: the exact solver's weighted Gram matrices, symmetric product vs the full one.

    python benchmarks/run_all.py            # the settings recorded in benchmarks/RESULTS.md (about an hour on 2 cores)
    python benchmarks/run_all.py --quick    # small sizes and few repeats: a few minutes, for checking the scripts
    python benchmarks/run_all.py --only bench_batched bench_adam
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = {
    "bench_abba_solvers": [],
    "bench_momentum": [],
    "bench_batched": [],
    "bench_init_svd": [],
    "bench_small_solves": [],
    "bench_workspace": [],
    "bench_adam": [],
    "bench_big": [],
    "bench_streaming": [],
    "bench_executors": [],
    "bench_threads": [],
    "bench_sweep_floor": [],
    "bench_extract_memory": [],
    "bench_default_lanes": [],
    "bench_thorough": [],
    "bench_thorough_grid": [],
    "bench_main_job": ["--one-process"],
    "bench_gram": [],
}
QUICK = {
    "bench_abba_solvers": ["--shapes", "256x256", "--ranks", "4", "--kinds", "gaussian", "--repeats", "1",
                           "--steps", "300"],
    "bench_momentum": ["--shapes", "128x128", "--ranks", "4", "--kinds", "gaussian", "--repeats", "1"],
    "bench_batched": ["--count", "8", "--size", "64", "--repeats", "1"],
    "bench_init_svd": ["--shapes", "256x256", "128x384", "--counts", "4", "--repeats", "2"],
    "bench_small_solves": ["--ranks", "4", "--counts", "512", "8192", "--repeats", "3"],
    "bench_workspace": ["--blocks", "1", "--iterations", "2", "--cases", "hira batch 64 x 128x128, r=8"],
    "bench_adam": ["--size", "512", "--steps", "5", "--repeats", "2"],
    "bench_big": ["--shapes", "1024x2048", "--sweeps", "3", "--steps", "5"],
    "bench_streaming": ["--gigabytes", "0.05"],
    "bench_executors": ["--fits", "20"],
    "bench_threads": ["--quick"],
    "bench_sweep_floor": ["--shapes", "256x256", "--ranks", "4", "16", "--threads", "1", "--repeats", "3"],
    "bench_extract_memory": ["--gigabytes", "0.13"],
    "bench_default_lanes": ["--quick"],
    "bench_thorough": ["--quick"],
    "bench_thorough_grid": ["--quick", "--panels", "fig2", "--seeds", "0"],
    "bench_main_job": ["--quick", "--repeats", "1", "--one-process"],
    "bench_gram": ["--size", "128", "--ranks", "8", "16", "--batches", "1", "--repeats", "3"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    parser.add_argument("--only", nargs="+", choices=list(FULL), help="run only these benchmarks")
    parser.add_argument("--device", default=None, help="passed to the benchmarks that take one (e.g. cuda)")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    failed = []
    for name in args.only or list(settings):
        extra = settings[name]
        if args.device and name in ("bench_abba_solvers", "bench_batched"):
            extra = extra + ["--device", args.device]
        print(f"\n## {name} {' '.join(extra)}".rstrip(), flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py"), *extra], cwd=HERE)
        print(f"({name}: {time.perf_counter() - start:.0f} s{'' if code == 0 else f', exit code {code}'})", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
