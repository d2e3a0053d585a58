"""Batched fits of a stack of targets against a Python loop of single fits, in one run.

K float32 Gaussian targets of one shape are fitted once as a (K, m, n) stack and once one by one,
with the same seeds (so the same fits: the errors agree to rounding, checked). Per solver we print
the median wall time of ``--repeats`` runs of each and the loop / batched ratio.

With ``--sweeps N`` the block-coordinate fits run N sweeps (no stopping on relative improvement):
the batch's throughput, apart from the targets' different stopping points.

    python benchmarks/bench_batched.py [--count 64] [--size 128] [--repeats 5] [--sweeps N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import abba_analysis as aa
from _timing import machine, median

CASES = {
    "abba-als (default)": dict(method="abba", rank=(4, 4)),
    "abba-adam 500 steps": dict(method="abba", rank=(4, 4), solver="adam", steps=500),
    "hira-als (default)": dict(method="hira", rank=8),
    "lora-svd (default)": dict(method="lora", rank=8),
}
ALS_CASES = ("abba-als (default)", "hira-als (default)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sweeps", type=int, default=None, help="run the ALS fits this many sweeps, without the rtol stop")
    args = parser.parse_args()
    k, n = args.count, args.size
    targets = np.stack([aa.targets.gaussian(n, seed=s, dtype="float32") for s in range(k)])
    base = aa.targets.gaussian(n, seed=10_000, dtype="float32")
    seeds = list(range(k))
    aa.fit(targets[:2], "abba", (2, 2), max_iter=3, device=args.device)  # first-call costs out of the timings
    fixed = f"; ALS fits run {args.sweeps} sweeps" if args.sweeps else ""
    print(f"# {k} targets of {n}x{n}, float32, device {args.device}{fixed}; {machine()}; medians of {args.repeats}")
    print("| fit | loop s | batched s | loop / batched | max error difference |")
    print("|---|---|---|---|---|")
    for name in args.cases:
        case = dict(CASES[name], base=base if CASES[name]["method"] == "hira" else None, device=args.device,
                    bracket=False)
        if args.sweeps and name in ALS_CASES:
            case.update(max_iter=args.sweeps, rtol=0.0)
        loop_s, batch_s = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            single = [aa.fit(targets[i], seed=seeds[i], **case) for i in range(k)]
            loop_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            batched = aa.fit(targets, seed=seeds, **case)
            batch_s.append(time.perf_counter() - start)
        diff = max(abs(a.error - b.error) for a, b in zip(single, batched, strict=True))
        print(f"| {name} | {median(loop_s):.2f} | {median(batch_s):.2f} | "
              f"{median(loop_s) / median(batch_s):.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
