"""Time-to-error of the default ABBA solver against Adam (the paper-style recipe), in one run.

For each target and rank the two solvers fit the same float32 matrix from the same seeds. Adam runs
3000 steps at lr 1e-2 with a cosine schedule. We print each solver's final error and the wall time
the default solver needs to reach the error Adam ends with, as a ratio to Adam's total time.
Medians over ``--repeats`` seeds.

    python benchmarks/bench_abba_solvers.py [--size 512] [--ranks 8 16] [--repeats 3]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import abba_analysis as aa
from _timing import machine, median, time_to_error, timed_fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--kinds", nargs="+", default=["gaussian", "orthogonal"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    warm = aa.targets.gaussian(64, seed=0, dtype="float32")  # first-call costs stay out of the timings
    aa.fit(warm, "abba", (2, 2), solver="adam", steps=20, device=args.device)
    aa.fit(warm, "abba", (2, 2), device=args.device)
    print(f"# ABBA {args.size}x{args.size}, float32, device {args.device}; {machine()}")
    print("| target | r1=r2 | Adam final | default final | default vs Adam | Adam s | default s to Adam's error | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in args.kinds:
        for r in args.ranks:
            rows = []
            for seed in range(args.repeats):
                T = aa.targets.make(kind, args.size, seed=seed, dtype="float32")
                adam, adam_t = timed_fit(T, "abba", (r, r), solver="adam", steps=args.steps, lr=1e-2,
                                         schedule="cosine", seed=seed, device=args.device, bracket=False)
                best, best_t = timed_fit(T, "abba", (r, r), seed=seed, device=args.device, bracket=False)
                reach = time_to_error(best.history, best_t, adam.error)
                rows.append((adam.error, best.error, adam_t[-1], reach))
            a_err, d_err, a_s, d_s = (median(c) for c in zip(*rows))
            rel = (d_err - a_err) / a_err
            print(f"| {kind} | {r} | {a_err:.5f} | {d_err:.5f} | {100 * rel:+.2f}% | {a_s:.2f} | "
                  f"{d_s:.2f} | {d_s / a_s:.3f} |")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
