import math

import numpy as np
import pytest
import torch

import abba_analysis as aa
from abba_analysis import init_study
from abba_analysis.parameterizations import ABBA, get_method

SHAPE, RANKS = (30, 24), (3, 4)
T = torch.from_numpy(aa.targets.gaussian(*SHAPE, seed=0))
W0 = torch.from_numpy(aa.targets.gaussian(*SHAPE, seed=1))
ZERO_START = ["abba-paper", "abba-paper-swapped", "lora-both", "abba-code", "peft-loha", "lycoris-loha",
              "olora", "milora"]


def init(name, method="abba", ranks=RANKS, **kw):
    kw.setdefault("target", T)
    kw.setdefault("base", W0)
    kw.setdefault("seed", 0)
    return aa.inits.initialize(name, method, SHAPE, ranks, **kw)


def numpy_svd_part(matrix, first, count, smallest=False):
    u, s, vt = np.linalg.svd(np.asarray(matrix), full_matrices=False)
    if smallest:
        first = len(s) - count
    sl = slice(first, first + count)
    return (u[:, sl] * s[sl]) @ vt[sl], s[sl]


def test_the_registry_lists_every_scheme_of_the_issue():
    expected = {"abba-paper", "abba-paper-swapped", "sqrt-both", "sqrt-split", "sqrt-split-swapped",
                "svd-ones-scaled", "lora-both", "abba-code", "peft-loha", "lycoris-loha", "olora", "milora",
                "random", "svd-ones", "sqrt-target"}
    assert expected <= set(aa.inits.names("abba"))
    assert set(aa.inits.names("hira")) == {"lora-style", "random", "divide-svd"}
    for name in aa.inits.names():
        assert aa.inits.get(name).summary, name


@pytest.mark.parametrize("method", ["lora", "hira", "abba"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtype_device_and_seed(method, dtype):
    ranks = RANKS if method == "abba" else (3,)
    expected = get_method(method).factor_shapes(SHAPE, ranks)
    for name in aa.inits.names(method):
        a = init(name, method, ranks, dtype=dtype, device="cpu")
        b = init(name, method, ranks, dtype=dtype, device="cpu")
        assert {k: tuple(v.shape) for k, v in a.items()} == expected, name
        for k in a:
            assert a[k].dtype == dtype and a[k].device.type == "cpu", (name, k)
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["abba-paper", "random", "peft-loha", "lycoris-loha", "abba-code"])
def test_random_schemes_differ_between_seeds(name):
    a, b = init(name, seed=0), init(name, seed=1)
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ZERO_START)
def test_zero_start_schemes_give_exactly_zero(name):
    f = init(name)
    assert torch.count_nonzero(ABBA().materialize(f)) == 0


def test_lora_style_gives_exactly_zero():
    f = init("lora-style", "hira", (3,))
    assert torch.count_nonzero(f["B"] @ f["A"]) == 0


