"""Peak memory of streaming a checkpoint pair's deltas, against loading both checkpoints whole.

Generates a base and a fine-tuned checkpoint (sharded safetensors, float32) of ``--gigabytes`` in all,
then, each in a fresh process, (a) iterates ``aa.deltas.from_checkpoints`` over every layer and (b)
loads both state dicts whole (the baseline), computing ``||ΔW||`` for each layer in both cases.
Prints the peak resident memory above the process's baseline (after imports) for each.

    python benchmarks/bench_streaming.py [--gigabytes 1.0] [--dir /tmp/abba-stream]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch
from _timing import peak_memory_mib
from safetensors.torch import save_file

SIDE = 4096  # each layer is SIDE x SIDE float32 = 64 MiB


def make_pair(root: Path, gigabytes: float, size: int = SIDE) -> tuple[Path, Path, int]:
    """A base and a fine-tuned sharded checkpoint of ``size x size`` float32 layers, ``gigabytes`` in all."""
    layers = max(2, round(gigabytes * 2**30 / 2 / (size * size * 4)))
    gen = torch.Generator().manual_seed(0)
    for side in ("base", "tuned"):
        (root / side).mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for i in range(layers):
        w = torch.randn(size, size, generator=gen)
        name, file = f"model.layers.{i}.proj.weight", f"model-{i:05d}.safetensors"
        save_file({name: w}, str(root / "base" / file))
        save_file({name: w + 1e-3 * torch.randn(size, size, generator=gen)}, str(root / "tuned" / file))
        weight_map[name] = file
    for side in ("base", "tuned"):
        (root / side / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return root / "base", root / "tuned", layers


CHILD = r"""
import resource, sys, torch
import abba_analysis as aa
from safetensors.torch import load_file
from pathlib import Path
base, tuned, mode = sys.argv[1], sys.argv[2], sys.argv[3]
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if mode == "stream":
    norms = [float(d.delta.norm()) for d in aa.deltas.from_checkpoints(base, tuned)]
else:
    a = {k: v for f in sorted(Path(base).glob("*.safetensors")) for k, v in load_file(str(f)).items()}
    b = {k: v for f in sorted(Path(tuned).glob("*.safetensors")) for k, v in load_file(str(f)).items()}
    norms = [float((b[k] - a[k]).norm()) for k in sorted(a)]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(start, peak, len(norms))
"""


def measure(base: Path, tuned: Path, mode: str) -> tuple[float, int]:
    peak, (count,) = peak_memory_mib(CHILD, base, tuned, mode)
    return peak, int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0, help="total size of the pair")
    parser.add_argument("--dir", default=None, help="where to write the pair (deleted afterwards)")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="abba-stream-"))
    try:
        base, tuned, layers = make_pair(root, args.gigabytes)
        layer_mib = SIDE * SIDE * 4 / 2**20
        model_mib = 2 * layers * layer_mib
        stream, n1 = measure(base, tuned, "stream")
        whole, n2 = measure(base, tuned, "whole")
        assert n1 == n2 == layers
        print(f"# pair of {layers} layers of {SIDE}x{SIDE} float32 per side: {model_mib:.0f} MiB in all; "
              f"largest pair of tensors {2 * layer_mib:.0f} MiB")
        print("| reading | peak memory above baseline (MiB) | / largest pair | / whole pair |")
        print("|---|---|---|---|")
        for label, peak in (("aa.deltas.from_checkpoints (streaming)", stream), ("load both state dicts (baseline)", whole)):
            print(f"| {label} | {peak:.0f} | {peak / (2 * layer_mib):.2f} | {peak / model_mib:.2f} |")
        print(f"streaming uses {stream / whole:.2f}x the baseline's peak memory")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
