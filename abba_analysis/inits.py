"""Named initialization schemes: each maps a problem to a starting set of factors.

Every scheme has one signature,
``scheme(shape, ranks, *, target, base, alpha, rng, dtype, device) -> factors``, and is registered
with :func:`register`, which records the methods it applies to and whether it needs the frozen
weight. :func:`names` lists them; :func:`initialize` runs one with its checks.

Conventions
-----------
- **W0** is ``base`` (the pretrained weight). Schemes built on W0 fall back to the target when no
  base is given, which is the natural reading for pure reconstruction fits (the matrix to represent
  stands in for the weight).
- **√W0** is the element-wise *signed* square root ``sign(W0) sqrt(|W0|)``: the paper does not define
  it; with this reading ``√W0 ⊙ |√W0| = W0``, and ``√W0 ⊙ √W0 = |W0|``.
- **alpha** sets ABBA's forward scale ``s = alpha^2 / sqrt(r1 r2)`` (``None``: ``s = 1``, as in fits,
  where the scale is absorbed in the factors). Only schemes that promise a given starting ``s ΔW``
  (the scaled all-ones pair) use it.
- Random numbers are drawn on the host from ``rng`` and then moved, so CPU and GPU fits start from
  the same point; the same seed gives identical factors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ._validation import SeedLike, as_generator, resolve_device
from .linalg import gram_truncated_svd, randomized_svd, split_factors, truncated_svd
from .parameterizations import get_method

Factors = dict[str, torch.Tensor]
SchemeFunction = Callable[..., Factors]


@dataclass(frozen=True)
class InitScheme:
    """A registered scheme: its function and what it applies to."""

    name: str
    function: SchemeFunction
    methods: tuple[str, ...]
    needs_base: bool
    summary: str


_REGISTRY: dict[str, InitScheme] = {}


def register(name: str, *, methods: tuple[str, ...], needs_base: bool = False) -> Callable[[SchemeFunction], SchemeFunction]:
    """Decorator adding a scheme to the registry under ``name``."""

    def decorate(function: SchemeFunction) -> SchemeFunction:
        if name in _REGISTRY:
            raise ValueError(f"an init scheme named {name!r} is already registered")
        summary = (function.__doc__ or "").strip().splitlines()[0] if function.__doc__ else ""
        _REGISTRY[name] = InitScheme(name, function, tuple(methods), needs_base, summary)
        return function

    return decorate


def names(method: str | None = None) -> list[str]:
    """Names of the registered schemes, all or those that apply to ``method``."""
    return sorted(n for n, s in _REGISTRY.items() if method is None or method in s.methods)


def get(name: str) -> InitScheme:
    """The scheme called ``name``; an unknown name raises ValueError listing the valid ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"init must be one of {names()}, got {name!r}") from None


