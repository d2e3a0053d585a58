"""Seeded random target matrices of the kinds the expressivity experiments use.

Every generator returns a numpy array of shape ``(m, n)`` (``n = m`` when omitted) and dtype
``float64`` unless asked, and draws from ``seed`` (None, an int or a numpy Generator) alone.
"""

from __future__ import annotations

import inspect
from typing import Callable

import numpy as np

from ._validation import SeedLike, as_generator, check_positive_int

_DTYPES = ("float32", "float64")


def _shape(m: int, n: int | None) -> tuple[int, int]:
    m = check_positive_int(m, "m")
    n = m if n is None else check_positive_int(n, "n")
    return m, n


def _finish(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    return np.ascontiguousarray(x, dtype=dtype)


def _haar_frame(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A ``rows x cols`` matrix with Haar-distributed orthonormal columns (``rows >= cols``)."""
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    # Fixing the signs of R's diagonal makes Q exactly Haar (Mezzadri, 2007).
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def _real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    return float(value)


def _check_low_rank(m: int, n: int, rank: object, noise: object = 0.0) -> int:
    rank = check_positive_int(rank, "rank", upper=min(m, n))
    noise = _real(noise, "noise")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return rank


def _check_sparse(m: int, n: int, density: object = 0.05) -> None:
    if not 0 < _real(density, "density") <= 1:
        raise ValueError(f"density must be in (0, 1], got {density!r}")


def _check_power_law(m: int, n: int, exponent: object = 1.0) -> None:
    exponent = _real(exponent, "exponent")
    if not np.isfinite(exponent) or exponent < 0:
        raise ValueError(f"exponent must be a finite number >= 0, got {exponent!r}")


def _check_exp_decay(m: int, n: int, scale: object = 45.0) -> None:
    scale = _real(scale, "scale")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")


def gaussian(m: int, n: int | None = None, *, seed: SeedLike = None, dtype: str = "float64") -> np.ndarray:
    """I.i.d. standard normal entries (the paper's "random" target).

    Examples
    --------
    >>> gaussian(3, 2, seed=0).shape
    (3, 2)
    """
    m, n = _shape(m, n)
    return _finish(as_generator(seed).standard_normal((m, n)), dtype)


def orthogonal(m: int, n: int | None = None, *, seed: SeedLike = None, dtype: str = "float64") -> np.ndarray:
    """A Haar-random matrix with orthonormal rows or columns: every singular value is 1.

    Its truncated-SVD relative error at rank r is exactly ``sqrt(1 - r / min(m, n))``.
    """
    m, n = _shape(m, n)
    rng = as_generator(seed)
    q = _haar_frame(rng, m, n) if m >= n else _haar_frame(rng, n, m).T
    return _finish(q, dtype)


def low_rank(
    m: int,
    n: int | None = None,
    *,
    rank: int,
    noise: float = 0.0,
    seed: SeedLike = None,
    dtype: str = "float64",
) -> np.ndarray:
    """``G1 @ G2 / sqrt(rank)`` with Gaussian factors, plus optional Gaussian noise.

    Parameters
    ----------
    rank : int
        Rank of the noiseless part, ``1 <= rank <= min(m, n)``.
    noise : float
        Frobenius norm of the added noise relative to that of the low-rank part (0: exactly low rank).
    """
    m, n = _shape(m, n)
    rank = _check_low_rank(m, n, rank, noise)
    rng = as_generator(seed)
    x = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n)) / np.sqrt(rank)
    if noise > 0:
        e = rng.standard_normal((m, n))
        x = x + noise * np.linalg.norm(x) / np.linalg.norm(e) * e
    return _finish(x, dtype)


def sparse(
    m: int, n: int | None = None, *, density: float = 0.05, seed: SeedLike = None, dtype: str = "float64"
) -> np.ndarray:
    """Standard normal values at ``round(density m n)`` (at least one) uniformly chosen positions."""
    m, n = _shape(m, n)
    _check_sparse(m, n, density)
    rng = as_generator(seed)
    count = max(1, round(density * m * n))
    x = np.zeros(m * n)
    x[rng.choice(m * n, size=count, replace=False)] = rng.standard_normal(count)
    return _finish(x.reshape(m, n), dtype)


def with_spectrum(
    singular_values: np.ndarray, m: int, n: int | None = None, *, seed: SeedLike = None, dtype: str = "float64"
) -> np.ndarray:
    """``U diag(s) V^T`` with Haar-random ``U``, ``V`` and the given singular values.

    ``singular_values`` (non-negative, at most ``min(m, n)`` of them) need not be sorted; missing
    ones are zero.
    """
    m, n = _shape(m, n)
    s = np.asarray(singular_values, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or s.size > min(m, n) or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(
            f"singular_values must be 1 to min(m, n) = {min(m, n)} finite non-negative values, got {s.size}"
        )
    rng = as_generator(seed)
    k = s.size
    u, v = _haar_frame(rng, m, k), _haar_frame(rng, n, k)
    return _finish((u * s) @ v.T, dtype)


def power_law(
    m: int, n: int | None = None, *, exponent: float = 1.0, seed: SeedLike = None, dtype: str = "float64"
) -> np.ndarray:
    """Haar singular vectors with singular values ``sigma_i = i ** -exponent``, i = 1..min(m, n)."""
    m, n = _shape(m, n)
    _check_power_law(m, n, exponent)
    s = np.arange(1, min(m, n) + 1, dtype=np.float64) ** -exponent
    return with_spectrum(s, m, n, seed=seed, dtype=dtype)


def uniform(m: int, n: int | None = None, *, seed: SeedLike = None, dtype: str = "float64") -> np.ndarray:
    """I.i.d. U[0, 1] entries: the standard synthetic target of the Hadamard-decomposition literature.

    Its mean makes one singular value large (about ``sqrt(m n) / 2``), so it is far easier for a
    low-rank fit than a Gaussian matrix (at 768 x 768, LoRA's error at r = 72 is about 0.42).
    """
    m, n = _shape(m, n)
    return _finish(as_generator(seed).random((m, n)), dtype)


def exp_decay(
    m: int, n: int | None = None, *, scale: float = 45.0, seed: SeedLike = None, dtype: str = "float64"
) -> np.ndarray:
    """Haar singular vectors with singular values ``sigma_i = exp(-(i - 1) / scale)``, i = 1..min(m, n).

    With ``scale = 45`` LoRA's error at r = 72 is about 0.20 (768 x 768): the value of the ABBA paper's
    "random" panel of Fig. 2, which no i.i.d. construction we know matches.
    """
    m, n = _shape(m, n)
    _check_exp_decay(m, n, scale)
    s = np.exp(-np.arange(min(m, n), dtype=np.float64) / scale)
    return with_spectrum(s, m, n, seed=seed, dtype=dtype)


KINDS: dict[str, Callable[..., np.ndarray]] = {
    "orthogonal": orthogonal,
    "low_rank": low_rank,
    "sparse": sparse,
    "gaussian": gaussian,
    "power_law": power_law,
    "uniform": uniform,
    "exp_decay": exp_decay,
}


_OPTION_CHECKS: dict[str, Callable[..., object]] = {
    "low_rank": _check_low_rank, "sparse": _check_sparse, "power_law": _check_power_law,
    "exp_decay": _check_exp_decay,
}


def check(kind: str, m: int, n: int | None = None, **options: object) -> None:
    """Check what :func:`make` would be given, without drawing anything (so at no cost for any size).

    Raises
    ------
    ValueError
        If ``kind`` is unknown or a shape or option value is out of range.
    TypeError
        If an option is unknown, missing or of the wrong type.

    Examples
    --------
    >>> check("low_rank", 10**9, rank=32)          # fine: nothing is allocated
    >>> check("sparse", 8, density=2.0)
    Traceback (most recent call last):
    ...
    ValueError: density must be in (0, 1], got 2.0
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    accepted = set(inspect.signature(KINDS[kind]).parameters) - {"m", "n", "seed", "dtype"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"{kind} takes no option(s) {unknown}; it takes {sorted(accepted)}")
    m, n = _shape(m, n)
    if kind in _OPTION_CHECKS:
        _OPTION_CHECKS[kind](m, n, **options)


def make(kind: str, m: int, n: int | None = None, **options: object) -> np.ndarray:
    """Generate a target by kind name (see :data:`KINDS`), passing ``options`` on.

    Examples
    --------
    >>> make("low_rank", 4, rank=2, seed=0).shape
    (4, 4)
    """
    try:
        generator = KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}") from None
    return generator(m, n, **options)
