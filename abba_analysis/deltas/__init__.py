"""Real weights as targets: per-layer deltas of checkpoint pairs, PEFT adapters (LoRA, LoHa, HiRA), and
plain weights."""

from __future__ import annotations

from .checkpoint import Checkpoint, CheckpointError, TensorInfo
from .matrix_file import load_matrix
from .packaged import minilm_available, minilm_path
from .summary import summarize
from .pairs import DeltaPairs, LayerDelta, LayerWeight, from_checkpoints, match_names, weights
from .adapter import from_peft_adapter

__all__ = [
    "Checkpoint", "CheckpointError", "DeltaPairs", "LayerDelta", "LayerWeight", "TensorInfo",
    "from_checkpoints", "from_peft_adapter", "load_matrix", "match_names", "minilm_available", "minilm_path",
    "summarize", "weights",
]
