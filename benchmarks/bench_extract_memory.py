"""Peak memory of ``extract`` on a 1 GB checkpoint pair, against the largest layer pair and one fit.

Generates a base and a fine-tuned checkpoint (sharded safetensors, float32, ``--gigabytes`` in all, as
``bench_streaming`` does), then, each in a fresh process, measures the peak resident memory above the
process's baseline (after imports) of (a) ``aa.extract.extract`` over every layer and (b) one fit of the
largest layer's update alone (the same ``extract``, told to select that layer only: one pair read and
fitted, with all the machinery around it). Resident memory is sampled every 5 ms above its value after
the imports. The target: (a) within 2x the largest layer pair plus (b).

    python benchmarks/bench_extract_memory.py [--gigabytes 1.0] [--size 2048] [--method lora] [--budget 8]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from _timing import peak_memory_mib
from bench_streaming import make_pair

# Resident memory sampled every 5 ms from /proc (Linux): ru_maxrss is a high-water mark that the imports
# already set, so work that stays below it would read as 0.
CHILD = r"""
import os, sys, tempfile, threading, time
import abba_analysis as aa
base, tuned, mode, method, budget = sys.argv[1:6]
page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page_kib
start, peak, running = rss_kib(), [0], [True]
def sample():
    while running[0]:
        peak[0] = max(peak[0], rss_kib())
        time.sleep(0.005)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
# "one": the same extract, of the first layer only: one pair read and fitted, with everything around it.
include = None if mode == "extract" else r"^model\.layers\.0\.proj\.weight$"
count = len(aa.extract.extract(base, tuned, tempfile.mkdtemp(), method=method, budget=int(budget), include=include,
                               progress=False).layers)
running[0] = False
sampler.join()
print(start, max(peak[0], rss_kib()), count)
"""


def measure(base: Path, tuned: Path, mode: str, method: str, budget: int) -> tuple[float, int]:
    peak, (count,) = peak_memory_mib(CHILD, base, tuned, mode, method, budget)
    return peak, int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0, help="total size of the pair")
    parser.add_argument("--size", type=int, default=2048, help="layers are size x size (4096: one LoRA fit takes minutes)")
    parser.add_argument("--method", default="lora", choices=["lora", "abba", "hira"])
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--dir", default=None, help="where to write the pair (deleted afterwards)")
    args = parser.parse_args()
    gigabytes = args.gigabytes
    root = Path(args.dir or tempfile.mkdtemp(prefix="abba-extract-"))
    try:
        base, tuned, layers = make_pair(root, gigabytes, args.size)
        pair_mib = 2 * args.size * args.size * 4 / 2**20
        one_fit, _ = measure(base, tuned, "one", args.method, args.budget)
        whole, count = measure(base, tuned, "extract", args.method, args.budget)
        assert count == layers
        bound = 2 * pair_mib + one_fit
        print(f"# extract --method {args.method} --budget {args.budget}: {layers} layers of {args.size}x{args.size} float32 "
              f"per side ({layers * pair_mib:.0f} MiB in all); largest layer pair {pair_mib:.0f} MiB")
        print("| measured | peak memory above baseline (MiB) |")
        print("|---|---|")
        print(f"| extract of one layer (one pair read and fitted) | {one_fit:.0f} |")
        print(f"| extract over all layers | {whole:.0f} |")
        print(f"| target: 2 x largest pair + extract of one layer | {bound:.0f} |")
        print(f"extract peak / target = {whole / bound:.2f} (<= 1 meets it); / one layer = {whole / one_fit:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
