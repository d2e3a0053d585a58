import math

import numpy as np
import pytest
import torch

import abba_analysis as aa
from abba_analysis.linalg import gram_truncated_svd, truncated_svd


@pytest.mark.parametrize("r", [1, 12, 24, 100])
def test_orthogonal_target_error_is_sqrt_one_minus_r_over_n(r):
    T = aa.targets.orthogonal(256, seed=0)
    assert aa.fit(T, "lora", rank=r).error == pytest.approx(math.sqrt(1 - r / 256), abs=1e-6)


@pytest.mark.parametrize("kind", ["gaussian", "sparse", "power_law"])
def test_lora_error_equals_svd_tail(kind):
    T = aa.targets.make(kind, 60, 45, seed=1)
    s = np.linalg.svd(T, compute_uv=False)
    for r in (3, 10):
        fit = aa.fit(T, "lora", rank=r)
        assert fit.error == pytest.approx(math.sqrt(np.sum(s[r:] ** 2) / np.sum(s**2)), abs=1e-12)
        assert fit.status == "exact" and fit.init is None
        np.testing.assert_allclose(fit.approximation(), fit.factors["B"] @ fit.factors["A"])


def test_randomized_svd_matches_exact_svd():
    T = aa.targets.power_law(300, 200, exponent=1.0, seed=2)
    for r in (5, 20):
        exact = aa.fit(T, "lora", rank=r, solver="svd")
        rand = aa.fit(T, "lora", rank=r, solver="rsvd", seed=0)
        assert rand.error == pytest.approx(exact.error, rel=1e-4)
        assert rand.error >= exact.error - 1e-12  # Eckart-Young: nothing beats the exact SVD
    same = aa.fit(T, "lora", rank=5, solver="rsvd", seed=0)
    np.testing.assert_array_equal(same.factors["B"], aa.fit(T, "lora", rank=5, solver="rsvd", seed=0).factors["B"])


def test_randomized_svd_on_a_gaussian_target_is_close():
    """A flat spectrum is the hard case for randomized SVD; power iterations keep it close."""
    T = aa.targets.gaussian(200, 150, seed=3)
    exact = aa.fit(T, "lora", rank=10)
    rand = aa.fit(T, "lora", rank=10, solver="rsvd", seed=0, power_iters=8)
    assert rand.error == pytest.approx(exact.error, rel=2e-3)


@pytest.mark.parametrize("shape", [(120, 80), (80, 120)])
def test_gram_truncated_svd_matches_the_full_svd(shape):
    T = torch.from_numpy(aa.targets.power_law(*shape, exponent=1.0, seed=4))
    u, s, vh = gram_truncated_svd(T, 12)
    u_ref, s_ref, vh_ref = truncated_svd(T, 12)
    np.testing.assert_allclose(s.numpy(), s_ref.numpy(), rtol=1e-12)
    np.testing.assert_allclose(u.numpy(), u_ref.numpy(), atol=1e-10)  # same signs as truncated_svd
    np.testing.assert_allclose(vh.numpy(), vh_ref.numpy(), atol=1e-10)


def test_gram_truncated_svd_of_a_rank_deficient_matrix_keeps_an_orthonormal_basis():
    rng = np.random.default_rng(5)
    T = torch.from_numpy(rng.standard_normal((60, 3)) @ rng.standard_normal((3, 40)))
    u, s, vh = gram_truncated_svd(T, 6)
    np.testing.assert_allclose((u.T @ u).numpy(), np.eye(6), atol=1e-12)
    np.testing.assert_allclose((vh @ vh.T).numpy(), np.eye(6), atol=1e-12)
    assert float(s[3:].max()) < 1e-12 * float(s[0])
    np.testing.assert_allclose(((u * s) @ vh).numpy(), T.numpy(), atol=1e-12 * float(s[0]))


def test_adam_lora_approaches_the_closed_form():
    T = aa.targets.gaussian(48, 32, seed=0)
    exact = aa.fit(T, "lora", rank=4)
    adam = aa.fit(T, "lora", rank=4, solver="adam", steps=2000, lr=2e-2, seed=0)
    assert adam.history[-1] < adam.history[0]
    assert exact.error - 1e-12 <= adam.error < exact.error * 1.01