def test_svd_pairs_equal_numpy_truncated_svd():
    f = init("abba-paper")
    expected, s = numpy_svd_part(W0, 0, 3)
    np.testing.assert_allclose((f["B1"] @ f["A1"]).numpy(), expected, atol=1e-12)
    # Balanced split: B1^T B1 = A1 A1^T = diag(S).
    np.testing.assert_allclose((f["B1"].T @ f["B1"]).numpy(), np.diag(s), atol=1e-10)
    np.testing.assert_allclose((f["A1"] @ f["A1"].T).numpy(), np.diag(s), atol=1e-10)

    swapped = init("abba-paper-swapped")
    np.testing.assert_allclose((swapped["B2"] @ swapped["A2"]).numpy(), numpy_svd_part(W0, 0, 4)[0], atol=1e-12)

    root = np.sign(W0.numpy()) * np.sqrt(np.abs(W0.numpy()))
    split = init("sqrt-split")
    np.testing.assert_allclose((split["B1"] @ split["A1"]).numpy(), numpy_svd_part(root, 0, 3)[0], atol=1e-12)
    np.testing.assert_allclose((split["B2"] @ split["A2"]).numpy(), numpy_svd_part(root, 3, 4)[0], atol=1e-12)
    sw = init("sqrt-split-swapped")
    np.testing.assert_allclose((sw["B1"] @ sw["A1"]).numpy(), numpy_svd_part(root, 4, 3)[0], atol=1e-12)
    np.testing.assert_allclose((sw["B2"] @ sw["A2"]).numpy(), numpy_svd_part(root, 0, 4)[0], atol=1e-12)
    both = init("sqrt-both")
    np.testing.assert_allclose((both["B2"] @ both["A2"]).numpy(), numpy_svd_part(root, 0, 4)[0], atol=1e-12)

    mi = init("milora")
    np.testing.assert_allclose((mi["B1"] @ mi["A1"]).numpy(), numpy_svd_part(W0, 0, 3, smallest=True)[0], atol=1e-12)

    ol = init("olora")
    np.testing.assert_allclose((ol["B1"].T @ ol["B1"]).numpy(), np.eye(3), atol=1e-12)
    q, r = np.linalg.qr(W0.numpy())
    np.testing.assert_allclose((ol["B1"] @ ol["A1"]).numpy(), q[:, :3] @ r[:3], atol=1e-12)

    # svd_lowrank with q = r1 and no oversampling is only close where the spectrum decays.
    decaying = torch.from_numpy(aa.targets.power_law(*SHAPE, exponent=1.5, seed=2))
    code = init("abba-code", base=decaying)
    exact = numpy_svd_part(decaying, 0, 3)[0]
    assert np.linalg.norm((code["B1"] @ code["A1"]).numpy() - exact) <= 1e-3 * np.linalg.norm(exact)
    assert float(code["A2"].abs().max()) <= math.sqrt(6 / SHAPE[1])
    assert float(code["A2"].abs().max()) > 1 / math.sqrt(SHAPE[1])  # default gain, not a = sqrt(5)


def test_sqrt_target_roots_multiply_back_at_full_rank():
    f = aa.inits.initialize("sqrt-target", "abba", SHAPE, (24, 24), target=T, seed=0)
    torch.testing.assert_close(ABBA().materialize(f), T, rtol=1e-10, atol=1e-10)


def test_scaled_ones_apply_the_paper_scale():
    alpha, (r1, r2) = 4.0, RANKS
    s = aa.abba_scale(alpha, r1, r2)
    f = init("svd-ones-scaled", alpha=alpha)
    torch.testing.assert_close(s * f["B2"] @ f["A2"], torch.ones(SHAPE, dtype=torch.float64))
    np.testing.assert_allclose((s * ABBA().materialize(f)).numpy(), numpy_svd_part(W0, 0, r1)[0], atol=1e-10)


def test_svd_ones_starts_at_lora_rank_r1_error():
    f = aa.inits.initialize("svd-ones", "abba", SHAPE, RANKS, target=T, seed=0)
    err = float(torch.linalg.matrix_norm(ABBA().materialize(f) - T) / torch.linalg.matrix_norm(T))
    assert err == pytest.approx(aa.metrics.truncated_svd_error(T, RANKS[0]), abs=1e-12)


def test_w0_schemes_fall_back_to_the_target_without_base():
    with_target = aa.inits.initialize("abba-paper", "abba", SHAPE, RANKS, target=T, seed=0)
    with_base = aa.inits.initialize("abba-paper", "abba", SHAPE, RANKS, target=W0, base=T, seed=0)
    torch.testing.assert_close(with_target["B1"], with_base["B1"])


