"""One ABBA sweep against its floor: the summed time of the same products and element-wise passes done bare.

A sweep's arithmetic is a fixed list of matrix products and element-wise passes over m x n tensors
(the small r x r work aside). Timed alone, back to back, they give the floor no implementation of the
same algorithm can beat; the ratio sweep / floor is the overhead (Python, small kernels, copies).

Per sweep, with two pairs and two blocks per pair (k = ``INEXACT_CG_STEPS``):

- inexact: per pair one weight product ``(m, r) @ (r, n)`` and one squaring pass; per block the
  residual (one ``(m, r) @ (r, n)`` product, three passes), the gradient (one product with the m x n
  residual) and per conjugate-gradient step one ``(m, r) @ (r, n)`` product, one pass and one product
  with the m x n result;
- exact (dense Gram route): per pair the weight product and the squaring pass; per block the Gram
  product over the r(r+1)/2 distinct entries, ``(r(r+1)/2, n) @ (n, m)`` (rows; ``(r(r+1)/2, m) @
  (m, n)`` for columns), the residual and the gradient as above. Where the low-rank Gram route applies (small r), the exact sweep skips the Gram
  product and is not compared.

Both sweeps run on one target (``K = 1``), float32, on 1 and 2 torch threads; medians of ``--repeats``.

    python benchmarks/bench_sweep_floor.py [--shapes 512x512 1024x1024 384x1536] [--ranks 4 8 16]
"""

from __future__ import annotations

import argparse

import torch

from _timing import machine, seconds
from abba_analysis.solvers.als import INEXACT_CG_STEPS, _abba_sweep, lowrank_route_is_cheaper
from abba_analysis.workspace import Workspace


def floor(m: int, n: int, r: int, inexact: bool, repeats: int) -> float:
    """The summed time of a sweep's products and passes, each timed bare (see the module docstring)."""
    gen = torch.Generator().manual_seed(1)
    left, right = torch.randn(m, r, generator=gen), torch.randn(r, n, generator=gen)
    big, other = torch.randn(m, n, generator=gen), torch.randn(m, n, generator=gen)
    out = torch.empty(m, n)
    thin = seconds(lambda: torch.matmul(left, right, out=out), repeats)  # (m, r) @ (r, n)
    back = seconds(lambda: big @ right.mT, repeats)  # (m, n) @ (n, r)
    elementwise = seconds(lambda: torch.mul(big, other, out=out), repeats)
    per_pair = thin + elementwise
    per_block = thin + 3 * elementwise + back
    if inexact:
        per_block += INEXACT_CG_STEPS * (thin + elementwise + back)
    else:
        pairs = r * (r + 1) // 2
        pairs_rows, pairs_cols = torch.randn(pairs, n, generator=gen), torch.randn(pairs, m, generator=gen)
        per_block += (seconds(lambda: pairs_rows @ big.mT, repeats) + seconds(lambda: pairs_cols @ big, repeats)) / 2
    return 2 * per_pair + 4 * per_block


def sweep_time(m: int, n: int, r: int, inexact: bool, repeats: int) -> float:
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(1, m, n, generator=gen)
    start = {name: torch.randn(1, *shape, generator=gen) / r ** 0.5
             for name, shape in [("B1", (m, r)), ("A1", (r, n)), ("B2", (m, r)), ("A2", (r, n))]}
    ridge, workspace = torch.full((1,), 1e-6, dtype=torch.float64), Workspace()

    def run():
        _abba_sweep(target, {k: v.clone() for k, v in start.items()}, ridge, workspace, inexact=inexact)

    return seconds(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["512x512", "1024x1024", "384x1536"])
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"# ABBA sweeps, float32, one target; {machine()}; medians of {args.repeats}")
    print("| shape | r1=r2 | threads | sweep | sweep ms | floor ms | sweep / floor |")
    print("|---|---|---|---|---|---|---|")
    for text in args.shapes:
        m, n = (int(v) for v in text.split("x"))
        for r in args.ranks:
            for threads in args.threads:
                torch.set_num_threads(threads)
                for inexact in (True, False):
                    if not inexact and lowrank_route_is_cheaper(m, r, n, torch.float32):
                        continue
                    kind = "inexact" if inexact else "exact"
                    s, f = sweep_time(m, n, r, inexact, args.repeats), floor(m, n, r, inexact, args.repeats)
                    print(f"| {text} | {r} | {threads} | {kind} | {1e3 * s:.2f} | {1e3 * f:.2f} | {s / f:.2f} |",
                          flush=True)


if __name__ == "__main__":
    main()
