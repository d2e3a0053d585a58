"""The exact solver's weighted Gram matrices: the symmetric product against the full one.

Every exact block update of HiRA and ABBA (dense route) needs, for each row i of a p x n weight,
``G_i = basis diag(w_i^2) basis^T``. ``solvers.als.dense_weight_gram`` computes the r(r+1)/2 distinct
entries by one product and copies each to both places; the baseline is the full product with all r^2
outer-product columns, ``squared @ kron_rows(basis^T)`` (what the solver did before). Both run on one
torch thread, in float32, into reused buffers; the table gives medians and the largest difference.
It also times the solver's next step, the copy of the Grams into its float64 ``(p, r, r)`` systems
(``proximal_step``), from their storage as ``dense_weight_gram`` lays it out, rows padded by
``GRAM_ROW_PADDING`` entries, against the same values stored unpadded (the layout before).

    python benchmarks/bench_gram.py [--size 512] [--ranks 8 16 36 72] [--batches 1 12] [--repeats 7]
"""

from __future__ import annotations

import argparse

import torch

from _timing import machine, seconds
from abba_analysis.solvers.als import dense_weight_gram
from abba_analysis.workspace import Workspace


def full_gram(squared: torch.Tensor, basis: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The baseline: all r^2 products of basis rows, then one ``(p, n) @ (n, r^2)`` product."""
    rows = basis.mT  # (K, n, r)
    outer = (rows[..., :, None] * rows[..., None, :]).flatten(-2)
    return torch.matmul(squared, outer, out=out).unflatten(-1, (basis.shape[-2],) * 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 16, 36, 72])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 12])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    n = args.size
    print(f"# Gram matrices of a {n}x{n} weight, float32, 1 torch thread; {machine()}; medians of {args.repeats}")
    print("| targets | r | full ms | symmetric ms | full / symmetric | max relative difference "
          "| copy unpadded ms | copy padded ms | unpadded / padded |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in args.batches:
        squared = torch.rand(k, n, n, generator=gen)
        for r in args.ranks:
            basis = torch.randn(k, r, n, generator=gen)
            out, workspace = torch.empty(k, n, r * r), Workspace()
            reference = full_gram(squared, basis, out).clone()
            got = dense_weight_gram(squared, basis, workspace)
            difference = float((got - reference).abs().max() / reference.abs().max())
            full = seconds(lambda: full_gram(squared, basis, out), args.repeats)
            symmetric = seconds(lambda: dense_weight_gram(squared, basis, workspace), args.repeats)
            unpadded = got.movedim(-3, -1).contiguous().movedim(-1, -3)  # the same Grams, rows of stride p
            system = torch.empty(got.shape, dtype=torch.float64)
            assert torch.equal(system.copy_(got), unpadded.double())
            copy_unpadded = seconds(lambda: system.copy_(unpadded), args.repeats)
            copy_padded = seconds(lambda: system.copy_(got), args.repeats)
            print(f"| {k} | {r} | {1e3 * full:.2f} | {1e3 * symmetric:.2f} | {full / symmetric:.2f}x | {difference:.1e} "
                  f"| {1e3 * copy_unpadded:.2f} | {1e3 * copy_padded:.2f} | {copy_unpadded / copy_padded:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
