"""Where work units run: in this process, in local worker processes, or on a Dask cluster.

Every executor has one method, ``map_unordered(function, items)``, which yields each item's result
once, as it finishes; an item is anything with a unique ``key`` (the runner sends batches of work
units, :class:`~abba_analysis.experiments.units.Batch`). Units are plain data and workers read their
own targets (a real-weight target is a checkpoint path and a tensor name), so
nothing large passes through the scheduler. The same configuration gives the same rows with every
executor.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import multiprocessing
from typing import Any, Callable, Iterator


class InProcess:
    """The default executor: one unit after another in this process."""

    parallelism = 1

    def map_unordered(self, function: Callable[[Any], Any], units: list[Any]) -> Iterator[Any]:
        for unit in units:
            yield function(unit)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _on_one_thread(function: Callable[[Any], Any], unit: Any) -> Any:
    """``function(unit)`` on one torch thread: a worker's threads would outnumber its share of the
    cores (a unit's own ``threads`` still wins)."""
    _set_threads(1)
    return function(unit)


class LocalProcesses:
    """A pool of ``workers`` local processes (spawned, ``threads`` torch threads each).

    Each :meth:`map_unordered` call starts its own pool, unless the executor is used as a context
    manager: then one pool serves every call inside the ``with`` block (starting workers costs about
    a second each, for importing torch). A worker that dies takes only its in-flight units with it:
    the pool is rebuilt and those units are resubmitted, each at most ``retries`` times.

    Examples
    --------
    >>> with LocalProcesses(2) as executor:  # doctest: +SKIP
    ...     first = experiments.run(config_a, "runs/a", executor=executor)
    ...     second = experiments.run(config_b, "runs/b", executor=executor)
    """

    def __init__(self, workers: int = 2, *, threads: int = 1, retries: int = 2) -> None:
        if workers < 1 or threads < 1 or retries < 0:
            raise ValueError(f"workers and threads must be >= 1 and retries >= 0, got {workers}, {threads}, {retries}")
        self.workers, self.threads, self.retries = workers, threads, retries
        self._pool: cf.ProcessPoolExecutor | None = None

    @property
    def parallelism(self) -> int:
        return self.workers

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_set_threads, initargs=(self.threads,))

    def __enter__(self) -> "LocalProcesses":
        if self._pool is None:
            self._pool = self._new_pool()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def map_unordered(self, function: Callable[[Any], Any], units: list[Any]) -> Iterator[Any]:
        pending = {u.key: u for u in units}
        attempts = {u.key: 0 for u in units}
        while pending:
            shared = self._pool is not None
            pool = self._pool if shared else self._new_pool()
            try:
                futures = {pool.submit(function, u): key for key, u in pending.items()}
                for future in cf.as_completed(futures):
                    key = futures[future]
                    result = future.result()
                    del pending[key]
                    yield result
            except cf.process.BrokenProcessPool:
                for key in pending:
                    attempts[key] += 1
                    if attempts[key] > self.retries:
                        raise RuntimeError(f"unit {key} lost its worker {attempts[key]} times; giving up") from None
                if shared:
                    pool.shutdown(cancel_futures=True)
                    self._pool = self._new_pool()
            finally:
                if not shared:
                    pool.shutdown(cancel_futures=True)


class Dask:
    """A Dask cluster: pass a ``distributed.Client`` or a scheduler ``address`` (``tcp://host:port``).

    Every task runs on one torch thread, as every worker of :class:`LocalProcesses` does by default.

    Dask reschedules the tasks of a worker that dies (up to the scheduler's ``allowed-failures``);
    ``retries`` adds retries for units that raise.
    """

    def __init__(self, client: Any = None, *, address: str | None = None, retries: int = 2) -> None:
        try:
            from dask.distributed import Client
        except ImportError:
            raise ImportError("the Dask executor needs dask[distributed]: pip install 'abba-analysis[dask]'") from None
        if (client is None) == (address is None):
            raise ValueError("pass exactly one of client= or address=")
        self.client = client if client is not None else Client(address)
        self.retries = retries

    @property
    def parallelism(self) -> int:
        """Worker threads in the cluster now (at least 1)."""
        workers = self.client.scheduler_info().get("workers", {})
        return max(1, sum(w.get("nthreads", 1) for w in workers.values()))

    def map_unordered(self, function: Callable[[Any], Any], units: list[Any]) -> Iterator[Any]:
        from dask.distributed import as_completed

        if not units:
            return
        futures = self.client.map(functools.partial(_on_one_thread, function), units,
                                  key=[f"abba-fit-{u.key}" for u in units], retries=self.retries, pure=False)
        for future in as_completed(futures):
            yield future.result()
            future.release()