def initialize(
    name: str,
    method: str,
    shape: tuple[int, int],
    ranks: tuple[int, ...],
    *,
    target: torch.Tensor | None = None,
    base: torch.Tensor | None = None,
    alpha: float | None = None,
    seed: SeedLike = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> Factors:
    """Run scheme ``name`` for ``method`` and return its factors.

    Parameters
    ----------
    name : str
        A registered scheme (see :func:`names`).
    method : {"lora", "hira", "abba"}
    shape : (int, int)
        ``(m, n)`` of the update.
    ranks : tuple of int
        ``(r,)`` or ``(r1, r2)``.
    target, base : torch.Tensor, optional
        The matrix to fit and the pretrained weight W0, as schemes need them.
    alpha : float, optional
        ABBA's scale parameter (see the module notes).
    seed : None, int or numpy Generator
    dtype, device
        Of the returned factors.

    Raises
    ------
    ValueError
        If the scheme is unknown, does not apply to ``method``, or needs ``base`` and none is given.
    """
    scheme = get(name)
    if method not in scheme.methods:
        raise ValueError(f"init {name!r} applies to {list(scheme.methods)}, not {method!r}; "
                         f"for {method} use one of {names(method)}")
    if scheme.needs_base and base is None:
        raise ValueError(f"init {name!r} needs the pretrained weight: pass base=W0")
    if alpha is not None and not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    factors = scheme.function(
        tuple(shape), tuple(ranks), target=target, base=base, alpha=alpha, rng=as_generator(seed),
        dtype=dtype, device=resolve_device(device),
    )
    expected = get_method(method).factor_shapes(tuple(shape), tuple(ranks))
    # Schemes shared by several methods name LoRA-style factors B, A; ABBA's are B1, A1, B2, A2.
    assert {k: tuple(v.shape) for k, v in factors.items()} == expected, (name, method)
    return factors


# --- building blocks ---------------------------------------------------------------------------


def _host(x: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)


def kaiming_uniform(rng: np.random.Generator, rows: int, cols: int, dtype: torch.dtype, device: torch.device,
                    *, gain: float = 1.0 / math.sqrt(3.0)) -> torch.Tensor:
    """``U(-b, b)`` with ``b = gain sqrt(3 / cols)``, torch's ``kaiming_uniform_`` (fan-in = ``cols``).

    The default gain ``sqrt(1/3)`` is torch's ``a = sqrt(5)`` (bound ``1/sqrt(cols)``), PEFT's LoRA
    and LoHa init; ``gain = sqrt(2)`` is torch's default ``a = 0`` (bound ``sqrt(6 / cols)``).
    """
    bound = gain * math.sqrt(3.0 / cols)
    return _host(rng.uniform(-bound, bound, size=(rows, cols)), dtype, device)


EXACT_SVD_MAX = 2048
"""Largest min(m, n) for which SVD-based inits take exact top triplets (in float64, from the Gram
matrix of the shorter side); beyond it, they come from a randomized SVD with 8 power iterations in
the matrix's dtype, which keeps a 4096 x 11008 init to a few times the matrix's memory. MiLoRA's
smallest triplets always take a full SVD (the Gram matrix would square their accuracy away)."""


def top_singular_triplets(matrix: torch.Tensor, count: int, device: torch.device | None = None,
                          rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top ``count`` singular triplets ``(U, S, Vh)``: exact (float64, from the Gram matrix,
    :func:`~abba_analysis.linalg.gram_truncated_svd`) up to :data:`EXACT_SVD_MAX`, randomized beyond
    (8 power iterations, in the matrix's dtype, seeded from ``rng``, default seed 0)."""
    device = matrix.device if device is None else device
    if min(matrix.shape) > EXACT_SVD_MAX:
        return randomized_svd(matrix.to(device=device), count, oversample=max(10, count), power_iters=8,
                              seed=rng if rng is not None else 0)
    return gram_truncated_svd(matrix.to(device=device, dtype=torch.float64), count)


def svd_pair(matrix: torch.Tensor, first: int, count: int, dtype: torch.dtype, device: torch.device,
             *, smallest: bool = False, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U sqrt(S), sqrt(S) Vh)`` of singular triplets ``first .. first+count-1`` (0-based).

    ``smallest=True`` takes the ``count`` smallest triplets instead (MiLoRA). Exact (float64) up to
    :data:`EXACT_SVD_MAX`, randomized beyond (seeded from ``rng``, default seed 0).
    """
    k = min(matrix.shape)
    if smallest:
        first = k - count
    if first + count > k:
        raise ValueError(f"this init needs singular triplets {first + 1}..{first + count}, but the matrix "
                         f"has only {k}: lower the ranks")
    if smallest:  # the smallest triplets need the full exact SVD at any size
        u, s, vh = truncated_svd(matrix.to(device=device, dtype=torch.float64), first + count)
    else:
        u, s, vh = top_singular_triplets(matrix, first + count, device, rng)
    b, a = split_factors(u[:, first:], s[first:], vh[first:])
    return b.to(dtype), a.to(dtype)


def signed_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Element-wise ``sign(M) sqrt(|M|)``, the reading of the paper's √W0."""
    return torch.sign(matrix) * matrix.abs().sqrt()


def _w0(target: torch.Tensor | None, base: torch.Tensor | None) -> torch.Tensor:
    """The pretrained weight, or the target when fitting without one (see the module notes)."""
    source = base if base is not None else target
    if source is None:
        raise ValueError("this init needs base=W0 (or a target to stand in for it)")
    return source


def _zeros(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.zeros(rows, cols, dtype=dtype, device=device)


def _lora_style_pair(rng, m, n, r, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``B = 0``, ``A`` Kaiming-uniform ``U(-1/sqrt(n), 1/sqrt(n))``."""
    return _zeros(m, r, dtype, device), kaiming_uniform(rng, r, n, dtype, device)


def _scale(alpha: float | None, r1: int, r2: int) -> float:
    return 1.0 if alpha is None else alpha**2 / math.sqrt(r1 * r2)


def _abba(b1, a1, b2, a2) -> Factors:
    return {"B1": b1, "A1": a1, "B2": b2, "A2": a2}


# --- the ABBA paper's Table 3 ------------------------------------------------------------------


@register("abba-paper", methods=("abba",))
def abba_paper(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """The paper's choice: pair 1 the top-r1 SVD of W0, pair 2 LoRA-style; ΔW = 0 at the start.

    ``B1 = U sqrt(S)``, ``A1 = sqrt(S) V^T`` (top r1 triplets of W0), ``B2 = 0``, ``A2 ~ U(-1/sqrt(n),
    1/sqrt(n))``. Pair 1 is PiSSA's init (Meng et al., 2024), without subtracting it from W0, as in the
    paper's code. Source: ABBA (arXiv 2505.14238), Table 3, row 1 (GSM8K 66.26, MATH 18.08).
    """
    (m, n), (r1, r2) = shape, ranks
    b1, a1 = svd_pair(_w0(target, base), 0, r1, dtype, device)
    return _abba(b1, a1, *_lora_style_pair(rng, m, n, r2, dtype, device))


@register("abba-paper-swapped", methods=("abba",))
def abba_paper_swapped(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """Roles swapped: pair 1 LoRA-style, pair 2 the top-r2 SVD of W0; ΔW = 0 at the start.

    Source: ABBA, Table 3, row 2 (GSM8K 66.19, MATH 18.06).
    """
    (m, n), (r1, r2) = shape, ranks
    b2, a2 = svd_pair(_w0(target, base), 0, r2, dtype, device)
    return _abba(*_lora_style_pair(rng, m, n, r1, dtype, device), b2, a2)


@register("sqrt-both", methods=("abba",))
def sqrt_both(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """Both pairs the top SVD of √W0: pair 1 its top r1 triplets, pair 2 its top r2.

    ΔW ≈ s ``|W0|`` at the start (√W0 signed, see the module notes). Source: ABBA, Table 3, row 3
    (GSM8K 64.53, MATH 16.57).
    """
    root = signed_sqrt(_w0(target, base))
    return _abba(*svd_pair(root, 0, ranks[0], dtype, device), *svd_pair(root, 0, ranks[1], dtype, device))


@register("sqrt-split", methods=("abba",))
def sqrt_split(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """Pair 1 the top r1 triplets of √W0, pair 2 the next r2 (triplets r1+1 .. r1+r2).

    Source: ABBA, Table 3, row 4 (GSM8K 64.86, MATH 17.05).
    """
    root = signed_sqrt(_w0(target, base))
    r1, r2 = ranks
    return _abba(*svd_pair(root, 0, r1, dtype, device), *svd_pair(root, r1, r2, dtype, device))


@register("sqrt-split-swapped", methods=("abba",))
def sqrt_split_swapped(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """Pair 1 the triplets after the top r2 of √W0 (r2+1 .. r2+r1), pair 2 the top r2.

    Source: ABBA, Table 3, row 5 (GSM8K 64.79, MATH 17.16).
    """
    root = signed_sqrt(_w0(target, base))
    r1, r2 = ranks
    return _abba(*svd_pair(root, r2, r1, dtype, device), *svd_pair(root, 0, r2, dtype, device))


@register("svd-ones-scaled", methods=("abba",))
def svd_ones_scaled(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """Pair 1 the top-r1 SVD of W0, pair 2 all ones scaled so that ``s B2 A2`` is all ones.

    ``B2 = c 1_{m x r2}``, ``A2 = c 1_{r2 x n}`` with ``c = 1 / sqrt(s r2)``, so the starting update
    ``s (B1 A1) ⊙ (B2 A2)`` is the rank-r1 SVD of W0. Every column of B2 (row of A2) is the same and
    gets the same gradient, so under gradient descent pair 2 stays rank one: a likely cause of this
    row's poor score. Source: ABBA, Table 3, row 6 (GSM8K 57.39, MATH 10.88); "scaled" read as above.
    """
    (m, n), (r1, r2) = shape, ranks
    b1, a1 = svd_pair(_w0(target, base), 0, r1, dtype, device)
    c = 1.0 / math.sqrt(_scale(alpha, r1, r2) * r2)
    ones = lambda rows, cols: torch.full((rows, cols), c, dtype=dtype, device=device)  # noqa: E731
    return _abba(b1, a1, ones(m, r2), ones(r2, n))


@register("lora-both", methods=("abba",))
def lora_both(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """Both pairs LoRA-style, ``B1 = B2 = 0``: every gradient is zero, so training never starts.

    With ``P_k = B_k A_k = 0`` the gradients ``(R ⊙ P2) A1^T``, ``B1^T (R ⊙ P2)`` and their pair-2
    twins all vanish (ABBA, appendix). Kept to show that failure.
    """
    (m, n), (r1, r2) = shape, ranks
    return _abba(*_lora_style_pair(rng, m, n, r1, dtype, device), *_lora_style_pair(rng, m, n, r2, dtype, device))


# --- other codebases -----------------------------------------------------------------------------


@register("abba-code", methods=("abba",))
def abba_code(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """The public ABBA code's variant of the paper's choice.

    Pair 1 from ``torch.svd_lowrank(W0, q=r1, niter=10)`` (randomized: seeded from ``rng``), split
    ``U sqrt(S)``, ``sqrt(S) V^T``; ``B2 = 0``; ``A2`` by ``kaiming_uniform_`` with its default gain
    (bound ``sqrt(6/n)``). Its other defects (r2 taken from r1, scale ``sqrt(α1 α2)``) concern the
    model, not the init, and are not copied.
    """
    (m, n), (r1, r2) = shape, ranks
    w0 = _w0(target, base).to(device=device, dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**63 - 1)))
        u, s, v = torch.svd_lowrank(w0.cpu(), q=r1, niter=10)
    b1, a1 = split_factors(u.to(device), s.to(device), v.T.to(device))
    a2 = kaiming_uniform(rng, r2, n, dtype, device, gain=math.sqrt(2.0))
    return _abba(b1.to(dtype), a1.to(dtype), _zeros(m, r2, dtype, device), a2)


@register("peft-loha", methods=("abba",))
def peft_loha(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """PEFT's LoHa: ``w1a, w1b, w2a`` Kaiming-uniform (``a = sqrt(5)``), ``w2b = 0``; ΔW = 0.

    In our names ``B1 = w1a ~ U(±1/sqrt(r1))``, ``A1 = w1b ~ U(±1/sqrt(n))``,
    ``B2 = w2a ~ U(±1/sqrt(r2))``, ``A2 = w2b = 0`` (torch's fan-in is the second dimension).
    Source: Hugging Face PEFT, ``LoHaLayer.reset_adapter_parameters``.
    """
    (m, n), (r1, r2) = shape, ranks
    return _abba(kaiming_uniform(rng, m, r1, dtype, device), kaiming_uniform(rng, r1, n, dtype, device),
                 kaiming_uniform(rng, m, r2, dtype, device), _zeros(r2, n, dtype, device))


@register("lycoris-loha", methods=("abba",))
def lycoris_loha(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """LyCORIS's LoHa: ``w1b ~ N(0, 1)``, ``w1a ~ N(0, 0.1^2)``, ``w2b ~ N(0, 1)``, ``w2a = 0``; ΔW = 0.

    In our names ``B1 = w1a``, ``A1 = w1b``, ``B2 = w2a = 0``, ``A2 = w2b``. Source: LyCORIS, LoHa module.
    """
    (m, n), (r1, r2) = shape, ranks
    normal = lambda std, rows, cols: _host(std * rng.standard_normal((rows, cols)), dtype, device)  # noqa: E731
    return _abba(normal(0.1, m, r1), normal(1.0, r1, n), _zeros(m, r2, dtype, device), normal(1.0, r2, n))


@register("olora", methods=("abba",))
def olora(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """OLoRA-like pair 1: ``W0 = Q R``, ``B1 = Q[:, :r1]``, ``A1 = R[:r1]``; pair 2 LoRA-style.

    Source: OLoRA (Büyükakyüz, 2024), as in PEFT's ``init_lora_weights="olora"``; without
    subtracting pair 1 from W0, like ``abba-paper``.
    """
    (m, n), (r1, r2) = shape, ranks
    q, r = torch.linalg.qr(_w0(target, base).to(device=device, dtype=torch.float64))
    b1, a1 = q[:, :r1].to(dtype), r[:r1].to(dtype)
    return _abba(b1, a1, *_lora_style_pair(rng, m, n, r2, dtype, device))


@register("milora", methods=("abba",))
def milora(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """MiLoRA-like pair 1: the r1 *smallest* singular triplets of W0, split ``U sqrt(S)``, ``sqrt(S) V^T``.

    Pair 2 LoRA-style. Source: MiLoRA (Wang et al., 2024), PEFT's minor-singular-component option.
    """
    (m, n), (r1, r2) = shape, ranks
    b1, a1 = svd_pair(_w0(target, base), 0, r1, dtype, device, smallest=True)
    return _abba(b1, a1, *_lora_style_pair(rng, m, n, r2, dtype, device))


# --- for fits ------------------------------------------------------------------------------------


@register("svd-ones", methods=("abba",))
def svd_ones(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """Pair 1 the top-r1 SVD of the target, pair 2 with product exactly all ones: starts at LoRA(r1).

    ``B2 = [1 | 0]`` and ``A2 = [1^T ; K]`` with ``K`` Kaiming-uniform, so ``B2 A2`` is the all-ones
    matrix while every row of ``A2`` is non-zero (an exact update of ``B2`` can use all of them,
    unlike ``svd-ones-scaled``, whose identical columns stay identical). The start is LoRA's optimum
    at rank r1, so a monotone solver never ends above it. The default start of the ``als`` solver.
    """
    if target is None:
        raise ValueError("init 'svd-ones' needs the target")
    (m, n), (r1, r2) = shape, ranks
    b1, a1 = svd_pair(target, 0, r1, dtype, device)
    b2 = _zeros(m, r2, dtype, device)
    b2[:, 0] = 1
    a2 = torch.cat([torch.ones(1, n, dtype=dtype, device=device), kaiming_uniform(rng, r2 - 1, n, dtype, device)])
    return _abba(b1, a1, b2, a2)


@register("segre", methods=("abba",))
def segre(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """Algebraic start inside T's rank-``r1 r2`` SVD subspace (:mod:`abba_analysis.segre`): exact
    factors when T is an exact ABBA product, a structured start otherwise.

    Falls back to ``svd-ones`` where the construction does not apply (too few rows and columns for
    the quadric fit) or finds no well-conditioned basis. :func:`abba_analysis.fit` starts with it
    when the target's rank is at most ``r1 r2``.
    """
    if target is None:
        raise ValueError("init 'segre' needs the target")
    from .segre import applicable, segre_factors

    r1, r2 = ranks
    if applicable(tuple(target.shape), r1, r2):
        try:
            found = segre_factors(target, r1, r2, rng=rng)
            return {k: v.to(device=device, dtype=dtype) for k, v in found.items()}
        except np.linalg.LinAlgError:
            pass
    return svd_ones(shape, ranks, target=target, base=base, alpha=alpha, rng=rng, dtype=dtype, device=device)


@register("sqrt-target", methods=("abba",))
def sqrt_target(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """Hadamard-decomposition style: pair 1 the top-r1 SVD of ``sign(T) sqrt(|T|)``, pair 2 of ``sqrt(|T|)``.

    The two roots multiply back to T exactly; ``sqrt(|T|)`` is entry-wise positive, so its top
    singular direction is strong and a low-rank pair 2 captures much of it, while pair 1 carries the
    signs. Source: the SVD-based inits of the Hadamard-decomposition literature (Wertz, Vandaele &
    Gillis, 2025), in the signed/unsigned split stated here.
    """
    if target is None:
        raise ValueError("init 'sqrt-target' needs the target")
    r1, r2 = ranks
    return _abba(*svd_pair(signed_sqrt(target), 0, r1, dtype, device),
                 *svd_pair(target.abs().sqrt(), 0, r2, dtype, device))


@register("random", methods=("lora", "hira", "abba"))
def random_gaussian(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """I.i.d. Gaussian factors, one common scale chosen so that ``E||ΔW||_F = ||target||_F``.

    For a product of ``d`` factors with inner ranks ``r_i`` and entries ``N(0, σ^2)``,
    ``E||ΔW||_F^2 = m n σ^(2d) prod r_i`` (HiRA: times the mean square of ``W0``).
    """
    (m, n) = shape
    norm2 = float(target.square().sum()) if target is not None else float(m * n)
    names_ = ("B", "A") if len(ranks) == 1 else ("B1", "A1", "B2", "A2")
    gain = float(np.prod(ranks)) * m * n
    if base is not None and len(ranks) == 1:
        gain *= float(base.square().mean())
    sigma = (norm2 / gain) ** (1.0 / (2 * len(names_))) if norm2 > 0 and gain > 0 else 1.0
    # One pair (LoRA, HiRA) takes the first two shapes.
    shapes = dict(zip(names_, [(m, ranks[0]), (ranks[0], n), (m, ranks[-1]), (ranks[-1], n)], strict=False))
    return {k: _host(sigma * rng.standard_normal(s), dtype, device) for k, s in shapes.items()}


# --- LoRA and HiRA -------------------------------------------------------------------------------


@register("lora-style", methods=("lora", "hira"))
def lora_style(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """``B = 0``, ``A`` Kaiming-uniform ``U(-1/sqrt(n), 1/sqrt(n))``: the update starts at exactly 0.

    Source: LoRA (Hu et al., 2021) and PEFT's default; HiRA uses the same.
    """
    (m, n), (r,) = shape, ranks
    b, a = _lora_style_pair(rng, m, n, r, dtype, device)
    return {"B": b, "A": a}


@register("svd", methods=("lora",))
def svd_target(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """The top-r truncated SVD of the target, ``B = U sqrt(S)``, ``A = sqrt(S) V^T``: LoRA's optimum."""
    if target is None:
        raise ValueError("init 'svd' needs the target")
    b, a = svd_pair(target, 0, ranks[0], dtype, device)
    return {"B": b, "A": a}


def divide_by_base(target: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``target ⊘ base`` with entries where ``base`` is (numerically) zero set to zero (stacks too)."""
    tiny = torch.finfo(base.dtype).eps * base.abs().amax(dim=(-2, -1), keepdim=True)
    safe = torch.where(base.abs() > tiny, base, torch.ones_like(base))
    return torch.where(base.abs() > tiny, target / safe, torch.zeros_like(target))


@register("divide-svd", methods=("hira",), needs_base=True)
def divide_svd(shape, ranks, *, target, base, alpha, rng, dtype, device) -> Factors:
    """The HiRA paper's fit: the top-r SVD of ``target ⊘ W0`` (entries where ``W0 = 0`` set to 0).

    This is the optimum of ``||target ⊘ W0 - B A||_F``, not of HiRA's own error
    ``||target - W0 ⊙ (B A)||_F`` (a low-rank problem weighted by ``W0^2``).
    """
    if target is None:
        raise ValueError("init 'divide-svd' needs the target")
    b, a = svd_pair(divide_by_base(target, base), 0, ranks[0], dtype, device)
    return {"B": b, "A": a}
