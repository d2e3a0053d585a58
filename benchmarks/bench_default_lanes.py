"""The default ABBA fit's two starts against its first start alone and against the literature's solver.

``aa.fit(T, "abba", (r, r))`` runs, after the package's solver from ``svd-ones``, the
Hadamard-decomposition literature's solver (Wertz, Vandaele & Gillis, 2025;
``aa.solvers.literature``) from the literature's own ``sqrt-target`` start, on a budget of as many
sweeps as the first start ran, and returns the lower. For each case and seed this prints:

- ``first start``: ``aa.fit(..., init="svd-ones")``, the package's solver alone (the whole default fit before commit 620ec3f);
- ``default``: ``aa.fit(...)``, both starts;
- ``literature``: ``aa.solvers.literature.literature_bcd`` from ``sqrt-target``, 500 sweeps (its own
  setting), on the same target and thread count as the fit;

the default's margin to the literature (positive: the default ends above it; worst seed) and its
time over the first start's. Cases: small real matrices (graph adjacency matrices that networkx
ships, scikit-learn's digits where it is installed; float64) and Gaussian 200 x 200 at r = 5, and
without ``--quick`` 512 x 512 Gaussian, orthogonal and sparse targets and the real MiniLM ΔW
(384 x 1536) at r = 4, 16 and 32 in float32.

    python benchmarks/bench_default_lanes.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

import abba_analysis as aa
from _timing import machine, median, real_layers
from bench_thorough import cases as small_cases


def cases(quick: bool, repeats: int) -> list[tuple[str, list[np.ndarray], int]]:
    """``(name, one target per seed, r)``: ABBA at ``(r, r)``."""
    out = [(name, [np.asarray(M, dtype=np.float64)] * repeats, r) for name, M, r in small_cases(True)]
    if not quick:
        for kind in ("gaussian", "orthogonal", "sparse"):
            targets = [aa.targets.make(kind, 512, seed=s, dtype="float32") for s in range(repeats)]
            out += [(f"{kind} 512x512", targets, r) for r in (4, 16, 32)]
        real = [np.asarray(layer.delta, dtype=np.float32) for layer in real_layers(repeats)]
        out += [("real ΔW 384x1536", real, r) for r in (4, 16, 32)]
    return out


def literature(T: np.ndarray, r: int, threads: int) -> float:
    """The literature's solver from its own start, 500 sweeps, on ``threads`` threads: its lowest error."""
    t = torch.as_tensor(T)
    start = aa.inits.initialize("sqrt-target", "abba", tuple(t.shape), (r, r), target=t, seed=0, dtype=t.dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _, history, _ = aa.solvers.literature.literature_bcd(t, start)
    finally:
        torch.set_num_threads(before)
    return float(history.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="seeds per case")
    parser.add_argument("--quick", action="store_true", help="one seed, small matrices only")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    warnings.simplefilter("ignore")  # rank warnings are expected on some of these targets
    aa.fit(aa.targets.gaussian(64, seed=0), "abba", (2, 2))  # first-call costs stay out of the timings
    print(f"# ABBA, CPU; {machine()}; medians of {repeats} seeds (small matrices: one target, seeds of the fit; "
          "512x512: one target per seed; real: one layer per seed)")
    print("| matrix | r1=r2 | first start | default | literature | default vs literature, worst seed "
          "| seeds the second start won | default time / first start's |")
    print("|---|---|---|---|---|---|---|---|")
    margins, costs, small_margins = [], [], []
    for name, targets, r in cases(args.quick, repeats):
        rows = []
        for seed, T in enumerate(targets):
            begin = time.perf_counter()
            first = aa.fit(T, "abba", (r, r), seed=seed, init="svd-ones")
            middle = time.perf_counter()
            default = aa.fit(T, "abba", (r, r), seed=seed)
            end = time.perf_counter()
            lit = literature(T, r, default.threads)
            rows.append({"first": first.error, "default": default.error, "literature": lit,
                         "margin": default.error / lit - 1, "won": default.init == "sqrt-target",
                         "cost": (end - middle) / (middle - begin)})
        cell = {k: median([row[k] for row in rows]) for k in ("first", "default", "literature", "cost")}
        worst = max(row["margin"] for row in rows)
        margins.append(worst), costs.append(cell["cost"])
        if targets[0].dtype == np.float64:
            small_margins.append(worst)
        print(f"| {name} | {r} | {cell['first']:.5f} | {cell['default']:.5f} | {cell['literature']:.5f} "
              f"| {100 * worst:+.3f}% | {sum(row['won'] for row in rows)} of {len(rows)} | {cell['cost']:.2f} |",
              flush=True)
    print(f"default vs literature, worst seed per case: small matrices max {100 * max(small_margins):+.3f}%, "
          f"all cases max {100 * max(margins):+.3f}%; time / first start: median {median(costs):.2f}, "
          f"max {max(costs):.2f}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
