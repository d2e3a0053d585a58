import math

import numpy as np
import pytest
import torch

import abba_analysis as aa
from abba_analysis import metrics


def test_truncated_svd_error_matches_a_direct_reconstruction():
    x = aa.targets.gaussian(30, 20, seed=0)
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    for r in (1, 5, 19, 20):
        approx = (u[:, :r] * s[:r]) @ vt[:r]
        assert metrics.truncated_svd_error(x, r) == pytest.approx(metrics.relative_error(x, approx), abs=1e-12)
        assert metrics.truncated_svd_error(x, r, relative=False) == pytest.approx(
            metrics.frobenius_error(x, approx), abs=1e-10)


def test_errors():
    t = np.eye(3)
    a = np.diag([1.0, 1.0, 0.0])
    assert metrics.relative_error(t, a) == pytest.approx(1 / math.sqrt(3))
    assert metrics.relative_error(t, a, squared=True) == pytest.approx(1 / 3)
    assert metrics.spectral_error(t, a) == pytest.approx(1.0)
    assert metrics.relative_error(torch.eye(3), torch.zeros(3, 3)) == 1.0
    with pytest.raises(ValueError, match="shape"):
        metrics.relative_error(t, np.eye(2))


def test_ranks():
    x = aa.targets.low_rank(40, 30, rank=6, seed=0)
    assert metrics.numerical_rank(x) == 6
    assert metrics.numerical_rank(x, tol=1e-300) >= 6
    assert metrics.effective_rank(np.diag([2.0, 2.0, 2.0, 0.0])) == pytest.approx(3.0)
    assert metrics.stable_rank(np.diag([2.0, 1.0])) == pytest.approx(5 / 4)
    assert metrics.energy_captured(np.diag([2.0, 1.0]), 1) == pytest.approx(0.8)
    s = metrics.singular_values(x)
    assert metrics.effective_rank(s) == pytest.approx(metrics.effective_rank(x))


def test_bracket():
    x = aa.targets.gaussian(40, 30, seed=0)
    b = metrics.abba_bracket(x, 3, 4)
    assert b.lower == pytest.approx(metrics.truncated_svd_error(x, 12))
    assert b.upper == pytest.approx(metrics.truncated_svd_error(x, 4))
    assert b.position(b.lower) == 0 and b.position(b.upper) == pytest.approx(1)
    # r1 r2 beyond min(m, n): the lower bound is zero.
    assert metrics.abba_bracket(x, 6, 6).lower == 0.0


def test_orthogonal_lora_error_formula():
    x = aa.targets.orthogonal(64, seed=0)
    for r in (1, 8, 63):
        assert metrics.truncated_svd_error(x, r) == pytest.approx(math.sqrt(1 - r / 64), abs=1e-12)


def test_randomized_bracket_matches_the_exact_one():
    x = aa.targets.power_law(300, 200, exponent=0.7, seed=0)
    exact = metrics.abba_bracket(x, 4, 5)
    estimate = metrics.abba_bracket(x, 4, 5, randomized=True)
    assert estimate.lower == pytest.approx(exact.lower, rel=1e-4)
    assert estimate.upper == pytest.approx(exact.upper, rel=1e-4)
