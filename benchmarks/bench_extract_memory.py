"""Peak memory of ``extract`` on a 1 GB checkpoint pair, against the largest layer pair and one fit.

Generates a base and a fine-tuned checkpoint (sharded safetensors, float32, ``--gigabytes`` in all, as
``bench_streaming`` does), then, each in a fresh process, measures the peak resident memory above the
process's baseline (after imports) of (a) ``aa.extract.extract`` over every layer and (b) one fit of the
largest layer's update alone (reading its pair and fitting it: the fits' working set). The target:
(a) within 2x the largest layer pair plus (b).

    python benchmarks/bench_extract_memory.py [--gigabytes 1.0] [--method lora] [--budget 8]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from _timing import peak_memory_mib
from bench_streaming import SIDE, make_pair

CHILD = r"""
import resource, sys, tempfile
import abba_analysis as aa
base, tuned, mode, method, budget = sys.argv[1:6]
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if mode == "extract":
    layers = aa.extract.extract(base, tuned, tempfile.mkdtemp(), method=method, budget=int(budget),
                                progress=False).layers
    count = len(layers)
else:
    pairs = aa.deltas.from_checkpoints(base, tuned)
    d = pairs.load(pairs.names[0])
    ranks = aa.budget.abba_ranks_for_lora(int(budget)) if method == "abba" else int(budget)
    aa.fit(d.delta, method, ranks, base=d.base if method == "hira" else None, bracket=False)
    count = 1
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(start, peak, count)
"""


def measure(base: Path, tuned: Path, mode: str, method: str, budget: int) -> tuple[float, int]:
    peak, (count,) = peak_memory_mib(CHILD, base, tuned, mode, method, budget)
    return peak, int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0, help="total size of the pair")
    parser.add_argument("--method", default="lora", choices=["lora", "abba", "hira"])
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--dir", default=None, help="where to write the pair (deleted afterwards)")
    args = parser.parse_args()
    gigabytes = args.gigabytes
    root = Path(args.dir or tempfile.mkdtemp(prefix="abba-extract-"))
    try:
        base, tuned, layers = make_pair(root, gigabytes)
        pair_mib = 2 * SIDE * SIDE * 4 / 2**20
        one_fit, _ = measure(base, tuned, "one", args.method, args.budget)
        whole, count = measure(base, tuned, "extract", args.method, args.budget)
        assert count == layers
        bound = 2 * pair_mib + one_fit
        print(f"# extract --method {args.method} --budget {args.budget}: {layers} layers of {SIDE}x{SIDE} float32 "
              f"per side ({2 * layers * pair_mib / 2:.0f} MiB in all); largest layer pair {pair_mib:.0f} MiB")
        print("| measured | peak memory above baseline (MiB) |")
        print("|---|---|")
        print(f"| one fit of one layer (pair read + fit: the working set) | {one_fit:.0f} |")
        print(f"| extract over all layers | {whole:.0f} |")
        print(f"| target: 2 x largest pair + one fit | {bound:.0f} |")
        print(f"extract peak / target = {whole / bound:.2f} (<= 1 meets it); / one fit = {whole / one_fit:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
