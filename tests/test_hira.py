import numpy as np
import torch
import pytest

import abba_analysis as aa


def exact_hira(m, n, r, seed):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((m, n))
    return base * (rng.standard_normal((m, r)) @ rng.standard_normal((r, n))), base


@pytest.mark.parametrize("r", [1, 3, 8])
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_hira_target_is_recovered_by_the_default_fit(r, seed):
    T, W0 = exact_hira(120, 90, r, seed)
    fit = aa.fit(T, "hira", rank=r, base=W0, seed=seed, tol=1e-9, max_iter=2000)
    assert fit.solver == "als"
    assert fit.error <= 1e-6


def test_divide_svd_is_exact_on_exact_targets_but_not_optimal_in_general():
    T, W0 = exact_hira(60, 50, 3, 0)
    assert aa.fit(T, "hira", rank=3, base=W0, solver="divide-svd").error < 1e-10
    # On a generic target, dividing by W0 optimises the wrong objective; the weighted fit,
    # started from it, can only improve (monotone exact solver).
    G = aa.targets.gaussian(60, 50, seed=1)
    divide = aa.fit(G, "hira", rank=3, base=W0, solver="divide-svd")
    weighted = aa.fit(G, "hira", rank=3, base=W0, init="divide-svd", seed=0)
    assert weighted.error <= divide.error
    assert weighted.history[0] == pytest.approx(divide.error, rel=1e-9)
    assert weighted.error < 0.99 * divide.error


def test_hira_adam_improves_and_respects_base():
    T, W0 = exact_hira(50, 40, 2, 3)
    fit = aa.fit(T, "hira", rank=2, base=W0, solver="adam", steps=400, seed=0)
    assert fit.error < fit.history[0] == pytest.approx(1.0)
    np.testing.assert_allclose(fit.approximation(), W0 * (fit.factors["B"] @ fit.factors["A"]), rtol=1e-12)


def test_float32_fit_of_a_nearly_singular_problem_stays_monotone():
    """W0 = T makes B A = ones exact: 15 of 16 rank directions are unidentifiable. Without the
    adaptive ridge, float32 rounding in the singular Gram matrices made the error climb back to > 1."""
    T = torch.randn(512, 512, generator=torch.Generator().manual_seed(0))
    fit = aa.fit(T, "hira", 16, base=T.clone(), seed=0, max_iter=15, rtol=0)
    assert np.all(np.diff(fit.history) <= 1e-6 * fit.history[:-1])
    assert fit.error < 1e-4
