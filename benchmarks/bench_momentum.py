"""The ABBA solver, default and exact-only, against the Hadamard-decomposition literature's, in one run.

The literature's state of the art (Wertz, Vandaele & Gillis, 2025) is exact block-coordinate
descent with momentum applied block by block: each factor's exact update ``X⁺`` is extrapolated at
once, ``X ← X⁺ + β (X⁺ − X_prev)``, and the next factor is solved against it. A sweep that raises
the error is partly taken back (``X ← X − β (X − X_prev)`` for every factor) and divides β by η; a
sweep that lowers it grows β by g, up to a cap β̄ that itself grows by ḡ up to 1 and drops to β
after a failure (β = 0.5, g = 1.05, ḡ = 1.01, η = 1.5; per pair the columns, then the rows; pair 2,
then pair 1). The baseline here is that scheme on this package's own exact block solves (proximal,
in correction form, r x r systems in float64) from the same start as ``aa.fit`` (``svd-ones``), so
only the acceleration differs. It stops after 10 sweeps in a row that each gain less than 1e-8
(relative), or after 500 sweeps (the package's ``max_iter``).

The package's fits, from that start alone (``init="svd-ones"``: the default fit's second start, the
literature's solver from its own start, is compared by ``bench_default_lanes``): the default solver
(inexact sweeps, then exact ones) and ``inexact=False`` (exact sweeps only), both with per-block momentum from the fit's first slow sweep on and a discarded sweep instead of
the take-back, so the error never rises.
For each fit and seed the goal is to come within ``--within`` (relative, default 0.1%) of the lower
of its final error and the baseline's lowest (its last sweep may have risen). We print, as medians
over seeds, the errors, each fit's time to its goal as a ratio to the baseline's, both counting the
start (below 1: faster than the baseline; inf: the fit never gets there, 0: the baseline never
does, either ending in a worse local minimum), and in how many seeds each gets there.

    python benchmarks/bench_momentum.py [--shapes 512x512 384x1536] [--ranks 4 8 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import abba_analysis as aa
from _timing import add_case_arguments, cases, machine, median, real_layers, time_to_error, timed_fit
from abba_analysis.solvers.literature import literature_bcd


def default_start(target: torch.Tensor, r: int, seed: int) -> dict[str, torch.Tensor]:
    """The start ``aa.fit(target, "abba", (r, r), seed=seed)`` takes (``svd-ones``, from the first
    child of the seed's generator; main checks that the two start at the same error)."""
    rng = np.random.default_rng(seed).spawn(1)[0]
    return aa.inits.initialize("svd-ones", "abba", tuple(target.shape), (r, r), target=target, seed=rng,
                               dtype=target.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(parser, repeats=3)
    parser.add_argument("--within", type=float, default=1e-3)
    args = parser.parse_args()
    warm = torch.as_tensor(aa.targets.gaussian(64, seed=0, dtype="float32"))  # first-call costs stay out of the timings
    aa.fit(warm, "abba", (2, 2))
    literature_bcd(warm, default_start(warm, 2, 0), max_iter=3)
    real = [layer.delta for layer in real_layers(args.repeats)] if "real" in args.kinds else []
    print(f"# ABBA, float32, CPU; {machine()}; medians of {args.repeats} seeds; goal: within "
          f"{100 * args.within:g}% of the lower final error of the fit and the literature's scheme")
    print("| shape | target | r1=r2 | literature, lowest | default final | exact-only final | "
          "default: time to the goal / literature's | exact-only: time to the goal / literature's | "
          "seeds at the goal: default, literature | seeds at the goal: exact-only, literature |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {"default": [], "exact-only": []}
    for shape_text, shape, kind, r in cases(args.shapes, args.kinds, args.ranks):
        rows = []
        for seed in range(args.repeats):
            T = torch.as_tensor(real[seed] if kind == "real" else
                                aa.targets.make(kind, *shape, seed=seed, dtype="float32"))
            begin = time.perf_counter()
            start = default_start(T, r, seed)
            start_seconds = time.perf_counter() - begin
            _, base_history, base_t = literature_bcd(T, start)
            base_t += start_seconds  # as the package's fits count their start
            fits = {m: timed_fit(T, "abba", (r, r), seed=seed, bracket=False, inexact=m == "default", init="svd-ones")
                    for m in ratios}
            # the same start; the fits compute its error with other float32 sums
            assert abs(fits["default"][0].history[0] - base_history[0]) <= 1e-5 * base_history[0], "not the same start"
            row = {"literature": base_history.min()}
            for m, (fit, times) in fits.items():  # each against the literature's scheme: one of the two gets there
                goal = min(base_history.min(), fit.error) * (1 + args.within)
                reach, reach_base = time_to_error(fit.history, times, goal), time_to_error(base_history, base_t, goal)
                row[m] = fit.error
                row[m + " ratio"] = reach / reach_base if reach_base > 0 else 1.0 if reach == 0 else np.inf
                row[m + " at goal"] = np.array([np.isfinite(reach), np.isfinite(reach_base)], dtype=int)
            rows.append(row)
        cell = {key: median([row[key] for row in rows]) for key in rows[0] if "at goal" not in key}
        reached = {m: sum(row[m + " at goal"] for row in rows) for m in ratios}  # seeds: the fit's, the baseline's
        for m in ratios:
            ratios[m].append(cell[m + " ratio"])
        print(f"| {shape_text} | {kind} | {r} | {cell['literature']:.5f} | {cell['default']:.5f} "
              f"| {cell['exact-only']:.5f} | {cell['default ratio']:.2f} | {cell['exact-only ratio']:.2f} | "
              + " | ".join(f"{fit}, {baseline}" for fit, baseline in reached.values()) + " |", flush=True)
    for m, values in ratios.items():
        finite = [x for x in values if np.isfinite(x)]
        print(f"{m} / literature, time to the goal (median per case): median {median(values):.2f}, best "
              f"{min(values):.2f}, worst {max(values):.2f}; {len(values) - len(finite)} of {len(values)} cases "
              f"where {m} never gets there in the median seed")

if __name__ == "__main__":
    torch.manual_seed(0)
    main()
