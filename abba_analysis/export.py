"""Fits out of the toolkit: a PEFT adapter directory that ``PeftModel.from_pretrained`` loads unchanged.

Each method maps onto a PEFT tuner that holds its form exactly, with the scale folded in (alpha = r,
so PEFT's ``alpha / r`` is 1):

========  ======  ===================================================================
method    PEFT    tensors per module (``base_model.model.<module>.…``)
========  ======  ===================================================================
LoRA      LORA    ``lora_B.weight = B`` (out × r), ``lora_A.weight = A`` (r × in)
ABBA      LOHA    ``hada_w1_a = B1``, ``hada_w1_b = A1``, ``hada_w2_a = B2``, ``hada_w2_b = A2``
HiRA      HIRA    ``hira_B = B``, ``hira_A = A``; PEFT's update is ``W0 ⊙ (B A)``, unscaled
========  ======  ===================================================================

LoHa has one rank for both pairs; an ABBA fit with ``r1 != r2`` is written at ``max(r1, r2)``, the
smaller pair padded with zero columns and rows (the product is unchanged). Modules whose rank differs
from the most common one go to ``rank_pattern`` (with ``alpha_pattern`` keeping the scale at 1).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from .fit import FitResult

PEFT_TYPES = {"lora": "LORA", "abba": "LOHA", "hira": "HIRA"}
_PREFIX = "base_model.model."


def module_name(tensor_name: str, strip_prefix: str = "") -> str:
    """The module a weight belongs to: ``tensor_name`` without ``.weight`` and without ``strip_prefix``.

    Examples
    --------
    >>> module_name("bert.encoder.layer.0.attention.self.query.weight", strip_prefix="bert.")
    'encoder.layer.0.attention.self.query'
    """
    name = tensor_name.removesuffix(".weight")
    if strip_prefix and name.startswith(strip_prefix):
        name = name[len(strip_prefix):]
    return name


def _tensor(x: object, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(x)) if not isinstance(x, torch.Tensor) else x.detach()
    return t.to(device="cpu", dtype=dtype).contiguous()


def _pad(matrix: torch.Tensor, rank: int, axis: int) -> torch.Tensor:
    """``matrix`` with zeros appended along ``axis`` up to ``rank``."""
    missing = rank - matrix.shape[axis]
    if missing == 0:
        return matrix
    shape = list(matrix.shape)
    shape[axis] = missing
    return torch.cat([matrix, matrix.new_zeros(shape)], dim=axis)


def _module_tensors(fit: FitResult, dtype: torch.dtype) -> tuple[int, dict[str, torch.Tensor]]:
    """The rank PEFT will see and the tensors of one module, by suffix."""
    f = {k: _tensor(v, dtype) for k, v in fit.factors.items()}
    if fit.method == "lora":
        return f["B"].shape[1], {"lora_A.weight": f["A"], "lora_B.weight": f["B"]}
    if fit.method == "hira":
        return f["B"].shape[1], {"hira_A": f["A"], "hira_B": f["B"]}
    r = max(fit.ranks)
    return r, {"hada_w1_a": _pad(f["B1"], r, 1), "hada_w1_b": _pad(f["A1"], r, 0),
               "hada_w2_a": _pad(f["B2"], r, 1), "hada_w2_b": _pad(f["A2"], r, 0)}


def peft_adapter(
    fits: Mapping[str, FitResult],
    out_dir: str | os.PathLike,
    *,
    base_model: str | None = None,
    strip_prefix: str = "",
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write fits of one method as a PEFT adapter directory.

    Parameters
    ----------
    fits : mapping of tensor (or module) name to FitResult
        One fit per module, all LoRA, all ABBA or all HiRA, fitted to the module's update ``ΔW``
        (out × in, as ``nn.Linear.weight``); a stack's results work one by one.
    out_dir : path
        Created if needed; ``adapter_config.json`` and ``adapter_model.safetensors`` are written
        there (each to a temporary name first, so an interrupted call leaves no half-written file).
    base_model : str, optional
        ``base_model_name_or_path`` in the config (PEFT's default model when loading by directory).
    strip_prefix : str
        Removed from the front of each name: a checkpoint saved by ``BertForMaskedLM`` names its weights
        ``bert.encoder…``, while ``AutoModel`` (a ``BertModel``) has modules ``encoder…``.
    dtype : torch.dtype
        Storage dtype of the adapter (default float32).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    ValueError
        If ``fits`` is empty or mixes methods.

    Examples
    --------
    >>> import abba_analysis as aa
    >>> delta = aa.targets.gaussian(8, 6, seed=0)
    >>> fit = aa.fit(delta, "lora", 2)
    >>> path = aa.export.peft_adapter({"layer.weight": fit}, "adapter")  # doctest: +SKIP
    """
    if not fits:
        raise ValueError("fits is empty: nothing to export")
    methods = sorted({f.method for f in fits.values()})
    if len(methods) != 1:
        raise ValueError(f"a PEFT adapter holds one kind of update; fits mix {methods}: export each separately")
    method = methods[0]
    tensors: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    for name, fit in fits.items():
        module = module_name(name, strip_prefix)
        if module in ranks:
            raise ValueError(f"two fits map to module {module!r}")
        ranks[module], parts = _module_tensors(fit, dtype)
        tensors.update({f"{_PREFIX}{module}.{suffix}": t for suffix, t in parts.items()})
    r = Counter(ranks.values()).most_common(1)[0][0]
    pattern = {module: rank for module, rank in ranks.items() if rank != r}
    config: dict[str, object] = {"peft_type": PEFT_TYPES[method], "r": r, "target_modules": sorted(ranks),
                                 "rank_pattern": pattern, "base_model_name_or_path": base_model,
                                 "inference_mode": True, "task_type": None}
    if method == "lora":
        config.update(lora_alpha=r, alpha_pattern=dict(pattern), lora_dropout=0.0, bias="none",
                      fan_in_fan_out=False, use_rslora=False)
    elif method == "abba":
        config.update(alpha=r, alpha_pattern=dict(pattern), rank_dropout=0.0, module_dropout=0.0,
                      use_effective_conv2d=False)
    else:
        config.update(fan_in_fan_out=False, hira_dropout=0.0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    weights, settings = out / "adapter_model.safetensors", out / "adapter_config.json"
    save_file(tensors, str(weights.with_name(".adapter_model.safetensors.tmp")), metadata={"format": "pt"})
    os.replace(weights.with_name(".adapter_model.safetensors.tmp"), weights)
    settings.with_name(".adapter_config.json.tmp").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(settings.with_name(".adapter_config.json.tmp"), settings)
    return out
