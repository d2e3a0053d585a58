"""One matrix from a file, as a target or a base: ``.npy``, ``.pt`` / ``.pth`` and ``.safetensors``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .checkpoint import Checkpoint, CheckpointError

MATRIX_SUFFIXES = (".npy", ".pt", ".pth", ".safetensors")


def _pick(names: list[str], tensor: str | None, path: Path) -> str:
    """The name to read: ``tensor`` if it exists, else the only one there is."""
    if tensor is None:
        if len(names) == 1:
            return names[0]
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
        raise CheckpointError(f"{path} holds {len(names)} tensors; choose one with tensor= (--tensor): {shown}")
    if tensor not in names:
        close = [n for n in names if tensor in n][:6] or names[:6]
        raise CheckpointError(f"{path} has no tensor {tensor!r}; it has e.g. {', '.join(close)}")
    return tensor


def load_matrix(path: str | os.PathLike, tensor: str | None = None) -> torch.Tensor:
    """Read one 2-D matrix from a file.

    Parameters
    ----------
    path : path
        ``.npy`` (a numpy array; no pickles), ``.pt`` / ``.pth`` (a tensor or a dict of tensors, loaded
        with ``weights_only=True``: no arbitrary unpickling) or ``.safetensors``.
    tensor : str, optional
        Which tensor of a dict or safetensors file; may be omitted when the file holds one.

    Returns
    -------
    torch.Tensor
        As stored (dtype unchanged); :func:`abba_analysis.fit` checks and converts it.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable or of another kind, if ``tensor`` is needed or absent (the
        message lists names there are), or if the tensor is not 2-D.
    """
    path = Path(path)
    if path.suffix not in MATRIX_SUFFIXES:
        raise CheckpointError(f"{path}: unknown file kind {path.suffix!r}; expected one of {list(MATRIX_SUFFIXES)}")
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    if path.suffix == ".npy":
        if tensor is not None:
            raise CheckpointError(f"{path} holds one array; tensor= (--tensor) applies to .pt and .safetensors files")
        try:
            matrix = torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as error:
            raise CheckpointError(f"cannot read {path} as a numpy array: {error}") from None
    elif path.suffix == ".safetensors":
        checkpoint = Checkpoint.open(path)
        matrix = checkpoint.load(_pick(checkpoint.names(), tensor, path))
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for corrupt or pickled files
            raise CheckpointError(f"cannot read {path} (weights_only=True): {str(error).splitlines()[0]}") from None
        if isinstance(loaded, torch.Tensor):
            if tensor is not None:
                raise CheckpointError(f"{path} holds one tensor; tensor= (--tensor) applies to dicts of tensors")
            matrix = loaded
        elif isinstance(loaded, dict) and all(isinstance(v, torch.Tensor) for v in loaded.values()) and loaded:
            matrix = loaded[_pick(sorted(loaded), tensor, path)]
        else:
            raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a tensor or a dict of tensors")
    if matrix.ndim != 2:
        raise CheckpointError(f"{path}: the tensor is {matrix.ndim}-D, shape {tuple(matrix.shape)}; a target is 2-D")
    return matrix
