"""Over-relaxed block updates (``relaxation=ω``) against plain ones (ω = 1), ABBA and HiRA, in one run.

For each method, target, rank and seed the ALS solver fits the float32 target with ω = 1 (the
baseline) and with each ``--omegas`` value, one after the other. We print, as medians over seeds,
the time each ω needs to come within ``--within`` (relative, default 0.1%) of the error the
baseline ends with, as a ratio to the baseline's time to get there (below 1: faster; inf: it never
does), and its final error relative to the baseline's (median and range over seeds). ABBA fits
``(r, r)``; HiRA fits rank ``2r`` (the same number of parameters) with a Gaussian ``W0`` for the
random targets and the pretrained weight for ``real`` (the MiniLM fine-tuning ``ΔW`` of one layer
per seed, 384 x 1536 only). Then the case for which ω waits until sweeps gain less than
``SLOW_SWEEP``: a HiRA target that is exactly representable (W0 = T, so B A = ones), where the plain
fit reaches zero error within a few sweeps: its error after 40 sweeps at each ω.

    python benchmarks/bench_relaxation.py [--methods abba hira] [--shapes 512x512 384x1536] [--ranks 4 8 16]
                                          [--repeats 3] [--omegas 1.3] [--rtol 1e-7]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import abba_analysis as aa
from _timing import add_case_arguments, cases, machine, median, real_layers, time_to_error, timed_fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=["abba", "hira"], default=["abba", "hira"])
    add_case_arguments(parser, repeats=3)
    parser.add_argument("--omegas", type=float, nargs="+", default=[1.3])
    parser.add_argument("--within", type=float, default=1e-3)
    parser.add_argument("--rtol", type=float, default=aa.solvers.ALSOptions.rtol, help="the fits' stopping rule")
    args = parser.parse_args()
    warm = aa.targets.gaussian(64, seed=0, dtype="float32")  # first-call costs stay out of the timings
    aa.fit(warm, "abba", (2, 2)), aa.fit(warm, "hira", 4, base=warm)
    real = real_layers(args.repeats) if "real" in args.kinds else []
    print(f"# float32, CPU; {machine()}; medians of {args.repeats} seeds; baseline: relaxation 1; "
          f"time to within {100 * args.within:g}% of the baseline's final error; rtol {args.rtol:g}")
    columns = " | ".join(f"ω={w}: time to it / baseline's | ω={w}: final vs baseline (seeds' range)" for w in args.omegas)
    print(f"| method | shape | target | rank | baseline final | {columns} |")
    print("|---|---|---|---|---|" + "---|---|" * len(args.omegas))
    ratios: dict[tuple[str, float], list[float]] = {(m, w): [] for m in args.methods for w in args.omegas}
    for method in args.methods:
        for shape_text, shape, kind, r in cases(args.shapes, args.kinds, args.ranks):
            rank = (r, r) if method == "abba" else 2 * r
            plain_errors, per_omega = [], {w: ([], []) for w in args.omegas}
            for seed in range(args.repeats):
                if kind == "real":
                    T, W0 = real[seed].delta, real[seed].base
                else:
                    T = aa.targets.make(kind, *shape, seed=seed, dtype="float32")
                    W0 = aa.targets.gaussian(*shape, seed=seed + 1000, dtype="float32")
                kwargs = dict(seed=seed, bracket=False, base=W0 if method == "hira" else None, rtol=args.rtol)
                plain, plain_t = timed_fit(T, method, rank, relaxation=1.0, **kwargs)
                goal = plain.error * (1 + args.within)
                reach_plain = time_to_error(plain.history, plain_t, goal)
                plain_errors.append(plain.error)
                for w in args.omegas:
                    fit, t = timed_fit(T, method, rank, relaxation=w, **kwargs)
                    reach = time_to_error(fit.history, t, goal)
                    # The baseline at the goal from its start (the init is already there): only
                    # an equally immediate fit is as fast.
                    per_omega[w][0].append(reach / reach_plain if reach_plain > 0 else
                                           1.0 if reach == 0 else np.inf)
                    per_omega[w][1].append((fit.error - plain.error) / plain.error)
            cells = []
            for w in args.omegas:
                ratio = median(per_omega[w][0])
                ratios[method, w].append(ratio)
                change = 100 * np.array(per_omega[w][1])
                cells.append(f"{ratio:.2f} | {np.median(change):+.3f}% ({change.min():+.3f}..{change.max():+.3f})")
            print(f"| {method} | {shape_text} | {kind} | {rank} | {median(plain_errors):.5f} | "
                  f"{' | '.join(cells)} |", flush=True)
    exact = torch.randn(512, 512, generator=torch.Generator().manual_seed(0))
    errors = {w: aa.fit(exact, "hira", 16, base=exact, seed=0, max_iter=40, rtol=0, relaxation=w).error
              for w in [1.0, *args.omegas]}
    print("HiRA, W0 = T (exact at r = 16), 512x512, error after 40 sweeps: "
          + ", ".join(f"ω={w}: {e:.1e}" for w, e in errors.items()))
    for (method, w), values in ratios.items():
        finite = [v for v in values if np.isfinite(v)]
        print(f"{method}, ω={w}: median of the case medians {median(values):.2f}; {len(values) - len(finite)} of "
              f"{len(values)} cases never get within {100 * args.within:g}% of the baseline's error in the median seed")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
