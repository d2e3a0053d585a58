"""The main job, ``abba-analysis reproduce`` on its defaults: one worker process per core against one process.

Each mode runs the whole command in a fresh process, into a fresh work directory that holds a copy of
the MiniLM fine-tune cached in the repository's ``results/`` (made there first if missing, as a first
run would, and not timed: about six minutes on 2 cores), and is timed from the command's start to its
end. The Fig. 2 errors of the two
modes are compared fit by fit (the workers' batches differ, so a few ABBA fits may take another
float path). ``--quick`` runs ``reproduce --quick``.

    python benchmarks/bench_main_job.py [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    args = parser.parse_args()
    steps = 3 if args.quick else STEPS
    cores = usable_cores()
    with tempfile.TemporaryDirectory() as scratch:
        tuned = cached_finetune(RESULTS, steps=steps).parent
        seconds, errors = {}, {}
        for workers in (cores, 1):
            work = Path(scratch) / f"workers-{workers}"
            shutil.copytree(tuned, work / tuned.name)
            seconds[workers] = run(work, workers, args.quick)
            table = pd.read_csv(work / ("fig2-quick" if args.quick else "fig2") / "results.csv")
            errors[workers] = table.set_index("key")["error"]
    change = (errors[cores] / errors[1].reindex(errors[cores].index) - 1).abs()
    print(f"# abba-analysis reproduce{' --quick' if args.quick else ''}, fine-tune cached; {machine()}")
    print("| mode | wall s | wall min | vs one process |")
    print("|---|---|---|---|")
    for workers in (1, cores):
        name = "one process" if workers == 1 else f"{workers} worker processes x 1 thread"
        print(f"| {name} | {seconds[workers]:.0f} | {seconds[workers] / 60:.1f} | {seconds[1] / seconds[workers]:.2f}x |")
    print(f"Fig. 2 errors: {int((change == 0).sum())} of {len(change)} fits identical, "
          f"largest relative difference {change.max():.1e}")


if __name__ == "__main__":
    main()
