"""The literature's solver (``aa.solvers.literature``) and the default ABBA fit's second start, which runs it."""

import networkx as nx  # a dependency of torch
import numpy as np
import pytest
import torch

import abba_analysis as aa
from abba_analysis.solvers.literature import literature_bcd, literature_sweeps


def sqrt_start(t: torch.Tensor, r: int) -> dict[str, torch.Tensor]:
    return aa.inits.initialize("sqrt-target", "abba", tuple(t.shape), (r, r), target=t, seed=0, dtype=t.dtype)


def test_a_stack_runs_each_target_as_alone():
    """Each target of a stack keeps its own β, budget and stopping rule: the stack's runs equal lone
    runs (to rounding, over a few sweeps: the path is chaotic over hundreds)."""
    targets = torch.stack([torch.as_tensor(aa.targets.make(kind, 40, 30, seed=1)) for kind in
                           ("gaussian", "orthogonal", "sparse")])
    starts = [sqrt_start(t, 3) for t in targets]
    budgets = [12, 5, 9]
    runs = literature_sweeps(targets, {k: torch.stack([s[k] for s in starts]) for k in starts[0]}, budgets)
    for t, start, budget, (found, history, seconds, status) in zip(targets, starts, budgets, runs, strict=True):
        alone, alone_history, _ = literature_bcd(t, start, max_iter=budget)
        assert len(history) == budget + 1 == len(seconds) and status == "max_iter"
        np.testing.assert_allclose(history, alone_history, rtol=1e-9)
        for k in found:
            torch.testing.assert_close(found[k], alone[k], rtol=1e-7, atol=1e-9)
        assert min(history) < history[0]


def test_the_default_abba_fit_runs_the_literature_solver_second():
    """Davis' southern-women graph at (3, 3): the package's solver from svd-ones ends in a higher
    minimum than the literature's solver from its own start, so the default returns the latter's,
    as the literature's solver alone finds it; its sweeps continue the callback's count."""
    T = nx.to_numpy_array(nx.davis_southern_women_graph())
    first = aa.fit(T, "abba", (3, 3), seed=0, init="svd-ones")
    assert [s.stage for s in first.starts] == ["final"]  # an init given: that start alone
    sweeps, seen = [], []

    def record(iteration, error, factors):
        sweeps.append(iteration)
        seen.append(np.linalg.norm(aa.parameterizations.get_method("abba").materialize(factors).numpy() - T) / np.linalg.norm(T) - error)

    fit = aa.fit(T, "abba", (3, 3), seed=0, callback=record)
    assert max(np.abs(seen)) < 1e-9  # every start's factors as the target's own
    assert [(s.init, s.stage) for s in fit.starts] == [("svd-ones", "final"), ("sqrt-target", "literature")]
    literature = fit.starts[1]
    assert literature.iterations <= first.iterations  # its budget: the first start's sweeps
    assert sweeps == list(range(1, first.iterations + literature.iterations + 1))
    t = torch.as_tensor(T)
    _, history, _ = literature_bcd(t, sqrt_start(t, 3), max_iter=first.iterations)
    assert fit.init == "sqrt-target" and fit.error == pytest.approx(history.min(), rel=1e-6)
    assert fit.error < first.error * (1 - 1e-3)
    assert fit.error == pytest.approx(np.linalg.norm(fit.approximation() - T) / np.linalg.norm(T), rel=1e-9)
    assert fit.history[-1] == pytest.approx(fit.error, rel=1e-9) and fit.iterations == len(fit.history) - 1


def test_the_literature_start_gets_the_first_start_budget_and_keeps_the_better():
    T = aa.targets.gaussian(50, 40, seed=3)
    fit = aa.fit(T, "abba", (3, 3), seed=0, max_iter=15, rtol=0)
    first, literature = fit.starts
    assert first.iterations == 15 and literature.iterations <= 15
    assert fit.error == pytest.approx(min(first.error, literature.error), rel=1e-6)


def test_a_stack_default_fit_equals_lone_fits():
    targets = np.stack([aa.targets.gaussian(30, 24, seed=s) for s in range(3)])
    fits = aa.fit(targets, "abba", (2, 2), seed=[0, 1, 2], max_iter=40)
    for k, fit in enumerate(fits):
        alone = aa.fit(targets[k], "abba", (2, 2), seed=k, max_iter=40)
        assert [(s.init, s.iterations) for s in fit.starts] == [(s.init, s.iterations) for s in alone.starts]
        assert fit.error == pytest.approx(alone.error, rel=1e-6)
