"""The literature's solver (``aa.solvers.literature``) and the default ABBA fit's second start, which runs it."""

import networkx as nx  # a dependency of torch
import numpy as np
import pytest
import torch

import abba_analysis as aa
from abba_analysis.solvers.literature import PRUNE_AFTER, PRUNE_WINDOW, hopeless, literature_bcd, literature_sweeps


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


def test_hopeless_extrapolates_the_recent_rate_with_slack():
    """Abandon only after a quarter of the budget, and only when four times the last window's mean
    descent, kept for every sweep left, would not reach the goal."""
    budget = 100
    falling = [1.0 - 0.001 * i for i in range(41)]  # 0.96 after 40 sweeps, 0.001 per sweep
    # 60 sweeps left at 4 x 0.001 reach 0.72: a goal of 0.70 is out of reach, 0.75 is not
    assert hopeless(falling, 0.70, budget) and not hopeless(falling, 0.75, budget)
    assert not hopeless(falling[:20], 0.0, budget)  # before a quarter of the budget: no verdict
    assert not hopeless(falling, 0.0, 40)  # the budget is spent: the run ends by its budget anyway
    flat = [0.5] * 41
    assert hopeless(flat, 0.4999, budget) and not hopeless(flat, 0.5, budget)
    assert PRUNE_AFTER * budget >= PRUNE_WINDOW  # the window fits in the sweeps before a verdict
    rising_then_flat = [1.0, 0.5] + [0.6] * 39  # failed sweeps raise the error: the best so far counts
    assert not hopeless(rising_then_flat, 0.5, budget) and hopeless(rising_then_flat, 0.49, budget)


def test_a_goal_abandons_runs_that_cannot_reach_it():
    """A target whose goal is below what its run reaches in the budget is abandoned early, above
    its goal, with its path up to then equal to the unpruned run's; an easy goal changes nothing."""
    targets = torch.stack([torch.as_tensor(aa.targets.make("gaussian", 40, 30, seed=s)) for s in range(2)])
    starts = [sqrt_start(t, 3) for t in targets]
    stacked = {k: torch.stack([s[k] for s in starts]) for k in starts[0]}
    budgets = [200, 200]
    free = literature_sweeps(targets, stacked, budgets, stall=10**9, rtol=0)
    goals = [0.5 * free[0][1].min(), 0.0]  # out of reach; unreachable too (the rate is 0 near the end)
    pruned = literature_sweeps(targets, stacked, budgets, stall=10**9, rtol=0, goals=goals)
    for (_, history, _, status), (_, full, _, _), goal in zip(pruned, free, goals, strict=True):
        assert status == "abandoned" and PRUNE_AFTER * 200 <= len(history) - 1 < 200
        assert min(history) > goal
        np.testing.assert_allclose(history, full[: len(history)], rtol=1e-9)
    easy = literature_sweeps(targets, stacked, budgets, stall=10**9, rtol=0, goals=[2.0, 2.0])
    for (_, history, _, status), (_, full, _, _) in zip(easy, free, strict=True):
        assert status == "max_iter"
        np.testing.assert_allclose(history, full, rtol=1e-9)
