"""Time-to-error of the default ABBA solver against Adam and against exact sweeps alone, in one run.

For each target and rank three fits run on the same float32 matrix from the same seeds:

- Adam, 3000 steps at lr 1e-2 with a cosine schedule (this package's fused Adam: the fastest Adam we
  have, so the strictest baseline);
- the default ``als`` solver: inexact sweeps, then exact ones (``ALSOptions.inexact``);
- ``als`` with exact sweeps only (``inexact=False``: the default solver of version 0.4.0).

Both ``als`` fits run from the default fit's first start, ``svd-ones``, alone (``init`` given: the
literature's solver, which a default fit runs next, is timed by ``bench_default_lanes``).

We print each fit's final error; the seconds the default needs to reach Adam's final error as a ratio
to Adam's total time (``vs Adam``); the same ratio for exact sweeps alone; and the seconds the default
needs to reach the exact-only fit's final error as a ratio to that fit's total time (``vs exact``).
Medians over ``--repeats`` seeds (for ``real``: the MiniLM fine-tuning delta of one layer per repeat);
inf: not reached in the median seed.

Kinds: ``gaussian``, ``orthogonal``, ``sparse`` (random, any shape), ``real`` (the ``ΔW`` of a
real MiniLM fine-tune, :func:`abba_analysis.deltas.minilm.finetune_minilm`; its MLP output weights are
384 x 1536, so ``real`` runs at that shape only) and ``pretrained`` (the pretrained MiniLM's attention
query weights W0 themselves, one layer per repeat; 384 x 384 only).

    python benchmarks/bench_abba_solvers.py [--shapes 512x512 384x1536 384x384] [--ranks 4 8 16 32 64] [--repeats 5]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import abba_analysis as aa
from _timing import (add_case_arguments, cases, machine, median, pretrained_weights, real_layers, time_to_error,
                     timed_fit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(parser, repeats=5)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    warm = aa.targets.gaussian(64, seed=0, dtype="float32")  # first-call costs stay out of the timings
    aa.fit(warm, "abba", (2, 2), solver="adam", steps=20, device=args.device)
    aa.fit(warm, "abba", (2, 2), device=args.device)
    print(f"# ABBA, float32, device {args.device}; {machine()}; medians of {args.repeats}")
    print("| shape | target | r1=r2 | Adam final | default final | exact-only final | default vs Adam | Adam s "
          "| default s to Adam's error | ratio vs Adam | exact-only ratio vs Adam | exact-only s "
          "| default s to exact-only final | ratio vs exact |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    fixed = {"real": [layer.delta for layer in real_layers(args.repeats)] if "real" in args.kinds else [],
             "pretrained": pretrained_weights(args.repeats) if "pretrained" in args.kinds else []}
    vs_adam, vs_exact, finals = [], [], []
    for shape_text, shape, kind, r in cases(args.shapes, args.kinds, args.ranks):
        rows = []
        for seed in range(args.repeats):
            T = fixed[kind][seed] if kind in fixed else aa.targets.make(kind, *shape, seed=seed, dtype="float32")
            adam, adam_t = timed_fit(T, "abba", (r, r), solver="adam", steps=args.steps, lr=1e-2,
                                     schedule="cosine", seed=seed, device=args.device, bracket=False)
            fit, fit_t = timed_fit(T, "abba", (r, r), seed=seed, device=args.device, bracket=False, init="svd-ones")
            exact, exact_t = timed_fit(T, "abba", (r, r), seed=seed, device=args.device, bracket=False, inexact=False,
                                       init="svd-ones")
            reach = time_to_error(fit.history, fit_t, adam.error)
            reach_exact = time_to_error(exact.history, exact_t, adam.error)
            # The exact-only fit's last history entry: its error recomputed from the factors can differ
            # in the last bits, which an identical path would then never reach.
            reach_final = time_to_error(fit.history, fit_t, exact.history[-1])
            rows.append([adam.error, fit.error, exact.error, adam_t[-1], reach, reach / adam_t[-1],
                         reach_exact / adam_t[-1], exact_t[-1], reach_final, reach_final / exact_t[-1],
                         (fit.error - exact.error) / exact.error])
        (a_err, d_err, e_err, a_s, d_s, ratio, e_ratio, e_s, d_final_s, final_ratio,
         above) = [median(c) for c in zip(*rows, strict=True)]
        vs_adam.append(ratio), vs_exact.append(final_ratio)
        finals.append(max(row[-1] for row in rows))
        print(f"| {shape_text} | {kind} | {r} | {a_err:.5f} | {d_err:.5f} | {e_err:.5f} "
              f"| {100 * (d_err - a_err) / a_err:+.2f}% | {a_s:.2f} | {d_s:.2f} | {ratio:.3f} | {e_ratio:.3f} "
              f"| {e_s:.2f} | {d_final_s:.2f} | {final_ratio:.3f} |", flush=True)
    print(f"vs Adam (median per case): best {min(vs_adam):.3f}, median {median(vs_adam):.3f}, worst {max(vs_adam):.3f}; "
          f"{sum(x <= 0.1 for x in vs_adam)} of {len(vs_adam)} cases within 1/10, "
          f"{sum(not np.isfinite(x) for x in vs_adam)} never")
    print(f"vs exact sweeps alone (median per case): median {median(vs_exact):.3f}, worst {max(vs_exact):.3f}; "
          f"default final above exact-only's by at most {100 * max(finals):+.2f}% (any seed)")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
