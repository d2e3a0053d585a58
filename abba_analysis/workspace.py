"""Scratch tensors that an iterative solver reuses from one iteration to the next.

A sweep of the block-coordinate solver, or a step of Adam, makes temporaries the size of the
whole target stack (residuals, products, Gram matrices, the float64 systems). Allocated afresh
each iteration, those of a few MB come straight from the operating system: glibc's allocator maps
them, or returns the freed top of its heap, and the next iteration pays a page fault for every
4 KiB it touches again. That cost a quarter to a third of a sweep of 64 targets of 128 x 128, a
third to a half of one at 4096 x 4096, and half of Adam's gradient (``benchmarks/bench_workspace.py``).
A :class:`Workspace` hands out the same storage each time instead. (PyTorch's CUDA allocator caches blocks already; there it
changes nothing.)
"""

from __future__ import annotations

import math

import numpy as np
import torch


class Workspace:
    """Named scratch buffers, each allocated once and then reused.

    ``get(name, shape, ...)`` returns a tensor of that shape whose storage belongs to ``name``:
    the same memory on every call, so a tensor from an earlier call under the same name is
    overwritten by whoever writes to the new one. Callers give each tensor that must stay alive a
    name of its own. A smaller request (a batch from which some targets have left) gets a view of
    the front of the buffer; a larger one, or another dtype or device, replaces it.

    Examples
    --------
    >>> ws = Workspace()
    >>> a = ws.get("residual", (2, 3), torch.float32, torch.device("cpu"))
    >>> b = ws.get("residual", (1, 3), torch.float32, torch.device("cpu"))
    >>> b.data_ptr() == a.data_ptr()
    True
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """An uninitialised, contiguous tensor of ``shape``, backed by the buffer called ``name``."""
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype or buffer.device != device:
            buffer = self._buffers[name] = torch.empty(size, dtype=dtype, device=device)
        return buffer[:size].view(shape)

    def like(self, name: str, shape: tuple[int, ...], reference: torch.Tensor) -> torch.Tensor:
        """:meth:`get` with the dtype and device of ``reference``."""
        return self.get(name, shape, reference.dtype, reference.device)


def product(left: torch.Tensor, right: torch.Tensor, workspace: Workspace | None, name: str) -> torch.Tensor:
    """``left @ right`` (batch dimensions broadcast), into the workspace's buffer ``name``, or a new
    tensor without a workspace.

    An ``out=`` product is not autocast: code that runs under :func:`torch.autocast` (Adam's bf16
    option) passes no workspace.
    """
    if workspace is None:
        return left @ right
    batch = _broadcast_shapes(left.shape[:-2], right.shape[:-2])
    return torch.matmul(left, right, out=workspace.like(name, (*batch, left.shape[-2], right.shape[-1]), left))


def scratch(workspace: Workspace | None, name: str, *operands: torch.Tensor) -> torch.Tensor | None:
    """The ``out=`` of an element-wise result of ``operands`` (their broadcast shape, the first's
    dtype): the workspace's buffer ``name``, or None (a new tensor) without a workspace."""
    if workspace is None:
        return None
    return workspace.like(name, _broadcast_shapes(*(x.shape for x in operands)), operands[0])


def _broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """numpy's, not ``torch.broadcast_shapes``: torch's first call imports modules worth about 34 MB
    of resident memory (measured), which the memory benchmarks would count against the fit."""
    return np.broadcast_shapes(*shapes)
