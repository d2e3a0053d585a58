import re
import warnings

import numpy as np
import pytest
import torch

import abba_analysis as aa


def test_issue_surface():
    T = aa.targets.orthogonal(64, seed=0)
    W0 = aa.targets.gaussian(64, seed=1)
    lora = aa.fit(T, "lora", rank=8)
    abba = aa.fit(T, "abba", rank=(4, 4), seed=0)
    hira = aa.fit(T, "hira", rank=8, base=W0, seed=0)
    for fit in (lora, abba, hira):
        assert isinstance(fit.approximation(), np.ndarray)
        assert fit.approximation().shape == (64, 64)
        assert 0 < fit.error < 1
        assert fit.history[0] >= fit.error
    assert set(abba.factors) == {"B1", "A1", "B2", "A2"}
    assert aa.budget.abba_ranks_for_lora(24) == (12, 12)
    adam = aa.fit(T, "abba", rank=(4, 4), solver="adam", steps=50, lr=1e-2, device="cpu", seed=0)
    assert adam.iterations == 50 and adam.device == "cpu"


def test_numpy_in_numpy_out_and_torch_in_torch_out():
    T = aa.targets.gaussian(30, 20, seed=0)
    assert all(isinstance(v, np.ndarray) for v in aa.fit(T, "abba", rank=(2, 2), seed=0).factors.values())
    fit = aa.fit(torch.from_numpy(T), "abba", rank=(2, 2), seed=0)
    assert all(isinstance(v, torch.Tensor) for v in fit.factors.values())
    assert isinstance(fit.approximation(), torch.Tensor)


@pytest.mark.parametrize("method,rank", [("abba", (3, 3)), ("hira", 4), ("lora", 4)])
def test_same_seed_gives_identical_factors(method, rank):
    T = aa.targets.gaussian(40, 30, seed=0)
    W0 = aa.targets.gaussian(40, 30, seed=1)
    for solver in ("auto", "adam"):
        a = aa.fit(T, method, rank=rank, base=W0, solver=solver, seed=5, steps=30) if solver == "adam" \
            else aa.fit(T, method, rank=rank, base=W0, seed=5)
        b = aa.fit(T, method, rank=rank, base=W0, solver=solver, seed=5, steps=30) if solver == "adam" \
            else aa.fit(T, method, rank=rank, base=W0, seed=5)
        for k in a.factors:
            np.testing.assert_array_equal(a.factors[k], b.factors[k])


