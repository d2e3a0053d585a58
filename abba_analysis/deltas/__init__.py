"""Real weights as targets: per-layer deltas of checkpoint pairs, PEFT adapters, and plain weights."""

from __future__ import annotations

from .checkpoint import Checkpoint, CheckpointError, TensorInfo
from .matrix_file import load_matrix
from .packaged import minilm_available, minilm_path
from .summary import summarize
from .pairs import DeltaPairs, LayerDelta, LayerWeight, from_checkpoints, from_peft_adapter, match_names, weights

__all__ = [
    "Checkpoint", "CheckpointError", "DeltaPairs", "LayerDelta", "LayerWeight", "TensorInfo",
    "from_checkpoints", "from_peft_adapter", "load_matrix", "match_names", "minilm_available", "minilm_path",
    "summarize", "weights",
]
