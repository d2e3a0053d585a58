"""LoRA, HiRA and ABBA behind one protocol (:class:`Parameterization`), registered by name."""

from __future__ import annotations

from .abba import ABBA, abba_apply, abba_scale, khatri_rao_factors, row_kronecker
from .base import Factors, Parameterization
from .hira import HiRA
from .lora import LoRA, lora_scale

METHODS: dict[str, Parameterization] = {p.name: p for p in (LoRA(), HiRA(), ABBA())}


def get_method(name: str) -> Parameterization:
    """Return the registered parameterization called ``name``.

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists the valid names.
    """
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {name!r}") from None


__all__ = [
    "ABBA",
    "Factors",
    "HiRA",
    "LoRA",
    "METHODS",
    "Parameterization",
    "abba_apply",
    "abba_scale",
    "get_method",
    "khatri_rao_factors",
    "lora_scale",
    "row_kronecker",
]
