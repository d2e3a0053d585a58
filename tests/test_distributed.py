"""Executors: local processes and a Dask cluster give the in-process table, and survive dead workers."""

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from abba_analysis import experiments
from abba_analysis.experiments import LocalProcesses
from abba_analysis.experiments.units import run_unit

CONFIG = """
[experiment]
name = "dist"
seeds = [0, 1, 2]

[[targets]]
kind = "gaussian"
shape = [48, 40]

[[targets]]
kind = "sparse"
shape = [40, 40]
options = { density = 0.1 }

[[methods]]
method = "lora"
budgets = [4, 8]

[[methods]]
method = "abba"
budgets = [4, 8]
options = { max_iter = 60 }
"""

COLUMNS = ["key", "target", "method", "budget", "seed", "error", "iterations"]


def by_key(results):
    return results[COLUMNS].sort_values("key").reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return by_key(experiments.run(experiments.load(CONFIG), tmp_path_factory.mktemp("ref"), progress=False).results)


def test_local_processes_give_the_in_process_table(tmp_path, reference):
    result = experiments.run(experiments.load(CONFIG), tmp_path, executor=LocalProcesses(2), progress=False)
    pd.testing.assert_frame_equal(by_key(result.results), reference)


def test_init_study_fits_on_local_processes_give_the_in_process_table(tmp_path, reference):
    """Also: one pool serves every call inside ``with`` (reproduce's stages share it)."""
    from abba_analysis import init_study, targets

    study = {"g": (targets.gaussian(24, 20, seed=0), targets.gaussian(24, 20, seed=1)),
             "s": (targets.make("sparse", 20, seed=2, density=0.2), None)}
    kwargs = dict(seeds=(0, 1), checkpoints=(5,), threshold=0.9, steps=30)
    schemes = ["abba-paper", "svd-ones"]
    alone = init_study.fit_quality(study, (2, 2), schemes, **kwargs)
    with LocalProcesses(2) as executor:
        pids = set()
        deadline = time.monotonic() + 120
        while len(pids) < 2 and time.monotonic() < deadline:  # a worker still importing takes no units
            pids |= {r for _, r in executor.map_unordered(worker_pid, [Keyed(k) for k in range(4)])}
        assert len(pids) == 2
        spread = init_study.fit_quality(study, (2, 2), schemes, executor=executor, **kwargs)
        result = experiments.run(experiments.load(CONFIG), tmp_path, executor=executor, progress=False)
        assert {r for _, r in executor.map_unordered(worker_pid, [Keyed(k) for k in range(4)])} <= pids
    pd.testing.assert_frame_equal(by_key(result.results), reference)
    columns = ["target", "scheme", "seed", "start_error", "error_at_5", "final_error"]
    assert len(alone) == 8 and list(alone.scheme[:2]) == ["abba-paper"] * 2  # (target, scheme, seed) order
    pd.testing.assert_frame_equal(spread[columns], alone[columns])


class Keyed:
    def __init__(self, key):
        self.key = key


def worker_pid(item):
    time.sleep(0.05)  # so that both workers take some
    return item.key, os.getpid()


class DieOnce:
    """A unit whose first run kills its worker process (a crash mid-fit); later runs fit normally."""

    def __init__(self, unit, marker):
        self.unit, self.marker, self.key = unit, marker, unit.key


def run_or_die(item):
    if not os.path.exists(item.marker):
        Path(item.marker).touch()
        os._exit(1)
    return run_unit(item.unit)


@pytest.mark.parametrize("shared_pool", [False, True])
def test_a_dead_local_worker_costs_only_its_in_flight_units(tmp_path, shared_pool):
    units = experiments.expand(experiments.load(CONFIG))[:6]
    marker = str(tmp_path / "died")
    executor = LocalProcesses(2, retries=2)
    with executor if shared_pool else contextlib.nullcontext(executor):
        results = list(executor.map_unordered(run_or_die, [DieOnce(u, marker) for u in units]))
        if shared_pool:  # the rebuilt pool serves later calls
            assert len(list(executor.map_unordered(run_unit, units[:2]))) == 2
    assert Path(marker).exists()
    assert sorted(r["row"]["key"] for r in results) == sorted(u.key for u in units)


dask_distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as lc, Client(lc) as client:
        yield client


def test_dask_gives_the_in_process_table(tmp_path, cluster, reference):
    result = experiments.run(experiments.load(CONFIG), tmp_path, executor=experiments.Dask(cluster), progress=False)
    pd.testing.assert_frame_equal(by_key(result.results), reference)


def test_killing_a_dask_worker_mid_sweep_loses_and_duplicates_nothing(tmp_path, cluster, reference):
    config = experiments.load(CONFIG.replace("max_iter = 60", "max_iter = 150, rtol = 0.0"))
    journal = tmp_path / "journal.jsonl"
    killed = []

    def kill_one_worker():
        deadline = time.time() + 60
        while time.time() < deadline:
            if journal.exists() and len(journal.read_text().splitlines()) >= 3:
                pids = cluster.run(os.getpid)
                pid = next(iter(pids.values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    result = experiments.run(config, tmp_path, executor=experiments.Dask(cluster), progress=False)
    killer.join()
    assert killed, "no worker was killed: the sweep finished too fast"
    units = experiments.expand(config)
    assert len(result.results) == len(units) and result.results["key"].is_unique
    lines = journal.read_text().splitlines()
    assert len(lines) == len(units)
