"""The SVD-based inits' top singular triplets: the Gram matrix's eigendecomposition vs a full SVD, in one run.

Up to ``abba_analysis.inits.EXACT_SVD_MAX`` the inits take the top ``k`` triplets of a float64
matrix from :func:`abba_analysis.linalg.gram_truncated_svd` (the eigendecomposition of the Gram
matrix of the shorter side). The baseline is :func:`abba_analysis.linalg.truncated_svd` (a full
SVD). We print the medians, SVD / Gram (above 1 the Gram route is faster) and its accuracy: how much
the rank-k approximation's error exceeds the SVD's (relative) and the largest difference of the
singular values (relative to the largest). Gaussian targets: a flat spectrum with small gaps, the
hard case for the squared route.

    python benchmarks/bench_init_svd.py [--shapes 512x512 384x1536 1024x1024 2048x2048] [--counts 4 16 72] [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch

import abba_analysis as aa
from _timing import machine, seconds
from abba_analysis.linalg import gram_truncated_svd, truncated_svd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["512x512", "384x1536", "1024x1024", "2048x2048"])
    parser.add_argument("--counts", type=int, nargs="+", default=[4, 16, 72])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"# float64 Gaussian targets, CPU; {machine()}; medians of {args.repeats}")
    print("| shape | k | SVD s | Gram s | SVD / Gram | excess error of the rank-k approximation | max singular value difference |")
    print("|---|---|---|---|---|---|---|")
    for shape_text in args.shapes:
        m, n = (int(x) for x in shape_text.split("x"))
        target = torch.from_numpy(aa.targets.gaussian(m, n, seed=0))
        for k in args.counts:
            full = seconds(lambda: truncated_svd(target, k), args.repeats)
            gram = seconds(lambda: gram_truncated_svd(target, k), args.repeats)
            u, s, vh = truncated_svd(target, k)
            gu, gs, gvh = gram_truncated_svd(target, k)
            exact = torch.linalg.matrix_norm(target - (u * s) @ vh)
            excess = float((torch.linalg.matrix_norm(target - (gu * gs) @ gvh) - exact) / exact)
            spread = float((gs - s).abs().max() / s[0])
            print(f"| {shape_text} | {k} | {full:.4f} | {gram:.4f} | {full / gram:.2f}x | {excess:.1e} | {spread:.1e} |",
                  flush=True)


if __name__ == "__main__":
    main()
