"""The main job, ``abba-analysis reproduce`` on its defaults, run several times; the median is the result.

The job runs as users run it (one worker process per core) ``--repeats`` times (one run on a
2-core machine can be 20% off another of the same code), and with ``--one-process`` once more in one
process, for the ratio. Each run is the whole command in a fresh process, into a fresh work
directory that holds a copy of the MiniLM fine-tune cached in the repository's ``results/`` (made
there first if missing, as a first run would, and not timed: about six minutes on 2 cores), timed
from the command's start to its end. With ``--one-process`` the Fig. 2 errors of the two modes are
compared fit by fit (the workers' batches differ, so a few ABBA fits may take another float path).
``--quick`` runs ``reproduce --quick``.

    python benchmarks/bench_main_job.py [--quick] [--repeats 3] [--one-process]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _timing import RESULTS, machine
from abba_analysis.deltas.minilm import STEPS, cached_finetune
from abba_analysis.threads import usable_cores


def run(work: Path, workers: int, quick: bool) -> float:
    """Wall seconds of ``abba-analysis reproduce`` with ``workers`` into ``work``."""
    cli = "import sys; from abba_analysis.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", cli, "reproduce", "--work-dir", str(work), "--no-progress",
               "--workers", str(workers)] + (["--quick"] if quick else [])
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reproduce --quick")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of the job as users run it (one worker per core); the median is the result")
    parser.add_argument("--one-process", action="store_true",
                        help="also time the job in one process once (about twice as long), for the ratio")
    args = parser.parse_args()
    steps = 3 if args.quick else STEPS
    cores = usable_cores()
    modes = [cores] * args.repeats + ([1] if args.one_process else [])
    with tempfile.TemporaryDirectory() as scratch:
        tuned = cached_finetune(RESULTS, steps=steps).parent
        seconds, errors = {}, {}
        for i, workers in enumerate(modes):
            work = Path(scratch) / f"run-{i}"
            shutil.copytree(tuned, work / tuned.name)
            seconds.setdefault(workers, []).append(run(work, workers, args.quick))
            table = pd.read_csv(work / ("fig2-quick" if args.quick else "fig2") / "results.csv")
            errors.setdefault(workers, table.set_index("key")["error"])
            shutil.rmtree(work)
    print(f"# abba-analysis reproduce{' --quick' if args.quick else ''}, fine-tune cached; {machine()}")
    print("| mode | runs | wall s, each | median s | median min | vs one process |")
    print("|---|---|---|---|---|---|")
    for workers, times in sorted(seconds.items()):
        name = "one process" if workers == 1 else f"{workers} worker processes x 1 thread"
        ratio = f"{np.median(seconds[1]) / np.median(times):.2f}x" if 1 in seconds else "-"
        print(f"| {name} | {len(times)} | {', '.join(f'{t:.0f}' for t in times)} | {np.median(times):.0f} | "
              f"{np.median(times) / 60:.1f} | {ratio} |")
    if 1 in errors and cores in errors and cores != 1:
        change = (errors[cores] / errors[1].reindex(errors[cores].index) - 1).abs()
        print(f"Fig. 2 errors, {cores} workers against one process: {int((change == 0).sum())} of {len(change)} "
              f"fits identical, largest relative difference {change.max():.1e}")


if __name__ == "__main__":
    main()