def test_unknown_and_missing_base_messages():
    with pytest.raises(ValueError, match="init must be one of .*abba-paper.*lora-both"):
        aa.inits.get("pissa-16")
    with pytest.raises(ValueError, match="needs the pretrained weight: pass base=W0"):
        aa.fit(T.numpy(), "hira", rank=2, base=None, init="divide-svd") if False else \
            aa.inits.initialize("divide-svd", "hira", SHAPE, (2,), target=T)
    with pytest.raises(ValueError, match="applies to"):
        aa.inits.initialize("lora-style", "abba", SHAPE, RANKS, target=T)
    with pytest.raises(ValueError, match="singular triplets"):
        aa.inits.initialize("sqrt-split", "abba", SHAPE, (20, 20), target=T)
    with pytest.raises(ValueError, match="alpha"):
        init("abba-paper", alpha=-1.0)


def test_both_lora_style_never_trains():
    """The paper's appendix argument, shown: with B1 = B2 = 0 every gradient is exactly zero."""
    f = init("lora-both")
    _, grads = ABBA().gradients(f, T)
    assert all(torch.count_nonzero(g) == 0 for g in grads.values())
    fit = aa.fit(T.numpy(), "abba", rank=RANKS, solver="adam", init="lora-both", steps=100, seed=0)
    np.testing.assert_array_equal(fit.history, np.ones(101))
    assert np.count_nonzero(fit.factors["B1"]) == np.count_nonzero(fit.factors["B2"]) == 0
    table = init_study.gradient_flow(T, RANKS, ["lora-both", "abba-paper"], base=W0)
    assert not table[table.scheme == "lora-both"].trains.any()
    paper = table[table.scheme == "abba-paper"].set_index("factor")
    # The paper's choice: at step 0 only B2 moves (P2 = 0 blocks pair 1, B2 = 0 blocks A2).
    assert paper.receives_gradient.to_dict() == {"B1": False, "A1": False, "B2": True, "A2": False}
    assert (paper.delta_norm == 0).all()


def test_gradient_flow_matches_autograd_with_scale():
    alpha = 3.0
    s = aa.abba_scale(alpha, *RANKS)
    table = init_study.gradient_flow(T, RANKS, ["sqrt-split"], base=W0, alpha=alpha).set_index("factor")
    f = {k: v.clone().requires_grad_(True) for k, v in init("sqrt-split", alpha=alpha).items()}
    loss = 0.5 * (s * ABBA().materialize(f) - T).square().sum()
    loss.backward()
    for k, v in f.items():
        assert table.loc[k, "grad_norm"] == pytest.approx(float(v.grad.norm()), rel=1e-10)


def test_scaling_moments_follow_theory():
    table = init_study.scaling_moments((1, 16, 256), size=(64, 64), draws=20, batch=64, seed=0)
    for col in ("forward", "backward"):
        ratio = table[col] / table[f"{col}_theory"]
        assert ratio.between(0.8, 1.25).all(), ratio.tolist()
    # Log-log slope of the forward moment against r1 r2 is 1 - 2e for s = (r1 r2)^-e: only e = 1/2 is flat.
    for name, e in init_study.SCALES.items():
        sub = table[table.scale == name]
        slope = np.polyfit(np.log(sub.r1r2), np.log(sub.forward), 1)[0]
        assert slope == pytest.approx(1 - 2 * e, abs=0.1), name


def test_fit_quality_table():
    targets = {"gaussian": (T.numpy(), W0.numpy())}
    table = init_study.fit_quality(targets, RANKS, ["abba-paper", "lora-both"], seeds=(0, 1), checkpoints=(5,),
                                   threshold=0.95, steps=40)
    assert len(table) == 4
    assert set(table.columns) >= {"target", "scheme", "seed", "start_error", "error_at_5", "final_error",
                                  "seconds", "seconds_to_threshold"}
    paper = table[table.scheme == "abba-paper"]
    assert (paper.final_error < paper.start_error).all()
    assert (table[table.scheme == "lora-both"].final_error == 1.0).all()
    assert np.isinf(table[table.scheme == "lora-both"].seconds_to_threshold).all()
