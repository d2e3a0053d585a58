"""Big targets on CPU: peak memory (as a multiple of the target's size) and time of each fit.

Each case runs in a fresh process on a float32 Gaussian target of the given shape; the peak
resident memory above the process's baseline (after building the target, and for HiRA its W0) is divided by the
target's size. LoRA's randomized SVD is compared with the exact SVD (time ratio and error).

    python benchmarks/bench_big.py [--shapes 4096x4096 4096x11008] [--sweeps 10] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
import abba_analysis as aa
m, n, case, sweeps, steps = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
T = torch.randn(m, n, generator=torch.Generator().manual_seed(0))
base = T.clone() if case.startswith("hira") else None
start_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
kwargs = dict(bracket=True)
if case == "lora-svd":
    fit = aa.fit(T, "lora", 16, solver="svd")
elif case == "lora-rsvd":
    fit = aa.fit(T, "lora", 16, solver="rsvd", seed=0)
elif case == "abba-als":
    fit = aa.fit(T, "abba", (8, 8), seed=0, max_iter=sweeps, rtol=0, **kwargs)
elif case == "abba-adam":
    fit = aa.fit(T, "abba", (8, 8), solver="adam", steps=steps, seed=0, **kwargs)
elif case == "hira-als":
    fit = aa.fit(T, "hira", 16, base=base, seed=0, max_iter=sweeps, rtol=0)
seconds = time.perf_counter() - t0
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"error": fit.error, "seconds": seconds, "iterations": fit.iterations,
                  "extra_mib": (peak_kib - start_kib) / 1024, "target_mib": m * n * 4 / 2**20}))
"""


def run(m: int, n: int, case: str, sweeps: int, steps: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(m), str(n), case, str(sweeps), str(steps)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["4096x4096", "4096x11008"])
    parser.add_argument("--sweeps", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    print("| shape | fit | iterations | seconds | s / iteration | error | peak extra memory / target |")
    print("|---|---|---|---|---|---|---|")
    for shape in args.shapes:
        m, n = map(int, shape.split("x"))
        results = {}
        for case in ("lora-svd", "lora-rsvd", "abba-als", "abba-adam", "hira-als"):
            r = run(m, n, case, args.sweeps, args.steps)
            results[case] = r
            per = r["seconds"] / r["iterations"] if r["iterations"] else float("nan")
            print(f"| {shape} | {case} | {r['iterations']} | {r['seconds']:.2f} | {per:.3f} | {r['error']:.5f} | "
                  f"{r['extra_mib'] / r['target_mib']:.2f} |", flush=True)
        exact, rand = results["lora-svd"], results["lora-rsvd"]
        print(f"| {shape} | rsvd vs svd | | {exact['seconds'] / rand['seconds']:.1f}x faster | | "
              f"{(rand['error'] - exact['error']) / exact['error']:+.2e} rel. | |")


if __name__ == "__main__":
    main()
