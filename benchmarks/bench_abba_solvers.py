"""Time-to-error of the default ABBA solver against Adam (the paper-style recipe), in one run.

For each target and rank the two solvers fit the same float32 matrix from the same seeds. Adam runs
3000 steps at lr 1e-2 with a cosine schedule (this package's fused Adam: the fastest Adam we have,
so the strictest baseline). We print each solver's final error and the wall time the default solver
needs to reach the error Adam ends with, as a ratio to Adam's total time. Medians over
``--repeats`` seeds (for ``real``: the MiniLM fine-tuning delta of one layer per repeat).

Where a rank continuation applies (``min(r1, r2) >= CONTINUATION_MIN_RANK``), the fit with the
other ``continuation`` setting than the default's is timed too, on the same seeds and Adam errors.

Kinds: ``gaussian``, ``orthogonal``, ``sparse`` (random, any shape) and ``real`` (the ``ΔW`` of a
real MiniLM fine-tune, :func:`abba_analysis.deltas.minilm.finetune_minilm`; its MLP output weights are
384 x 1536, so ``real`` runs at that shape only).

    python benchmarks/bench_abba_solvers.py [--shapes 512x512 384x1536] [--ranks 4 8 16] [--repeats 5]
                                            [--momentum sweep|block]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import abba_analysis as aa
from _timing import add_case_arguments, cases, machine, median, real_layers, time_to_error, timed_fit
from abba_analysis.solvers.als import CONTINUATION_MIN_RANK, MOMENTUM_SCHEMES, ALSOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(parser, repeats=5)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--momentum", default=ALSOptions.momentum, choices=MOMENTUM_SCHEMES,
                        help="the exact solver's momentum (default: the package's)")
    args = parser.parse_args()
    warm = aa.targets.gaussian(64, seed=0, dtype="float32")  # first-call costs stay out of the timings
    aa.fit(warm, "abba", (2, 2), solver="adam", steps=20, device=args.device)
    aa.fit(warm, "abba", (2, 2), device=args.device)
    default = ALSOptions.continuation
    other = not default
    print(f"# ABBA, float32, device {args.device}; momentum {args.momentum}; continuation {default}; {machine()}; "
          f"medians of {args.repeats}")
    print("| shape | target | r1=r2 | Adam final | default final | default vs Adam | Adam s | "
          f"default s to Adam's error | ratio | continuation={other}: final vs Adam | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    real = [layer.delta for layer in real_layers(args.repeats)] if "real" in args.kinds else []
    ratios, other_ratios = [], []
    for shape_text, shape, kind, r in cases(args.shapes, args.kinds, args.ranks):
        continued = r >= CONTINUATION_MIN_RANK
        rows = []
        for seed in range(args.repeats):
            T = real[seed] if kind == "real" else aa.targets.make(kind, *shape, seed=seed, dtype="float32")
            adam, adam_t = timed_fit(T, "abba", (r, r), solver="adam", steps=args.steps, lr=1e-2,
                                     schedule="cosine", seed=seed, device=args.device, bracket=False)
            row = [adam.error, adam_t[-1]]
            for continuation in (default, other) if continued else (default,):
                fit, fit_t = timed_fit(T, "abba", (r, r), seed=seed, device=args.device, bracket=False,
                                       momentum=args.momentum, continuation=continuation)
                reach = time_to_error(fit.history, fit_t, adam.error)
                row += [fit.error, reach, reach / adam_t[-1]]
            rows.append(row)
        columns = [median(c) for c in zip(*rows, strict=True)]
        a_err, a_s, d_err, d_s, ratio = columns[:5]
        ratios.append(ratio)
        alternative = "| — | — |"
        if continued:
            o_err, _, o_ratio = columns[5:]
            other_ratios.append((ratio, o_ratio))
            alternative = f"| {100 * (o_err - a_err) / a_err:+.2f}% | {o_ratio:.3f} |"
        print(f"| {shape_text} | {kind} | {r} | {a_err:.5f} | {d_err:.5f} | {100 * (d_err - a_err) / a_err:+.2f}% | "
              f"{a_s:.2f} | {d_s:.2f} | {ratio:.3f} {alternative}", flush=True)
    finite = [x for x in ratios if np.isfinite(x)]
    print(f"ratio (median per case): best {min(ratios):.3f}, median {median(ratios):.3f}, worst {max(ratios):.3f}; "
          f"{len(ratios) - len(finite)} of {len(ratios)} cases never reach Adam's error in the median seed")
    if other_ratios:
        by_default, by_other = zip(*other_ratios, strict=True)
        print(f"cases r >= {CONTINUATION_MIN_RANK}: median ratio {median(by_default):.3f} with continuation={default} "
              f"(the default), {median(by_other):.3f} with continuation={other}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