def test_different_seeds_differ():
    T = aa.targets.gaussian(40, 30, seed=0)
    a = aa.fit(T, "abba", rank=(3, 3), solver="adam", steps=20, seed=1)
    b = aa.fit(T, "abba", rank=(3, 3), solver="adam", steps=20, seed=2)
    assert not np.array_equal(a.factors["A2"], b.factors["A2"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64(dtype):
    T = aa.targets.gaussian(40, 30, seed=0).astype(dtype)
    for method, rank in (("lora", 4), ("abba", (2, 2))):
        fit = aa.fit(T, method, rank=rank, seed=0)
        assert all(v.dtype == dtype for v in fit.factors.values())
        assert fit.dtype == np.dtype(dtype).name
    f32 = aa.fit(T, "abba", rank=(2, 2), seed=0, dtype="float64")
    assert f32.dtype == "float64"


def test_half_precision_is_fitted_in_float32():
    T = torch.from_numpy(aa.targets.gaussian(30, 20, seed=0)).to(torch.bfloat16)
    fit = aa.fit(T, "abba", rank=(2, 2), seed=0)
    assert fit.dtype == "float32" and fit.factors["B1"].dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    T = aa.targets.gaussian(64, 48, seed=0)
    cpu = aa.fit(T, "abba", rank=(3, 3), solver="adam", steps=200, seed=0)
    gpu = aa.fit(T, "abba", rank=(3, 3), solver="adam", steps=200, seed=0, device="cuda")
    assert gpu.device.startswith("cuda") and isinstance(gpu.factors["B1"], np.ndarray)
    assert gpu.error == pytest.approx(cpu.error, rel=1e-6)
    assert aa.fit(T, "abba", rank=(3, 3), seed=0, device="cuda").error == pytest.approx(
        aa.fit(T, "abba", rank=(3, 3), seed=0).error, rel=1e-6)
    stack = np.stack([T, 2 * T, -T])
    gpu_stack = aa.fit(stack, "abba", rank=(3, 3), seed=[0, 1, 2], device="cuda")
    assert [r.error for r in gpu_stack] == pytest.approx([r.error for r in aa.fit(stack, "abba", (3, 3), seed=[0, 1, 2])],
                                                         rel=1e-6)
    T32 = T.astype(np.float32)
    full = aa.fit(T32, "abba", rank=(3, 3), solver="adam", steps=200, seed=0, device="cuda")
    for precision in ("tf32", "bf16"):
        mixed = aa.fit(T32, "abba", rank=(3, 3), solver="adam", steps=200, seed=0, device="cuda", precision=precision)
        assert abs(mixed.error - full.error) < 0.01 * full.error


T0 = aa.targets.gaussian(20, 15, seed=0)


def test_non_finite_entry_in_a_later_block_of_rows_is_found():
    """The finiteness check runs a block of rows at a time: an Inf in the last block must not slip by."""
    wide = np.ones((5, 2**19), dtype=np.float32)  # blocks of 2 rows
    wide[-1, -1] = np.inf
    with pytest.raises(ValueError, match="target holds NaN or Inf"):
        aa.fit(wide, "lora", 1)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(target=np.full((4, 4), np.nan), method="lora", rank=1), ValueError, "target holds NaN"),
        (dict(target=np.full((4, 4), np.inf), method="lora", rank=1), ValueError, "target holds NaN or Inf"),
        (dict(target=np.ones(4), method="lora", rank=1), ValueError, "target must be 2-D"),
        (dict(target=np.ones((2, 3, 4, 5)), method="lora", rank=1), ValueError, "target must be 2-D .* or a 3-D stack"),
        (dict(target=np.ones((3, 4, 5)), method="lora", rank=1, seed=[0, 1]), ValueError, "2 seeds for 3 targets"),
        (dict(target=T0, method="lora", rank=1, seed=[0]), ValueError, "seeds for a single target"),
        (dict(target=np.stack([T0, 0 * T0]), method="lora", rank=1), ValueError, r"target\[1\] is all zeros"),
        (dict(target=np.stack([T0, T0]), method="hira", rank=1, base=np.ones((3, 20, 15))), ValueError,
         r"base must have the target's shape \(20, 15\) or \(2, 20, 15\)"),
        (dict(target=T0, method="hira", rank=1, base=np.ones((1, 20, 15))), ValueError, "base must be 2-D"),
        (dict(target=np.ones((0, 4)), method="lora", rank=1), ValueError, "target must not be empty"),
        (dict(target=np.ones((4, 4), dtype=complex), method="lora", rank=1), TypeError, "target must be real"),
        (dict(target=[[1.0]], method="lora", rank=1), TypeError, "numpy array or a torch tensor"),
        (dict(target=np.zeros((4, 4)), method="lora", rank=1), ValueError, "all zeros"),
        (dict(target=T0, method="lora", rank=0), ValueError, "rank must be at least 1"),
        (dict(target=T0, method="lora", rank=16), ValueError, "at most 15, got 16"),
        (dict(target=T0, method="lora", rank=2.5), TypeError, "rank must be an int"),
        (dict(target=T0, method="abba", rank=8), TypeError, r"pair \(r1, r2\).*abba_ranks_for_lora"),
        (dict(target=T0, method="abba", rank=(2, 2, 2)), TypeError, r"pair \(r1, r2\)"),
        (dict(target=T0, method="abba", rank=(0, 2)), ValueError, "r1 must be at least 1"),
        (dict(target=T0, method="abba", rank=(2, 16)), ValueError, "r2 must be at least 1 and at most 15"),
        (dict(target=T0, method="hira", rank=2), ValueError, "needs base=W0"),
        (dict(target=T0, method="hira", rank=2, base=np.ones((15, 20))), ValueError, r"base must have the target's shape \(20, 15\)"),
        (dict(target=T0, method="hira", rank=2, base=np.full((20, 15), np.nan)), ValueError, "base holds NaN"),
        (dict(target=T0, method="dora", rank=2), ValueError, r"method must be one of \['abba', 'hira', 'lora'\]"),
        (dict(target=T0, method="abba", rank=(2, 2), solver="sgd"), ValueError, "solver must be 'auto' or one of .*adam.*als"),
        (dict(target=T0, method="lora", rank=2, solver="als"), ValueError, "does not fit 'lora'.*adam"),
        (dict(target=T0, method="abba", rank=(2, 2), init="pissa"), ValueError, "init must be one of .*abba-paper"),
        (dict(target=T0, method="abba", rank=(2, 2), init="svd"), ValueError, "applies to \\['lora'\\]"),
        (dict(target=T0, method="lora", rank=2, init="svd"), ValueError, "closed-form and takes no init"),
        (dict(target=T0, method="abba", rank=(2, 2), steps=5), TypeError, "no option.*steps.*valid options"),
        (dict(target=T0, method="abba", rank=(2, 2), solver="adam", lr=-1.0), ValueError, "lr must be in"),
        (dict(target=T0, method="abba", rank=(2, 2), solver="adam", schedule="step"), ValueError, "schedule must be one of"),
        (dict(target=T0, method="abba", rank=(2, 2), restarts=-1), ValueError, "restarts must be"),
        (dict(target=T0, method="abba", rank=(2, 2), seed="zero"), TypeError, "seed must be"),
        (dict(target=T0, method="abba", rank=(2, 2), dtype="float16"), ValueError, "dtype must be one of"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        aa.fit(**kwargs)


def test_divergence_is_reported_with_the_best_iterate():
    T = aa.targets.gaussian(30, 20, seed=0)
    fit = aa.fit(T, "abba", rank=(2, 2), solver="adam", steps=200, lr=1e6, seed=0)
    assert fit.status in {"diverged", "max_iter"}
    assert np.isfinite(fit.error) and fit.error == pytest.approx(np.nanmin(fit.history), rel=1e-6)
    if fit.status == "diverged":
        assert not np.isfinite(fit.history[-1])


def test_tolerance_stops_early():
    T, _ = (aa.targets.low_rank(30, 20, rank=1, seed=0), None)
    fit = aa.fit(T, "lora", rank=1, solver="adam", steps=5000, lr=3e-2, tol=1e-3, seed=0, init="svd")
    assert fit.status == "converged" and fit.iterations == 0


def test_budget_helpers():
    assert aa.budget.abba_ranks_for_lora(7) == (3, 4)
    assert aa.budget.lora_rank_for_abba((3, 4)) == 7
    assert aa.budget.num_params("abba", (10, 20), (3, 4)) == aa.budget.num_params("lora", (10, 20), 7) == 210
    with pytest.raises(ValueError, match="at least 2"):
        aa.budget.abba_ranks_for_lora(1)


def test_rank_bound_of_each_method():
    T = aa.targets.gaussian(30, 20, seed=0)
    W0 = aa.targets.low_rank(30, 20, rank=3, seed=1)
    assert aa.fit(T, "lora", rank=4).rank_bound == 4
    assert aa.fit(T, "abba", rank=(3, 4), seed=0).rank_bound == 12
    assert aa.fit(T, "hira", rank=4, base=W0, seed=0, max_iter=5).rank_bound == 12  # rank(W0) r


@pytest.mark.parametrize("device,message", [
    ("cdua", "device 'cdua' is not a torch device; use 'cpu', 'cuda'"),
    ("cuda:9", "device 'cuda:9' is not available"),
    ("meta", "device 'meta' is not supported"),
])
def test_unavailable_devices_fail_up_front(device, message):
    if device.startswith("cuda") and torch.cuda.device_count() > 9:
        pytest.skip("this machine has that GPU")
    with pytest.raises(ValueError, match=re.escape(message)):
        aa.fit(np.eye(4), "lora", 2, device=device)
    with pytest.raises(ValueError, match=re.escape(message)):
        aa.fit(np.eye(4), "abba", (1, 1), device=device, init="abba-paper", solver="adam", steps=1)


def test_rank_warning_only_for_rank_deficient_targets_and_suggests_what_was_not_tried():
    # r1 r2 >= min(m, n): the rank-r1 r2 SVD bound is 0 for every target; that is no reason to warn.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aa.fit(aa.targets.gaussian(64, seed=0), "abba", (8, 8), seed=0, max_iter=20)
    # A generic rank-9 target is within ABBA's rank bound at (3, 3) but no ABBA product: every fit warns,
    # and names only the remedies the call did not use.
    rng = np.random.default_rng(0)
    target = rng.standard_normal((40, 9)) @ rng.standard_normal((9, 30))
    cases = [({"init": "random"}, "(try restarts= or the default init)"),
             ({"init": "random", "restarts": 1}, "(try the default init)"),
             ({"restarts": 1}, "may exist")]
    for options, ending in cases:
        with pytest.warns(UserWarning, match="far above the rank-9 SVD bound") as caught:
            aa.fit(target, "abba", (3, 3), seed=0, max_iter=30, **options)
        assert str(caught[0].message).endswith(ending), (options, str(caught[0].message))
