"""The ALS solver's batched r x r solves: LAPACK's batched LU and Cholesky against the lane-wise Cholesky.

Each proximal step of the block-coordinate solver solves one positive-definite r x r system per row
(or column) of every target, in float64. For N such systems we time ``torch.linalg.solve_ex`` (LU,
the systems stored one after another) given the row-major systems (the solver up to commit 5696718: LAPACK
copies them to column-major first) and given their transposed view (the solver: the systems are
symmetric, so that view is column-major and the same matrix), LAPACK's batched Cholesky
(``torch.linalg.cholesky_ex`` then ``torch.cholesky_solve``), and
:func:`abba_analysis.linalg.cholesky_solve_lanes` (the systems stored lane-wise); we print the
medians, row-major / transposed, LU / Cholesky and LU / lanes: above 1 the other solve is faster.
The last picks the crossover that ``abba_analysis.solvers.als.LANE_SOLVE_MIN_SYSTEMS`` and
``LANE_SOLVE_MAX_RANK`` encode.

    python benchmarks/bench_small_solves.py [--ranks 4 8 16 36 48 72] [--counts 512 1536 2048 3072 8192] [--repeats 30]
"""

from __future__ import annotations

import argparse

import torch

from _timing import machine, seconds
from abba_analysis.linalg import cholesky_solve_lanes
from abba_analysis.solvers.als import LANE_SOLVE_MAX_RANK, LANE_SOLVE_MIN_SYSTEMS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 8, 16, 36, 48, 72])
    parser.add_argument("--counts", type=int, nargs="+", default=[512, 1536, 2048, 3072, 8192])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    print(f"# float64 SPD systems, CPU; {machine()}; medians of {args.repeats}; "
          f"the solver goes lane-wise from {LANE_SOLVE_MIN_SYSTEMS} systems of r <= {LANE_SOLVE_MAX_RANK}")
    print("| r | systems | LU row-major ms | LU ms | row-major / LU | Cholesky ms | LU / Cholesky | lanes ms "
          "| LU / lanes | max relative difference |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in args.ranks:
        for count in args.counts:
            x = torch.randn(count, r, 2 * r, generator=gen, dtype=torch.float64)
            systems = x @ x.mT  # like a Gram matrix of 2r weighted columns
            rhs = torch.randn(count, r, generator=gen, dtype=torch.float64)
            lane_systems, lane_rhs = systems.permute(1, 2, 0).contiguous(), rhs.T.contiguous()
            # All three time a copy of the systems: the solver makes one (float64, ridge on the
            # diagonal) before either route, and the lane-wise solve overwrites its inputs.
            row_major = seconds(lambda: torch.linalg.solve_ex(systems.clone(), rhs[..., None]), args.repeats)
            lu = seconds(lambda: torch.linalg.solve_ex(systems.clone().mT, rhs[..., None]), args.repeats)
            cholesky = seconds(lambda: torch.cholesky_solve(rhs[..., None], torch.linalg.cholesky_ex(systems.clone())[0]),
                               args.repeats)
            lanes = seconds(lambda: cholesky_solve_lanes(lane_systems.clone(), lane_rhs.clone()), args.repeats)
            expected = torch.linalg.solve_ex(systems, rhs[..., None])[0][..., 0]
            diff = 0.0
            for got in (torch.linalg.solve_ex(systems.mT, rhs[..., None])[0][..., 0],
                        torch.cholesky_solve(rhs[..., None], torch.linalg.cholesky_ex(systems)[0])[..., 0],
                        cholesky_solve_lanes(lane_systems.clone(), lane_rhs.clone()).T):
                diff = max(diff, float(((got - expected).norm(dim=-1) / expected.norm(dim=-1)).max()))
            print(f"| {r} | {count} | {row_major * 1e3:.2f} | {lu * 1e3:.2f} | {row_major / lu:.2f}x "
                  f"| {cholesky * 1e3:.2f} | {lu / cholesky:.2f}x | {lanes * 1e3:.2f} | {lu / lanes:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
