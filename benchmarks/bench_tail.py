"""The exact sweeps' tail with kept Gram inverses against the same fit whose tail solves exactly.

A default ABBA fit's exact sweeps hand their tail (sweeps gaining less than ``als.TAIL_GAIN``) to
conjugate-gradient steps preconditioned by Gram inverses kept for ``als.TAIL_REFRESH`` sweeps. For each
case and seed this runs the default fit twice, back to back in one process on the same target and
seed: with ``TAIL_GAIN`` set to 0 (every exact sweep solves exactly: the default before the tail) and
as shipped, and prints both final errors, the change (positive: the tail ends above), both times and
their ratio (medians over seeds; the worst seed's change too).

Cases: Fig. 2's settings (``max_iter=200``, ``rtol=1e-5``) on its 512 x 512 constructions at the
budgets whose exact sweeps take the dense Gram route (r1 = r2 = 20, 28, 36), and the real MiniLM ΔW
(384 x 1536, one MLP output layer per seed) at r = 32 and 64 with the fit's own defaults.
``--quick``: 128 x 128 targets at r = 12, one seed.

    python benchmarks/bench_tail.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import abba_analysis as aa
from _timing import machine, median, real_layers
from abba_analysis.solvers import als

FIG2_KINDS = {"orthogonal": {}, "low_rank": {"rank": 128}, "sparse": {"density": 0.01}, "gaussian": {}}
FIG2_OPTIONS = {"max_iter": 200, "rtol": 1e-5}


def cases(quick: bool, repeats: int) -> list[tuple[str, list[np.ndarray], int, dict]]:
    """``(name, one target per seed, r, fit options)``: ABBA at ``(r, r)``."""
    size, ranks = (128, (12,)) if quick else (512, (20, 28, 36))
    out = []
    for kind, options in FIG2_KINDS.items():
        if kind == "low_rank" and quick:
            options = {"rank": 32}
        targets = [aa.targets.make(kind, size, seed=s, dtype="float32", **options) for s in range(repeats)]
        out += [(f"{kind} {size}²", targets, r, FIG2_OPTIONS) for r in ranks]
    if not quick:
        deltas = [layer.delta for layer in real_layers(repeats)]
        out += [("real ΔW 384x1536", deltas, r, {}) for r in (32, 64)]
    return out


def timed(target: np.ndarray, r: int, seed: int, options: dict, tail_gain: float) -> tuple[float, float]:
    original = als.TAIL_GAIN
    als.TAIL_GAIN = tail_gain
    try:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = aa.fit(target, "abba", (r, r), seed=seed, **options)
        return fit.error, time.perf_counter() - start
    finally:
        als.TAIL_GAIN = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="seeds per case")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    timed(aa.targets.gaussian(64, seed=0, dtype="float32"), 8, 0, {}, als.TAIL_GAIN)  # first-call costs
    print(f"# default ABBA fits, float32, CPU; {machine()}; medians of {repeats} seeds; "
          f"TAIL_GAIN {als.TAIL_GAIN:g}, TAIL_REFRESH {als.TAIL_REFRESH}")
    print("| target | r1=r2 | exact tail final | kept-inverse tail final | change | worst seed "
          "| exact tail s | kept-inverse tail s | time ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    ratios, changes = [], []
    for name, targets, r, options in cases(args.quick, repeats):
        rows = []
        for seed, target in enumerate(targets):
            before, before_s = timed(target, r, seed, options, 0.0)
            after, after_s = timed(target, r, seed, options, als.TAIL_GAIN)
            rows.append((before, after, after / before - 1, before_s, after_s, after_s / before_s))
        before, after, change, before_s, after_s, ratio = (median(column) for column in zip(*rows, strict=True))
        worst = max(row[2] for row in rows)
        ratios.append(ratio)
        changes.append(worst)
        print(f"| {name} | {r} | {before:.5f} | {after:.5f} | {change:+.3%} | {worst:+.3%} | {before_s:.2f} "
              f"| {after_s:.2f} | {ratio:.2f}x |", flush=True)
    print(f"time ratio over the cases: median {median(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x; "
          f"final error change, worst seed of any case: {max(changes):+.3%}")


if __name__ == "__main__":
    main()
