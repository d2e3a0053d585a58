import dataclasses

import numpy as np
import pytest
import torch

import abba_analysis as aa
from abba_analysis import experiments, threads
from abba_analysis.cli import main


@pytest.fixture
def policy(monkeypatch):
    """The policy as a user who chose nothing meets it: no thread variables, torch as at import."""
    for name in threads._ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_THREADS_AT_IMPORT", torch.get_num_threads())
    return threads


def test_small_fits_run_on_one_thread(policy, monkeypatch):
    monkeypatch.setattr(policy, "usable_cores", lambda: 16)
    torch.set_num_threads(4)
    monkeypatch.setattr(policy, "_THREADS_AT_IMPORT", 4)
    assert policy.choose_threads(policy.PARALLEL_MIN_WORK - 1) == 1
    # Large ones get a core per thread but one, never more than torch had.
    assert policy.choose_threads(policy.PARALLEL_MIN_WORK) == 4
    monkeypatch.setattr(policy, "usable_cores", lambda: 3)
    assert policy.choose_threads(policy.PARALLEL_MIN_WORK) == 2
    monkeypatch.setattr(policy, "usable_cores", lambda: 2)
    assert policy.choose_threads(10 * policy.PARALLEL_MIN_WORK) == 1


def test_an_explicit_choice_wins(policy, monkeypatch):
    monkeypatch.setattr(policy, "usable_cores", lambda: 16)
    assert policy.choose_threads(1, threads=3) == 3
    torch.set_num_threads(2)  # after import: the user's choice, kept even for a small fit
    assert policy.choose_threads(1) == 2
    monkeypatch.setattr(policy, "_THREADS_AT_IMPORT", 2)
    assert policy.choose_threads(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert policy.choose_threads(1) == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(ValueError, match="threads must be an int >= 1"):
        aa.fit(np.eye(8), "lora", 2, threads=bad)


def test_iteration_work_orders_the_solvers():
    assert threads.iteration_work("als", 2, (64, 32), (4, 8)) == 2 * 64 * 32 * (16 + 64)
    assert threads.iteration_work("adam", 1, (64, 32), (4, 8)) == 64 * 32 * 12
    assert threads.iteration_work("svd", 1, (64, 32), (4,)) == 64 * 32 * 32


def test_a_fit_runs_on_its_threads_and_restores_the_callers(policy):
    torch.set_num_threads(2)
    policy._THREADS_AT_IMPORT = 2
    seen = []
    T = aa.targets.gaussian(32, seed=0)
    result = aa.fit(T, "abba", (2, 2), seed=0, max_iter=3, callback=lambda *_: seen.append(torch.get_num_threads()))
    assert result.threads == 1 and set(seen) == {1}  # small: one thread
    assert torch.get_num_threads() == 2
    result = aa.fit(T, "abba", (2, 2), seed=0, max_iter=3, threads=2,
                    callback=lambda *_: seen.append(torch.get_num_threads()))
    assert result.threads == 2 and seen[-1] == 2


def test_the_callers_threads_come_back_after_an_error(policy):
    torch.set_num_threads(2)
    policy._THREADS_AT_IMPORT = 2

    def fail(*_):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        aa.fit(aa.targets.gaussian(32, seed=0), "abba", (2, 2), seed=0, callback=fail)
    assert torch.get_num_threads() == 2


def test_the_same_call_gives_the_same_numbers(policy):
    torch.set_num_threads(2)
    policy._THREADS_AT_IMPORT = 2
    T = aa.targets.orthogonal(48, seed=0)
    first, second = (aa.fit(T, "abba", (4, 4), seed=0, max_iter=40) for _ in range(2))
    np.testing.assert_array_equal(first.history, second.history)


def test_configs_and_the_cli_pass_threads_to_the_fits(tmp_path, capsys):
    config = experiments.parse({
        "experiment": {"name": "t", "threads": 2},
        "targets": [{"kind": "gaussian", "shape": [24, 20]}],
        "methods": [{"method": "abba", "budgets": [4], "options": {"max_iter": 5}}],
    })
    units = experiments.expand(config)
    assert {u.threads for u in units} == {2}
    auto = experiments.expand(dataclasses.replace(config, threads=None))
    assert units[0].key != auto[0].key  # the count changes the rounding: its own results
    assert main(["fit", "--kind", "gaussian", "--size", "24", "--rank", "4", "--threads", "2"]) == 0
    assert main(["fit", "--kind", "gaussian", "--size", "24", "--rank", "4", "--threads", "0"]) == 2
    assert "threads must be an int >= 1" in capsys.readouterr().err
