"""Exact ABBA products are found: the algebraic (Segre) start, and fit's use of it."""

import warnings

import numpy as np
import pytest
import torch

import abba_analysis as aa
from abba_analysis import segre
from conftest import exact_abba

RANK_PAIRS = [(1, 3), (2, 2), (2, 3), (3, 3), (3, 4), (4, 2), (4, 4)]


@pytest.mark.parametrize("ranks", RANK_PAIRS)
def test_default_fit_recovers_exact_products_in_at_least_90_percent_of_seeds(ranks):
    errors = [aa.fit(exact_abba(200, 150, *ranks, seed=seed)[0], "abba", ranks, seed=seed).error
              for seed in range(10)]
    assert np.mean(np.array(errors) <= 1e-6) >= 0.9, errors


def test_default_fit_recovers_a_float32_product():
    T, _ = exact_abba(200, 150, 3, 3, seed=3)
    fit = aa.fit(T.astype(np.float32), "abba", (3, 3), seed=0)
    assert fit.error <= 1e-5 and fit.init == "segre"


def test_segre_factors_are_exact_without_iterations_on_both_orientations():
    for shape in [(200, 150), (30, 200)]:  # 30 rows are too few for the quadrics: the columns carry them
        T, _ = exact_abba(*shape, 3, 3, seed=1)
        f = segre.segre_factors(torch.as_tensor(T), 3, 3, rng=np.random.default_rng(0))
        assert {k: tuple(v.shape) for k, v in f.items()} == {"B1": (shape[0], 3), "A1": (3, shape[1]),
                                                             "B2": (shape[0], 3), "A2": (3, shape[1])}
        approx = (f["B1"] @ f["A1"]) * (f["B2"] @ f["A2"])
        assert aa.metrics.relative_error(T, approx.numpy()) <= 1e-9


@pytest.mark.parametrize("r1,r2", [(2, 2), (3, 3), (2, 4)])
def test_quadric_space_has_the_dimension_of_the_2x2_minors(r1, r2):
    # Rows kron(b1_i, b2_i) are rank-one r1 x r2 matrices: exactly C(r1,2) C(r2,2) quadrics vanish on them.
    rng = np.random.default_rng(0)
    rows = np.einsum("ia,ib->iab", rng.standard_normal((300, r1)), rng.standard_normal((300, r2))).reshape(300, -1)
    quadrics = segre._quadrics(rows, segre.quadric_count(r1, r2))
    assert np.abs(np.einsum("ir,krs,is->ki", rows, quadrics, rows)).max() < 1e-10
    r = r1 * r2
    iu = np.triu_indices(r)
    design = rows[:, iu[0]] * rows[:, iu[1]]
    s = np.linalg.svd(design, compute_uv=False)
    assert np.sum(s < 1e-10 * s[0]) == segre.quadric_count(r1, r2)


def test_two_tangent_planes_meet_in_the_crossed_products():
    # In Segre coordinates (G = I) the plane of two points p_a q_a, p_b q_b holds p_a q_b and p_b q_a.
    rng = np.random.default_rng(1)
    r1 = r2 = 3
    p, q = rng.standard_normal((2, r1)), rng.standard_normal((2, r2))
    rows = np.einsum("ia,ib->iab", rng.standard_normal((100, r1)), rng.standard_normal((100, r2))).reshape(100, -1)
    quadrics = segre._quadrics(rows, segre.quadric_count(r1, r2))
    points = [np.kron(p[i], q[i]) for i in range(2)]
    tangents = [np.einsum("krs,s->kr", quadrics, x) for x in points]
    found = segre._plane_points(quadrics, *tangents)
    expected = [np.kron(p[0], q[1]), np.kron(p[1], q[0])]
    for e in expected:
        e = e / np.linalg.norm(e)
        assert min(min(np.linalg.norm(f - e), np.linalg.norm(f + e)) for f in found) < 1e-8


def test_segre_init_falls_back_where_it_does_not_apply():
    T = torch.as_tensor(aa.targets.gaussian(20, 20, seed=0))  # (4, 4) needs 100 rows or columns
    assert not segre.applicable((20, 20), 4, 4)
    with pytest.raises(ValueError, match="needs r1 r2 <= min"):
        segre.segre_factors(T, 4, 4, rng=np.random.default_rng(0))
    start = aa.inits.initialize("segre", "abba", (20, 20), (4, 4), target=T, seed=0)
    fallback = aa.inits.initialize("svd-ones", "abba", (20, 20), (4, 4), target=T, seed=0)
    torch.testing.assert_close(start["B1"], fallback["B1"])


def test_general_targets_keep_the_default_start():
    fit = aa.fit(aa.targets.gaussian(80, 60, seed=0), "abba", (3, 3), seed=0)
    assert fit.init == "svd-ones" and [(s.init, s.stage) for s in fit.starts] == [
        ("svd-ones", "final"), ("sqrt-target", "literature")]


def test_a_fit_far_above_the_bound_on_a_low_rank_target_says_so():
    # A generic rank-9 matrix is not a (3, 3) ABBA product: the SVD bound is 0, no fit reaches it.
    rng = np.random.default_rng(0)
    T = rng.standard_normal((120, 9)) @ rng.standard_normal((9, 100))
    with pytest.warns(UserWarning, match="far above the rank-9 SVD bound"):
        fit = aa.fit(T, "abba", (3, 3), seed=0, max_iter=50)
    assert fit.error > 1e-3 and "far above the rank-9 SVD bound" in fit.message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an ordinary target: no such note
        assert "far above" not in aa.fit(aa.targets.gaussian(60, 50, seed=0), "abba", (2, 2), max_iter=20).message
