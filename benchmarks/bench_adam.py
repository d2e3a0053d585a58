"""Adam with analytic gradients (this package) against autograd Adam, per step and in peak memory.

The baseline is the textbook implementation: leaf tensors, ``loss = ½||(B1 A1) ⊙ (B2 A2) - T||²``,
``loss.backward()`` and ``torch.optim.Adam``. Both run the same number of steps from the same
factors in fresh processes; we report the median seconds per step over ``--repeats`` timed blocks and
the peak resident memory above the baseline (after building the target), as multiples of the target.

    python benchmarks/bench_adam.py [--size 2048] [--rank 16] [--steps 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, statistics, sys, time, torch
import abba_analysis as aa
from abba_analysis.solvers.adam import AdamState
from abba_analysis.workspace import Workspace
size, r, steps, repeats, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
gen = torch.Generator().manual_seed(0)
T = torch.randn(size, size, generator=gen)
start_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
f = {k: 0.1 * torch.randn(*s, generator=gen) for k, s in aa.parameterizations.ABBA().factor_shapes((size, size), (r, r)).items()}
abba = aa.parameterizations.ABBA()
if mode == "analytic":  # as the adam solver runs it: its temporaries in a workspace kept for the fit
    params = list(f.values())
    state = AdamState(params, (0.9, 0.999), 1e-8)
    workspace = Workspace()
    def step():
        with torch.no_grad():
            _, grads = abba.gradients(f, T, None, workspace)
            state.step([grads[k] for k in f], 1e-3)
else:
    leaves = {k: v.clone().requires_grad_(True) for k, v in f.items()}
    opt = torch.optim.Adam(list(leaves.values()), lr=1e-3)
    def step():
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * (abba.materialize(leaves) - T).square().sum()
        loss.backward()
        opt.step()
step()
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    times.append((time.perf_counter() - t0) / steps)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"step": statistics.median(times), "extra": (peak - start_kib) / 1024, "target": size * size * 4 / 2**20}))
"""


def run(args, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(args.size), str(args.rank), str(args.steps),
                          str(args.repeats), mode], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    auto, ours = run(args, "autograd"), run(args, "analytic")
    print(f"# ABBA Adam step, {args.size}x{args.size} float32, r1 = r2 = {args.rank}, CPU; medians of {args.repeats}")
    print("| implementation | ms / step | peak extra memory / target |")
    print("|---|---|---|")
    for label, r in (("autograd + torch.optim.Adam (baseline)", auto), ("analytic gradients + foreach Adam", ours)):
        print(f"| {label} | {1e3 * r['step']:.1f} | {r['extra'] / r['target']:.2f} |")
    print(f"speed-up {auto['step'] / ours['step']:.2f}x; memory {ours['extra'] / auto['extra']:.2f}x the baseline's")


if __name__ == "__main__":
    main()
