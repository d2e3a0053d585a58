"""How many intra-op threads a fit on the CPU runs with.

torch starts with one intra-op thread per core, and its OpenMP threads spin at every barrier. A fit
is a long chain of small parallel regions, so on a machine where anything else runs, a fit whose
threads outnumber the free cores waits at each barrier for a thread that is not running: beside one
busy process on 2 cores, fits on 2 threads took 1.8 to 3.7 times their idle time, fits on one thread
1.0 to 1.3 times (``benchmarks/bench_threads.py``). Small fits gain nothing from a second thread even
on an idle machine. So each fit picks its threads from its size and the machine's core count:

- one thread while an iteration's work is below :data:`PARALLEL_MIN_WORK`;
- otherwise one thread per core but one, the core left to the rest of the machine (so on 2 cores:
  always one), and never more than torch had when this package was imported.

The choice never depends on the machine's momentary load, so the same call gives the same numbers on
the same machine (the thread count changes the order of floating-point sums, and with it a fit's
path). An explicit choice wins: ``fit(..., threads=N)``, ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` in
the environment, or a ``torch.set_num_threads`` call made after this package was imported. Fits on
other devices leave the threads alone. The caller's setting is restored when the fit ends.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Sequence

import torch

#: An iteration's work (:func:`iteration_work`) from which a fit may run on more than one thread:
#: below it a second thread gained at most 1.1x on an idle machine (``benchmarks/bench_threads.py``).
PARALLEL_MIN_WORK = 2**26

#: torch's intra-op threads when this package was imported: a later ``torch.set_num_threads`` that
#: changed them is the user's choice, and the policy keeps it.
_THREADS_AT_IMPORT = torch.get_num_threads()

_ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def iteration_work(solver: str, batch: int, shape: tuple[int, int], ranks: Sequence[int]) -> int:
    """Roughly the multiply-adds of one iteration: ``K m n Σ r²`` for the exact block solver (its Gram
    products dominate), ``K m n Σ r`` for Adam's step, ``K m n min(m, n)`` for a closed form's SVD."""
    m, n = shape
    if solver == "als":
        per_entry = sum(r * r for r in ranks)
    elif solver == "adam":
        per_entry = sum(ranks)
    else:
        per_entry = min(m, n)
    return batch * m * n * per_entry


def user_threads() -> int | None:
    """torch's thread count if the user chose it (environment, or set after import), else None."""
    current = torch.get_num_threads()
    if any(os.environ.get(name) for name in _ENVIRONMENT) or current != _THREADS_AT_IMPORT:
        return current
    return None


def choose_threads(work: int, threads: int | None = None) -> int:
    """The intra-op threads of a CPU fit whose iterations cost ``work`` (see the module docstring).

    Examples
    --------
    >>> choose_threads(10**4, threads=3)
    3
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an int >= 1 or None (chosen by size), got {threads!r}")
        return threads
    chosen = user_threads()
    if chosen is not None:
        return chosen
    if work < PARALLEL_MIN_WORK:
        return 1
    return max(1, min(usable_cores() - 1, torch.get_num_threads()))


@contextlib.contextmanager
def fit_threads(device: torch.device, work: int, threads: int | None = None) -> Iterator[int]:
    """Run the body with :func:`choose_threads`'s count on a CPU ``device`` (elsewhere untouched);
    restore the caller's count afterwards. Yields the count the body runs with."""
    previous = torch.get_num_threads()
    if device.type != "cpu":
        if threads is not None:
            choose_threads(work, threads)  # the same check of the argument everywhere
        yield previous
        return
    count = choose_threads(work, threads)
    if count != previous:
        torch.set_num_threads(count)
    try:
        yield count
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
