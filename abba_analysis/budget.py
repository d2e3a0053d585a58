"""Parameter budgets: what ranks of one method cost the same as another's.

At equal budget ABBA at ``(r1, r2)`` has ``(r1 + r2)(m + n)`` parameters, LoRA and HiRA at rank r
``r (m + n)``, so "ABBA at rank r" means ``r1 + r2 = r``, split as evenly as possible (the paper
finds ``r1 = r2`` best).
"""

from __future__ import annotations

from ._validation import check_positive_int
from .parameterizations import get_method


def abba_ranks_for_lora(rank: int) -> tuple[int, int]:
    """ABBA ranks ``(r1, r2)`` with the parameter count of LoRA at ``rank`` (``r1 <= r2``, balanced).

    Examples
    --------
    >>> abba_ranks_for_lora(24)
    (12, 12)
    >>> abba_ranks_for_lora(7)
    (3, 4)
    """
    rank = check_positive_int(rank, "rank")
    if rank < 2:
        raise ValueError(f"rank must be at least 2 to split between ABBA's two pairs, got {rank}")
    return rank // 2, rank - rank // 2


def lora_rank_for_abba(ranks: tuple[int, int]) -> int:
    """LoRA rank with the parameter count of ABBA at ``(r1, r2)``: ``r1 + r2``.

    Examples
    --------
    >>> lora_rank_for_abba((12, 12))
    24
    """
    if not isinstance(ranks, (tuple, list)) or len(ranks) != 2:
        raise TypeError(f"ranks must be a pair (r1, r2), got {ranks!r}")
    return check_positive_int(ranks[0], "r1") + check_positive_int(ranks[1], "r2")


def num_params(method: str, shape: tuple[int, int], rank: int | tuple[int, int]) -> int:
    """Trainable parameters of ``method`` at ``rank`` for an ``m x n`` update.

    Examples
    --------
    >>> num_params("abba", (768, 768), (4, 4)) == num_params("lora", (768, 768), 8)
    True
    """
    param = get_method(method)
    shape = (check_positive_int(shape[0], "m"), check_positive_int(shape[1], "n"))
    return param.num_params(shape, param.check_ranks(rank, shape))
