"""``effort="thorough"`` against the default fit and against the other ways to a low minimum.

For each case (small real matrices: graph adjacency matrices that networkx ships, scikit-learn's
digits where it is installed; Gaussian 200 x 200 at r = 5; 128 x 128 orthogonal and Gaussian at
(12, 12)) and each seed, ABBA at ``(r, r)`` is fitted by:

- ``default``: ``aa.fit(T, "abba", (r, r), seed=seed)``;
- ``thorough``: the same with ``effort="thorough"``;
- ``restarts=9``: the default plus nine random starts;
- ``literature``: block-coordinate descent with the literature's per-block momentum (Wertz, Vandaele
  & Gillis, 2025; ``aa.solvers.literature.literature_bcd``, 500 sweeps) from the literature's own start,
  pair 1 from the SVD of sign(T)·√|T| and pair 2 from that of √|T| (``sqrt-target``);
- ``adam``: Adam for ``--adam-steps`` steps (20,000) from the paper's init (``abba-paper``).

It prints every final error, thorough's gain over the default and its margin to the best of the
others (negative: thorough is lower), and its time over the default's. Medians over seeds.

    python benchmarks/bench_thorough.py [--repeats 3] [--adam-steps 20000] [--quick]
"""

from __future__ import annotations

import argparse
import time
import warnings

import networkx as nx
import numpy as np
import torch

import abba_analysis as aa
from _timing import machine, median


def cases(quick: bool) -> list[tuple[str, np.ndarray, int]]:
    """``(name, matrix, r)``: ABBA at ``(r, r)``."""
    graphs = {
        "karate club 34x34": nx.to_numpy_array(nx.karate_club_graph(), weight="weight"),
        "Les Miserables 77x77": nx.to_numpy_array(nx.les_miserables_graph(), weight="weight"),
        "Davis women 32x32": nx.to_numpy_array(nx.davis_southern_women_graph()),
        "Florentine families 15x15": nx.to_numpy_array(nx.florentine_families_graph()),
    }
    out = [(name, M, r) for name, M in graphs.items() for r in (3, 5) if r * r < min(M.shape)]
    try:
        from sklearn.datasets import load_digits

        out += [("digits 400x64", load_digits().data[:400].astype(float), r) for r in (3, 6)]
    except ImportError:
        pass
    out.append(("gaussian 200x200", aa.targets.gaussian(200, seed=0), 5))
    if not quick:
        out += [(f"{kind} 128x128", aa.targets.make(kind, 128, seed=0), 12) for kind in ("orthogonal", "gaussian")]
    return out


def literature(T: np.ndarray, r: int, seed: int) -> float:
    """The literature's solver from its own start: its lowest error over 500 sweeps."""
    t = torch.as_tensor(T, dtype=torch.float64)
    start = aa.inits.initialize("sqrt-target", "abba", tuple(t.shape), (r, r), target=t,
                                seed=np.random.default_rng(seed), dtype=t.dtype)
    _, history, _ = aa.solvers.literature.literature_bcd(t, start)
    return float(history.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="seeds per case")
    parser.add_argument("--adam-steps", type=int, default=20000)
    parser.add_argument("--quick", action="store_true", help="one seed, 2000 Adam steps, no 128x128 cases")
    args = parser.parse_args()
    repeats, steps = (1, 2000) if args.quick else (args.repeats, args.adam_steps)
    warnings.simplefilter("ignore")  # the rank warnings of restarts and Adam are expected here
    print(f"# ABBA, float64, CPU; {machine()}; medians of {repeats} seeds; Adam {steps} steps")
    print("| matrix | r1=r2 | default | thorough | restarts=9 | literature | adam | thorough vs default "
          "| thorough vs best other | thorough time / default |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    gains, margins, costs = [], [], []
    for name, M, r in cases(args.quick):
        T = np.asarray(M, dtype=np.float64)
        rows = []
        for seed in range(repeats):
            begin = time.perf_counter()
            default = aa.fit(T, "abba", (r, r), seed=seed).error
            middle = time.perf_counter()
            thorough = aa.fit(T, "abba", (r, r), seed=seed, effort="thorough").error
            end = time.perf_counter()
            others = {"restarts=9": aa.fit(T, "abba", (r, r), seed=seed, restarts=9).error,
                      "literature": literature(T, r, seed),
                      "adam": aa.fit(T, "abba", (r, r), seed=seed, solver="adam", steps=steps, rtol=0).error}
            rows.append({"default": default, "thorough": thorough, **others,
                         "gain": thorough / default - 1, "margin": thorough / min(others.values()) - 1,
                         "cost": (end - middle) / (middle - begin)})
        cell = {k: median([row[k] for row in rows]) for k in rows[0]}
        gains.append(cell["gain"]), margins.append(max(row["margin"] for row in rows)), costs.append(cell["cost"])
        print(f"| {name} | {r} | {cell['default']:.5f} | {cell['thorough']:.5f} | {cell['restarts=9']:.5f} "
              f"| {cell['literature']:.5f} | {cell['adam']:.5f} | {100 * cell['gain']:+.2f}% "
              f"| {100 * cell['margin']:+.2f}% | {cell['cost']:.1f} |", flush=True)
    print(f"thorough vs default: median {100 * median(gains):+.2f}%, best {100 * min(gains):+.2f}%; "
          f"vs the best other, worst seed of any case {100 * max(margins):+.2f}%; "
          f"time / default: median {median(costs):.1f}, max {max(costs):.1f}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
