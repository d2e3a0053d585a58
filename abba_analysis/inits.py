"""Named initialization schemes: each maps a problem to a starting set of factors.

A scheme is a function ``scheme(shape, ranks, *, target, base, rng, dtype, device) -> factors``
registered with :func:`register`, which records the methods it applies to and whether it needs the
frozen weight ``base``. Random numbers are drawn on the host from ``rng`` and then moved, so CPU and
GPU fits start from the same point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ._validation import SeedLike, as_generator
from .linalg import split_factors, truncated_svd
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
    seed: SeedLike = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> Factors:
    """Run scheme ``name`` for ``method`` and return its factors.

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
    factors = scheme.function(
        tuple(shape), tuple(ranks), target=target, base=base, rng=as_generator(seed), dtype=dtype,
        device=torch.device(device),
    )
    expected = get_method(method).factor_shapes(tuple(shape), tuple(ranks))
    # Schemes shared by several methods name LoRA-style factors B, A; ABBA's are B1, A1, B2, A2.
    assert {k: tuple(v.shape) for k, v in factors.items()} == expected, (name, method)
    return factors


# --- building blocks ---------------------------------------------------------------------------


def _host(x: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)


def kaiming_uniform(rng: np.random.Generator, rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """U(-1/sqrt(cols), 1/sqrt(cols)): torch's ``kaiming_uniform_(a=sqrt(5))``, PEFT's LoRA ``A`` init."""
    bound = 1.0 / math.sqrt(cols)
    return _host(rng.uniform(-bound, bound, size=(rows, cols)), dtype, device)


def svd_pair(matrix: torch.Tensor, rank: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U sqrt(S), sqrt(S) Vh)`` of the top-``rank`` SVD, computed in float64."""
    u, s, vh = truncated_svd(matrix.to(device=device, dtype=torch.float64), rank)
    b, a = split_factors(u, s, vh)
    return b.to(dtype), a.to(dtype)


def _source(target: torch.Tensor | None, base: torch.Tensor | None) -> torch.Tensor:
    """The matrix an SVD-based pair is taken from: the pretrained weight if given, else the target."""
    source = base if base is not None else target
    if source is None:
        raise ValueError("this init needs the target or base=W0 to take an SVD of")
    return source


# --- schemes -----------------------------------------------------------------------------------


@register("abba-paper", methods=("abba",))
def abba_paper(shape, ranks, *, target, base, rng, dtype, device) -> Factors:
    """The ABBA paper's choice: pair 1 from the top-r1 SVD, pair 2 LoRA-style (ΔW = 0 at start).

    ``B1 = U sqrt(S)``, ``A1 = sqrt(S) V^T`` from the top-r1 SVD of ``base`` (the pretrained weight
    ``W0``, as in the paper) or of the target when no base is given; ``B2 = 0``; ``A2`` Kaiming-uniform
    ``U(-1/sqrt(n), 1/sqrt(n))``. Source: ABBA (arXiv 2505.14238), Table 3, first row.
    """
    (m, n), (r1, r2) = shape, ranks
    b1, a1 = svd_pair(_source(target, base), r1, dtype, device)
    b2 = torch.zeros(m, r2, dtype=dtype, device=device)
    return {"B1": b1, "A1": a1, "B2": b2, "A2": kaiming_uniform(rng, r2, n, dtype, device)}


@register("svd-ones", methods=("abba",))
def svd_ones(shape, ranks, *, target, base, rng, dtype, device) -> Factors:
    """Pair 1 the top-r1 SVD of the target, pair 2 with product exactly all ones: starts at LoRA(r1).

    ``B2 = [1 | 0]`` and ``A2 = [1^T ; K]`` with ``K`` Kaiming-uniform, so ``B2 A2`` is the all-ones
    matrix while every row of ``A2`` is non-zero (an exact update of ``B2`` can use all of them).
    The start is LoRA's optimum at rank r1, so a monotone solver never ends above it.
    """
    if target is None:
        raise ValueError("init 'svd-ones' needs the target")
    (m, n), (r1, r2) = shape, ranks
    b1, a1 = svd_pair(target, r1, dtype, device)
    b2 = torch.zeros(m, r2, dtype=dtype, device=device)
    b2[:, 0] = 1
    a2 = torch.cat([torch.ones(1, n, dtype=dtype, device=device), kaiming_uniform(rng, r2 - 1, n, dtype, device)])
    return {"B1": b1, "A1": a1, "B2": b2, "A2": a2}


@register("random", methods=("lora", "hira", "abba"))
def random_gaussian(shape, ranks, *, target, base, rng, dtype, device) -> Factors:
    """I.i.d. Gaussian factors, one common scale chosen so that ``E||ΔW||_F = ||target||_F``.

    For a product of ``d`` factors with inner ranks ``r_1..`` and entries ``N(0, σ^2)`` the update has
    ``E||ΔW||_F^2 = m n σ^(2d) prod r_i`` (HiRA: times the mean square of ``W0``).
    """
    (m, n) = shape
    norm2 = float(target.square().sum()) if target is not None else float(m * n)
    method_factors = {1: ("B", "A"), 2: ("B1", "A1", "B2", "A2")}[len(ranks)]
    gain = float(np.prod(ranks)) * m * n
    if base is not None and len(ranks) == 1:
        gain *= float(base.square().mean())
    sigma = (norm2 / gain) ** (1.0 / (2 * len(method_factors))) if norm2 > 0 and gain > 0 else 1.0
    shapes = dict(zip(method_factors, [(m, ranks[0]), (ranks[0], n), (m, ranks[-1]), (ranks[-1], n)]))
    return {k: _host(sigma * rng.standard_normal(s), dtype, device) for k, s in shapes.items()}


@register("lora-style", methods=("lora", "hira"))
def lora_style(shape, ranks, *, target, base, rng, dtype, device) -> Factors:
    """``B = 0``, ``A`` Kaiming-uniform ``U(-1/sqrt(n), 1/sqrt(n))``: the update starts at exactly 0.

    Source: LoRA (Hu et al., 2021) and PEFT's default; HiRA uses the same.
    """
    (m, n), (r,) = shape, ranks
    return {"B": torch.zeros(m, r, dtype=dtype, device=device), "A": kaiming_uniform(rng, r, n, dtype, device)}


@register("svd", methods=("lora",))
def svd_target(shape, ranks, *, target, base, rng, dtype, device) -> Factors:
    """The top-r truncated SVD of the target, ``B = U sqrt(S)``, ``A = sqrt(S) V^T``: LoRA's optimum."""
    if target is None:
        raise ValueError("init 'svd' needs the target")
    b, a = svd_pair(target, ranks[0], dtype, device)
    return {"B": b, "A": a}


def divide_by_base(target: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``target ⊘ base`` with entries where ``base`` is (numerically) zero set to zero."""
    tiny = torch.finfo(base.dtype).eps * float(base.abs().max())
    safe = torch.where(base.abs() > tiny, base, torch.ones_like(base))
    return torch.where(base.abs() > tiny, target / safe, torch.zeros_like(target))


@register("divide-svd", methods=("hira",), needs_base=True)
def divide_svd(shape, ranks, *, target, base, rng, dtype, device) -> Factors:
    """The HiRA paper's fit: the top-r SVD of ``target ⊘ W0`` (entries where ``W0 = 0`` set to 0).

    This is the optimum of ``||target ⊘ W0 - B A||_F``, not of HiRA's own error
    ``||target - W0 ⊙ (B A)||_F`` (a low-rank problem weighted by ``W0^2``).
    """
    if target is None:
        raise ValueError("init 'divide-svd' needs the target")
    b, a = svd_pair(divide_by_base(target, base), ranks[0], dtype, device)
    return {"B": b, "A": a}
