import math

import pytest
import torch

import abba_analysis as aa
from abba_analysis.parameterizations import ABBA, HiRA, LoRA, get_method, khatri_rao_factors, row_kronecker


def random_factors(method, shape, ranks, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = get_method(method).factor_shapes(shape, ranks)
    return {k: torch.randn(*s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}


@pytest.mark.parametrize("r", [2, 8, 24])
def test_equal_budget_has_equal_parameter_count(r):
    shape = (96, 64)
    r1, r2 = aa.budget.abba_ranks_for_lora(r)
    assert r1 + r2 == r
    assert LoRA().num_params(shape, (r,)) == ABBA().num_params(shape, (r1, r2)) == r * (96 + 64)
    assert HiRA().num_params(shape, (r,)) == r * (96 + 64)


@pytest.mark.parametrize("ranks", [(1, 1), (2, 3), (4, 4), (8, 8)])
def test_abba_rank_reaches_its_bound_generically(ranks):
    shape = (40, 30)
    f = random_factors("abba", shape, ranks)
    rank = int(torch.linalg.matrix_rank(ABBA().materialize(f)))
    assert rank == ABBA().rank_bound(shape, ranks) == min(ranks[0] * ranks[1], 30)


def test_hira_rank_exceeds_lora_rank_with_a_full_rank_base():
    shape = (30, 20)
    f = random_factors("hira", shape, (2,))
    base = torch.randn(*shape, dtype=torch.float64)
    assert int(torch.linalg.matrix_rank(HiRA().materialize(f, base))) == 20
    assert HiRA().rank_bound(shape, (2,), base) == 20


def test_khatri_rao_identity():
    f = random_factors("abba", (17, 13), (3, 4))
    W, H = khatri_rao_factors(f)
    assert W.shape == (17, 12) and H.shape == (13, 12)
    torch.testing.assert_close(W @ H.T, ABBA().materialize(f), rtol=1e-12, atol=1e-12)


def test_row_kronecker_rows_are_kronecker_products():
    a, b = torch.randn(5, 2), torch.randn(5, 3)
    out = row_kronecker(a, b)
    for i in range(5):
        torch.testing.assert_close(out[i], torch.kron(a[i], b[i]))


@pytest.mark.parametrize("k", [None, 1, 7])
def test_abba_apply_matches_the_dense_product(k):
    f = random_factors("abba", (23, 19), (3, 5))
    x = torch.randn(19, dtype=torch.float64) if k is None else torch.randn(19, k, dtype=torch.float64)
    expected = 0.7 * ABBA().materialize(f) @ x
    torch.testing.assert_close(aa.abba_apply(f, x, scale=0.7), expected, rtol=1e-12, atol=1e-12)


def test_scales():
    assert aa.lora_scale(16, 8) == 2.0
    assert aa.lora_scale(16, 16, rslora=True) == 4.0
    assert aa.abba_scale(4.0, 2, 8) == pytest.approx(16 / 4)
    f = random_factors("abba", (6, 5), (2, 2))
    s = aa.abba_scale(2.0, 2, 2)
    torch.testing.assert_close(ABBA().materialize(f, scale=s), s * ABBA().materialize(f))
    with pytest.raises(ValueError, match="r1"):
        aa.abba_scale(1.0, 0, 2)


@pytest.mark.parametrize("method,ranks", [("lora", (3,)), ("hira", (3,)), ("abba", (2, 3))])
def test_analytic_gradients_match_autograd(method, ranks):
    shape = (11, 9)
    param = get_method(method)
    f = random_factors(method, shape, ranks, seed=1)
    target = torch.randn(*shape, dtype=torch.float64)
    base = torch.randn(*shape, dtype=torch.float64) if method == "hira" else None
    leaves = {k: v.clone().requires_grad_(True) for k, v in f.items()}
    loss = 0.5 * (param.materialize(leaves, base) - target).square().sum()
    auto = torch.autograd.grad(loss, list(leaves.values()))
    residual2, grads = param.gradients(f, target, base)
    assert float(residual2) == pytest.approx(2 * float(loss.detach()), rel=1e-12)
    for name, g in zip(leaves, auto, strict=True):
        torch.testing.assert_close(grads[name], g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method,ranks", [("lora", (3,)), ("hira", (3,)), ("abba", (2, 3))])
def test_gradients_in_a_workspace_match_fresh_ones(method, ranks):
    """The same numbers, bitwise, when the temporaries go into reused buffers: the second call (other
    factors, a batch of three with a shared W0) must not read what the first left there."""
    from abba_analysis.workspace import Workspace

    param, ws = get_method(method), Workspace()
    for seed, batch in [(4, ()), (5, (3,))]:
        f = {k: v.expand(*batch, *v.shape).contiguous() for k, v in random_factors(method, (11, 9), ranks, seed=seed).items()}
        target = torch.randn(*batch, 11, 9, dtype=torch.float64)
        base = torch.randn(1, 11, 9, dtype=torch.float64) if method == "hira" else None
        fresh_r2, fresh = param.gradients(f, target, base)
        reused_r2, reused = param.gradients(f, target, base, ws)
        assert torch.equal(reused_r2, fresh_r2)
        for name in f:
            assert torch.equal(reused[name], fresh[name])


@pytest.mark.parametrize("method,ranks", [("lora", (3,)), ("hira", (3,)), ("abba", (2, 3))])
def test_materialize_without_grad_matches_and_leaves_factors_alone(method, ranks):
    """Without autograd, materialize multiplies in place (memory): same values, factors untouched."""
    shape = (11, 9)
    param = get_method(method)
    f = random_factors(method, shape, ranks, seed=3)
    before = {k: v.clone() for k, v in f.items()}
    base = torch.randn(*shape, dtype=torch.float64) if method == "hira" else None
    leaves = {k: v.clone().requires_grad_(True) for k, v in f.items()}
    with torch.no_grad():
        fast = param.materialize(f, base, scale=0.5)
    torch.testing.assert_close(fast, param.materialize(leaves, base, scale=0.5).detach(), rtol=0, atol=0)
    for k in f:
        assert torch.equal(f[k], before[k])


@pytest.mark.parametrize("method,ranks", [("lora", (2,)), ("hira", (2,)), ("abba", (2, 2))])
def test_analytic_gradients_pass_gradcheck(method, ranks):
    """Wrap the analytic gradients in an autograd Function and check them by finite differences."""
    shape = (6, 5)
    param = get_method(method)
    names = param.factor_names
    target = torch.randn(*shape, dtype=torch.float64)
    base = torch.randn(*shape, dtype=torch.float64) if method == "hira" else None

    class HalfSquaredError(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            ctx.save_for_backward(*tensors)
            residual2, _ = param.gradients(dict(zip(names, tensors, strict=True)), target, base)
            return 0.5 * residual2

        @staticmethod
        def backward(ctx, grad_out):
            _, grads = param.gradients(dict(zip(names, ctx.saved_tensors, strict=True)), target, base)
            return tuple(grad_out * grads[k] for k in names)

    f = random_factors(method, shape, ranks, seed=2)
    inputs = tuple(f[k].clone().requires_grad_(True) for k in names)
    assert torch.autograd.gradcheck(HalfSquaredError.apply, inputs)


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match=r"\['abba', 'hira', 'lora'\]"):
        get_method("dora")


def test_abba_scale_formula_matches_theory():
    assert aa.abba_scale(3.0, 4, 9) == pytest.approx(9 / math.sqrt(36))
