import inspect

import numpy as np
import torch
import pytest

import abba_analysis as aa
from abba_analysis import metrics
from abba_analysis.solvers import als
from abba_analysis.workspace import Workspace

KINDS = {
    "low_rank": dict(rank=20),
    "sparse": dict(density=0.05),
    "orthogonal": {},
    "gaussian": {},
}


@pytest.mark.parametrize("extrapolate,inexact", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_als_error_history_never_rises(kind, extrapolate, inexact):
    T = aa.targets.make(kind, 80, 60, seed=0)
    # (6, 6) at 80 x 60: exact sweeps would need the dense Gram products, so inexact ones run first
    fit = aa.fit(T, "abba", rank=(6, 6), seed=0, max_iter=150, extrapolate=extrapolate, inexact=inexact)
    h = fit.history
    assert len(h) == fit.iterations + 1 > 10
    assert np.all(np.diff(h) <= 1e-12 * h[:-1]), np.max(np.diff(h))
    assert fit.error == pytest.approx(h[-1], abs=1e-12)


def test_extrapolation_reaches_lower_error_in_the_same_sweeps():
    T = aa.targets.orthogonal(96, seed=0)
    plain = aa.fit(T, "abba", rank=(4, 4), seed=0, max_iter=60, rtol=0, extrapolate=False)
    fast = aa.fit(T, "abba", rank=(4, 4), seed=0, max_iter=60, rtol=0)
    assert fast.error < plain.error


@pytest.mark.parametrize("method,kind,dtype", [("abba", "orthogonal", "float64"), ("abba", "gaussian", "float32"),
                                               ("hira", "orthogonal", "float64"), ("hira", "sparse", "float32")])
def test_block_momentum_beats_plain_sweeps(method, kind, dtype):
    """With β up to 1 the float32 fits here stall above plain sweeps (the iterate oscillates)."""
    T = aa.targets.make(kind, 96, 80, seed=0, dtype=dtype)
    rank, base = ((4, 4), None) if method == "abba" else (8, aa.targets.gaussian(96, 80, seed=7, dtype=dtype))
    kwargs = dict(base=base, seed=0, max_iter=60, rtol=0)
    plain = aa.fit(T, method, rank, extrapolate=False, **kwargs)
    block = aa.fit(T, method, rank, **kwargs)
    assert block.error < plain.error
    assert np.all(np.diff(block.history) <= 1e-12 * block.history[:-1])


def test_block_momentum_waits_for_the_slow_tail(monkeypatch):
    """HiRA with W0 = T can reach zero error, and plain sweeps shrink it fast; per-block momentum
    from the start would hold it to a rate of about β per sweep (each block's overshoot survives the
    sweep), so it starts only once a sweep gains less than MOMENTUM_SWITCH."""
    from abba_analysis.solvers import als

    T = torch.randn(200, 160, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kwargs = dict(base=T, seed=0, max_iter=15, rtol=0)
    assert aa.fit(T, "hira", 8, **kwargs).error < 1e-9
    monkeypatch.setattr(als, "MOMENTUM_SWITCH", float("inf"))  # momentum from the second sweep on
    assert aa.fit(T, "hira", 8, **kwargs).error > 1e-3


def test_block_momentum_extrapolates_each_factor_against_the_sweeps_start():
    """One ABBA sweep with per-block momentum, checked step by step: each factor's exact update x⁺
    becomes x⁺ + β (x⁺ - x_start) before the next factor is solved against it (A before B)."""
    from abba_analysis.solvers.als import _abba_sweep, update_cols, update_rows

    gen = torch.Generator().manual_seed(0)
    T = torch.randn(1, 30, 20, generator=gen, dtype=torch.float64)
    shapes = {"B1": (30, 3), "A1": (3, 20), "B2": (30, 2), "A2": (2, 20)}
    start = {k: torch.randn(1, *shape, generator=gen, dtype=torch.float64) for k, shape in shapes.items()}
    ridge, beta = torch.full((1,), 1e-10, dtype=torch.float64), torch.full((1,), 0.7, dtype=torch.float64)
    swept = {k: v.clone() for k, v in start.items()}
    _abba_sweep(T, swept, ridge, momentum=(beta, start))
    f = {k: v.clone() for k, v in start.items()}
    for (b, a), (bo, ao) in ((("B2", "A2"), ("B1", "A1")), (("B1", "A1"), ("B2", "A2"))):
        weight = f[bo] @ f[ao]
        w2 = weight ** 2
        gram_cols = torch.einsum("kmn,kmi,kmj->knij", w2, f[b], f[b])
        exact = update_cols(T, weight, f[b], f[a], gram_cols, ridge)
        f[a] = exact + 0.7 * (exact - start[a])
        gram_rows = torch.einsum("kmn,kin,kjn->kmij", w2, f[a], f[a])
        exact = update_rows(T, weight, f[b], f[a], gram_rows, ridge)
        f[b] = exact + 0.7 * (exact - start[b])
    for k in f:
        torch.testing.assert_close(swept[k], f[k], rtol=1e-10, atol=1e-12)


def test_adam_ends_below_its_start():
    T = aa.targets.gaussian(64, 48, seed=0)
    fit = aa.fit(T, "abba", rank=(3, 3), solver="adam", steps=300, seed=0)
    assert fit.init == "abba-paper"
    assert fit.history[0] == pytest.approx(1.0)  # the paper's init starts at ΔW = 0
    assert fit.error < fit.history[0] and len(fit.history) == 301
    assert fit.error == pytest.approx(fit.history.min(), rel=1e-6)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("ranks", [(2, 2), (4, 4), (3, 5)])
def test_default_fit_never_ends_above_lora_at_rank_r1(kind, ranks):
    T = aa.targets.make(kind, 96, 80, seed=0, **KINDS[kind])
    fit = aa.fit(T, "abba", rank=ranks, seed=0)
    lora_r1 = metrics.truncated_svd_error(T, ranks[0])
    assert fit.error <= lora_r1 + 1e-12
    assert fit.bracket.lower - 1e-12 <= fit.error <= fit.bracket.upper + 1e-12
    assert 0 <= fit.bracket_position <= 1 + 1e-9


@pytest.mark.parametrize("rows", [True, False])
def test_inexact_update_with_r_steps_is_the_exact_block_solve(rows):
    """Conjugate gradients end at the exact solution after r steps (one per unknown, float64): the
    inexact update then equals each row's (column's) least-squares solution, computed here by lstsq."""
    from abba_analysis.solvers.als import inexact_update

    gen = torch.Generator().manual_seed(0)
    m, n, r = 30, 24, 4
    T = torch.randn(1, m, n, generator=gen, dtype=torch.float64)
    W = torch.randn(1, m, n, generator=gen, dtype=torch.float64)
    B = torch.randn(1, m, r, generator=gen, dtype=torch.float64)
    A = torch.randn(1, r, n, generator=gen, dtype=torch.float64)
    updated = inexact_update(T, W, W * W, B, A, rows, steps=r)
    t, w, b, a = T[0].numpy(), W[0].numpy(), B[0].numpy(), A[0].numpy()
    if rows:  # row i: min_x || (x a) * w[i] - t[i] ||
        expected = np.stack([np.linalg.lstsq((a * w[i]).T, t[i], rcond=None)[0] for i in range(m)])
    else:  # column j: min_y || (b y) * w[:, j] - t[:, j] ||
        expected = np.stack([np.linalg.lstsq(b * w[:, j:j + 1], t[:, j], rcond=None)[0] for j in range(n)], axis=1)
    np.testing.assert_allclose(updated[0].numpy(), expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("rows", [True, False])
def test_inexact_update_is_exact_in_one_step_for_a_rank_one_weight_square(rows):
    """Where the squared weight is an outer product a b^T, the preconditioner is each row's own
    normal matrix (up to its 1e-6 ridge): one preconditioned step is the exact solve."""
    from abba_analysis.solvers.als import inexact_update

    gen = torch.Generator().manual_seed(1)
    m, n, r = 40, 32, 5
    T = torch.randn(1, m, n, generator=gen, dtype=torch.float64)
    W = torch.rand(1, m, 1, generator=gen, dtype=torch.float64) + 0.5
    W = W * (torch.rand(1, 1, n, generator=gen, dtype=torch.float64) + 0.5)  # rank one, so W^2 is too
    B = torch.randn(1, m, r, generator=gen, dtype=torch.float64)
    A = torch.randn(1, r, n, generator=gen, dtype=torch.float64)
    one = inexact_update(T, W, W * W, B, A, rows, steps=1)
    full = inexact_update(T, W, W * W, B, A, rows, steps=r)
    start = B if rows else A
    assert torch.linalg.norm(one - full) <= 1e-5 * torch.linalg.norm(full - start)
    # Unpreconditioned, one step is far off: the check above can fail.
    general = torch.randn(1, m, n, generator=gen, dtype=torch.float64)
    one = inexact_update(T, general, general ** 2, B, A, rows, steps=1)
    full = inexact_update(T, general, general ** 2, B, A, rows, steps=r)
    assert torch.linalg.norm(one - full) > 1e-2 * torch.linalg.norm(full - start)


def test_inexact_sweeps_hand_over_to_exact_ones():
    """The default ABBA fit at ranks where exact sweeps need dense Gram products sweeps inexactly
    until a sweep gains less than INEXACT_RTOL, then exactly:
    one history, monotone, every sweep an iteration and a callback, and the exact sweeps gain less
    than rtol at the end."""
    T = aa.targets.gaussian(96, 80, seed=0)
    kinds = []
    original = als._abba_sweep

    def spy(*args, **kwargs):
        kinds.append(inspect.signature(original).bind(*args, **kwargs).arguments.get("inexact", False))
        return original(*args, **kwargs)

    seen = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(als, "_abba_sweep", spy)
        fit = aa.fit(T, "abba", (8, 8), seed=0, init="svd-ones", callback=lambda it, err, f: seen.append((it, err)))
    switch = kinds.index(False)
    assert switch > 0 and all(kinds[:switch]) and not any(kinds[switch:])
    assert [it for it, _ in seen] == list(range(1, fit.iterations + 1)) == list(range(1, len(fit.history)))
    np.testing.assert_array_equal([e for _, e in seen], fit.history[1:])
    assert np.all(np.diff(fit.history) <= 1e-12 * fit.history[:-1])
    assert fit.status == "converged" and fit.history[-2] - fit.history[-1] <= 1e-7 * fit.history[-1]
    exact_only = aa.fit(T, "abba", (8, 8), seed=0, init="svd-ones", inexact=False)
    assert fit.error <= exact_only.error * (1 + 1e-3)
    kinds.clear()  # at (4, 4) the exact sweeps' low-rank Gram route is cheap: they run alone
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(als, "_abba_sweep", spy)
        aa.fit(T, "abba", (4, 4), seed=0, max_iter=5)
    assert kinds and not any(kinds)


def test_abba_beats_lora_at_equal_budget_on_gaussian():
    T = aa.targets.gaussian(96, seed=0)
    lora = aa.fit(T, "lora", rank=16)
    abba = aa.fit(T, "abba", rank=aa.budget.abba_ranks_for_lora(16), seed=0)
    assert abba.num_params == lora.num_params
    assert abba.error < lora.error


def test_approximation_matches_factors_and_error():
    T = aa.targets.gaussian(40, 30, seed=0)
    fit = aa.fit(T, "abba", rank=(2, 3), seed=0)
    f = fit.factors
    approx = fit.approximation()
    # torch and numpy may sum the inner products in different orders; where B1 A1 cancels to nearly
    # zero only an absolute bound (relative to the matrix's scale) holds for that rounding.
    np.testing.assert_allclose(approx, (f["B1"] @ f["A1"]) * (f["B2"] @ f["A2"]), rtol=1e-12,
                               atol=1e-12 * np.abs(approx).max())
    assert metrics.relative_error(T, approx) == pytest.approx(fit.error, abs=1e-12)


def test_callback_can_stop_a_fit():
    T = 37 * aa.targets.gaussian(40, 30, seed=0)  # not of unit RMS: the solver works on T / RMS
    seen = []

    def record(it, err, f):
        seen.append((err, metrics.relative_error(T, (f["B1"] @ f["A1"]) * (f["B2"] @ f["A2"]))))
        return it >= 3

    fit = aa.fit(T, "abba", rank=(2, 2), seed=0, callback=record)
    assert fit.status == "stopped" and fit.iterations == 3 and [e for e, _ in seen] == list(fit.history[1:])
    np.testing.assert_allclose([e for _, e in seen], fit.history[1:], rtol=1e-12)  # factors of T itself


def test_adam_state_matches_torch_optim_adam():
    from abba_analysis.solvers.adam import AdamState

    gen = torch.Generator().manual_seed(0)
    ours = [torch.randn(5, 3, generator=gen, dtype=torch.float64) for _ in range(2)]
    theirs = [p.clone().requires_grad_(True) for p in ours]
    state = AdamState(ours, (0.9, 0.999), 1e-8)
    reference = torch.optim.Adam(theirs, lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    for step in range(20):
        grads = [torch.randn(5, 3, generator=gen, dtype=torch.float64) for _ in range(2)]
        lr = 0.01 * (1 - step / 20)
        state.step(grads, lr)
        for g, p in zip(grads, theirs, strict=True):
            p.grad = g.clone()
        for group in reference.param_groups:
            group["lr"] = lr
        reference.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-14)


def test_both_gram_routes_equal_the_explicit_per_row_grams():
    from abba_analysis.solvers.als import dense_weight_gram, lowrank_weight_gram

    gen = torch.Generator().manual_seed(0)
    left = torch.randn(2, 30, 4, generator=gen, dtype=torch.float64)  # a batch of two targets
    right = torch.randn(2, 4, 20, generator=gen, dtype=torch.float64)
    basis = torch.randn(2, 5, 20, generator=gen, dtype=torch.float64)
    weight = left @ right
    explicit = torch.stack([torch.stack([basis[k] @ torch.diag(weight[k, i] ** 2) @ basis[k].T for i in range(30)])
                            for k in range(2)])
    torch.testing.assert_close(dense_weight_gram(weight * weight, basis), explicit, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lowrank_weight_gram(left, right, basis), explicit, rtol=1e-12, atol=1e-12)
    workspace = Workspace()  # its buffers are reused (rows padded), for a smaller rank after a larger one
    for rank in (5, 3):
        expected = torch.stack([torch.stack([basis[k, :rank] @ torch.diag(weight[k, i] ** 2) @ basis[k, :rank].T
                                             for i in range(30)]) for k in range(2)])
        got = dense_weight_gram(weight * weight, basis[:, :rank], workspace)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_row_and_column_updates_solve_the_proximal_least_squares_problems():
    """Each row of update_rows (column of update_cols) is the minimiser of its own proximal
    least-squares problem, checked against numpy's lstsq on the stacked system."""
    from abba_analysis.solvers.als import dense_weight_gram, update_cols, update_rows

    gen = torch.Generator().manual_seed(1)
    m, n, r, ridge = 12, 9, 3, 1e-3
    target, weight = (torch.randn(1, m, n, generator=gen, dtype=torch.float64) for _ in range(2))
    left = torch.randn(1, m, r, generator=gen, dtype=torch.float64)
    right = torch.randn(1, r, n, generator=gen, dtype=torch.float64)
    squared, lam = weight * weight, torch.tensor([ridge], dtype=torch.float64)
    rows = update_rows(target, weight, left, right, dense_weight_gram(squared, right), lam)[0]
    cols = update_cols(target, weight, left, right, dense_weight_gram(squared.mT, left.mT), lam)[0]

    def proximal_lstsq(design, rhs, centre, diag_mean, diag_mean_max):
        mu = np.sqrt(ridge * diag_mean + np.finfo(np.float64).eps * diag_mean_max)
        stacked = np.vstack([design, mu * np.eye(design.shape[1])])
        return np.linalg.lstsq(stacked, np.concatenate([rhs, mu * centre]), rcond=None)[0]

    T, W, L, R = (x[0].numpy() for x in (target, weight, left, right))
    means = [np.mean(np.sum((R * W[i]) ** 2, axis=1)) for i in range(m)]
    expected_rows = np.stack([proximal_lstsq((R * W[i]).T, T[i], L[i], means[i], max(means)) for i in range(m)])
    means = [np.mean(np.sum((L * W[:, j, None]) ** 2, axis=0)) for j in range(n)]
    expected_cols = np.stack([proximal_lstsq(L * W[:, j, None], T[:, j], R[:, j], means[j], max(means))
                              for j in range(n)], axis=1)
    np.testing.assert_allclose(rows.numpy(), expected_rows, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cols.numpy(), expected_cols, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("r", [1, 3, 8])
def test_lane_wise_cholesky_solves_like_lu_and_flags_indefinite_systems(r):
    from abba_analysis.linalg import cholesky_solve_lanes

    gen = torch.Generator().manual_seed(r)
    x = torch.randn(2, 50, r, r + 2, generator=gen, dtype=torch.float64)
    gram = x @ x.mT + 1e-3 * torch.eye(r, dtype=torch.float64)  # (2, 50, r, r), positive definite
    gram[1, 7] = -torch.eye(r, dtype=torch.float64)  # not positive definite
    rhs = torch.randn(2, 50, r, generator=gen, dtype=torch.float64)
    expected = torch.linalg.solve(gram, rhs[..., None])[..., 0]
    lanes = cholesky_solve_lanes(gram.permute(0, 2, 3, 1).contiguous(), rhs.mT.contiguous()).mT
    finite = torch.isfinite(lanes).all(dim=-1)
    assert not finite[1, 7] and int(finite.sum()) == 99
    torch.testing.assert_close(lanes[finite], expected[finite], rtol=1e-10, atol=1e-12)


def test_lane_wise_and_lu_proximal_steps_agree(monkeypatch):
    """Both routes of proximal_step give the same steps, an indefinite Gram (rounding can make one)
    falling back to LU and an all-zero one staying solvable through the ridge's floor."""
    from abba_analysis.solvers import als

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 40, 4, 9, generator=gen, dtype=torch.float64)
    gram = x @ x.mT
    gram[0, 5] = torch.diag(torch.tensor([1.0, 1.0, 1.0, -1e-3], dtype=torch.float64))
    gram[2, 9] = 0
    gradient = torch.randn(3, 40, 4, generator=gen, dtype=torch.float64)
    ridge = torch.tensor([1e-6, 1e-3, 1e-10], dtype=torch.float64)
    monkeypatch.setattr(als, "LANE_SOLVE_MIN_SYSTEMS", 10**9)
    by_lu = als.proximal_step(gram, gradient, ridge)
    monkeypatch.setattr(als, "LANE_SOLVE_MIN_SYSTEMS", 1)
    by_lanes = als.proximal_step(gram, gradient, ridge)
    assert torch.isfinite(by_lu).all() and by_lu[0, 5].abs().max() > 1  # the fallback solved it
    torch.testing.assert_close(by_lanes, by_lu, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method,rank", [("abba", (3, 2)), ("hira", 3)])
def test_lane_wise_solves_give_the_same_fits(monkeypatch, method, rank):
    from abba_analysis.solvers import als

    targets = np.stack([aa.targets.gaussian(40, 30, seed=s) for s in range(3)])
    base = aa.targets.gaussian(40, 30, seed=9) if method == "hira" else None
    kwargs = dict(base=base, seed=[0, 1, 2], bracket=False, max_iter=60)
    monkeypatch.setattr(als, "LANE_SOLVE_MIN_SYSTEMS", 10**9)
    by_lu = aa.fit(targets, method, rank, **kwargs)
    monkeypatch.setattr(als, "LANE_SOLVE_MIN_SYSTEMS", 1)
    by_lanes = aa.fit(targets, method, rank, **kwargs)
    for a, b in zip(by_lu, by_lanes, strict=True):
        assert b.error == pytest.approx(a.error, rel=1e-8)


@pytest.mark.parametrize("seed", [0, 1])
def test_float32_fit_descends_as_far_as_float64(seed):
    """Solving for the correction from the residual keeps float32 fits descending: solving the
    normal equations for the new value stalled 6e-4 to 9e-4 (relative) above float64 here (with
    momentum between sweeps, a scheme since removed). Plain exact sweeps: momentum amplifies rounding
    differences, so with it the two precisions' paths part (seed 0: near sweep 70) and end in
    different places of a flat valley (+5e-4, both still descending after 3000 sweeps), which says
    nothing about the solves."""
    T = aa.targets.sparse(96, 160, seed=seed)
    exact = aa.fit(T, "abba", (4, 4), seed=seed, bracket=False, extrapolate=False, inexact=False)
    single = aa.fit(T.astype(np.float32), "abba", (4, 4), seed=seed, bracket=False, extrapolate=False, inexact=False)
    assert single.error <= exact.error * (1 + 2e-4)


def test_adam_mixed_precision_option():
    T = aa.targets.gaussian(64, 48, seed=0, dtype="float32")
    full = aa.fit(T, "abba", (3, 3), solver="adam", steps=300, seed=0)
    bf16 = aa.fit(T, "abba", (3, 3), solver="adam", steps=300, seed=0, precision="bf16")
    # bf16 matmuls (3 significant digits) with float32 factors and moments: close, not equal.
    assert bf16.error != full.error and abs(bf16.error - full.error) < 0.01 * full.error
    assert bf16.error == pytest.approx(metrics.relative_error(T, bf16.approximation()), rel=1e-5)  # float32 error
    before = torch.backends.cuda.matmul.allow_tf32
    tf32 = aa.fit(T, "abba", (3, 3), solver="adam", steps=300, seed=0, precision="tf32")
    assert torch.backends.cuda.matmul.allow_tf32 == before
    assert tf32.error == full.error  # no TensorFloat-32 on CPU
    with pytest.raises(ValueError, match="applies to float32 fits"):
        aa.fit(T.astype(np.float64), "abba", (3, 3), solver="adam", steps=5, precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        aa.fit(T, "abba", (3, 3), solver="adam", steps=5, precision="fp8")


def test_workspace_reuses_its_buffers():
    from abba_analysis.workspace import Workspace

    ws, cpu = Workspace(), torch.device("cpu")
    a = ws.get("x", (4, 5), torch.float32, cpu)
    smaller = ws.get("x", (2, 5), torch.float32, cpu)  # a batch that has shrunk: the front of the buffer
    assert smaller.data_ptr() == a.data_ptr() and smaller.shape == (2, 5) and smaller.is_contiguous()
    assert ws.get("y", (4, 5), torch.float32, cpu).data_ptr() != a.data_ptr()  # each name its own storage
    assert ws.get("x", (4, 5), torch.float64, cpu).dtype == torch.float64  # another dtype replaces it
    assert ws.get("x", (5, 5), torch.float64, cpu).shape == (5, 5)  # so does a larger request


@pytest.mark.parametrize("method,rank,inexact", [("abba", 2, False), ("abba", 8, False), ("abba", 8, True),
                                                 ("hira", 3, False)])
def test_sweeps_in_a_reused_workspace_match_fresh_ones(method, rank, inexact):
    """No sweep reads a buffer before writing it: five sweeps through one workspace give bitwise the
    factors of five through a new one each (the same products, into other memory; without any
    workspace some operands have other layouts, so GEMMs may round differently) (ABBA at r = 2 takes the low-rank Gram route, at 8 the dense
    one; the columns' buffers are larger than the rows', so they get reallocated once)."""
    from abba_analysis.solvers.als import _abba_sweep, _hira_sweep, lowrank_route_is_cheaper
    from abba_analysis.workspace import Workspace

    gen = torch.Generator().manual_seed(0)
    k, m, n = 3, 24, 40
    target, base = torch.randn(k, m, n, generator=gen), torch.randn(1, m, n, generator=gen)
    ridge = torch.full((k,), 1e-6, dtype=torch.float64)
    names = ["B", "A"] if method == "hira" else ["B1", "A1", "B2", "A2"]
    start = {name: torch.randn(k, *((m, rank) if name[0] == "B" else (rank, n)), generator=gen) for name in names}
    if method == "abba":
        assert lowrank_route_is_cheaper(m, rank, n, torch.float32) == (rank == 2)

    def run(workspace_for_sweep):
        f = {name: v.clone() for name, v in start.items()}
        for _ in range(5):
            ws = workspace_for_sweep()
            residual = (_hira_sweep(target, base, f, ridge, ws) if method == "hira"
                        else _abba_sweep(target, f, ridge, ws, inexact=inexact))
        return f, residual.clone()

    shared = Workspace()
    reused, reused_residual = run(lambda: shared)
    fresh, fresh_residual = run(Workspace)
    for name in names:
        assert torch.equal(reused[name], fresh[name])
    assert torch.equal(reused_residual, fresh_residual)


@pytest.mark.parametrize("method, rank", [("hira", 3), ("abba", (2, 5))])
def test_batched_fit_allocates_its_sweep_buffers_once(monkeypatch, method, rank):
    """The solver's m x n temporaries keep their storage from sweep to sweep, also while targets
    leave the batch (each name is allocated at most twice: the columns' systems outgrow the rows').
    ABBA at (2, 5) on 30 x 50 takes both Gram routes: the dense one for pair 1 (weight of rank 5),
    the low-rank one, in float64, for pair 2."""
    from abba_analysis.solvers.als import lowrank_route_is_cheaper
    from abba_analysis.workspace import Workspace

    storages, get = {}, Workspace.get

    def spy(self, name, shape, dtype, device):
        out = get(self, name, shape, dtype, device)
        storages.setdefault(name, []).append(out.untyped_storage().data_ptr())
        return out

    monkeypatch.setattr(Workspace, "get", spy)
    targets = np.stack([aa.targets.gaussian(30, 50, seed=s, dtype="float32") for s in range(4)])
    base = aa.targets.gaussian(30, 50, seed=9, dtype="float32") if method == "hira" else None
    # init given: the solver alone (the default ABBA fit's literature start has a workspace of its own)
    fits = aa.fit(targets, method, rank, base=base, seed=[0, 1, 2, 3], bracket=False, max_iter=80, rtol=1e-5,
                  init="svd-ones" if method == "abba" else None)
    assert len({len(f.history) for f in fits}) > 1  # the targets stopped at different sweeps
    assert {"residual", "gram", "system"} <= storages.keys()
    if method == "abba":
        assert not lowrank_route_is_cheaper(30, 5, 50, torch.float32) and lowrank_route_is_cheaper(30, 2, 50, torch.float32)
        assert {"pairs", "packed_gram", "lowrank_gram"} <= storages.keys()
    for name, pointers in storages.items():
        assert len(pointers) >= 20 and len(set(pointers)) <= 2, name


def test_a_row_whose_solve_is_not_finite_does_not_move():
    """The exact update leaves a row whose r x r solve returns NaN or inf where it is (a zero step,
    which cannot raise the error): a float32 Gram matrix that rounding left indefinite despite the
    ridge once gave LAPACK's LU NaN with info 0, and a batched 768 x 768 sparse fit 'diverged' after
    one sweep where the same fit alone converged."""
    from abba_analysis.solvers.als import _lu_step

    gen = torch.Generator().manual_seed(0)
    factors = torch.randn(3, 4, 4, generator=gen, dtype=torch.float64)
    system = factors @ factors.mT + torch.eye(4, dtype=torch.float64)
    system[1, 0, 0] = float("nan")  # a system whose solution cannot be finite
    rhs = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    step = _lu_step(system.clone(), None, rhs)
    assert torch.equal(step[1], torch.zeros(4, dtype=torch.float64))
    for i in (0, 2):
        torch.testing.assert_close(step[i], torch.linalg.solve(system[i], rhs[i]))
