"""Batched fits: a K x m x n stack is fitted in one call, each target as a single fit would be."""

import numpy as np
import pytest
import torch

import abba_analysis as aa
from conftest import exact_abba

K = 5


def stack(kind="gaussian", m=48, n=40):
    return np.stack([aa.targets.make(kind, m, n, seed=s) for s in range(K)])


@pytest.mark.parametrize("method,rank,solver,options", [
    ("abba", (3, 2), "als", {}),
    ("abba", (3, 2), "adam", {"steps": 150}),
    ("abba", (6, 6), "als", {}),  # inexact sweeps, then exact ones
    ("abba", (6, 6), "als", {"inexact": False}),
    ("hira", 4, "als", {}),
    ("hira", 4, "adam", {"steps": 150}),
    ("hira", 4, "divide-svd", {}),
    ("lora", 4, "svd", {}),
    ("lora", 4, "rsvd", {}),
    ("lora", 4, "adam", {"steps": 100}),
])
def test_stack_fits_equal_single_fits_with_the_same_seeds(method, rank, solver, options, monkeypatch):
    m, n = 48, 40
    targets = stack(m=m, n=n)
    base = aa.targets.gaussian(m, n, seed=99) if method == "hira" else None
    seeds = [10 + k for k in range(K)]
    batched = aa.fit(targets, method, rank, base=base, solver=solver, seed=seeds, **options)
    assert isinstance(batched, list) and len(batched) == K
    for k, result in enumerate(batched):
        single = aa.fit(targets[k], method, rank, base=base, solver=solver, seed=seeds[k], **options)
        assert result.error == pytest.approx(single.error, rel=1e-9)
        assert result.iterations == single.iterations and result.status == single.status
        np.testing.assert_allclose(result.approximation(), single.approximation(), rtol=1e-7, atol=1e-9)
        assert result.error == pytest.approx(aa.metrics.relative_error(targets[k], result.approximation()), rel=1e-9)


def test_each_target_keeps_its_own_stopping_rule():
    # Target 0 is exactly representable and stops at tol; the others run on to their own ends.
    exact, _ = exact_abba(48, 40, 2, 2, seed=0)
    targets = stack()
    targets[0] = exact
    results = aa.fit(targets, "abba", (2, 2), seed=list(range(K)), restarts=6, tol=1e-9, max_iter=300)
    assert results[0].error <= 1e-8 and results[0].status == "converged"
    assert all(r.error > 0.3 for r in results[1:])
    assert len({r.iterations for r in results}) > 1
    for r in results:  # monotone histories, whatever the others did
        assert np.all(np.diff(r.history) <= 1e-12)


def test_per_target_base_and_shared_base():
    targets = stack()
    bases = np.stack([aa.targets.gaussian(48, 40, seed=50 + k) for k in range(K)])
    per_target = aa.fit(targets, "hira", 3, base=bases, seed=list(range(K)))
    for k in (0, K - 1):
        alone = aa.fit(targets[k], "hira", 3, base=bases[k], seed=k)
        assert per_target[k].error == pytest.approx(alone.error, rel=1e-9)
        np.testing.assert_array_equal(per_target[k].base, bases[k])


def test_one_seed_spawns_independent_reproducible_streams():
    targets = np.stack([aa.targets.gaussian(40, 30, seed=0)] * 3)  # the same target three times
    first = aa.fit(targets, "abba", (2, 2), solver="adam", init="random", steps=20, seed=7)
    again = aa.fit(targets, "abba", (2, 2), solver="adam", init="random", steps=20, seed=7)
    assert [r.error for r in first] == [r.error for r in again]
    assert len({r.error for r in first}) == 3  # each target drew its own start


def test_stack_callback_sees_the_running_targets_and_can_stop():
    seen = []

    def callback(iteration, errors, factors):
        seen.append((iteration, errors.copy(), factors["B1"].shape))
        return iteration == 3

    results = aa.fit(stack(), "abba", (2, 2), callback=callback)
    assert [s[0] for s in seen] == [1, 2, 3]
    assert all(s[1].shape == (K,) and s[2] == (K, 48, 2) for s in seen)
    assert all(r.status == "stopped" and r.iterations == 3 for r in results)


def test_torch_stack_in_torch_out_and_float32():
    targets = torch.as_tensor(stack(), dtype=torch.float32)
    results = aa.fit(targets, "abba", (2, 2), max_iter=5)
    assert all(isinstance(r.factors["B1"], torch.Tensor) and r.dtype == "float32" for r in results)
    assert all(r.bracket is not None and r.bracket.lower <= r.error + 1e-6 for r in results)
