import numpy as np
import pytest

import abba_analysis as aa


@pytest.mark.parametrize("kind", sorted(aa.targets.KINDS))
@pytest.mark.parametrize("shape", [(30, 30), (40, 25), (25, 40)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shape_dtype_and_seed(kind, shape, dtype):
    opts = {"rank": 5} if kind == "low_rank" else {}
    a = aa.targets.make(kind, *shape, seed=3, dtype=dtype, **opts)
    b = aa.targets.make(kind, *shape, seed=3, dtype=dtype, **opts)
    c = aa.targets.make(kind, *shape, seed=4, dtype=dtype, **opts)
    assert a.shape == shape and a.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("shape", [(50, 50), (60, 35), (35, 60)])
def test_orthogonal_has_unit_singular_values(shape):
    s = np.linalg.svd(aa.targets.orthogonal(*shape, seed=0), compute_uv=False)
    np.testing.assert_allclose(s, 1.0, atol=1e-12)


def test_low_rank_rank_and_noise_level():
    x = aa.targets.low_rank(50, 40, rank=7, seed=0)
    assert np.linalg.matrix_rank(x) == 7
    clean = aa.targets.low_rank(50, 40, rank=7, seed=1)
    noisy = aa.targets.low_rank(50, 40, rank=7, noise=0.1, seed=1)
    assert np.linalg.norm(noisy - clean) / np.linalg.norm(clean) == pytest.approx(0.1)


def test_sparse_density():
    x = aa.targets.sparse(100, 50, density=0.04, seed=0)
    assert np.count_nonzero(x) == 200


def test_spectrum_and_power_law():
    s = np.array([3.0, 2.0, 0.5])
    x = aa.targets.with_spectrum(s, 20, 10, seed=0)
    np.testing.assert_allclose(np.linalg.svd(x, compute_uv=False)[:4], [3.0, 2.0, 0.5, 0.0], atol=1e-12)
    p = aa.targets.power_law(30, 20, exponent=2.0, seed=0)
    np.testing.assert_allclose(np.linalg.svd(p, compute_uv=False), np.arange(1, 21) ** -2.0, rtol=1e-10)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: aa.targets.gaussian(0), "m must be"),
        (lambda: aa.targets.low_rank(5, rank=6), "rank must be"),
        (lambda: aa.targets.sparse(5, density=0), "density"),
        (lambda: aa.targets.gaussian(5, dtype="float16"), "dtype"),
        (lambda: aa.targets.make("banded", 5), "kind must be one of"),
        (lambda: aa.targets.with_spectrum([1.0, -1.0], 5), "singular_values"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_literature_constructions_match_the_lora_errors_of_fig2():
    """At 768 x 768 and r = 72 (the paper's setting), LoRA's error is 0.42 on i.i.d. U[0, 1] targets and
    0.20 with sigma_i = exp(-i/45): the values that tell Fig. 2's constructions apart."""
    uniform = aa.targets.uniform(768, seed=0)
    assert 0 <= uniform.min() and uniform.max() <= 1 and abs(uniform.mean() - 0.5) < 0.01
    assert aa.metrics.truncated_svd_error(uniform, 72) == pytest.approx(0.42, abs=0.01)
    decay = aa.targets.exp_decay(768, seed=0)
    s = np.linalg.svd(decay, compute_uv=False)
    np.testing.assert_allclose(s, np.exp(-np.arange(768) / 45.0), atol=1e-12)
    assert aa.metrics.truncated_svd_error(decay, 72) == pytest.approx(0.20, abs=0.01)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        aa.targets.check("exp_decay", 8, 8, scale=float("nan"))
