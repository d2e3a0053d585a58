"""Input checks and conversions shared by every public entry point.

Every public function converts its array inputs here, so that one place decides what a valid
target is and what the error message says.
"""

from __future__ import annotations

import re
from typing import Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]
SeedLike = Union[int, np.random.Generator, None]

_LOW_PRECISION = (torch.float16, torch.bfloat16)
_FLOAT_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def as_generator(seed: SeedLike) -> np.random.Generator:
    """Return a numpy Generator for ``seed`` (None, int or Generator)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be None, an int or a numpy Generator, got {type(seed).__name__}")


def resolve_dtype(dtype: str | torch.dtype | np.dtype | None, like: torch.dtype) -> torch.dtype:
    """Pick the working dtype: ``dtype`` if given, else ``like`` with half precisions promoted."""
    if dtype is None:
        return torch.float32 if like in _LOW_PRECISION else like
    if isinstance(dtype, str):
        if dtype not in _FLOAT_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_FLOAT_DTYPES)}, got {dtype!r}")
        return _FLOAT_DTYPES[dtype]
    if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and issubclass(dtype, np.generic)):
        return resolve_dtype(np.dtype(dtype).name, like)
    if dtype in (torch.float32, torch.float64):
        return dtype
    raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")


def resolve_device(device: str | torch.device) -> torch.device:
    """Return ``device`` as a ``torch.device`` after checking that this torch can use it.

    Raises
    ------
    ValueError
        If ``device`` is not a device string, or names a device this machine lacks (a CUDA device
        on a torch without CUDA or past the last GPU, an MPS device without MPS). One line that says
        what is available.
    """
    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str):
        try:
            resolved = torch.device(device)
        except RuntimeError:
            raise ValueError(f"device {device!r} is not a torch device; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    else:
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', or a torch.device, got {device!r}")
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {str(resolved)!r} is not available: this torch has no usable CUDA GPU; use 'cpu'")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device {str(resolved)!r} is not available: this machine has {count} CUDA GPU(s), "
                             f"cuda:0 to cuda:{count - 1}")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' is not available on this machine; use 'cpu'")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(resolved)!r} is not supported; use 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return resolved


def row_blocks(t: torch.Tensor, elements: int = 2**20) -> tuple[torch.Tensor, ...]:
    """Views of ``t``'s rows (all leading axes flattened) in blocks of about ``elements`` entries, for
    element-wise work whose temporaries should stay small next to a big matrix."""
    rows = t.reshape(-1, t.shape[-1])
    return rows.split(max(1, elements // t.shape[-1]))


def as_matrix(
    x: ArrayLike,
    name: str,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    allow_stack: bool = False,
) -> torch.Tensor:
    """Validate a 2-D real finite matrix (or, with ``allow_stack``, a 3-D stack of them) and return it
    as a torch tensor.

    Integer and boolean inputs become float64, float16/bfloat16 become float32, and float32/64 are
    kept unless ``dtype`` says otherwise. The result lives on ``device`` (default: where ``x`` is).

    Raises
    ------
    TypeError
        If ``x`` is not a numpy array or torch tensor, or is complex.
    ValueError
        If ``x`` is not 2-D (or 3-D, with ``allow_stack``), is empty, or holds NaN or Inf, or if
        ``device`` is not available (:func:`resolve_device`).
    """
    if isinstance(x, np.ndarray):
        if np.iscomplexobj(x):
            raise TypeError(f"{name} must be real, got complex dtype {x.dtype}")
        if x.dtype.kind in "biu":
            x = x.astype(np.float64)
        elif x.dtype.kind != "f":
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"{name} must be real, got complex dtype {x.dtype}")
        t = x.detach()
        if not t.is_floating_point():
            t = t.to(torch.float64)
    else:
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    if t.ndim != 2 and not (allow_stack and t.ndim == 3):
        expected = "2-D (out x in) or a 3-D stack (K x out x in)" if allow_stack else "2-D (out x in)"
        raise ValueError(f"{name} must be {expected}, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    t = t.to(device=resolve_device(device) if device is not None else t.device, dtype=resolve_dtype(dtype, t.dtype))
    # Checked a block of rows at a time: isfinite on the whole matrix costs ~2x its memory.
    if not all(bool(torch.isfinite(block).all()) for block in row_blocks(t)):
        raise ValueError(f"{name} holds NaN or Inf values")
    return t


def check_positive_int(value: object, name: str, *, upper: int | None = None) -> int:
    """Return ``value`` as an int after checking 1 <= value <= upper."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if value < 1 or (upper is not None and value > upper):
        bound = f" and at most {upper}" if upper is not None else ""
        raise ValueError(f"{name} must be at least 1{bound}, got {value}")
    return value


def compile_pattern(pattern: str | None, name: str) -> re.Pattern | None:
    """Compile the regular expression given as option ``name`` (None passes through).

    Raises
    ------
    ValueError
        Naming the option, the pattern and what is wrong with it.
    """
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise TypeError(f"{name} must be a regular expression string, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"{name} {pattern!r} is not a valid regular expression: {error}") from None


def like_input(t: torch.Tensor, reference: ArrayLike) -> ArrayLike:
    """Return ``t`` as numpy when ``reference`` is numpy (numpy in, numpy out), else as is."""
    if isinstance(reference, np.ndarray):
        return t.detach().cpu().numpy()
    return t
