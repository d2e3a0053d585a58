"""Per-layer weight deltas ``ΔW = W_finetuned - W_base`` and a checkpoint's own weights, streamed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator

import torch

from .checkpoint import Checkpoint

# Prefixes that wrap the same module tree in different saving code (HF models, PEFT wrappers).
_KNOWN_PREFIXES = ("", "model.", "base_model.model.", "base_model.model.model.", "transformer.", "bert.")


@dataclass(frozen=True)
class LayerDelta:
    """One layer's pretrained weight and update, both ``(out, in)``.

    Attributes
    ----------
    name : str
        The tensor name in the base checkpoint.
    base : torch.Tensor
        ``W0``.
    delta : torch.Tensor
        ``ΔW`` (fine-tuned minus base, or an adapter's ``s B A``).
    """

    name: str
    base: torch.Tensor | None
    delta: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.delta.shape)  # type: ignore[return-value]


@dataclass(frozen=True)
class LayerWeight:
    """One 2-D weight of a checkpoint, as a target."""

    name: str
    weight: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.weight.shape)  # type: ignore[return-value]


def _strip(name: str, prefix: str) -> str | None:
    return name[len(prefix):] if name.startswith(prefix) else None


def match_names(base_names: list[str], tuned_names: list[str]) -> dict[str, str]:
    """Map base names to fine-tuned names, allowing one constant prefix difference per side.

    Tries the prefixes in common use (``model.``, ``base_model.model.``, ...) and each name's first
    dotted component, and keeps the pair of prefixes that matches the most names.
    """
    candidates = set(_KNOWN_PREFIXES)
    for name in base_names[:50] + tuned_names[:50]:
        if "." in name:
            candidates.add(name.split(".", 1)[0] + ".")
    best: dict[str, str] = {}
    for pb in candidates:
        stripped_base = {s: n for n in base_names if (s := _strip(n, pb)) is not None}
        if not stripped_base:
            continue
        for pt in candidates:
            stripped_tuned = {s: n for n in tuned_names if (s := _strip(n, pt)) is not None}
            common = stripped_base.keys() & stripped_tuned.keys()
            if len(common) > len(best):
                best = {stripped_base[k]: stripped_tuned[k] for k in common}
    return best


@dataclass
class DeltaPairs:
    """Matched layers of a base and a fine-tuned checkpoint; iterating reads one pair at a time.

    Attributes
    ----------
    names : list of str
        Base names of the selected 2-D tensors present in both, in order.
    only_in_base, only_in_finetuned : list of str
        Selected tensors the other checkpoint lacks (reported, not fitted).
    tied : dict
        Tensors that share storage with another (name -> the tensor it aliases), per side.
    """

    base: Checkpoint
    finetuned: Checkpoint
    names: list[str]
    mapping: dict[str, str]
    only_in_base: list[str]
    only_in_finetuned: list[str]
    tied: dict[str, str] = field(default_factory=dict)
    dtype: torch.dtype = torch.float32
    allow_dtype_mismatch: bool = False

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[LayerDelta]:
        for name in self.names:
            yield self.load(name)

    def check(self, name: str) -> None:
        """Raise if the two tensors for ``name`` differ in shape (or dtype, unless allowed)."""
        a, b = self.base.infos[name], self.finetuned.infos[self.mapping[name]]
        if a.shape != b.shape:
            raise ValueError(f"tensor {name!r}: base shape {a.shape} != fine-tuned shape {b.shape}")
        if a.dtype != b.dtype and not self.allow_dtype_mismatch:
            raise ValueError(f"tensor {name!r}: base dtype {a.dtype} != fine-tuned dtype {b.dtype} "
                             "(pass allow_dtype_mismatch=True to subtract in the working dtype)")

    def load(self, name: str) -> LayerDelta:
        """Read the pair for ``name`` and return W0 and ΔW in ``dtype``."""
        self.check(name)
        w0 = self.base.load(name).to(self.dtype)
        w1 = self.finetuned.load(self.mapping[name]).to(self.dtype)
        return LayerDelta(name, w0, w1 - w0)

    def report(self) -> str:
        """A one-paragraph account of what was matched, skipped and why."""
        lines = [f"{len(self.names)} matched 2-D tensors"]
        if self.only_in_base:
            lines.append(f"only in base ({len(self.only_in_base)}): {', '.join(self.only_in_base[:8])}")
        if self.only_in_finetuned:
            lines.append(f"only in fine-tuned ({len(self.only_in_finetuned)}): {', '.join(self.only_in_finetuned[:8])}")
        if self.tied:
            lines.append("tied: " + ", ".join(f"{k} = {v}" for k, v in list(self.tied.items())[:8]))
        return "; ".join(lines)


def from_checkpoints(
    base: str | os.PathLike,
    finetuned: str | os.PathLike,
    include: str | None = None,
    *,
    exclude: str | None = None,
    dtype: torch.dtype = torch.float32,
    allow_dtype_mismatch: bool = False,
) -> DeltaPairs:
    """Pair the 2-D weights of two checkpoints; iterate to stream ``ΔW = W_finetuned - W_base``.

    Parameters
    ----------
    base, finetuned : path, hub id or Checkpoint
        A ``.safetensors`` / ``.bin`` file, a model directory (single file or sharded with an index),
        a hub id (needs ``huggingface_hub``), or an open :class:`Checkpoint`.
    include, exclude : str, optional
        Regular expressions (``re.search``) on base tensor names.
    dtype : torch.dtype
        Working dtype of W0 and ΔW (default float32; bf16/fp16 checkpoints are upcast before subtracting).
    allow_dtype_mismatch : bool
        Accept tensors stored in different dtypes on the two sides.

    Returns
    -------
    DeltaPairs
        Lazy: each iteration reads one pair of tensors. Shape mismatches raise ``ValueError`` naming
        the tensor and both shapes; names present on one side only are listed in ``only_in_base`` /
        ``only_in_finetuned``.

    Raises
    ------
    CheckpointError
        At once, if a checkpoint is missing or unreadable, or if ``include`` / ``exclude`` select no
        2-D tensor of ``base`` (the message lists some names there are).
    ValueError
        If a pattern is not a valid regular expression.

    Examples
    --------
    >>> pairs = from_checkpoints("base/", "tuned/", include=r"\\.(q|v)_proj\\.weight$")  # doctest: +SKIP
    >>> for d in pairs:  # doctest: +SKIP
    ...     print(d.name, d.shape, float(d.delta.norm() / d.base.norm()))
    """
    a, b = Checkpoint.open(base), Checkpoint.open(finetuned)
    mapping = match_names(a.names(), b.names())
    chosen = a.matrices(include, exclude, required=True)
    matched = set(mapping.values())
    only_tuned = [n for n in b.matrices(include, exclude) if n not in matched]
    pairs = DeltaPairs(
        base=a, finetuned=b,
        names=[n for n in chosen if n in mapping],
        mapping=mapping,
        only_in_base=[n for n in chosen if n not in mapping],
        only_in_finetuned=only_tuned,
        tied={**{f"base:{k}": v for k, v in a.tied.items()}, **{f"finetuned:{k}": v for k, v in b.tied.items()}},
        dtype=dtype,
        allow_dtype_mismatch=allow_dtype_mismatch,
    )
    for name in pairs.names:  # shape problems surface before any tensor is read
        pairs.check(name)
    return pairs


def weights(
    path: str | os.PathLike,
    include: str | None = None,
    *,
    exclude: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Iterator[LayerWeight]:
    """Stream a checkpoint's own 2-D weights (e.g. W0 as a target), one tensor at a time.

    The checkpoint is opened and the selection checked at the call (``CheckpointError`` as in
    :func:`from_checkpoints`); tensors are read as the iterator is consumed.
    """
    checkpoint = Checkpoint.open(path)
    names = checkpoint.matrices(include, exclude, required=True)
    return (LayerWeight(name, checkpoint.load(name).to(dtype)) for name in names)
