"""The updates of PEFT adapters, streamed one module at a time: LoRA, LoHa (ABBA's form) and HiRA."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from .checkpoint import Checkpoint, CheckpointError, selector
from .pairs import LayerDelta, match_names

PEFT_PREFIX = "base_model.model."
# Per PEFT type: the tensor-name suffixes one module's update is made of (the first identifies modules).
ADAPTER_TENSORS = {
    "LORA": ("lora_A.weight", "lora_B.weight"),
    "LOHA": ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"),
    "HIRA": ("hira_A", "hira_B"),
}


@dataclass(frozen=True)
class AdapterConfig:
    """What ``adapter_config.json`` says about an update's form and scale."""

    peft_type: str
    r: int
    alpha: float
    use_rslora: bool = False
    fan_in_fan_out: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> "AdapterConfig":
        """Parse ``path``; raise :class:`CheckpointError` naming it for anything unreadable or unsupported."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"cannot read adapter config {path}: {error}") from None
        peft_type = str(raw.get("peft_type", "LORA")).upper()
        if peft_type not in ADAPTER_TENSORS:
            raise CheckpointError(f"{path}: peft_type {raw.get('peft_type')!r} is not one of {sorted(ADAPTER_TENSORS)}")
        try:
            r = int(raw["r"])
            alpha = float(raw.get("lora_alpha" if peft_type == "LORA" else "alpha", r) or r)
            return cls(peft_type=peft_type, r=r, alpha=alpha, use_rslora=bool(raw.get("use_rslora", False)),
                       fan_in_fan_out=bool(raw.get("fan_in_fan_out", False)),
                       rank_pattern=dict(raw.get("rank_pattern") or {}),
                       alpha_pattern=dict(raw.get("alpha_pattern") or {}))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: missing or invalid {peft_type} field: {error}") from None

    def scale(self, module: str) -> float:
        """The update's scale for ``module``: ``alpha / r`` (rsLoRA: ``alpha / sqrt(r)``) with PEFT's
        ``rank_pattern`` / ``alpha_pattern`` overrides; HiRA's update has none (1)."""
        if self.peft_type == "HIRA":
            return 1.0
        r = _pattern_value(self.rank_pattern, module, self.r)
        alpha = _pattern_value(self.alpha_pattern, module, self.alpha)
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's rule: a pattern key applies when the module name ends with it (at a dot)."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?{key}$", module):
            return value
    return default


def from_peft_adapter(
    adapter: str | os.PathLike,
    base: str | os.PathLike | None = None,
    include: str | None = None,
    *,
    exclude: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Iterator[LayerDelta]:
    """Stream a PEFT adapter's updates ``ΔW``, one module at a time.

    Parameters
    ----------
    adapter : path
        A directory with ``adapter_config.json`` and ``adapter_model.safetensors`` (or ``.bin``) of a
        LoRA (``ΔW = s B A``), LoHa (``ΔW = s (w1a w1b) ⊙ (w2a w2b)``: ABBA's form) or HiRA
        (``ΔW = W0 ⊙ (B A)``) adapter.
    base : path or hub id, optional
        The base model; when given, each :class:`LayerDelta` carries ``W0`` (matched by name, up to the
        ``base_model.model.`` prefix). A HiRA adapter's update needs it.
    include, exclude : str, optional
        Regular expressions on the module's weight name (``<module>.weight``).
    dtype : torch.dtype

    Notes
    -----
    ``s = alpha / r`` (LoRA's rsLoRA: ``/ sqrt(r)``) with ``rank_pattern`` / ``alpha_pattern``
    overrides; ``fan_in_fan_out`` adapters (GPT-2's Conv1D) are transposed to ``(out, in)``.
    The adapter (and ``base``) are opened and the selection checked at the call; updates are
    computed as the iterator is consumed.
    """
    root = Path(adapter)
    if not root.is_dir():
        raise CheckpointError(f"adapter directory {root} does not exist")
    config = AdapterConfig.read(root / "adapter_config.json")
    checkpoint = Checkpoint.open(root)
    suffixes = ADAPTER_TENSORS[config.peft_type]
    modules = sorted({n[: -len(suffixes[0]) - 1] for n in checkpoint.names() if n.endswith("." + suffixes[0])})
    if not modules:
        raise CheckpointError(f"{root}: no '*.{suffixes[0]}' tensors: not a {config.peft_type} adapter")
    keep = selector(include, exclude)
    chosen = [m for m in modules if keep(f"{m}.weight")]
    if not chosen:
        raise CheckpointError(f"include={include!r} exclude={exclude!r} select no module of adapter {root}; "
                              f"its modules are {', '.join(modules[:4])}{', ...' if len(modules) > 4 else ''}")
    if config.peft_type == "HIRA" and base is None:
        raise CheckpointError(f"{root} is a HiRA adapter: its update W0 ⊙ (B A) needs the base model (base=)")
    base_ckpt = Checkpoint.open(base) if base is not None else None
    mapping = match_names([f"{m}.weight" for m in modules], base_ckpt.names()) if base_ckpt else {}
    return _adapter_deltas(root, config, checkpoint, chosen, base, base_ckpt, mapping, dtype)


def _update(config: AdapterConfig, module: str, parts: list[torch.Tensor], root: Path) -> torch.Tensor:
    """The module's low-rank or Hadamard product, scaled (HiRA: before the product with W0)."""
    def product(b: torch.Tensor, a: torch.Tensor, names: str) -> torch.Tensor:
        if b.shape[1] != a.shape[0]:
            raise CheckpointError(f"{root}: {module}: {names} have shapes {tuple(b.shape)} and {tuple(a.shape)}")
        return b @ a

    if config.peft_type == "LORA":
        a, b = parts
        return config.scale(module) * product(b, a, "lora_B, lora_A")
    if config.peft_type == "HIRA":
        a, b = parts
        return product(b, a, "hira_B, hira_A")
    w1a, w1b, w2a, w2b = parts
    return config.scale(module) * (product(w1a, w1b, "hada_w1_a, hada_w1_b") * product(w2a, w2b, "hada_w2_a, hada_w2_b"))


def _adapter_deltas(root: Path, config: AdapterConfig, checkpoint: Checkpoint, modules: list[str], base,
                    base_ckpt: Checkpoint | None, mapping: dict[str, str], dtype: torch.dtype) -> Iterator[LayerDelta]:
    for module in modules:
        weight_name = f"{module}.weight"
        names = [f"{module}.{suffix}" for suffix in ADAPTER_TENSORS[config.peft_type]]
        missing = [n for n in names if n not in checkpoint]
        if missing:
            raise CheckpointError(f"{root}: module {module} lacks {missing}")
        delta = _update(config, module, [checkpoint.load(n).to(dtype) for n in names], root)
        if config.fan_in_fan_out:
            delta = delta.T
        w0 = None
        if base_ckpt is not None:
            if weight_name not in mapping:
                raise CheckpointError(f"base {base} has no weight for adapter module {module!r}")
            w0 = base_ckpt.load(mapping[weight_name]).to(dtype)
            if config.fan_in_fan_out:
                w0 = w0.T
            if w0.shape != delta.shape:
                raise ValueError(f"tensor {weight_name!r}: base shape {tuple(w0.shape)} != adapter update "
                                 f"shape {tuple(delta.shape)}")
            if config.peft_type == "HIRA":
                delta = w0 * delta
        plain = weight_name[len(PEFT_PREFIX):] if weight_name.startswith(PEFT_PREFIX) else weight_name
        yield LayerDelta(mapping.get(weight_name, plain), w0, delta)
